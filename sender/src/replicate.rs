//! One dataset on one connection: offer its snapshots, follow the receiver's plan (full,
//! incremental, resume), stream, and read the result; resume tokens are checked before
//! they are used.
//!
//! It owns no retries or threads (that is [`crate::pool`]) and prints nothing.

use crate::conn::Connection;
use crate::pool::Job;
use crate::report::Status;
use crate::{Config, Result};
use log::{info, warn};
use zfsync_protocol::{Outcome, Plan, Reason};
use zfsync_zfs::{DatasetInfo, SendOptions, Zfs};

/// Whether a resume token from the receiver may be used for `job`: it must end with one of
/// the snapshots offered (name and GUID, in this dataset), start (if incremental) from one
/// of them, and be raw when this run sends the dataset raw, so that a receiver cannot get
/// another dataset's data, or an encrypted dataset's plaintext, by naming it in a token.
fn check_token(
    t: &zfsync_zfs::TokenInfo,
    job: &Job,
    config: &Config,
) -> std::result::Result<(), String> {
    let ds = &job.info.name;
    let snaps = &job.info.snapshots;
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
    if let Some(from) = t.fromguid {
        if !snaps.iter().any(|s| s.guid == from) {
            return Err(format!(
                "it starts from a snapshot this source does not have (guid {from})"
            ));
        }
    }
    if job.info.encrypted && !config.no_raw && !t.rawok {
        return Err(format!(
            "it would send @{snap} decrypted, and this run sends encrypted datasets raw"
        ));
    }
    Ok(())
}

/// What to stream for one plan.
enum Source {
    Snapshot { name: String, opts: SendOptions },
    Resume { token: String },
}

/// One dataset's session: offer, and stream what the receiver asks for. A new dataset
/// gets its oldest snapshot in full, then the rest incrementally, on the same connection;
/// an interrupted stream is first resumed. Each round ends with the receiver's verdict.
pub(crate) fn replicate(
    conn: &mut Connection,
    config: &Config,
    zfs: &Zfs,
    job: &Job,
) -> Result<(Status, u64, String)> {
    let snaps = &job.info.snapshots;
    let newest = snaps.last().expect("jobs have snapshots");
    let ds = &job.info.name;
    let mut bytes = 0;
    let mut notes: Vec<String> = Vec::new();
    let mut resume_failed = false;
    // Rounds: resume, full, incremental, and one spare for a resume that failed. More
    // would mean the receiver does not keep what it acknowledged.
    for _round in 0..4 {
        let plan = conn.offer(&job.rel, job.info.kind, snaps, config.dry_run)?;
        let (source, what) = match plan {
            // Up to date means the receiver has our newest snapshot; it names it.
            Plan::UpToDate { name } if name != newest.name => {
                return Ok((
                    Status::Failed,
                    bytes,
                    format!(
                        "receiver says up to date with @{name}, but the newest snapshot is @{}",
                        newest.name
                    ),
                ))
            }
            Plan::UpToDate { .. } if notes.is_empty() => {
                return Ok((Status::UpToDate, 0, format!("@{}", newest.name)))
            }
            Plan::UpToDate { .. } => return Ok((Status::Sent, bytes, notes.join(", "))),
            Plan::Refused { reason, text } => return Ok((Status::Refused(reason), bytes, text)),
            Plan::Resume { token } => {
                if resume_failed {
                    let text = "receiver offered a resume token again after it failed";
                    conn.abandon(text)?;
                    return Ok((Status::Failed, bytes, text.into()));
                }
                // The token is the receiver's word for what to send, and `zfs send -t`
                // sends whatever it names, as it names it: it is checked first
                // (`check_token`). An unusable token (a stale one: its snapshot is gone)
                // or a refused one ends like a failed resume: the receiver drops its
                // partial state on Abort, and the next offer gets a plan from scratch.
                let refusal = match zfs.resume_token_info(&token) {
                    Err(e) => Err(format!("resume failed ({e})")),
                    Ok(t) => match check_token(&t, job, config) {
                        Ok(()) => Ok(t.bytes.unwrap_or(0)),
                        Err(why) => Err(format!("resume refused ({why})")),
                    },
                };
                let saved = match refusal {
                    Ok(saved) => saved,
                    Err(what) => {
                        warn!("resume token not used dataset={ds}: {what}");
                        conn.abandon(&format!("resume token not used: {what}"))?;
                        notes.push(format!("{what}, token discarded"));
                        resume_failed = true;
                        continue;
                    }
                };
                (
                    Source::Resume { token },
                    format!("resumed ({saved} bytes saved)"),
                )
            }
            Plan::Full { buffered } => {
                let first = &snaps[0];
                let mut what = format!("full @{}", first.name);
                if buffered {
                    what.push_str(" (buffered: parent not there yet)");
                }
                if config.dry_run && snaps.len() > 1 {
                    what.push_str(&format!(
                        ", then @{}..@{} ({})",
                        first.name,
                        newest.name,
                        snapshots(snaps.len() - 1)
                    ));
                }
                let name = format!("{ds}@{}", first.name);
                (
                    Source::Snapshot {
                        name,
                        opts: send_options(config, &job.info, None),
                    },
                    what,
                )
            }
            Plan::Incremental {
                from_guid,
                from_name,
            } => {
                let Some(from) = snaps.iter().find(|s| s.guid == from_guid) else {
                    let text = format!("receiver named base @{from_name} (guid {from_guid}), which this source does not have");
                    conn.abandon(&text)?;
                    return Ok((Status::Failed, bytes, text));
                };
                let count = snaps
                    .iter()
                    .rev()
                    .take_while(|s| s.guid != from_guid)
                    .count();
                let what = format!(
                    "incremental @{}..@{} ({})",
                    from.name,
                    newest.name,
                    snapshots(count)
                );
                let mut opts = send_options(config, &job.info, Some(format!("{ds}@{}", from.name)));
                opts.intermediates = count > 1;
                (
                    Source::Snapshot {
                        name: format!("{ds}@{}", newest.name),
                        opts,
                    },
                    what,
                )
            }
        };
        if config.dry_run {
            return Ok((Status::WouldSend, 0, what));
        }
        info!("send start dataset={ds} {what}");
        let spawned = match &source {
            Source::Snapshot { name, opts } => zfs.send(name, opts),
            Source::Resume { token } => zfs.send_resume(token),
        };
        let (outcome, sent) = conn.stream(spawned, ds)?;
        bytes += sent;
        match outcome {
            Outcome::Done {
                newest: got,
                newest_guid,
                ..
            } => {
                notes.push(what);
                if newest_guid == newest.guid {
                    return Ok((Status::Sent, bytes, notes.join(", ")));
                }
                if !snaps.iter().any(|s| s.guid == newest_guid) {
                    return Ok((
                        Status::Failed,
                        bytes,
                        format!(
                            "receiver's newest snapshot is now @{got}, which is not one of ours"
                        ),
                    ));
                }
            }
            // A resume that fails (stale token, source snapshot gone) is dropped by the
            // receiver: offer again for a normal incremental.
            Outcome::Failed { text, .. } if matches!(source, Source::Resume { .. }) => {
                warn!("resume failed dataset={ds} error={text}");
                notes.push(format!("resume failed ({text}), token discarded"));
                resume_failed = true;
            }
            Outcome::Failed { reason, text } => {
                let status = if reason == Reason::StreamFailed {
                    Status::Failed
                } else {
                    Status::Refused(reason)
                };
                return Ok((status, bytes, text));
            }
        }
    }
    Ok((
        Status::Failed,
        bytes,
        "receiver did not advance after the streams it accepted".into(),
    ))
}

/// The send flags for one dataset: the fast ones the ZFS has (the zfs module drops what
/// it lacks), and raw for an encrypted dataset so it stays encrypted on the receiver.
/// The newest snapshot of a job: what the receiver has once the job is delivered.
pub(crate) fn newest_name(info: &DatasetInfo) -> &str {
    &info.snapshots.last().expect("jobs have snapshots").name
}

fn send_options(config: &Config, info: &DatasetInfo, from: Option<String>) -> SendOptions {
    SendOptions {
        from,
        intermediates: false,
        compressed: !config.plain,
        large_blocks: !config.plain,
        embedded: !config.plain,
        raw: info.encrypted && !config.no_raw,
    }
}

/// "1 snapshot", "3 snapshots".
fn snapshots(n: usize) -> String {
    format!("{n} snapshot{}", if n == 1 { "" } else { "s" })
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
                encrypted,
                resume_token: None,
            },
            rel: String::new(),
            attempt: 0,
        }
    }

    fn config(no_raw: bool) -> Config {
        let argv: Vec<String> = ["tank/data", "backup"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut c = match cli::parse(&argv).unwrap() {
            cli::Parsed::Run(a) => a.into_config().unwrap(),
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

    #[test]
    fn resume_tokens_are_checked_against_the_offer() {
        let (j, c) = (job(false), config(false));
        assert_eq!(
            check_token(&token("tank/data@s2", 22, Some(11), false), &j, &c),
            Ok(())
        );
        assert_eq!(
            check_token(&token("tank/data@s1", 11, None, false), &j, &c),
            Ok(())
        );
        let refused = |t: TokenInfo, why: &str| {
            let e = check_token(&t, &j, &c).unwrap_err();
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
        refused(token("tank/data@s2", 22, Some(7), false), "does not have");
        refused(TokenInfo::default(), "names no snapshot");
    }

    #[test]
    fn an_encrypted_dataset_resumes_only_raw_unless_sent_decrypted() {
        let t = |rawok| token("tank/data@s2", 22, Some(11), rawok);
        let e = check_token(&t(false), &job(true), &config(false)).unwrap_err();
        assert!(e.contains("decrypted"), "{e}");
        assert_eq!(check_token(&t(true), &job(true), &config(false)), Ok(()));
        // --no-raw: the user sends it decrypted anyway.
        assert_eq!(check_token(&t(false), &job(true), &config(true)), Ok(()));
    }
}
