//! Deciding what to do with an offered dataset, from its snapshots on both sides.
//!
//! Pure logic, no ZFS: the session feeds it the destination's snapshots (listed locally)
//! and then the source's, one at a time as they arrive, so an offer with any number of
//! snapshots costs the receiver no memory beyond its own listing. Snapshots are matched by
//! GUID, never by name: a snapshot of the same name with another GUID is a different
//! snapshot.

use std::collections::HashMap;
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

/// Collects the source's snapshots against the destination's.
pub struct Matcher<'a> {
    dest: &'a [Snapshot],
    by_guid: HashMap<u64, usize>,
    /// Newest source snapshot seen so far that the destination has: its destination index.
    common: Option<usize>,
    source_newest: Option<Snapshot>,
}

impl<'a> Matcher<'a> {
    /// `dest` must be oldest first.
    pub fn new(dest: &'a [Snapshot]) -> Self {
        let by_guid = dest.iter().enumerate().map(|(i, s)| (s.guid, i)).collect();
        Matcher {
            dest,
            by_guid,
            common: None,
            source_newest: None,
        }
    }

    /// Feeds the next source snapshot (oldest first).
    pub fn feed(&mut self, snap: Snapshot) {
        if let Some(&i) = self.by_guid.get(&snap.guid) {
            self.common = Some(i);
        }
        self.source_newest = Some(snap);
    }

    /// The decision, given whether rolling back is allowed.
    pub fn decide(self, allow_rollback: bool) -> Decision {
        let Some(newest) = self.source_newest else {
            return Decision::NothingOffered;
        };
        let Some(ci) = self.common else {
            return Decision::NoCommonSnapshot {
                dest_newest: self.dest.last().map(|s| s.name.clone()).unwrap_or_default(),
            };
        };
        let common = &self.dest[ci];
        if common.guid == newest.guid {
            // Snapshots the destination has beyond this are its own business: nothing
            // needs sending, nothing needs destroying.
            return Decision::UpToDate { name: newest.name };
        }
        let newer: Vec<String> = self.dest[ci + 1..].iter().map(|s| s.name.clone()).collect();
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

/// How many of the source's newest snapshots a quick look asks the destination for, by
/// name: a run that follows one to seven missed runs still finds its base among them.
pub const QUICK_WINDOW: usize = 8;

/// The names a quick look asks for: the source's newest [`QUICK_WINDOW`] snapshots.
pub fn quick_names(offered: &[Snapshot]) -> Vec<&str> {
    let from = offered.len().saturating_sub(QUICK_WINDOW);
    offered[from..].iter().map(|s| s.name.as_str()).collect()
}

/// What a quick look decides on its own, from `found`: the destination's GUIDs of the
/// snapshots named by [`quick_names`] that it has, by name. `None` when only the listing
/// can tell (none of them there, or one with another GUID).
///
/// - The destination has the source's newest snapshot: `UpToDate`, as the listing would say
///   (what it has beyond that is its own business).
/// - It has an older one of the window and none of the newer ones by name: `Incremental`
///   from it. The listing could still see snapshots after it under other names (its own,
///   or renamed ones of the source). Such a destination's newest snapshot is not the
///   stream's base, and `zfs recv` refuses the stream for that before it changes anything;
///   the caller then asks the listing (see `Session::recheck`).
pub fn quick_decide(offered: &[Snapshot], found: &HashMap<String, u64>) -> Option<Quick> {
    let newest = offered.last()?;
    for s in offered.iter().rev().take(QUICK_WINDOW) {
        match found.get(&s.name) {
            None => continue,
            Some(&guid) if guid != s.guid => return None,
            Some(_) if s.guid == newest.guid => {
                return Some(Quick::UpToDate {
                    name: s.name.clone(),
                })
            }
            Some(_) => return Some(Quick::Incremental { from: s.clone() }),
        }
    }
    None
}

/// What a quick look decided (see [`quick_decide`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Quick {
    /// The destination has the source's newest snapshot.
    UpToDate { name: String },
    /// Send everything after `from`, which `zfs recv` checks is the destination's newest.
    Incremental { from: Snapshot },
}

impl From<Quick> for Decision {
    /// The listing's decision that the quick one stands for.
    fn from(q: Quick) -> Decision {
        match q {
            Quick::UpToDate { name } => Decision::UpToDate { name },
            Quick::Incremental { from } => Decision::Incremental {
                from,
                rollback: false,
                newer: Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "a:1 b:2" -> snapshots a (guid 1) and b (guid 2), oldest first.
    fn snaps(s: &str) -> Vec<Snapshot> {
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

    fn decide(dest: &str, source: &str, allow_rollback: bool) -> Decision {
        let dest = snaps(dest);
        let mut m = Matcher::new(&dest);
        for s in snaps(source) {
            m.feed(s);
        }
        m.decide(allow_rollback)
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

    fn quick(dest: &str, source: &str) -> Option<Quick> {
        let (dest, source) = (snaps(dest), snaps(source));
        let names = quick_names(&source);
        let found = dest
            .iter()
            .filter(|d| names.contains(&d.name.as_str()))
            .map(|d| (d.name.clone(), d.guid))
            .collect();
        quick_decide(&source, &found)
    }

    #[test]
    fn quick_look_decides_the_usual_cases() {
        assert_eq!(
            quick("a:1 b:2", "a:1 b:2"),
            Some(Quick::UpToDate { name: "b".into() })
        );
        match quick("a:1 b:2", "a:1 b:2 c:3 d:4") {
            Some(Quick::Incremental { from }) => {
                assert_eq!((from.name.as_str(), from.guid), ("b", 2));
            }
            d => panic!("{d:?}"),
        }
        // The same name with another GUID, nothing in the window, nothing offered: the
        // listing decides.
        assert_eq!(quick("a:1 b:2", "a:1 b:12 c:13"), None);
        assert_eq!(quick("a:1", "a:1 b:2 c:3 d:4 e:5 f:6 g:7 h:8 i:9"), None);
        assert_eq!(quick("a:1", ""), None);
        assert_eq!(quick("", "a:1"), None);
    }

    /// Many destinations, made from the source's snapshots the ways they drift apart
    /// (behind, expired, renamed, own snapshots, a name reused): wherever the quick look
    /// decides, the listing decides the same, except where the destination's newest
    /// snapshot is not the quick base, which zfs recv refuses for it.
    #[test]
    fn quick_look_agrees_with_the_listing() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let (mut decided, mut refused_by_recv) = (0, 0);
        for _ in 0..20_000 {
            let n = 1 + next(14) as usize;
            let source: Vec<Snapshot> = (0..n)
                .map(|i| Snapshot {
                    name: format!("s{i}"),
                    guid: 100 + i as u64,
                    createtxg: i as u64 + 1,
                })
                .collect();
            // The destination: a prefix of the source, its oldest ones perhaps expired.
            let upto = next(n as u64 + 1) as usize;
            let start = if upto > 0 {
                next(upto as u64) as usize
            } else {
                0
            };
            let mut dest: Vec<Snapshot> = source[start..upto].to_vec();
            if !dest.is_empty() && next(4) == 0 {
                let i = next(dest.len() as u64) as usize;
                dest[i].name = format!("renamed{i}");
            }
            if next(4) == 0 {
                dest.push(Snapshot {
                    name: "own".into(),
                    guid: 900,
                    createtxg: 99,
                });
            }
            if next(6) == 0 {
                // A name of the source's, on a snapshot of the destination's own.
                dest.push(Snapshot {
                    name: format!("s{}", next(n as u64)),
                    guid: 901,
                    createtxg: 100,
                });
            }
            let names = quick_names(&source);
            let found: HashMap<String, u64> = dest
                .iter()
                .filter(|d| names.contains(&d.name.as_str()))
                .map(|d| (d.name.clone(), d.guid))
                .collect();
            let Some(q) = quick_decide(&source, &found) else {
                continue;
            };
            decided += 1;
            let mut m = Matcher::new(&dest);
            for s in &source {
                m.feed(s.clone());
            }
            let listed = m.decide(false);
            match &q {
                Quick::UpToDate { .. } => {
                    assert_eq!(Decision::from(q), listed, "{dest:?} {source:?}")
                }
                Quick::Incremental { from } => {
                    if dest.last().map(|d| d.guid) == Some(from.guid) {
                        assert_eq!(Decision::from(q), listed, "{dest:?} {source:?}");
                    } else {
                        refused_by_recv += 1;
                    }
                }
            }
        }
        // Neither branch is empty: the test looks at both.
        assert!(decided > 5_000, "{decided}");
        assert!(refused_by_recv > 500, "{refused_by_recv}");
    }
}
