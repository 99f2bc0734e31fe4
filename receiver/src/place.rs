//! Where an offered dataset lands and what the receiver answers: in place or in the
//! buffer, what is there now, the dataset's lock, whether the sent root's replica takes
//! children at all, and the plan (or refusal) from the snapshot comparison. Nothing here
//! changes a dataset: an answer that needs a change (an allowed rollback) says so, and the
//! offer applies it under the tree's lock.

use crate::compare::{Decision, Matched};
use crate::session::Session;
use crate::tree::{is_placeholder, rollback_allowed_once, DatasetLock, Location, Rollback};
use log::info;
use std::collections::HashSet;
use std::time::Duration;
use zfsync_protocol::{DatasetKind, Plan, Reason};
use zfsync_zfs::{check_relative_path, Dataset, DatasetInfo};

/// What the receiver will do for an offer it accepted, decided before anything changes.
pub(crate) struct Accepted<'a> {
    pub(crate) location: Location,
    pub(crate) plan: Plan,
    /// `zfs recv -F`: only to replace a dataset that no receive made (`--allow-overwrite`),
    /// or a placeholder (see `replaces_placeholder`).
    pub(crate) force: bool,
    /// The stream replaces a placeholder the receiver made (it has no data of its own to
    /// lose, and its children stay); it is a replica once the receive is done.
    pub(crate) replaces_placeholder: bool,
    /// An offer without snapshots, and nothing there: the offer makes a placeholder.
    pub(crate) make_placeholder: bool,
    /// The snapshot that carries the receiver's hold before this receive, whence the hold
    /// moves to the new newest: the base of an incremental (after a rollback, the
    /// destination's newest is gone), the destination's newest for a resume.
    pub(crate) held_before: Option<String>,
    /// What an allowed divergence needs undone before the stream (`--allow-rollback`).
    pub(crate) rollback: Option<Rollback>,
    /// The dataset's lock (see [`Placement::lock`]), held until the offer is done.
    pub(crate) lock: Option<DatasetLock<'a>>,
}

/// Where an offered dataset is, or will be, and what is there now.
pub(crate) struct Placement<'a> {
    pub(crate) location: Location,
    /// The dataset at `location` with its snapshots, if it exists.
    pub(crate) existing: Option<DatasetInfo>,
    /// The existing dataset is a placeholder the receiver made (looked up only for one
    /// without snapshots).
    pub(crate) placeholder: bool,
    /// The dataset's lock, held until the offer is done; none on a dry run, which changes
    /// nothing.
    pub(crate) lock: Option<DatasetLock<'a>>,
}

/// An offer turned down: why, for the sender's program, and what, for its operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) reason: Reason,
    pub(crate) text: String,
}

impl Refusal {
    pub(crate) fn new(reason: Reason, text: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            text: text.into(),
        }
    }

    /// A name that breaks ZFS's rules, or would land outside TARGET.
    pub(crate) fn invalid_path(e: impl std::fmt::Display) -> Refusal {
        Refusal::new(Reason::InvalidPath, e.to_string())
    }

    /// A zfs command that failed.
    pub(crate) fn zfs(e: zfsync_zfs::Error) -> Refusal {
        Refusal::new(Reason::ZfsFailed, e.to_string())
    }

    /// Whether this refusal is for what the destination holds, and so a look at the
    /// destination may change it.
    pub(crate) fn judges_the_destination(&self) -> bool {
        matches!(
            self.reason,
            Reason::Diverged | Reason::NoCommonSnapshot | Reason::NotReplica
        )
    }

    /// The answer that tells the sender.
    pub(crate) fn into_plan(self) -> Plan {
        Plan::Refused {
            reason: self.reason,
            text: self.text,
        }
    }
}

/// Whether `info` is a placeholder the receiver made, looked up only when it has no
/// snapshots (a replica never is one).
fn placeholder_without_snapshots(
    zfs: &zfsync_zfs::Zfs,
    info: &DatasetInfo,
) -> Result<bool, Refusal> {
    Ok(info.snapshots.is_empty() && is_placeholder(zfs, info).map_err(Refusal::zfs)?)
}

impl<'a> Placement<'a> {
    /// An existing dataset at `location`: whether it is a placeholder is looked up only
    /// when it has no snapshots (a replica never is one).
    fn existing(
        zfs: &zfsync_zfs::Zfs,
        location: Location,
        info: DatasetInfo,
        lock: Option<DatasetLock<'a>>,
    ) -> Result<Placement<'a>, Refusal> {
        let placeholder = placeholder_without_snapshots(zfs, &info)?;
        Ok(Placement {
            location,
            existing: Some(info),
            placeholder,
            lock,
        })
    }
}

impl<'a> Session<'a> {
    /// Where the offered dataset is, its snapshots there (if it exists), and its lock.
    pub(crate) fn locate(
        &self,
        path: &str,
        rel: &str,
        is_root: bool,
        dry_run: bool,
    ) -> Result<Placement<'a>, Refusal> {
        let tree = &self.shared.tree;
        let zfs = self.shared.zfs;
        check_relative_path(path).map_err(Refusal::invalid_path)?;
        let real = tree.target.join(rel).map_err(Refusal::invalid_path)?;
        let lock = if dry_run {
            None
        } else {
            let wait = (self.shared.config.timeout / 2).min(Duration::from_secs(10));
            Some(tree.lock(rel, wait).ok_or_else(|| {
                Refusal::new(
                    Reason::Busy,
                    format!("{real} is being received by another session"),
                )
            }))
            .transpose()?
        };
        if !is_root {
            if let Some(root) = self.root_verdict()? {
                return Err(Refusal::new(
                    root.reason,
                    format!("the sent root is refused: {}", root.text),
                ));
            }
        }
        let cat = &tree.catalog;
        if let Some(info) = cat
            .dataset(zfs, &self.root, &tree.buffer, &real)
            .map_err(Refusal::zfs)?
        {
            return Placement::existing(zfs, Location::InPlace(real), info, lock);
        }
        let buffered = tree.buffer_name(rel);
        if let Some(b) = &buffered {
            if let Some(info) = cat
                .dataset(zfs, &self.root, &tree.buffer, b)
                .map_err(Refusal::zfs)?
            {
                return Placement::existing(zfs, Location::Buffered(b.clone()), info, lock);
            }
        }
        // A parent that another session is receiving may be a half-received new dataset:
        // the child must not land under it. A small receive ends soon: waiting a little for
        // it costs less than a trip through the buffer and a rename. After that the child
        // waits in the buffer instead.
        let parent_busy = !is_root
            && !tree.wait_unlocked(crate::tree::parent_rel(rel), self.shared.config.parent_wait);
        let parent_exists = match real.parent() {
            Some(p) => cat
                .exists(zfs, &self.root, &tree.buffer, &p)
                .map_err(Refusal::zfs)?,
            None => true,
        };
        if parent_exists && !parent_busy {
            return Ok(Placement {
                location: Location::InPlace(real),
                existing: None,
                placeholder: false,
                lock,
            });
        }
        let parent = real.parent().map(|p| p.to_string()).unwrap_or_default();
        if is_root {
            return Err(Refusal::new(
                Reason::ParentMissing,
                format!(
                    "{parent}, the parent of the sent root {real}, does not exist on the receiver"
                ),
            ));
        }
        let Some(b) = buffered else {
            return Err(Refusal::new(
                Reason::ParentMissing,
                format!("parent {parent} does not exist yet, and the buffered name for {real} would exceed ZFS's 255-byte limit: send again once the parent has arrived"),
            ));
        };
        // The buffer itself is created only once the offer is accepted (see `offer`).
        Ok(Placement {
            location: Location::Buffered(b),
            existing: None,
            placeholder: false,
            lock,
        })
    }

    /// The answer to an offer whose snapshots (`matched`) were fed against the destination
    /// in `placement`. That destination comes from a listing up to `catalog::TTL` old,
    /// which does not show what was changed by hand since: a refusal for what the
    /// destination holds (divergence, no common snapshot, not a replica) is given only once
    /// a fresh look at the dataset confirms it, else the fresh look's answer is given. An
    /// offer that is not refused runs no zfs command here.
    pub(crate) fn answer_offer(
        &self,
        mut placement: Placement<'a>,
        matched: &Matched,
        count: u32,
        kind: DatasetKind,
    ) -> Result<Accepted<'a>, Refusal> {
        let refusal = match self.decide_and_answer(&mut placement, matched, count, kind) {
            Err(r) if r.judges_the_destination() => r,
            other => return other,
        };
        let ds = placement.location.dataset().clone();
        let zfs = self.shared.zfs;
        // A listing of one dataset is quick, but one with many snapshots may not be: the
        // sender waits for the answer meanwhile.
        let Ok(fresh) = self.keeping_alive(|| zfs.dataset(&ds)) else {
            return Err(refusal);
        };
        placement.existing = fresh.map_err(Refusal::zfs)?;
        // Whether it is a placeholder was read from the listing too.
        placement.placeholder = match &placement.existing {
            Some(info) => placeholder_without_snapshots(zfs, info)?,
            None => false,
        };
        let again = self.decide_and_answer(&mut placement, matched, count, kind);
        if again.as_ref().err() != Some(&refusal) {
            info!(
                "fresh look changed the answer dataset={ds} listed={:?}",
                refusal.text
            );
        }
        again
    }

    /// The decision against the placement's destination and the answer from it. A
    /// destination that would need a rollback gets one where `--allow-rollback` is given,
    /// or where its admin allowed one for that dataset once (`zfsync:rollback=once`, read
    /// from the destination's listing and confirmed by a zfs command only where it shows).
    fn decide_and_answer(
        &self,
        placement: &mut Placement<'a>,
        matched: &Matched,
        count: u32,
        kind: DatasetKind,
    ) -> Result<Accepted<'a>, Refusal> {
        let config = self.shared.config;
        let dest = placement
            .existing
            .as_ref()
            .map_or(&[][..], |i| &i.snapshots[..]);
        let mut decision = matched.decide(dest, config.allow_rollback);
        let mut once = false;
        let existing = placement.existing.as_ref();
        if let Some(info) =
            existing.filter(|_| !config.allow_rollback && decision.may_need_rollback())
        {
            if rollback_allowed_once(self.shared.zfs, info).map_err(Refusal::zfs)? {
                decision = matched.decide(dest, true);
                once = true;
            }
        }
        let mut accepted = answer(placement, decision, count, kind, config.allow_overwrite)?;
        if let Some(rollback) = accepted.rollback.as_mut() {
            rollback.once = once;
        }
        Ok(accepted)
    }

    /// Whether the sent root's replica is accepted as one of this sender's root (or a
    /// placeholder for it): judged as for its children, and only a verdict counts (a root
    /// not there, or not judged yet, is not accepted).
    pub(crate) fn root_accepted(&self) -> bool {
        matches!(self.root_verdict(), Ok(None)) && matches!(self.root_verdict.get(), Some(None))
    }

    /// Why no child of the sent root is received in this session, if none is: the root's
    /// replica exists and is not a replica of this sender's root. The root is judged by
    /// the snapshots the sender announced for it (`Message::Root`), never by the order of
    /// its offers: a child offered before its root (whose offer may travel on another
    /// connection, or never come) is judged the same. A verdict, once there is one, holds
    /// for the session.
    fn root_verdict(&self) -> Result<Option<Refusal>, Refusal> {
        if let Some(v) = self.root_verdict.get() {
            return Ok(v.clone());
        }
        let root = &self.root;
        let tree = &self.shared.tree;
        let (zfs, cat) = (self.shared.zfs, &tree.catalog);
        let config = self.shared.config;
        let empty = HashSet::new();
        // The session loop takes no offer before the root's announcement.
        let announced = self.root_guids.as_ref().unwrap_or(&empty);
        let judge =
            |info: Option<&DatasetInfo>| judge_root(root, info, announced, config.allow_overwrite);
        // A replica when listed stays one: zfsync's own changes never take a snapshot of
        // the sender's from it. That is the usual case, and it costs no zfs command.
        let listed = cat
            .listed(zfs, root, &tree.buffer, root)
            .map_err(Refusal::zfs)?;
        if judge(listed.as_ref()) == Root::Accepts {
            let _ = self.root_verdict.set(None);
            return Ok(None);
        }
        // As it is now, as far as zfsync knows: a root received since the listing is
        // looked up afresh.
        let look = || {
            cat.dataset(zfs, root, &tree.buffer, root)
                .map_err(Refusal::zfs)
        };
        match judge(look()?.as_ref()) {
            Root::Accepts => {
                let _ = self.root_verdict.set(None);
                return Ok(None);
            }
            // Not there: a new root, perhaps arriving now. No verdict, and none cached;
            // children may wait in the buffer.
            Root::Unknown => return Ok(None),
            // A root that another session is receiving right now shows no snapshot until
            // the receive ends (zfs-fuse shows the half-received dataset). A root offer
            // being answered holds the lock only briefly, and so does a small receive: wait
            // for it as for any parent (`--parent-wait`). A root still locked after that is
            // being received: no verdict yet, and none cached; its children go to the
            // buffer meanwhile.
            Root::NotReplica => {
                if !tree.wait_unlocked(&self.root_rel, config.parent_wait) {
                    return Ok(None);
                }
            }
            Root::NoCommon { .. } => {}
        }
        // A refusal only from a fresh look at the root: the listing may be up to
        // `catalog::TTL` old, and a change made by hand since does not show in it.
        let fresh = zfs.dataset(root).map_err(Refusal::zfs)?;
        let placeholder = match &fresh {
            Some(info) => placeholder_without_snapshots(zfs, info)?,
            None => false,
        };
        let v = match judge(fresh.as_ref()) {
            Root::Unknown => return Ok(None),
            Root::Accepts => None,
            // A placeholder the receiver made for a root without snapshots is a parent for
            // the root's children.
            Root::NotReplica if placeholder => None,
            Root::NotReplica => Some(not_replica(root)),
            Root::NoCommon { newest } => Some(no_common_snapshot(root, &newest)),
        };
        let _ = self.root_verdict.set(v.clone());
        Ok(v)
    }
}

/// What the sent root's replica is, for the root's children.
#[derive(Debug, PartialEq, Eq)]
enum Root {
    /// Not there (a new root, perhaps arriving now), or a state no verdict can come from
    /// yet (the partial state of its first receive).
    Unknown,
    /// A replica of the sender's root, or a dataset it may replace (`--allow-overwrite`).
    Accepts,
    /// There without snapshots: not made by a receive.
    NotReplica,
    /// There with snapshots, none of them the sender's root's.
    NoCommon { newest: String },
}

/// Judges `info`, the sent root's replica `root` as seen now, against the GUIDs the sender
/// announced for its root.
fn judge_root(
    root: &Dataset,
    info: Option<&DatasetInfo>,
    announced: &HashSet<u64>,
    allow_overwrite: bool,
) -> Root {
    let Some(info) = info else {
        return Root::Unknown;
    };
    if info.snapshots.iter().any(|s| announced.contains(&s.guid)) {
        return Root::Accepts;
    }
    match info.snapshots.last() {
        Some(newest) => Root::NoCommon {
            newest: newest.name.clone(),
        },
        None if info.resume_token.is_some() => Root::Unknown,
        // A pool's own dataset has no parent to receive it under: it is no replica, and
        // never one that a receive replaces.
        None if allow_overwrite || root.parent().is_none() => Root::Accepts,
        None => Root::NotReplica,
    }
}

/// The refusal of a dataset that exists without snapshots (and so was not made by a
/// receive).
fn not_replica(ds: &Dataset) -> Refusal {
    Refusal::new(
        Reason::NotReplica,
        format!("{ds} exists but has no snapshots, so it was not made by a receive; nothing was changed (start zfsync-recv with --allow-overwrite to replace it)"),
    )
}

/// The refusal of a dataset whose snapshots are none of the source's.
fn no_common_snapshot(ds: &Dataset, newest: &str) -> Refusal {
    Refusal::new(
        Reason::NoCommonSnapshot,
        format!("{ds} exists (newest snapshot {newest}) but shares no snapshot GUID with the source; nothing was changed"),
    )
}

/// Turns the snapshot comparison into the answer to an offer: a plan, or a refusal.
/// Changes nothing: an allowed rollback, or a placeholder to make, is part of the answer,
/// for the offer to apply before it answers (never on a dry run).
pub(crate) fn answer<'a>(
    placement: &mut Placement<'a>,
    decision: Decision,
    count: u32,
    kind: DatasetKind,
    allow_overwrite: bool,
) -> Result<Accepted<'a>, Refusal> {
    // Taken: a refused offer's destination is looked at afresh (see `answer_offer`).
    let existing = placement.existing.take();
    let location = placement.location.clone();
    let placeholder = placement.placeholder;
    let ds = location.dataset().clone();
    let buffered = matches!(location, Location::Buffered(_));
    if count == 0 {
        // A source dataset without snapshots, offered because its descendants have some:
        // they need a parent. A volume has no children.
        if kind != DatasetKind::Filesystem {
            return Err(Refusal::new(
                Reason::Protocol,
                "a volume offered without snapshots: only a filesystem can be a parent",
            ));
        }
        return Ok(Accepted {
            plan: Plan::Placeholder {
                made: existing.is_none(),
                buffered,
            },
            location,
            force: false,
            replaces_placeholder: false,
            make_placeholder: existing.is_none(),
            held_before: None,
            rollback: None,
            lock: placement.lock.take(),
        });
    }
    let newest = existing
        .as_ref()
        .and_then(|i| i.snapshots.last())
        .map(|s| s.name.clone());
    let full = Accepted {
        plan: Plan::Full { buffered },
        location,
        force: false,
        replaces_placeholder: false,
        make_placeholder: false,
        held_before: None,
        rollback: None,
        // Given to the answer once it is an acceptance: a refusal keeps it in `placement`.
        lock: None,
    };
    let mut accepted = match existing {
        None => full,
        // An interrupted resumable receive: finish it before anything else (the
        // destination accepts nothing else while it holds partial state).
        Some(DatasetInfo {
            resume_token: Some(token),
            ..
        }) => Accepted {
            plan: Plan::Resume { token },
            held_before: newest,
            // A full receive that replaces a placeholder goes on as it began.
            force: placeholder,
            ..full
        },
        // A placeholder has no data of its own: the source's dataset has snapshots now,
        // and a full stream replaces it (`zfs recv -F`, which keeps its children and
        // refuses a destination that has snapshots).
        Some(_) if placeholder => Accepted {
            force: true,
            replaces_placeholder: true,
            ..full
        },
        Some(info) if info.snapshots.is_empty() => {
            if !allow_overwrite {
                return Err(not_replica(&ds));
            }
            Accepted { force: true, ..full }
        }
        Some(_) => match decision {
            Decision::UpToDate { name } => Accepted {
                plan: Plan::UpToDate { name },
                held_before: newest,
                ..full
            },
            Decision::Incremental {
                from,
                rollback,
                newer,
            } => Accepted {
                rollback: rollback.then(|| Rollback {
                    dataset: ds,
                    to: from.name.clone(),
                    destroying: newer,
                    once: false,
                }),
                held_before: Some(from.name.clone()),
                plan: Plan::Incremental {
                    from_guid: from.guid,
                    from_name: from.name,
                    // Said once the rollback is done (see `offer`).
                    rollback: String::new(),
                },
                ..full
            },
            Decision::Diverged { common, newer } => {
                return Err(Refusal::new(
                    Reason::Diverged,
                    format!(
                        "{ds} has snapshots after the common snapshot {common} that the source does not have: {}; nothing was changed (to destroy them, allow it for this dataset once: zfs set zfsync:rollback=once {ds} on the receiver; or for every dataset: start zfsync-recv with --allow-rollback)",
                        newer.join(", ")
                    ),
                ))
            }
            Decision::NoCommonSnapshot { dest_newest } => {
                return Err(no_common_snapshot(&ds, &dest_newest))
            }
            Decision::NothingOffered => {
                return Err(Refusal::new(Reason::Protocol, "offer without snapshots"))
            }
        },
    };
    accepted.lock = placement.lock.take();
    Ok(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::tests::snaps;
    use zfsync_zfs::{Dataset, Kind};

    const FS: DatasetKind = DatasetKind::Filesystem;

    /// pool/t/a in place, with the snapshots `existing` ("a:1 b:2"; `None`: not there).
    fn placed(existing: Option<&str>, token: Option<&str>) -> Placement<'static> {
        let ds = Dataset::new("pool/t/a").unwrap();
        Placement {
            existing: existing.map(|s| DatasetInfo {
                name: ds.to_string(),
                kind: Kind::Filesystem,
                snapshots: snaps(s),
                bookmarks: Vec::new(),
                encrypted: false,
                resume_token: token.map(String::from),
                sync: None,
                marks: Default::default(),
            }),
            location: Location::InPlace(ds),
            placeholder: false,
            lock: None,
        }
    }

    fn incremental(from: &str, rollback: bool, newer: &[&str]) -> Decision {
        Decision::Incremental {
            from: snaps(from).remove(0),
            rollback,
            newer: newer.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn refused(r: Result<Accepted<'_>, Refusal>) -> Reason {
        match r {
            Err(refusal) => refusal.reason,
            Ok(a) => panic!("accepted: {:?}", a.plan),
        }
    }

    #[test]
    fn new_dataset_is_received_full() {
        let a = answer(
            &mut placed(None, None),
            Decision::NothingOffered,
            1,
            FS,
            false,
        )
        .unwrap();
        assert_eq!(a.plan, Plan::Full { buffered: false });
        assert!(!a.force && a.rollback.is_none() && a.held_before.is_none());
    }

    #[test]
    fn buffered_new_dataset_says_so() {
        let mut p = placed(None, None);
        p.location = Location::Buffered(Dataset::new("pool/buf/61").unwrap());
        let a = answer(&mut p, Decision::NothingOffered, 1, FS, false).unwrap();
        assert_eq!(a.plan, Plan::Full { buffered: true });
    }

    #[test]
    fn partial_state_is_resumed_first() {
        let d = incremental("b:2", false, &[]);
        let a = answer(&mut placed(Some("a:1 b:2"), Some("tok")), d, 3, FS, false).unwrap();
        assert_eq!(
            a.plan,
            Plan::Resume {
                token: "tok".into()
            }
        );
        assert_eq!(a.held_before.as_deref(), Some("b"));
    }

    #[test]
    fn dataset_without_snapshots_is_refused() {
        let r = answer(
            &mut placed(Some(""), None),
            Decision::NothingOffered,
            1,
            FS,
            false,
        );
        assert_eq!(refused(r), Reason::NotReplica);
    }

    #[test]
    fn dataset_without_snapshots_is_overwritten_when_allowed() {
        let a = answer(
            &mut placed(Some(""), None),
            Decision::NothingOffered,
            1,
            FS,
            true,
        )
        .unwrap();
        assert_eq!(a.plan, Plan::Full { buffered: false });
        assert!(a.force);
    }

    #[test]
    fn incremental_moves_the_hold_from_its_base() {
        let d = incremental("a:1", false, &[]);
        let a = answer(&mut placed(Some("a:1"), None), d, 2, FS, false).unwrap();
        assert_eq!(
            a.plan,
            Plan::Incremental {
                from_guid: 1,
                from_name: "a".into(),
                rollback: String::new(),
            }
        );
        assert_eq!(a.held_before.as_deref(), Some("a"));
        assert!(a.rollback.is_none());
    }

    // The answer only plans the rollback: the offer applies it (never on a dry run).
    #[test]
    fn allowed_rollback_is_planned_not_done() {
        let d = incremental("a:1", true, &["local"]);
        let a = answer(&mut placed(Some("a:1 local:7"), None), d, 2, FS, false).unwrap();
        assert_eq!(
            a.rollback,
            Some(Rollback {
                dataset: Dataset::new("pool/t/a").unwrap(),
                to: "a".into(),
                destroying: vec!["local".into()],
                once: false,
            })
        );
        assert_eq!(a.held_before.as_deref(), Some("a"));
    }

    #[test]
    fn refusals_from_the_comparison() {
        let cases = [
            (
                Decision::Diverged {
                    common: "a".into(),
                    newer: vec!["local".into()],
                },
                Reason::Diverged,
            ),
            (
                Decision::NoCommonSnapshot {
                    dest_newest: "x".into(),
                },
                Reason::NoCommonSnapshot,
            ),
            (Decision::NothingOffered, Reason::Protocol),
        ];
        for (decision, reason) in cases {
            let r = answer(&mut placed(Some("a:1"), None), decision, 1, FS, false);
            assert_eq!(refused(r), reason);
        }
    }

    // issue 14: a child is judged by its root's replica against the GUIDs the sender
    // announced for its root.
    #[test]
    fn the_sent_roots_replica_is_judged_by_the_announced_guids() {
        let info = |s: &str, token: Option<&str>| DatasetInfo {
            name: "pool/t".into(),
            kind: Kind::Filesystem,
            snapshots: snaps(s),
            bookmarks: Vec::new(),
            encrypted: false,
            resume_token: token.map(String::from),
            sync: None,
            marks: Default::default(),
        };
        let no_common = |n: &str| Root::NoCommon { newest: n.into() };
        let cases = [
            // (replica, announced, --allow-overwrite, verdict)
            (None, "1 2", false, Root::Unknown),
            (Some(info("a:1 b:2", None)), "2 3", false, Root::Accepts),
            (Some(info("a:1 b:2", None)), "1", false, Root::Accepts),
            (Some(info("a:1 b:2", None)), "3 4", false, no_common("b")),
            (Some(info("a:1 b:2", None)), "", false, no_common("b")),
            (Some(info("a:1 b:2", None)), "3", true, no_common("b")),
            (Some(info("a:1", Some("tok"))), "3", false, no_common("a")),
            (Some(info("", None)), "1", false, Root::NotReplica),
            (Some(info("", None)), "1", true, Root::Accepts),
            (Some(info("", Some("tok"))), "1", false, Root::Unknown),
        ];
        let root = Dataset::new("pool/t").unwrap();
        for (i, (replica, announced, overwrite, want)) in cases.into_iter().enumerate() {
            let announced: HashSet<u64> = announced
                .split_whitespace()
                .map(|g| g.parse().unwrap())
                .collect();
            let got = judge_root(&root, replica.as_ref(), &announced, overwrite);
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn a_pools_own_dataset_without_snapshots_is_no_verdict_against_its_children() {
        let pool = Dataset::new("pool").unwrap();
        let info = DatasetInfo {
            name: "pool".into(),
            kind: Kind::Filesystem,
            snapshots: Vec::new(),
            bookmarks: Vec::new(),
            encrypted: false,
            resume_token: None,
            sync: None,
            marks: Default::default(),
        };
        assert_eq!(
            judge_root(&pool, Some(&info), &HashSet::new(), false),
            Root::Accepts
        );
    }

    // issue 14 item 2: a source parent without snapshots gets a placeholder where there
    // is nothing, and nothing where there is a dataset.
    #[test]
    fn offer_without_snapshots_makes_a_placeholder_only_where_nothing_is() {
        let a = answer(
            &mut placed(None, None),
            Decision::NothingOffered,
            0,
            FS,
            false,
        )
        .unwrap();
        let want = Plan::Placeholder {
            made: true,
            buffered: false,
        };
        assert_eq!((a.plan, a.make_placeholder, a.force), (want, true, false));
        for existing in ["", "a:1"] {
            let mut p = placed(Some(existing), None);
            let a = answer(&mut p, Decision::NothingOffered, 0, FS, false).unwrap();
            let want = Plan::Placeholder {
                made: false,
                buffered: false,
            };
            assert_eq!((a.plan, a.make_placeholder), (want, false), "{existing:?}");
        }
    }

    #[test]
    fn buffered_placeholder_says_so() {
        let mut p = placed(None, None);
        p.location = Location::Buffered(Dataset::new("pool/buf/61").unwrap());
        let a = answer(&mut p, Decision::NothingOffered, 0, FS, false).unwrap();
        let want = Plan::Placeholder {
            made: true,
            buffered: true,
        };
        assert_eq!(a.plan, want);
    }

    #[test]
    fn volume_without_snapshots_is_refused() {
        let r = answer(
            &mut placed(None, None),
            Decision::NothingOffered,
            0,
            DatasetKind::Volume,
            false,
        );
        assert_eq!(refused(r), Reason::Protocol);
    }

    // issue 14 item 2: only a placeholder is replaced by a full stream without
    // --allow-overwrite; any other dataset without snapshots is still refused.
    #[test]
    fn placeholder_is_replaced_by_a_full_stream() {
        let mut p = placed(Some(""), None);
        p.placeholder = true;
        let a = answer(&mut p, Decision::NothingOffered, 2, FS, false).unwrap();
        assert_eq!(a.plan, Plan::Full { buffered: false });
        assert!(a.force && a.replaces_placeholder && !a.make_placeholder);
        // Without the mark: dataset_without_snapshots_is_refused.
    }
}
