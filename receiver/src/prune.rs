//! Pruning on the backup host: after a successful incremental receive into place, the
//! dataset is pruned by the receiver's own retention plan (`--keep PLAN`, `--tz ZONE`),
//! planned by the same code as `zfsync prune` (`zfsync_retention::plan_dataset`).
//!
//! Nothing a sender says asks for it or chooses the plan: it runs only when this receiver
//! was started with `--keep`, after a receive the receiver accepted. Never destroyed: the
//! newest snapshot (the receiver's base, which holds `zfsync-recv` where holds work),
//! held snapshots, and snapshots not named by zfsync. Snapshot times come from names a
//! sender chose, so they are checked first ([`checked_times`]): a name cannot put a
//! snapshot before an older one or after the receiver's clock, and so cannot push the
//! receiver's own snapshots out of their buckets.
//!
//! Costs no listing of its own: the dataset's snapshots are those the offer found there
//! (from the catalog), up to the receive's base, and the one the receive made newest.
//! Snapshots a stream brought in between are not among them; they are kept until a later
//! receive sees them. Must not fail a receive: every problem is logged and the receive
//! stands.

use crate::Shared;
use jiff::Timestamp;
use log::{debug, info, warn};
use zfsync_retention::parse_name;
use zfsync_retention::{plan_dataset, Candidate};
use zfsync_zfs::{Dataset, FailureKind, Snapshot};

/// Prunes `ds` after an incremental receive from its snapshot `from_guid` made `newest`
/// its newest snapshot; `before` is what the offer found there, oldest first. Called with
/// the dataset's lock held; takes the tree's change lock for the destroys.
pub(crate) fn after_receive(
    shared: &Shared,
    ds: &Dataset,
    before: &[Snapshot],
    from_guid: u64,
    newest: &str,
) {
    let Some(keep) = &shared.config.keep else {
        return;
    };
    let tree = &shared.tree;
    let Some(known) = up_to(before, from_guid) else {
        debug!("prune skipped dataset={ds}: its base is not among its snapshots");
        return;
    };
    let now = match zfsync_cli::now().map(Timestamp::try_from) {
        Ok(Ok(now)) => now,
        Ok(Err(e)) => {
            warn!("prune skipped dataset={ds} error=\"the time is out of range: {e}\"");
            return;
        }
        Err(e) => {
            warn!("prune skipped dataset={ds} error={e}");
            return;
        }
    };
    let mut names: Vec<&str> = known.iter().map(|s| s.name.as_str()).collect();
    names.push(newest);
    let candidates = checked_times(&names, now);
    let base = [(newest.to_string(), "receiver's base".to_string())];
    let plan = plan_dataset(ds.as_str(), &candidates, &base, keep, now, false);
    if let Some(why) = &plan.stop {
        warn!(
            "prune stopped dataset={ds} why={why:?} (zfsync prune --force {ds} prunes it by hand)"
        );
        return;
    }
    let doomed: Vec<String> = plan.to_destroy().iter().map(|s| s.to_string()).collect();
    if doomed.is_empty() {
        return;
    }
    // Holds are not in the listing: ask for the few snapshots about to go.
    let full: Vec<String> = doomed.iter().map(|s| ds.snapshot(s)).collect();
    let facts = match shared.zfs.snapshot_facts(&full) {
        Ok(f) => f,
        Err(e) => {
            warn!("prune skipped dataset={ds} error={e}");
            return;
        }
    };
    let _changing = tree.change_lock();
    for (name, facts) in facts {
        let snap = &facts.name;
        if facts.userrefs > 0 {
            info!(
                "prune kept dataset={ds} snap={snap} held userrefs={}",
                facts.userrefs
            );
            continue;
        }
        tree.catalog.touch(ds.as_str());
        match shared.zfs.destroy_snapshot(ds, snap) {
            Ok(()) => info!("pruned dataset={ds} snap={snap} reason=rule-miss"),
            Err(e) if e.kind() == FailureKind::NotFound => debug!("prune: {name} is gone already"),
            Err(e) => warn!("prune failed dataset={ds} snap={snap} error={e}"),
        }
    }
}

/// `listed` (oldest first) up to and including the snapshot with GUID `guid`, or `None`
/// if it is not there. What was there after the base is gone by now: the receive started
/// from the base, after any rollback to it.
fn up_to(listed: &[Snapshot], guid: u64) -> Option<&[Snapshot]> {
    let at = listed.iter().position(|s| s.guid == guid)?;
    Some(&listed[..=at])
}

/// The snapshots `names` (oldest first, as received) with the times the plan may use. A
/// zfsync name's time comes from the sender, so it is bounded: not before the time of the
/// zfsync snapshot received before it, not after `now`. Honest names are already in
/// order and in the past; a name that is not lands with its neighbours, in the newest
/// buckets, and cannot take the place of an older snapshot in its bucket.
pub(crate) fn checked_times(names: &[&str], now: Timestamp) -> Vec<Candidate> {
    let mut floor = Timestamp::UNIX_EPOCH;
    names
        .iter()
        .map(|&name| {
            let time = parse_name(name).map(|t| {
                floor = t.min(now).max(floor);
                floor
            });
            Candidate {
                time,
                ..Candidate::new(name)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(name: &str, guid: u64) -> Snapshot {
        Snapshot {
            name: name.into(),
            guid,
            createtxg: guid,
        }
    }

    #[test]
    fn the_listing_up_to_the_base() {
        let listed = [snap("a", 1), snap("b", 2), snap("gone", 3)];
        let names = |s: Option<&[Snapshot]>| {
            s.map(|s| s.iter().map(|s| s.name.clone()).collect::<Vec<_>>())
        };
        assert_eq!(names(up_to(&listed, 2)), Some(vec!["a".into(), "b".into()]));
        assert_eq!(names(up_to(&listed, 3)).map(|v| v.len()), Some(3));
        assert_eq!(names(up_to(&listed, 9)), None);
        assert_eq!(names(up_to(&[], 1)), None);
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn times_from_a_sender_are_bounded() {
        let now = ts("2026-12-03T00:00:00Z");
        let names = [
            "zfsync_2026-12-01T00:00:00Z",
            "manual",
            "zfsync_2026-12-02T00:00:00Z",
            // Named before the one received before it: taken as that one's time.
            "zfsync_2026-11-01T00:00:00Z",
            "zfsync_2026-12-02T12:00:00Z_H",
            // In the future of the receiver's clock: taken as now.
            "zfsync_2099-01-01T00:00:00Z",
        ];
        let times: Vec<Option<String>> = checked_times(&names, now)
            .into_iter()
            .map(|c| c.time.map(|t| t.to_string()))
            .collect();
        let want = [
            Some("2026-12-01T00:00:00Z"),
            None,
            Some("2026-12-02T00:00:00Z"),
            Some("2026-12-02T00:00:00Z"),
            Some("2026-12-02T12:00:00Z"),
            Some("2026-12-03T00:00:00Z"),
        ];
        assert_eq!(times, want.map(|t| t.map(String::from)));
    }

    #[test]
    fn a_back_dated_name_does_not_take_an_older_snapshots_place() {
        // The hour's first is 10:00:07; a later receive names one 10:00:01. Bounded, it is
        // the newer, and hourly=5 keeps the real first (and the newest).
        let keep = zfsync_retention::Keep::parse("hourly=5", None).unwrap();
        let now = ts("2026-12-01T11:00:00Z");
        let names = [
            "zfsync_2026-12-01T10:00:07Z",
            "zfsync_2026-12-01T10:20:00Z",
            "zfsync_2026-12-01T10:00:01Z",
            "zfsync_2026-12-01T10:40:00Z",
        ];
        let plan = plan_dataset("b/a", &checked_times(&names, now), &[], &keep, now, true);
        assert_eq!(
            plan.to_destroy(),
            ["zfsync_2026-12-01T10:00:01Z", "zfsync_2026-12-01T10:20:00Z"]
        );
    }
}
