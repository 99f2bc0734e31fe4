//! Replicas whose source dataset is gone (issue 16): the receiver notes which datasets
//! each sender's lists have named below its base, and since when a list has lacked each
//! of them; with `--orphans-after DUR` it destroys a replica whose whole subtree has been
//! lacking that long.
//!
//! What counts is the sender's [`Message::Listed`](zfsync_protocol::Message::Listed):
//! every dataset its listing found below its root, sent only after a whole listing, so a
//! run that excluded datasets, or failed to list, makes nothing look absent. A sender
//! alone can never make this host destroy anything: without the receiver's own option
//! nothing is destroyed, and with it a replica goes only once `DUR` has passed since the
//! first run that lacked it (an empty or short list costs nothing before then).
//!
//! Only what a sender once listed can be absent from its later lists: a dataset below its
//! base that none of its lists named (made there by hand, the replicas of another sender
//! whose base is below this one, or received before senders told their lists and gone
//! from the source since) is never counted, and neither is anything above it.
//!
//! Never destroyed: the base (the sent root's replica, its sender's own root), TARGET, the
//! buffer (outside TARGET), a replica never listed or with such a dataset below it, a
//! replica with a descendant the sender still has (a placeholder parent of present
//! children), one that a session holds the lock of, and anything at all when the history
//! store fails (absence cannot be counted then).
//!
//! Planned, then applied under the tree's change lock: the same plan serves
//! `--dry-run-orphans`, which logs it and destroys nothing. Owns only this; the store's
//! tables are the history crate's.

use crate::tree::join_rel;
use crate::{Orphans, Shared};
use log::{debug, info, warn};
use std::collections::{HashMap, HashSet};
use zfsync_text::quoted;
use zfsync_zfs::protect::release_receiver_hold;
use zfsync_zfs::{Dataset, FailureKind};

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
/// that `--orphans-after` allows. Called at the run's cleanup; failures are logged.
pub(crate) fn after_run(
    shared: &Shared,
    client: &str,
    base_rel: &str,
    base: &Dataset,
    listed: &HashSet<String>,
) {
    let tree = &shared.tree;
    let _changing = tree.change_lock();
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
    let names: Vec<String> = rels.iter().map(full).collect();
    let listed_names: Vec<String> = listed.iter().map(full).collect();
    let now = crate::record::now();
    let Some(noted) =
        shared
            .history
            .note_listing(client, base.as_str(), &listed_names, &names, now)
    else {
        if shared.config.orphans.is_some() && rels.iter().any(|r| !listed.contains(r)) {
            warn!(
                "orphans: the history store failed, so absence cannot be counted: no replica \
                 destroyed base={}",
                quoted(base)
            );
        }
        return;
    };
    let since: HashMap<String, i64> = noted
        .into_iter()
        .filter_map(|a| {
            let rel = a.dataset.strip_prefix(&format!("{base}/"))?.to_string();
            Some((rel, a.since))
        })
        .collect();
    // Not in this list, and in none before it: made by hand, another sender's, or
    // received before senders told their lists. Not this sender's to count.
    let unlisted = rels
        .iter()
        .filter(|r| !listed.contains(*r) && !since.contains_key(*r));
    for rel in unlisted {
        let ds = full(rel);
        match shared.config.orphans {
            Some(Orphans { dry_run: true, .. }) => info!(
                "orphan kept dataset={} reason=never-listed (--dry-run-orphans)",
                quoted(&ds)
            ),
            _ => debug!("orphans: kept dataset={} reason=never-listed", quoted(&ds)),
        }
    }
    let Some(Orphans { after, dry_run }) = shared.config.orphans else {
        if !since.is_empty() {
            debug!(
                "orphans: {} replicas lack a source base={} (kept: no --orphans-after)",
                since.len(),
                quoted(base)
            );
        }
        return;
    };
    let doomed = plan(&rels, &since, now - after, |rel| {
        tree.is_locked(&join_rel(base_rel, rel))
    });
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
        let below: Vec<&zfsync_zfs::DatasetInfo> = replicas
            .iter()
            .filter(|i| i.name == ds.as_str() || i.name.starts_with(&format!("{ds}/")))
            .collect();
        for info in &below {
            if let (Ok(each), Some(newest)) = (Dataset::new(&info.name), info.snapshots.last()) {
                release_receiver_hold(shared.zfs, &each, &newest.name);
            }
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
            Err(e) => warn!("orphan not destroyed dataset={} error={e}", quoted(&ds)),
        }
    }
}

/// The replicas to destroy: of `rels` (paths below the base, parents first), each whose
/// whole subtree was first lacked at or before `cutoff` (`since`) and holds nothing
/// `locked`, topmost only (its subtree goes with it). `since` has only what the sender
/// once listed: a replica without an entry stays, and so do its ancestors.
fn plan(
    rels: &[String],
    since: &HashMap<String, i64>,
    cutoff: i64,
    locked: impl Fn(&str) -> bool,
) -> Vec<Doomed> {
    let below = |parent: &str, rel: &str| {
        rel == parent
            || rel
                .strip_prefix(parent)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    let ripe = |rel: &str| since.get(rel).is_some_and(|s| *s <= cutoff) && !locked(rel);
    let mut doomed: Vec<Doomed> = Vec::new();
    for rel in rels {
        if doomed.iter().any(|d| below(&d.rel, rel)) {
            continue; // goes with its ancestor
        }
        if rels.iter().filter(|r| below(rel, r)).all(|r| ripe(r)) {
            doomed.push(Doomed {
                rel: rel.clone(),
                since: since[rel.as_str()],
            });
        }
    }
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "a:100 b" -> replicas a (absent since 100) and b (present).
    fn tree(spec: &str) -> (Vec<String>, HashMap<String, i64>) {
        let mut rels = Vec::new();
        let mut since = HashMap::new();
        for item in spec.split_whitespace() {
            let (rel, at) = match item.split_once(':') {
                Some((rel, at)) => (rel, Some(at.parse().unwrap())),
                None => (item, None),
            };
            rels.push(rel.to_string());
            if let Some(at) = at {
                since.insert(rel.to_string(), at);
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

    #[test]
    fn nothing_absent_nothing_planned() {
        assert!(doomed("a b b/x", i64::MAX, &[]).is_empty());
    }
}
