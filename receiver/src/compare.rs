//! Comparing an offered dataset's snapshots on both sides: the newest common one, and
//! whether the destination went its own way since ([`Decision`]). Turning that into the
//! answer to the offer is `place.rs`'s job.
//!
//! Pure logic, no ZFS: the session feeds it the destination's snapshots (listed locally)
//! and then the source's, one at a time as they arrive, so an offer with any number of
//! snapshots costs the receiver no memory beyond its own listing. What it keeps of the
//! source (where each of the destination's snapshots stands in it, [`Matched`]) is enough
//! to decide again against a fresher look at the destination. Snapshots are matched by
//! GUID, never by name: a snapshot of the same name with another GUID is a different
//! snapshot.

use std::collections::{HashMap, HashSet};
use zfsync_zfs::Snapshot;

/// What the destination looks like, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The destination has the source's newest snapshot already.
    UpToDate { name: String },
    /// Send everything after `from` (the newest snapshot both sides have). With
    /// `rollback`, the destination must first be rolled back to `from`, destroying the
    /// snapshots listed in `newer` (only decided when the operator allowed it).
    Incremental {
        from: Snapshot,
        rollback: bool,
        newer: Vec<String>,
    },
    /// The destination has snapshots after the newest common one that the source does not
    /// have: receiving would need them destroyed.
    Diverged { common: String, newer: Vec<String> },
    /// The destination has snapshots, but none of the source's.
    NoCommonSnapshot { dest_newest: String },
    /// The source offered no snapshots.
    NothingOffered,
}

impl Decision {
    /// Whether rolling the destination back could be what it takes, if it were allowed:
    /// it has snapshots after the common one, or an incremental is planned and the
    /// destination may have changed since its newest snapshot (`zfs recv` refuses then).
    pub fn may_need_rollback(&self) -> bool {
        matches!(
            self,
            Decision::Diverged { .. }
                | Decision::Incremental {
                    rollback: false,
                    ..
                }
        )
    }
}

/// Collects the source's snapshots against the destination's.
pub struct Matcher {
    /// The destination's snapshot GUIDs.
    dest: HashSet<u64>,
    matched: Matched,
}

/// The source's snapshots, as far as the destination's concern them: enough to decide
/// against the destination as listed, or as it is when looked at again.
#[derive(Debug, Default)]
pub struct Matched {
    /// GUIDs of the destination's snapshots that the source has -> their place in the
    /// source's order (0: its oldest).
    found: HashMap<u64, u64>,
    /// Source snapshots fed so far.
    fed: u64,
    source_newest: Option<Snapshot>,
}

impl Matcher {
    pub fn new(dest: &[Snapshot]) -> Self {
        Matcher {
            dest: dest.iter().map(|s| s.guid).collect(),
            matched: Matched::default(),
        }
    }

    /// Feeds the next source snapshot (oldest first).
    pub fn feed(&mut self, snap: Snapshot) {
        let m = &mut self.matched;
        if self.dest.contains(&snap.guid) {
            m.found.insert(snap.guid, m.fed);
        }
        m.fed += 1;
        m.source_newest = Some(snap);
    }

    pub fn finish(self) -> Matched {
        self.matched
    }
}

impl Matched {
    /// The decision against `dest` (oldest first), given whether rolling back is allowed.
    /// `dest` is the destination the source was fed against, or a fresher look at it: a
    /// snapshot the matcher was not given counts as one the source does not have (one made
    /// on the receiving side since; zfsync's own receives into a dataset hold its lock).
    pub fn decide(&self, dest: &[Snapshot], allow_rollback: bool) -> Decision {
        let Some(newest) = &self.source_newest else {
            return Decision::NothingOffered;
        };
        // The destination's copy of the newest source snapshot it has.
        let common = dest
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.found.get(&s.guid).map(|at| (*at, i)))
            .max()
            .map(|(_, i)| i);
        let Some(ci) = common else {
            return Decision::NoCommonSnapshot {
                dest_newest: dest.last().map(|s| s.name.clone()).unwrap_or_default(),
            };
        };
        let common = &dest[ci];
        if common.guid == newest.guid {
            // Snapshots the destination has beyond this are its own business: nothing
            // needs sending, nothing needs destroying.
            return Decision::UpToDate {
                name: newest.name.clone(),
            };
        }
        let newer: Vec<String> = dest[ci + 1..].iter().map(|s| s.name.clone()).collect();
        if !newer.is_empty() && !allow_rollback {
            return Decision::Diverged {
                common: common.name.clone(),
                newer,
            };
        }
        Decision::Incremental {
            from: common.clone(),
            rollback: allow_rollback,
            newer,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// "a:1 b:2" -> snapshots a (guid 1) and b (guid 2), oldest first.
    pub(crate) fn snaps(s: &str) -> Vec<Snapshot> {
        s.split_whitespace()
            .enumerate()
            .map(|(i, t)| {
                let (n, g) = t.split_once(':').unwrap();
                Snapshot {
                    name: n.into(),
                    guid: g.parse().unwrap(),
                    createtxg: i as u64 + 1,
                }
            })
            .collect()
    }

    fn matched(dest: &str, source: &str) -> Matched {
        let mut m = Matcher::new(&snaps(dest));
        for s in snaps(source) {
            m.feed(s);
        }
        m.finish()
    }

    fn decide(dest: &str, source: &str, allow_rollback: bool) -> Decision {
        matched(dest, source).decide(&snaps(dest), allow_rollback)
    }

    fn inc(from: &str) -> String {
        from.to_string()
    }

    #[test]
    fn incremental_from_newest_common() {
        match decide("a:1 b:2", "a:1 b:2 c:3 d:4", false) {
            Decision::Incremental {
                from,
                rollback: false,
                newer,
            } => {
                assert_eq!(from.name, inc("b"));
                assert!(newer.is_empty());
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn up_to_date() {
        assert_eq!(
            decide("a:1 b:2", "a:1 b:2", false),
            Decision::UpToDate { name: "b".into() }
        );
    }

    #[test]
    fn up_to_date_even_with_extra_destination_snapshots() {
        assert_eq!(
            decide("a:1 b:2 x:9", "a:1 b:2", false),
            Decision::UpToDate { name: "b".into() }
        );
    }

    #[test]
    fn same_names_other_guids_are_not_common() {
        // The original tool matched by name and then destroyed the destination.
        assert_eq!(
            decide("a:1 b:2", "a:11 b:12 c:13", false),
            Decision::NoCommonSnapshot {
                dest_newest: "b".into()
            }
        );
    }

    #[test]
    fn matched_by_guid_even_if_renamed() {
        match decide("old-name:1", "new-name:1 c:3", false) {
            Decision::Incremental { from, .. } => assert_eq!(from.name, "old-name"),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn destination_snapshot_after_common_is_divergence() {
        assert_eq!(
            decide("a:1 b:2 local:7", "a:1 b:2 c:3", false),
            Decision::Diverged {
                common: "b".into(),
                newer: vec!["local".into()]
            }
        );
    }

    #[test]
    fn divergence_with_rollback_allowed_names_what_goes() {
        match decide("a:1 b:2 local:7", "a:1 b:2 c:3", true) {
            Decision::Incremental {
                from,
                rollback: true,
                newer,
            } => {
                assert_eq!(from.name, "b");
                assert_eq!(newer, vec!["local".to_string()]);
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn source_pruned_old_snapshots() {
        // The source expired a and b; c is still on both sides.
        match decide("a:1 b:2 c:3", "c:3 d:4", false) {
            Decision::Incremental { from, .. } => assert_eq!(from.name, "c"),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn common_is_the_newest_shared_not_the_first() {
        match decide("a:1 b:2 c:3", "a:1 b:2 c:3 d:4", false) {
            Decision::Incremental { from, .. } => assert_eq!(from.name, "c"),
            d => panic!("{d:?}"),
        }
    }

    // issue 14 item 4: a one-time permission to roll back is looked up only where it could
    // matter: a divergence, or an incremental into a destination that may have changed.
    #[test]
    fn only_a_divergence_or_an_incremental_may_need_a_rollback() {
        let cases = [
            (decide("a:1 b:2 local:7", "a:1 b:2 c:3", false), true),
            (decide("a:1 b:2", "a:1 b:2 c:3", false), true),
            (decide("a:1 b:2 local:7", "a:1 b:2 c:3", true), false),
            (decide("a:1 b:2", "a:1 b:2", false), false),
            (decide("x:9", "a:1", false), false),
            (decide("a:1", "", false), false),
        ];
        for (d, want) in cases {
            assert_eq!(d.may_need_rollback(), want, "{d:?}");
        }
    }

    #[test]
    fn nothing_offered() {
        assert_eq!(decide("a:1", "", false), Decision::NothingOffered);
    }

    #[test]
    fn empty_destination_has_no_common_snapshot() {
        assert_eq!(
            decide("", "a:1", false),
            Decision::NoCommonSnapshot {
                dest_newest: "".into()
            }
        );
    }

    // issue 14: a refusal is checked against a fresh look at the destination, with the
    // source as it was matched against the listing.
    #[test]
    fn a_fresh_look_without_the_local_snapshot_is_no_longer_divergence() {
        let m = matched("a:1 b:2 local:7", "a:1 b:2 c:3");
        assert!(matches!(
            m.decide(&snaps("a:1 b:2 local:7"), false),
            Decision::Diverged { .. }
        ));
        match m.decide(&snaps("a:1 b:2"), false) {
            Decision::Incremental { from, newer, .. } => {
                assert_eq!(from.name, "b");
                assert!(newer.is_empty());
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn a_fresh_look_names_only_what_is_there_now() {
        let m = matched("a:1 b:2 x:8 y:9", "a:1 b:2 c:3");
        // x went, z came (made by hand since the listing): it is not the source's.
        assert_eq!(
            m.decide(&snaps("a:1 b:2 y:9 z:10"), false),
            Decision::Diverged {
                common: "b".into(),
                newer: vec!["y".into(), "z".into()]
            }
        );
        // The common snapshot itself went: an older one is the base.
        assert_eq!(
            m.decide(&snaps("a:1 x:8"), false),
            Decision::Diverged {
                common: "a".into(),
                newer: vec!["x".into()]
            }
        );
        assert_eq!(
            m.decide(&snaps("q:11"), false),
            Decision::NoCommonSnapshot {
                dest_newest: "q".into()
            }
        );
    }
}
