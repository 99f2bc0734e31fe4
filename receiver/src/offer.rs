//! One offer, from its announcement to its result: reads the announced snapshots, asks
//! where the dataset lands and what to answer (`place.rs`), answers, hands a stream to
//! `pump.rs`, and records what the receive did (the catalog, the receiver's hold, the
//! log). It must not decide placement or plans itself, nor read a stream's data.

use crate::compare::{Matched, Matcher};
use crate::place::{Accepted, Placement, Refusal};
use crate::session::Session;
use crate::tree::{join_rel, Location};
use crate::{Error, Result};
use log::{debug, info, warn};
use std::collections::HashSet;
use std::time::Instant;
use zfsync_protocol::{DatasetKind, Message, Outcome, Plan, Reason};
use zfsync_text::quoted;
use zfsync_zfs::{check_snapshot_name, protect, RecvOptions, Snapshot};

/// The snapshots an offer announced, as far as the answer needs them.
struct Announced {
    /// How they compare with the destination's.
    matched: Matched,
    /// The oldest and newest: where a full or an incremental stream ends.
    first: Option<Snapshot>,
    last: Option<Snapshot>,
    /// Why one of their names is refused, if one is.
    bad_name: Option<String>,
    /// For the root's offer: how many GUIDs of the root's announcement it lacks.
    root_missing: usize,
}

impl Session<'_> {
    /// One offered dataset: place it, answer, and receive the stream if one follows.
    pub(crate) fn offer(
        &mut self,
        path: &str,
        kind: DatasetKind,
        count: u32,
        dry_run: bool,
    ) -> Result<()> {
        let started = Instant::now();
        let rel = join_rel(&self.root_rel, path);
        let is_root = path.is_empty();
        let placed = self.keeping_alive(|| self.locate(path, &rel, is_root, dry_run))?;
        let dest: &[Snapshot] = match &placed {
            Ok(Placement {
                existing: Some(info),
                ..
            }) => &info.snapshots,
            _ => &[],
        };
        // What the destination holds before the receive: what pruning after it starts from.
        let before = match self.shared.config.keep {
            Some(_) => dest.to_vec(),
            None => Vec::new(),
        };
        // Read every announced snapshot even when the offer is already refused: the
        // conversation must stay in step.
        let Announced {
            matched,
            first,
            last,
            bad_name,
            root_missing,
        } = self.read_announced(count, dest, is_root)?;
        self.record.offered(first.as_ref(), last.as_ref());
        // The root's children were judged by what the sender announced for it: its own
        // offer must hold what of that the destination has, so that one claim cannot pass
        // the children and another be refused for the root.
        if root_missing > 0 {
            return self.violation(&format!(
                "the root's offer lacks {root_missing} of the snapshots announced for it that the destination holds"
            ));
        }
        let accepted = match (placed, bad_name) {
            (Err(refusal), _) => Err(refusal),
            (Ok(_), Some(bad)) => Err(Refusal::new(
                Reason::InvalidPath,
                format!("snapshot name refused: {bad}"),
            )),
            (Ok(placement), None) => self.answer_offer(placement, &matched, count, kind),
        };
        let mut accepted = match accepted.and_then(|a| self.apply(a, dry_run)) {
            Ok(a) => a,
            Err(refusal) => {
                info!(
                    "offer refused peer={} dataset={} reason={} text={}",
                    quoted(self.peer),
                    quoted(rel),
                    quoted(refusal.reason.words()),
                    quoted(&refusal.text)
                );
                let plan = refusal.into_plan();
                self.record.answered(&plan);
                self.writer.send(&Message::Reply(plan))?;
                return Ok(());
            }
        };
        // The sender's summary names every rollback (the log has it too).
        if let (Some(done), Plan::Incremental { rollback, .. }) =
            (&accepted.rollback, &mut accepted.plan)
        {
            *rollback = done.describe(dry_run);
        }
        if accepted.replaces_placeholder {
            info!(
                "replacing placeholder dataset={} (the source's dataset has snapshots now)",
                accepted.location.dataset()
            );
        } else if accepted.force {
            warn!(
                "overwriting dataset={} (no snapshots, --allow-overwrite)",
                quoted(accepted.location.dataset())
            );
        }
        self.record.answered(&accepted.plan);
        self.writer.send(&Message::Reply(accepted.plan.clone()))?;
        if !dry_run
            && matches!(
                accepted.plan,
                Plan::UpToDate { .. } | Plan::Placeholder { .. }
            )
        {
            self.delivered(path);
        }
        let streams = matches!(
            accepted.plan,
            Plan::Full { .. } | Plan::Incremental { .. } | Plan::Resume { .. }
        );
        if dry_run || !streams {
            debug!(
                "offer answered peer={} dataset={} plan={:?} dry_run={dry_run}",
                quoted(self.peer),
                quoted(rel),
                accepted.plan
            );
            return Ok(());
        }
        let ds = accepted.location.dataset().clone();
        let full = matches!(accepted.plan, Plan::Full { .. });
        let opts = RecvOptions {
            force: accepted.force,
            resumable: true,
            // Only a new filesystem can take the property; a volume cannot mount anyway.
            no_automount: full && kind == DatasetKind::Filesystem,
            // Replicas are read-only: TARGET is, when a receive makes it, and everything
            // below inherits it. Reading a mounted writable replica (access times) is
            // enough to break its next incremental.
            read_only: full && ds == self.shared.tree.target,
        };
        // What the stream ends with, by the plan's definition (PROTOCOL.md): a full stream
        // is of the oldest snapshot offered, an incremental runs to the newest. A resumed
        // stream ends wherever the interrupted one was going: that is read back.
        let ends_with = match accepted.plan {
            Plan::Full { .. } => first,
            Plan::Incremental { .. } => last,
            _ => None,
        };
        let finishing = || {
            if let Some(lock) = &accepted.lock {
                lock.finishing();
            }
        };
        let outcome = self.receive(&ds, &opts, ends_with, &finishing);
        if let Ok(o) = &outcome {
            self.record.received(o);
        }
        // Whatever came of it (even a cut connection), the dataset is no longer what a
        // listing taken before now shows; this runs before the dataset's lock is released.
        self.shared.tree.catalog.touch(ds.as_str());
        if let Ok(Outcome::Done { .. }) = &outcome {
            self.shared.tree.catalog.mark_present(ds.as_str());
        }
        if matches!(accepted.location, Location::Buffered(_)) {
            self.shared.tree.mark_buffer_used();
        }
        let outcome = outcome?;
        if let Outcome::Done { .. } = outcome {
            self.delivered(path);
            if accepted.replaces_placeholder {
                self.shared.tree.clear_placeholder(self.shared.zfs, &ds);
            }
            if opts.read_only {
                self.shared.tree.make_read_only(self.shared.zfs, &ds);
            }
        }
        if let (Outcome::Done { newest, .. }, Location::InPlace(_)) = (&outcome, &accepted.location)
        {
            protect::move_receiver_hold(
                self.shared.zfs,
                &ds,
                newest,
                accepted.held_before.as_deref(),
            );
            if let Plan::Incremental { from_guid, .. } = &accepted.plan {
                crate::prune::after_receive(self.shared, &ds, &before, *from_guid, newest);
            }
        }
        match &outcome {
            Outcome::Done { bytes, newest, .. } => info!(
                "recv done peer={} dataset={} snap={} bytes={} secs={:.2}",
                quoted(self.peer),
                quoted(&ds),
                quoted(newest),
                bytes,
                started.elapsed().as_secs_f64()
            ),
            Outcome::Failed { reason, text } => {
                warn!(
                    "recv failed peer={} dataset={} reason={} error={}",
                    quoted(self.peer),
                    quoted(&ds),
                    quoted(reason.words()),
                    quoted(text)
                )
            }
        }
        Ok(())
    }

    /// Reads the `count` snapshots announced after an offer and compares them with `dest`,
    /// the destination's, one at a time as they arrive; for the root's offer (`is_root`),
    /// also with the session's announcement of the root.
    fn read_announced(
        &mut self,
        count: u32,
        dest: &[Snapshot],
        is_root: bool,
    ) -> Result<Announced> {
        let mut root_seen: HashSet<u64> = HashSet::new();
        // Of the announcement, what the destination holds is the evidence the children were
        // judged by: the offer must hold that. Every such snapshot is at or before the
        // newest common one, so it is in any offer the sender makes (a filtered sender
        // offers the kept snapshots up to the end of its next step only).
        let root_guids: HashSet<u64> = match &self.root_guids {
            Some(g) if is_root => {
                let held: HashSet<u64> = dest.iter().map(|s| s.guid).collect();
                g.intersection(&held).copied().collect()
            }
            _ => HashSet::new(),
        };
        let mut bad_name: Option<String> = None;
        let mut first: Option<Snapshot> = None;
        let mut last: Option<Snapshot> = None;
        let mut matcher = Matcher::new(dest);
        for _ in 0..count {
            match self.reader.read_message()? {
                Some(Message::Snap(s)) => {
                    if bad_name.is_none() {
                        if let Err(e) = check_snapshot_name(&s.name) {
                            bad_name = Some(e.to_string());
                        }
                    }
                    let snap = Snapshot {
                        name: s.name,
                        guid: s.guid,
                        createtxg: s.createtxg,
                    };
                    if root_guids.contains(&snap.guid) {
                        root_seen.insert(snap.guid);
                    }
                    if first.is_none() {
                        first = Some(snap.clone());
                    }
                    last = Some(snap.clone());
                    matcher.feed(snap);
                }
                Some(other) => {
                    return self.violation(&format!("expected snap, got {}", other.name()))
                }
                None => return Err(Error::Violation("closed inside an offer".into())),
            }
        }
        Ok(Announced {
            matched: matcher.finish(),
            first,
            last,
            bad_name,
            root_missing: root_guids.len() - root_seen.len(),
        })
    }

    /// Applies the changes an accepted answer needs before it is sent: the buffer for a
    /// dataset that lands there, an allowed rollback, a placeholder to make; under the
    /// tree's lock and the dataset's. A dry run changes nothing.
    fn apply<'a>(
        &self,
        accepted: Accepted<'a>,
        dry_run: bool,
    ) -> std::result::Result<Accepted<'a>, Refusal> {
        if dry_run {
            return Ok(accepted);
        }
        let (tree, zfs) = (&self.shared.tree, self.shared.zfs);
        // Issue 5: the buffer is created only for an accepted offer, so a refused one (bad
        // snapshot name, no snapshots) leaves the receiving pool untouched.
        if matches!(accepted.location, Location::Buffered(_)) {
            tree.ensure_buffer(zfs).map_err(Refusal::zfs)?;
        }
        if let (Some(rollback), Some(lock)) = (&accepted.rollback, &accepted.lock) {
            tree.roll_back(zfs, lock, rollback).map_err(Refusal::zfs)?;
        }
        if let (true, Some(lock)) = (accepted.make_placeholder, &accepted.lock) {
            let ds = accepted.location.dataset();
            tree.make_placeholder(zfs, lock, ds).map_err(Refusal::zfs)?;
        }
        Ok(accepted)
    }
}
