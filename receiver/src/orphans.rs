//! Replicas whose source dataset is gone (issue 16): the receiver notes which datasets
//! each sender delivered and its lists named below its base, and since when a list has
//! lacked each of them; with `--orphans-after DUR` it destroys a replica whose whole
//! subtree has been lacking that long.
//!
//! What counts is the sender's [`Message::Listed`](zfsync_protocol::Message::Listed):
//! every dataset its listing found below its root, sent only after a whole listing, so a
//! run that excluded datasets, or failed to list, makes nothing look absent. A list counts
//! only in a session that announced its root and whose root the receiver accepts as a
//! replica of it (`session.rs`). A sender alone can never make this host destroy anything:
//! without the receiver's own option nothing is destroyed, and with it a replica goes only
//! once `DUR` has passed since the first list that lacked it, and at least two lists
//! have (an empty or short list costs nothing before then).
//!
//! Only what a sender delivered, in a run whose whole list named it, can be absent from
//! its later lists ([`Delivered`]): a dataset below its base that it never delivered (made
//! there by hand, the replicas of another sender whose base is below this one, or names a
//! list made up) is never counted, and neither is anything above it. The clock's rules,
//! and a replica still fed, are the store's (`history/src/absent.rs`).
//!
//! Never destroyed: the base (the sent root's replica, its sender's own root), TARGET, the
//! buffer (outside TARGET), a replica never delivered or with such a dataset below it, a
//! replica with a descendant the sender still has (a placeholder parent of present
//! children), one that a session holds the lock of (looked at again right before the
//! destroy), one with a snapshot held by anyone but the receiver, and anything at all
//! when the history store fails (absence cannot be counted then) or the clock is before
//! the last list.
//!
//! Planned, then applied under the tree's change lock: the same plan serves
//! `--dry-run-orphans`, which logs it and destroys nothing. Owns only this; the store's
//! tables are the history crate's.

use crate::tree::join_rel;
use crate::{Orphans, Shared};
use log::{debug, info, warn};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use zfsync_history::{Absence, Listing, Noted, Replica};
use zfsync_text::quoted;
use zfsync_zfs::protect::{move_receiver_hold, release_receiver_hold};
use zfsync_zfs::{Dataset, FailureKind};

/// How many counted lists in a row must lack a replica before it goes, besides `DUR`:
/// one list, however late, is never enough.
const MIN_LISTS: u32 = 2;

/// What each sender delivered at its base since its last counted list: keyed by client
/// (key name, "" without keys) and base (relative to TARGET), the paths below the base.
/// A sender's run spreads its offers over several connections, and its list comes on one
/// of them: so this is the receiver's, not a session's.
#[derive(Default)]
pub(crate) struct Delivered(Mutex<HashMap<(String, String), HashSet<String>>>);

impl Delivered {
    /// `path` (below the base `base_rel`) was received, resumed, found up to date or made
    /// a placeholder for `client`.
    pub(crate) fn note(&self, client: &str, base_rel: &str, path: &str) {
        if path.is_empty() {
            return; // the base itself is never absent
        }
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((client.to_string(), base_rel.to_string()))
            .or_default()
            .insert(path.to_string());
    }

    /// What `client` delivered at `base_rel` since the last call, which forgets it.
    fn take(&self, client: &str, base_rel: &str) -> HashSet<String> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&(client.to_string(), base_rel.to_string()))
            .unwrap_or_default()
    }
}

/// A replica to destroy, with everything below it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Doomed {
    /// Path relative to the base.
    rel: String,
    /// When a run first lacked it (unix seconds).
    since: i64,
}

/// Notes what a run's whole list (`listed`: paths relative to `base`, whose path relative
/// to TARGET is `base_rel`) says of the replicas below `base`, and destroys the orphans
/// that `--orphans-after` allows. Called at the cleanup of a session whose list counts;
/// failures are logged.
pub(crate) fn after_run(
    shared: &Shared,
    client: &str,
    base_rel: &str,
    base: &Dataset,
    listed: &HashSet<String>,
) {
    let tree = &shared.tree;
    let _changing = tree.change_lock();
    let delivered = shared.delivered.take(client, base_rel);
    let replicas = match shared.zfs.list_tree(base) {
        Ok(list) => list,
        Err(e) if e.kind() == FailureKind::NotFound => return,
        Err(e) => {
            warn!("orphans: cannot list base={}: {e}", quoted(base));
            return;
        }
    };
    // Parents before children, as zfs lists them.
    let rels: Vec<String> = replicas
        .iter()
        .filter_map(|i| Dataset::new(&i.name).ok())
        .filter_map(|d| d.relative_to(base).map(str::to_string))
        .filter(|rel| !rel.is_empty())
        .collect();
    let full = |rel: &String| format!("{base}/{rel}");
    let on_disk: Vec<Replica> = replicas
        .iter()
        .map(|i| Replica {
            name: i.name.clone(),
            newest: i.snapshots.last().map(|s| s.guid),
        })
        .collect();
    let listed_names: Vec<String> = listed.iter().map(full).collect();
    let delivered_names: Vec<String> = delivered.iter().map(full).collect();
    let now = crate::record::now();
    let orphans = shared.config.orphans;
    let noted = shared.history.note_listing(Listing {
        job: "",
        client,
        base: base.as_str(),
        listed: &listed_names,
        delivered: &delivered_names,
        replicas: &on_disk,
        after: orphans.map(|o| o.after),
        now,
    });
    let absent = match noted {
        None => {
            if orphans.is_some() && rels.iter().any(|r| !listed.contains(r)) {
                warn!(
                    "orphans: the history store failed, so absence cannot be counted: no \
                     replica destroyed base={}",
                    quoted(base)
                );
            }
            return;
        }
        Some(Noted::ClockBehind { newest }) => {
            warn!(
                "orphans: the clock ({now}) is before the last dataset list noted ({newest}) \
                 base={}: list not counted, no replica destroyed",
                quoted(base)
            );
            return;
        }
        Some(Noted::Counted {
            absent,
            fed,
            restarted,
        }) => {
            if let Some(gap) = restarted {
                warn!(
                    "orphans: {} since the last dataset list base={}, --orphans-after or more: \
                     every absence counts again from now",
                    crate::page::duration(gap),
                    quoted(base)
                );
            }
            for ds in fed {
                info!(
                    "orphans: absence ended dataset={} reason=newest-snapshot-changed",
                    quoted(ds)
                );
            }
            absent
        }
    };
    let prefix = format!("{base}/");
    let since: HashMap<String, Absence> = absent
        .into_iter()
        .filter_map(|a| Some((a.dataset.strip_prefix(&prefix)?.to_string(), a)))
        .collect();
    // Not in this list, and never delivered before it: made by hand, another sender's, or
    // received before senders told their lists. Not this sender's to count.
    let unlisted = rels
        .iter()
        .filter(|r| !listed.contains(*r) && !since.contains_key(*r));
    for rel in unlisted {
        let ds = full(rel);
        match orphans {
            Some(Orphans { dry_run: true, .. }) => info!(
                "orphan kept dataset={} reason=never-listed (--dry-run-orphans)",
                quoted(&ds)
            ),
            _ => debug!("orphans: kept dataset={} reason=never-listed", quoted(&ds)),
        }
    }
    let Some(Orphans { after, dry_run }) = orphans else {
        if !since.is_empty() {
            debug!(
                "orphans: {} replicas lack a source base={} (kept: no --orphans-after)",
                since.len(),
                quoted(base)
            );
        }
        return;
    };
    let cutoff = now - after;
    let due = |a: &Absence| a.since <= cutoff && a.lists >= MIN_LISTS;
    // Holds are looked up only when something is due: a snapshot held by anyone but the
    // receiver (its hold is on each replica's newest) keeps its replica, and all above it.
    let held = if since.values().any(due) {
        match held_replicas(shared.zfs, base) {
            Ok(held) => held,
            Err(e) => {
                warn!(
                    "orphans: cannot read the holds below base={}: no replica destroyed: {e}",
                    quoted(base)
                );
                return;
            }
        }
    } else {
        HashSet::new()
    };
    let kept_for = if dry_run { " (--dry-run-orphans)" } else { "" };
    for rel in rels
        .iter()
        .filter(|r| held.contains(*r) && since.get(*r).is_some_and(due))
    {
        info!(
            "orphan kept dataset={} reason=held (a snapshot has a hold not zfsync's){kept_for}",
            quoted(full(rel))
        );
    }
    let doomed = plan(&rels, &since, cutoff, |rel| {
        held.contains(rel) || tree.is_locked(&join_rel(base_rel, rel))
    });
    // The dry run shows what is on its way too: absent, not yet due (or held, or busy).
    if dry_run {
        let doomed_or_below = |rel: &str| doomed.iter().any(|d| is_below(&d.rel, rel));
        let mut waiting: Vec<(&String, &Absence)> = since
            .iter()
            .filter(|(rel, _)| !doomed_or_below(rel))
            .collect();
        waiting.sort_by(|a, b| a.0.cmp(b.0));
        for (rel, a) in waiting {
            info!(
                "orphan waiting dataset={} absent_for={} left={} lists={} (--dry-run-orphans)",
                quoted(full(rel)),
                quoted(crate::page::duration(now - a.since)),
                quoted(crate::page::duration(a.since - cutoff)),
                a.lists
            );
        }
    }
    for d in doomed {
        let Ok(ds) = base.join(&d.rel) else {
            continue;
        };
        let absent_for = quoted(crate::page::duration(now - d.since));
        if dry_run {
            info!(
                "orphan would be destroyed dataset={} absent_since={} absent_for={absent_for} (--dry-run-orphans)",
                quoted(&ds),
                d.since
            );
            continue;
        }
        // Again, now, under the change lock: no session may have begun on it or below it
        // since the plan, and none may while it goes.
        let rel = join_rel(base_rel, &d.rel);
        let lock = tree
            .wait_quiet(&rel, Duration::ZERO)
            .then(|| tree.lock(&rel, Duration::ZERO))
            .flatten();
        let Some(_lock) = lock else {
            info!("orphan kept dataset={} reason=busy", quoted(&ds));
            continue;
        };
        let below: Vec<&zfsync_zfs::DatasetInfo> = replicas
            .iter()
            .filter(|i| i.name == ds.as_str() || i.name.starts_with(&format!("{ds}/")))
            .collect();
        let newest: Vec<(Dataset, String)> = below
            .iter()
            .filter_map(|i| {
                Some((
                    Dataset::new(&i.name).ok()?,
                    i.snapshots.last()?.name.clone(),
                ))
            })
            .collect();
        for (each, snap) in &newest {
            release_receiver_hold(shared.zfs, each, snap);
        }
        let destroyed = shared.zfs.destroy_recursive(&ds);
        for info in &below {
            tree.catalog.touch(&info.name);
        }
        match destroyed {
            Ok(()) => {
                info!(
                    "orphan destroyed dataset={} absent_since={} absent_for={absent_for} datasets={}",
                    quoted(&ds),
                    d.since,
                    below.len()
                );
                shared
                    .history
                    .orphan_destroyed(client, ds.as_str(), d.since, now);
            }
            Err(e) => {
                warn!("orphan not destroyed dataset={} error={e}", quoted(&ds));
                // What is left is a replica like any other: its newest is held again (a
                // dataset already gone is nothing to hold).
                for (each, snap) in &newest {
                    move_receiver_hold(shared.zfs, each, snap, None);
                }
            }
        }
    }
}

/// Whether `rel` is `parent` or below it.
fn is_below(parent: &str, rel: &str) -> bool {
    rel == parent
        || rel
            .strip_prefix(parent)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The replicas below `base` (paths relative to it) with a snapshot held by anyone but
/// the receiver. A ZFS without holds (zfs-fuse) has none, and is not asked.
fn held_replicas(zfs: &zfsync_zfs::Zfs, base: &Dataset) -> zfsync_zfs::Result<HashSet<String>> {
    if !zfs.capabilities().holds {
        return Ok(HashSet::new());
    }
    Ok(foreign_holds(&zfs.lifecycle_tree(base, false)?, base))
}

/// Of `tree` (the datasets below `base` with their snapshots, oldest first), those with a
/// snapshot held more than the receiver holds it: once on the newest, never on another.
/// By count: which tag a hold has is not in the listing, and a hold counted as the
/// receiver's that is not makes `zfs destroy` fail, destroying nothing.
fn foreign_holds(tree: &[zfsync_zfs::DatasetFacts], base: &Dataset) -> HashSet<String> {
    let prefix = format!("{base}/");
    tree.iter()
        .filter(|d| {
            let last = d.snapshots.len().saturating_sub(1);
            let ours = |i: usize| u64::from(i == last);
            d.snapshots
                .iter()
                .enumerate()
                .any(|(i, s)| s.userrefs > ours(i))
        })
        .filter_map(|d| d.name.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

/// The replicas to destroy: of `rels` (paths below the base, parents first), each whose
/// whole subtree was first lacked at or before `cutoff` (`since`) by at least
/// [`MIN_LISTS`] lists and holds nothing `locked`, topmost only (its subtree goes with
/// it). `since` has only what the sender delivered: a replica without an entry stays, and
/// so do its ancestors.
fn plan(
    rels: &[String],
    since: &HashMap<String, Absence>,
    cutoff: i64,
    locked: impl Fn(&str) -> bool,
) -> Vec<Doomed> {
    let below = is_below;
    let ripe = |rel: &str| {
        since
            .get(rel)
            .is_some_and(|a| a.since <= cutoff && a.lists >= MIN_LISTS)
            && !locked(rel)
    };
    let mut doomed: Vec<Doomed> = Vec::new();
    for rel in rels {
        if doomed.iter().any(|d| below(&d.rel, rel)) {
            continue; // goes with its ancestor
        }
        if rels.iter().filter(|r| below(rel, r)).all(|r| ripe(r)) {
            doomed.push(Doomed {
                rel: rel.clone(),
                since: since[rel.as_str()].since,
            });
        }
    }
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "a:100 b c:100/1" -> replicas a (absent since 100, for 2 lists), b (present) and c
    /// (absent since 100, for 1 list).
    fn tree(spec: &str) -> (Vec<String>, HashMap<String, Absence>) {
        let mut rels = Vec::new();
        let mut since = HashMap::new();
        for item in spec.split_whitespace() {
            let (rel, at) = match item.split_once(':') {
                Some((rel, at)) => (rel, Some(at)),
                None => (item, None),
            };
            rels.push(rel.to_string());
            if let Some(at) = at {
                let (at, lists) = at.split_once('/').unwrap_or((at, "2"));
                let absence = Absence {
                    dataset: rel.to_string(),
                    since: at.parse().unwrap(),
                    lists: lists.parse().unwrap(),
                };
                since.insert(rel.to_string(), absence);
            }
        }
        (rels, since)
    }

    fn doomed(spec: &str, cutoff: i64, locked: &[&str]) -> Vec<String> {
        let (rels, since) = tree(spec);
        plan(&rels, &since, cutoff, |r| locked.contains(&r))
            .into_iter()
            .map(|d| d.rel)
            .collect()
    }

    #[test]
    fn a_replica_goes_once_absent_long_enough() {
        let cases: [(&str, i64, &[&str]); 8] = [
            ("a b:100", 99, &[]),
            ("a b:100", 100, &["b"]),
            ("a b:100 b/x:100 b/x/y:50", 100, &["b"]),
            // A placeholder parent with a child the sender still has stays.
            ("p:100 p/c p/d:100", 100, &["p/d"]),
            // The subtree goes when its youngest absence is old enough.
            ("b:100 b/x:200", 150, &[]),
            ("b:100 b/x:200", 200, &["b"]),
            // Never listed (made by hand, another sender's): it stays, with what is above
            // it; a listed replica below it goes by itself.
            ("b:100 b/hand", 100, &[]),
            ("hand hand/x:100 hand/x/y", 100, &[]),
        ];
        for (spec, cutoff, want) in cases {
            assert_eq!(doomed(spec, cutoff, &[]), want, "{spec} at {cutoff}");
        }
    }

    #[test]
    fn a_name_that_only_starts_like_another_is_not_below_it() {
        assert_eq!(doomed("b:100 bc", 100, &[]), ["b"]);
        assert_eq!(doomed("b bc:100", 100, &[]), ["bc"]);
    }

    #[test]
    fn a_listed_replica_below_an_unlisted_one_goes_by_itself() {
        assert_eq!(doomed("hand hand/x:100 hand/z", 100, &[]), ["hand/x"]);
    }

    #[test]
    fn a_locked_replica_and_its_ancestors_stay() {
        assert_eq!(doomed("b:100 b/x:100 c:100", 100, &["b/x"]), ["c"]);
    }

    // One list, however late, is never enough.
    #[test]
    fn a_replica_lacked_by_one_list_only_stays() {
        assert!(doomed("b:100/1", i64::MAX, &[]).is_empty());
        assert_eq!(doomed("b:100/1 c:100/2", 100, &[]), ["c"]);
        assert!(doomed("b:100 b/x:100/1", 100, &[]).is_empty());
    }

    /// "a:0,1 b:1,1" -> datasets below t/r with snapshots holding those counts.
    fn held(spec: &str) -> Vec<String> {
        let tree: Vec<zfsync_zfs::DatasetFacts> = spec
            .split_whitespace()
            .map(|item| {
                let (rel, refs) = item.split_once(':').unwrap_or((item, ""));
                let snapshots = refs
                    .split(',')
                    .filter(|r| !r.is_empty())
                    .enumerate()
                    .map(|(i, r)| zfsync_zfs::SnapshotFacts {
                        name: format!("s{i}"),
                        createtxg: i as u64,
                        creation: None,
                        userrefs: r.parse().unwrap(),
                    })
                    .collect();
                zfsync_zfs::DatasetFacts {
                    name: format!("t/r/{rel}"),
                    kind: zfsync_zfs::Kind::Filesystem,
                    written: None,
                    snapshots,
                }
            })
            .collect();
        let mut got: Vec<String> = foreign_holds(&tree, &Dataset::new("t/r").unwrap())
            .into_iter()
            .collect();
        got.sort();
        got
    }

    // The receiver's own hold is on the newest snapshot; any other keeps the replica.
    #[test]
    fn a_replica_held_by_anyone_else_is_found() {
        let cases: [(&str, &[&str]); 5] = [
            ("a:0,1 b:0,0 c", &[]),
            ("a:0,2", &["a"]),
            ("a:1,1", &["a"]),
            ("a:0,1 a/x:1,0,1", &["a/x"]),
            ("a:0,1 b:0,3 c:1 d:2", &["b", "d"]),
        ];
        for (spec, want) in cases {
            assert_eq!(held(spec), want, "{spec}");
        }
    }

    #[test]
    fn nothing_absent_nothing_planned() {
        assert!(doomed("a b b/x", i64::MAX, &[]).is_empty());
    }
}
