//! One dataset on one connection: offer its snapshots, follow the receiver's plan (full,
//! incremental, resume), stream, and read the result; resume tokens are checked before
//! they are used.
//!
//! A base that is only a bookmark on this side (its snapshot destroyed by other means) is
//! sent from as one: `zfs send -i DS#BM`. Once a dataset is delivered, it moves the base
//! marks (`--mark`) to its newest snapshot.
//!
//! It owns no retries or threads (that is [`crate::pool`]) and prints nothing.

use crate::conn::Connection;
use crate::pool::Job;
use crate::progress::{Estimate, Meter};
use crate::report::{Delivery, Parent, SnapshotRef, Status, Step, Stream, StreamKind};
use crate::select::Offer;
use crate::{Config, Error, Result};
use log::{info, warn};
use zfsync_protocol::{Outcome, Plan, Reason};
use zfsync_text::quoted;
use zfsync_zfs::protect::SourceMarks;
use zfsync_zfs::{DatasetInfo, SendOptions, Snapshot, Zfs};

/// What replicating any dataset of a run needs.
#[derive(Clone, Copy)]
pub(crate) struct Replicator<'a> {
    pub(crate) config: &'a Config,
    pub(crate) zfs: &'a Zfs,
    /// The base marks to move once a dataset is delivered.
    pub(crate) marks: &'a SourceMarks,
    /// What each connection announces of the root before its first offer.
    pub(crate) root_guids: &'a [u64],
    /// Where each try is recorded (the pool starts and finishes the records).
    pub(crate) recorder: &'a crate::record::Recorder<'a>,
    /// Where each stream's progress is shown.
    pub(crate) meter: &'a Meter,
}

impl Replicator<'_> {
    /// Replicates one dataset on `conn`, then marks the snapshot now newest on the receiver
    /// as this receiver's base (unless that snapshot is gone here, and only its bookmark
    /// is left: the bookmark is the base's protection then).
    pub(crate) fn deliver(&self, conn: &mut Connection, job: &Job) -> Result<Delivery> {
        conn.announce_root(self.root_guids)?;
        let streaming = || self.recorder.streaming(&job.info.name);
        let mut delivery = replicate(conn, self.config, self.zfs, job, self.meter, &streaming)?;
        if let Some(newest) = delivery.newest.as_ref().filter(|n| !n.is_bookmark()) {
            let marked =
                self.marks
                    .mark_delivered(self.zfs, &job.info.name, &newest.name, newest.guid);
            if let Err(e) = marked {
                delivery.status = Status::Failed;
                delivery.error = Some(format!("delivered, but marking the base failed: {e}"));
            }
        }
        Ok(delivery)
    }
}

/// Whether a resume token from the receiver may be used for `job`, and if so the snapshots
/// it starts from and ends with. It must end with one of the snapshots offered (`snaps`:
/// name and GUID, in this dataset), start (if incremental) from one of them, and be raw
/// when this run sends the dataset raw, so that a receiver cannot get another dataset's
/// data, a snapshot the filters leave out, or an encrypted dataset's plaintext, by naming
/// it in a token.
fn check_token(
    t: &zfsync_zfs::TokenInfo,
    job: &Job,
    snaps: &[Snapshot],
    config: &Config,
) -> std::result::Result<(Option<SnapshotRef>, SnapshotRef), String> {
    let ds = &job.info.name;
    let toname = t.toname.as_deref().ok_or("it names no snapshot")?;
    let snap = match toname.split_once('@') {
        Some((d, s)) if d == ds.as_str() => s,
        _ => return Err(format!("it is for {toname}, not a snapshot of {ds}")),
    };
    let Some(to) = snaps.iter().find(|s| s.name == snap) else {
        return Err(format!("it is for @{snap}, which this run did not offer"));
    };
    if t.toguid != Some(to.guid) {
        return Err(format!("its @{snap} is not this source's (another GUID)"));
    }
    let from = match t.fromguid {
        None => None,
        Some(guid) => match snaps.iter().find(|s| s.guid == guid) {
            Some(from) => Some(snapshot_ref(from)),
            None => {
                return Err(format!(
                    "it starts from a snapshot this run did not offer (guid {guid})"
                ))
            }
        },
    };
    if job.info.encrypted && !config.no_raw && !t.rawok {
        return Err(format!(
            "it would send @{snap} decrypted, and this run sends encrypted datasets raw"
        ));
    }
    Ok((from, snapshot_ref(to)))
}

/// What `zfs send` is run with for one plan.
enum SendCommand {
    Snapshot { name: String, opts: SendOptions },
    Resume { token: String },
}

/// A dataset without snapshots, whose descendants have some: offered without snapshots,
/// so that the receiver makes a placeholder for them to land under if nothing is there.
fn offer_parent(conn: &mut Connection, config: &Config, job: &Job) -> Result<Delivery> {
    let parent = match conn.offer(&job.rel, job.info.kind, &[], config.dry_run)? {
        Plan::Placeholder { made: false, .. } => Parent::Exists,
        Plan::Placeholder { made: true, .. } if config.dry_run => Parent::WouldMake,
        Plan::Placeholder {
            made: true,
            buffered,
        } => Parent::Made { buffered },
        Plan::Refused { reason, text } => {
            return Ok(Delivery {
                error: Some(text),
                ..Delivery::new(Status::Refused(reason))
            })
        }
        // A receiver that wants a stream for nothing breaks the protocol: the connection
        // goes (its state is unknown).
        other => {
            return Err(Error::Violation(format!(
                "answered {other:?} to an offer without snapshots"
            )))
        }
    };
    Ok(Delivery {
        steps: vec![Step::Parent(parent)],
        ..Delivery::new(Status::NoSnapshots)
    })
}

/// One dataset's session: offer, and stream what the receiver asks for. A new dataset
/// gets its oldest snapshot in full, then the rest incrementally, on the same connection;
/// an interrupted stream is first resumed. Each round ends with the receiver's verdict.
///
/// Only the snapshots the filters keep are offered, and the base bookmarks whose snapshots
/// are gone ([`Offer`]). The receiver takes an incremental stream to end with the newest
/// snapshot offered, so when one left out lies between the base and the newest, each
/// round offers the kept snapshots up to the end of the next step ([`Offer::next_step`])
/// only, and sends that step (`-i` over the ones left out). A base that is only a bookmark
/// here is sent from with `-i DS#BM` to the next snapshot, the rest in the next step. A
/// full stream is of the oldest entry offered: when that is a bookmark, the offer starts
/// again from the oldest snapshot. `streaming` is called as each stream starts.
fn replicate(
    conn: &mut Connection,
    config: &Config,
    zfs: &Zfs,
    job: &Job,
    meter: &Meter,
    streaming: &dyn Fn(),
) -> Result<Delivery> {
    let offer = Offer::of(&job.info, &config.snapshots);
    let snaps = &offer.entries;
    let Some(last) = offer.newest_snapshot() else {
        // A parent of datasets with snapshots, without any (that the filters keep).
        return offer_parent(conn, config, job);
    };
    let newest = &snaps[last];
    // Whether an entry is a snapshot (and not a bookmark standing for one that is gone).
    let real = |s: &&Snapshot| offer.bookmark(s.guid).is_none();
    let ds = &job.info.name;
    let mut steps: Vec<Step> = Vec::new();
    let ended_with_error = |status, steps, error: String| Delivery {
        steps,
        error: Some(error),
        ..Delivery::new(status)
    };
    let ended_at = |at: &Snapshot, status, steps| Delivery {
        steps,
        newest: Some(entry_ref(&offer, at)),
        ..Delivery::new(status)
    };
    // Where the next offer ends in `snaps`: all of them until the receiver's state is
    // known, then up to the end of the step from there.
    let offer_after = |guid: u64| match offer.next_step(guid) {
        Some(step) => {
            snaps
                .iter()
                .position(|s| s.guid == step.to.guid)
                .unwrap_or(0)
                + 1
        }
        None => snaps.len(),
    };
    // The offer is `snaps[first..offered]`.
    let mut first = 0;
    let mut offered = snaps.len();
    let mut resume_failed = false;
    // Rounds: resume, full (and its offer from the oldest snapshot), one per incremental
    // step, one more for a resume that failed and one for a step the receiver was not
    // where this side thought. More would mean the receiver does not keep what it
    // acknowledged.
    for _round in 0..snaps.len() + 5 {
        let window = &snaps[first..offered];
        let end = window.last().expect("an offer holds a snapshot");
        let plan = conn.offer(&job.rel, job.info.kind, window, config.dry_run)?;
        let mut then = None;
        let (command, mut stream) = match plan {
            // Up to date means the receiver has the newest snapshot offered; it names it.
            Plan::UpToDate { name } if name != end.name => {
                let text = format!(
                    "receiver says up to date with @{name}, but the newest snapshot offered is @{}",
                    end.name
                );
                return Ok(ended_with_error(Status::Failed, steps, text));
            }
            Plan::UpToDate { .. } if offered - 1 < last => {
                // It had the step's end already: offer everything again.
                offered = snaps.len();
                continue;
            }
            // At the newest snapshot, or at a bookmark newer than any snapshot left here.
            Plan::UpToDate { .. } if steps.is_empty() => {
                return Ok(ended_at(end, Status::UpToDate, steps))
            }
            Plan::UpToDate { .. } => return Ok(ended_at(end, Status::Sent, steps)),
            Plan::Refused { reason, text } => {
                return Ok(ended_with_error(Status::Refused(reason), steps, text))
            }
            Plan::Placeholder { .. } => {
                return Err(Error::Violation(
                    "answered placeholder to an offer with snapshots".into(),
                ))
            }
            Plan::Resume { token } => {
                if resume_failed {
                    let text = "receiver offered a resume token again after it failed";
                    conn.abandon(text)?;
                    return Ok(ended_with_error(Status::Failed, steps, text.into()));
                }
                // The token is the receiver's word for what to send, and `zfs send -t`
                // sends whatever it names, as it names it: it is checked first
                // (`check_token`). An unusable token (a stale one: its snapshot is gone)
                // or a refused one ends like a failed resume: the receiver drops its
                // partial state on Abort, and the next offer gets a plan from scratch.
                let checked = match zfs.resume_token_info(&token) {
                    Err(e) => Err(format!("resume failed ({e})")),
                    Ok(t) => match check_token(&t, job, window, config) {
                        Ok((from, to)) => Ok((t, from, to)),
                        Err(why) => Err(format!("resume refused ({why})")),
                    },
                };
                let (t, from, to) = match checked {
                    Ok(checked) => checked,
                    Err(what) => {
                        warn!(
                            "resume token not used dataset={} why={}",
                            quoted(ds),
                            quoted(&what)
                        );
                        conn.abandon(&format!("resume token not used: {what}"))?;
                        steps.push(Step::TokenDiscarded(what));
                        resume_failed = true;
                        continue;
                    }
                };
                let stream = Stream {
                    kind: StreamKind::Resume,
                    from,
                    to,
                    // A resumable receive is of one snapshot, even within an `-I` stream.
                    snapshots: 1,
                    raw: t.rawok,
                    compressed: None,
                    buffered: false,
                    saved: t.bytes.unwrap_or(0),
                    bytes: 0,
                    failed: None,
                };
                (SendCommand::Resume { token }, stream)
            }
            Plan::Full { buffered } => {
                let oldest = window.iter().find(real).expect("an offer holds a snapshot");
                if oldest.guid != window[0].guid && !config.dry_run {
                    // The receiver takes the full stream to be of the oldest entry
                    // offered, a bookmark, which holds no data to send: offer again from
                    // the oldest snapshot. (A dry run only says what would be sent.)
                    let text = format!(
                        "offering again from @{}, the oldest snapshot (older entries are bookmarks)",
                        oldest.name
                    );
                    conn.abandon(&text)?;
                    first = snaps
                        .iter()
                        .position(|s| s.guid == oldest.guid)
                        .unwrap_or(0);
                    continue;
                }
                let opts = send_options(config, &job.info, None);
                let stream = Stream {
                    buffered,
                    ..stream_record(StreamKind::Full, None, oldest, 1, &opts, zfs)
                };
                let rest = snaps[..=last]
                    .iter()
                    .skip_while(|s| s.guid != oldest.guid)
                    .skip(1)
                    .filter(real)
                    .count();
                if config.dry_run && rest > 0 {
                    // What would follow the full stream: the rest, incrementally.
                    let from = Some(snapshot_ref(oldest));
                    let kind = StreamKind::Incremental;
                    then = Some(stream_record(kind, from, newest, rest, &opts, zfs));
                }
                let name = format!("{ds}@{}", oldest.name);
                (SendCommand::Snapshot { name, opts }, stream)
            }
            Plan::Incremental {
                from_guid,
                from_name,
                rollback,
            } => {
                if !rollback.is_empty() {
                    steps.push(Step::RolledBack(rollback));
                }
                let Some(from) = window.iter().find(|s| s.guid == from_guid) else {
                    let text = format!("receiver named base @{from_name} (guid {from_guid}), which this run did not offer");
                    conn.abandon(&text)?;
                    return Ok(ended_with_error(Status::Failed, steps, text));
                };
                let (to, count) = if config.dry_run {
                    // What would arrive, in however many steps: all offered after it.
                    let after = snaps[..=last]
                        .iter()
                        .rev()
                        .take_while(|s| s.guid != from_guid);
                    (newest, after.filter(real).count())
                } else {
                    let Some(step) = offer.next_step(from_guid) else {
                        let text = format!(
                            "receiver asked for the snapshots after @{}, and none is offered",
                            from.name
                        );
                        conn.abandon(&text)?;
                        return Ok(ended_with_error(Status::Failed, steps, text));
                    };
                    if step.to.guid != end.guid {
                        // The receiver takes the stream to end with the newest offered,
                        // and a snapshot left out (or a bookmark) lies before that, or
                        // after the last snapshot: offer again, up to the end of this step.
                        let text = format!(
                            "offering again up to @{}, stepping over snapshots left out",
                            step.to.name
                        );
                        conn.abandon(&text)?;
                        offered = offer_after(from_guid);
                        continue;
                    }
                    (step.to, step.snapshots)
                };
                let bookmark = offer.bookmark(from_guid);
                let base = match bookmark {
                    Some(bm) => format!("{ds}#{bm}"),
                    None => format!("{ds}@{}", from.name),
                };
                let mut opts = send_options(config, &job.info, Some(base));
                // `-I` cannot start from a bookmark (zfs: "multiple snapshots cannot be
                // sent from a bookmark"); its step is one snapshot, but a dry run counts
                // every snapshot after it.
                opts.intermediates = count > 1 && bookmark.is_none();
                let kind = StreamKind::Incremental;
                let from = Some(entry_ref(&offer, from));
                let stream = stream_record(kind, from, to, count, &opts, zfs);
                let name = format!("{ds}@{}", to.name);
                (SendCommand::Snapshot { name, opts }, stream)
            }
        };
        if config.dry_run {
            steps.push(Step::Stream(stream));
            steps.extend(then.map(Step::Stream));
            return Ok(Delivery {
                steps,
                ..Delivery::new(Status::WouldSend)
            });
        }
        // In the history before the log says so: a run killed from here on is shown
        // interrupted, not missed.
        streaming();
        info!(
            "send start dataset={} stream={}",
            quoted(ds),
            quoted(stream.describe())
        );
        let estimate = match &command {
            SendCommand::Snapshot { name, opts } => Estimate::send(zfs, name, opts),
            SendCommand::Resume { token } => Estimate::resume(zfs, token),
        };
        let _shown = meter.stream(ds, estimate);
        let spawned = match &command {
            SendCommand::Snapshot { name, opts } => zfs.send(name, opts),
            SendCommand::Resume { token } => zfs.send_resume(token),
        };
        let (outcome, sent) = conn.stream(spawned, ds)?;
        stream.bytes = sent;
        match outcome {
            Outcome::Done {
                newest: got,
                newest_guid,
                ..
            } => {
                steps.push(Step::Stream(stream));
                if newest_guid == newest.guid {
                    return Ok(ended_at(newest, Status::Sent, steps));
                }
                if !snaps.iter().any(|s| s.guid == newest_guid) {
                    let text = format!(
                        "receiver's newest snapshot is now @{got}, which is not one this run offered"
                    );
                    return Ok(ended_with_error(Status::Failed, steps, text));
                }
                offered = offer_after(newest_guid);
            }
            // A resume that fails (stale token, source snapshot gone) is dropped by the
            // receiver: offer again for a normal incremental.
            Outcome::Failed { text, .. } if matches!(command, SendCommand::Resume { .. }) => {
                warn!(
                    "resume failed dataset={} error={}",
                    quoted(ds),
                    quoted(&text)
                );
                stream.failed = Some(text);
                steps.push(Step::Stream(stream));
                resume_failed = true;
                offered = snaps.len();
            }
            Outcome::Failed { reason, text } => {
                let status = if reason == Reason::StreamFailed {
                    Status::Failed
                } else {
                    Status::Refused(reason)
                };
                stream.failed = Some(text.clone());
                steps.push(Step::Stream(stream));
                return Ok(ended_with_error(status, steps, text));
            }
        }
    }
    let text = "receiver did not advance after the streams it accepted";
    Ok(ended_with_error(Status::Failed, steps, text.into()))
}

/// The record of a full or incremental stream to be sent with `opts`.
fn stream_record(
    kind: StreamKind,
    from: Option<SnapshotRef>,
    to: &Snapshot,
    snapshots: usize,
    opts: &SendOptions,
    zfs: &Zfs,
) -> Stream {
    // What `zfs send` is given: the zfs module drops the flags this ZFS lacks.
    let caps = zfs.capabilities();
    Stream {
        kind,
        from,
        to: snapshot_ref(to),
        snapshots,
        raw: opts.raw && caps.send_raw,
        compressed: Some(opts.compressed && caps.send_compressed),
        buffered: false,
        saved: 0,
        bytes: 0,
        failed: None,
    }
}

fn snapshot_ref(s: &Snapshot) -> SnapshotRef {
    SnapshotRef {
        name: s.name.clone(),
        guid: s.guid,
    }
}

/// The record of an entry of `offer`: a snapshot, or the bookmark standing for one.
fn entry_ref(offer: &Offer, s: &Snapshot) -> SnapshotRef {
    match offer.bookmark(s.guid) {
        Some(bm) => SnapshotRef::bookmark(bm, s.guid),
        None => snapshot_ref(s),
    }
}

/// The send flags for one dataset: the fast ones the ZFS has (the zfs module drops what
/// it lacks), and raw for an encrypted dataset so it stays encrypted on the receiver.
fn send_options(config: &Config, info: &DatasetInfo, from: Option<String>) -> SendOptions {
    SendOptions {
        from,
        intermediates: false,
        compressed: !config.plain,
        large_blocks: !config.plain,
        embedded: !config.plain,
        raw: info.encrypted && !config.no_raw,
        props: config.props,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli;
    use zfsync_zfs::{Kind, Snapshot, TokenInfo};

    fn job(encrypted: bool) -> Job {
        let snap = |name: &str, guid| Snapshot {
            name: name.into(),
            guid,
            createtxg: guid,
        };
        Job {
            info: DatasetInfo {
                name: "tank/data".into(),
                kind: Kind::Filesystem,
                snapshots: vec![snap("s1", 11), snap("s2", 22)],
                bookmarks: Vec::new(),
                encrypted,
                resume_token: None,
                sync: None,
                marks: Default::default(),
            },
            rel: String::new(),
            attempt: 0,
            failed_tries: Vec::new(),
        }
    }

    fn config(no_raw: bool) -> Config {
        let argv: Vec<String> = ["tank/data", "backup"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut c = match cli::parse(&argv).unwrap() {
            cli::Parsed::Run(a) => a.into_config().unwrap().0,
            _ => unreachable!(),
        };
        c.no_raw = no_raw;
        c
    }

    fn token(toname: &str, toguid: u64, fromguid: Option<u64>, rawok: bool) -> TokenInfo {
        TokenInfo {
            toname: Some(toname.into()),
            toguid: Some(toguid),
            fromguid,
            bytes: Some(1),
            rawok,
        }
    }

    /// `check_token` with every snapshot of the job offered.
    fn check_token_of(
        t: &TokenInfo,
        job: &Job,
        config: &Config,
    ) -> std::result::Result<(Option<SnapshotRef>, SnapshotRef), String> {
        check_token(t, job, &job.info.snapshots, config)
    }

    #[test]
    fn a_resume_token_for_a_snapshot_the_filters_leave_out_is_refused() {
        let (j, c) = (job(false), config(false));
        let offered = &j.info.snapshots[..1];
        let t = token("tank/data@s2", 22, Some(11), false);
        let e = check_token(&t, &j, offered, &c).unwrap_err();
        assert!(e.contains("did not offer"), "{e}");
        let t = token("tank/data@s1", 11, Some(22), false);
        let e = check_token(&t, &j, offered, &c).unwrap_err();
        assert!(e.contains("did not offer"), "{e}");
    }

    #[test]
    fn resume_tokens_are_checked_against_the_offer() {
        let (j, c) = (job(false), config(false));
        let s = |name: &str, guid| SnapshotRef {
            name: name.into(),
            guid,
        };
        assert_eq!(
            check_token_of(&token("tank/data@s2", 22, Some(11), false), &j, &c),
            Ok((Some(s("s1", 11)), s("s2", 22)))
        );
        assert_eq!(
            check_token_of(&token("tank/data@s1", 11, None, false), &j, &c),
            Ok((None, s("s1", 11)))
        );
        let refused = |t: TokenInfo, why: &str| {
            let e = check_token_of(&t, &j, &c).unwrap_err();
            assert!(e.contains(why), "{e:?} lacks {why:?}");
        };
        refused(
            token("tank/other@s2", 22, None, false),
            "not a snapshot of tank/data",
        );
        refused(
            token("tank/data/kid@s2", 22, None, false),
            "not a snapshot of tank/data",
        );
        refused(token("tank/data@s3", 33, None, false), "did not offer");
        refused(token("tank/data@s2", 99, None, false), "another GUID");
        refused(token("tank/data@s2", 22, Some(7), false), "did not offer");
        refused(TokenInfo::default(), "names no snapshot");
    }

    #[test]
    fn an_encrypted_dataset_resumes_only_raw_unless_sent_decrypted() {
        let t = |rawok| token("tank/data@s2", 22, Some(11), rawok);
        let e = check_token_of(&t(false), &job(true), &config(false)).unwrap_err();
        assert!(e.contains("decrypted"), "{e}");
        assert!(check_token_of(&t(true), &job(true), &config(false)).is_ok());
        // --no-raw: the user sends it decrypted anyway.
        assert!(check_token_of(&t(false), &job(true), &config(true)).is_ok());
    }
}
