//! Replicas whose source dataset is gone: which datasets each sender has delivered and
//! its lists have named, since when a list has lacked each one, and the replicas the
//! receiver destroyed for it (`zfsync-recv --orphans-after`).
//!
//! Owns the queries of the tables `listed`, `listings` and `orphans_destroyed`, and the
//! rules of counting: only a dataset that a sender delivered at its base, in a run whose
//! whole list named it, can be absent from its later lists (a dataset made by hand below
//! the base, or another sender's replicas there, never are); a list dated before one
//! already counted notes nothing (the clock went back); a list that comes `--orphans-after`
//! or more after the one before starts every absence again (the receiver, or the clock,
//! was away); a replica whose newest snapshot changed while it was absent is still fed,
//! and is not absent. Decides nothing else: what may be destroyed is the receiver's.

use crate::error::Result;
use crate::store::Store;
use rusqlite::params;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A replica a sender's lists once named and have lacked since `since` (the first list
/// that lacked it), `lists` counted lists in a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Absence {
    pub dataset: String,
    pub since: i64,
    pub lists: u32,
}

/// A replica below a base as it is now: its full name and the GUID of its newest
/// snapshot, if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    pub name: String,
    pub newest: Option<u64>,
}

/// One whole dataset list of a sender, as the receiver takes it at a run's cleanup.
#[derive(Clone, Copy, Debug)]
pub struct Listing<'a> {
    /// The receiver's TARGET.
    pub job: &'a str,
    /// The sender's key name, "" without keys.
    pub client: &'a str,
    /// Where the sender's root lands (a full name); itself never absent.
    pub base: &'a str,
    /// The datasets the list named, full names below `base`: what absence is judged by.
    pub listed: &'a [String],
    /// The datasets this sender delivered at `base` since its last counted list (received,
    /// resumed, answered up to date, made a placeholder), full names: only these (of
    /// those `listed`) get a row, or have theirs refreshed.
    pub delivered: &'a [String],
    /// The replicas below `base` now.
    pub replicas: &'a [Replica],
    /// `--orphans-after`, seconds: a list that comes this long or longer after the last
    /// counted one starts every absence again. `None`: no such rule (the option is off).
    pub after: Option<i64>,
    /// Unix seconds.
    pub now: i64,
}

/// A replica the receiver destroyed because its source had been absent long enough.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestroyedOrphan {
    pub job: String,
    pub dataset: String,
    pub client: String,
    pub since: i64,
    pub destroyed: i64,
}

/// What a list did to the counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Noted {
    /// The list is counted.
    Counted {
        /// The known replicas absent now, in name order.
        absent: Vec<Absence>,
        /// Absent replicas whose newest snapshot has changed since their absence began:
        /// no longer absent (something still feeds them).
        fed: Vec<String>,
        /// The seconds since the last counted list, when they were `after` or more: every
        /// absence starts again at this list.
        restarted: Option<i64>,
    },
    /// `now` is before `newest`, the latest time already noted for this sender's base:
    /// the clock went back, and nothing is noted.
    ClockBehind { newest: i64 },
}

/// A row of `listed`.
struct Row {
    last_listed: i64,
    absent_since: Option<i64>,
    absent_lists: u32,
    absent_guid: Option<u64>,
}

/// Whether an absent replica's newest snapshot is no longer the one it had when its
/// absence began (`newest` now): something still feeds it.
fn fed_since(row: &Row, newest: Option<u64>) -> bool {
    row.absent_since.is_some() && row.absent_guid.is_some() && row.absent_guid != newest
}

impl Store {
    /// Takes one whole list of a sender (its job, client and base), in one transaction.
    /// Each dataset it names that the sender delivered is known from now on
    /// (`last_listed = now`, not absent); a known one it names is not absent; each known
    /// one it lacks is absent from `now` on if its replica is there (an absent one keeps
    /// its time and counts one list more), and forgotten if not (nothing to count). A
    /// replica never delivered and named gets no row, whatever the list says. See
    /// [`Noted`] for the clock's rules and a replica still fed.
    pub fn note_listing(&self, l: &Listing) -> Result<Noted> {
        let what = "recording a sender's dataset list";
        let prefix = format!("{}/", l.base);
        let below = |d: &&String| d.starts_with(&prefix);
        let listed: HashSet<&str> = l.listed.iter().filter(below).map(String::as_str).collect();
        let delivered: HashSet<&str> = l
            .delivered
            .iter()
            .filter(below)
            .map(String::as_str)
            .filter(|d| listed.contains(d))
            .collect();
        let replicas: HashMap<&str, Option<u64>> = l
            .replicas
            .iter()
            .filter(|r| r.name.starts_with(&prefix))
            .map(|r| (r.name.as_str(), r.newest))
            .collect();
        let key = params![l.job, l.base, l.client];
        let tx = self.conn.unchecked_transaction().map_err(self.sql(what))?;
        let known: BTreeMap<String, Row> = {
            let mut stmt = tx
                .prepare(
                    "SELECT dataset, last_listed, absent_since, absent_lists, absent_guid \
                     FROM listed WHERE job = ?1 AND base = ?2 AND client = ?3",
                )
                .map_err(self.sql(what))?;
            let rows = stmt
                .query_map(key, |row| {
                    let guid: Option<String> = row.get(4)?;
                    Ok((
                        row.get(0)?,
                        Row {
                            last_listed: row.get(1)?,
                            absent_since: row.get(2)?,
                            absent_lists: row.get(3)?,
                            absent_guid: guid.and_then(|g| g.parse().ok()),
                        },
                    ))
                })
                .map_err(self.sql(what))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(self.sql(what))?
        };
        let last_whole: Option<i64> = tx
            .query_row(
                "SELECT last_whole FROM listings WHERE job = ?1 AND base = ?2 AND client = ?3",
                key,
                |row| row.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(self.sql(what))?;
        let newest = known
            .values()
            .flat_map(|r| [Some(r.last_listed), r.absent_since])
            .chain([last_whole])
            .flatten()
            .max();
        if let Some(newest) = newest.filter(|n| l.now < *n) {
            return Ok(Noted::ClockBehind { newest });
        }
        let restarted = match (last_whole, l.after) {
            (Some(w), Some(after)) if l.now - w >= after => Some(l.now - w),
            _ => None,
        };
        for dataset in &delivered {
            tx.execute(
                "INSERT INTO listed (job, base, client, dataset, last_listed, absent_since, \
                 absent_lists, absent_guid) VALUES (?1, ?2, ?3, ?4, ?5, NULL, 0, NULL) \
                 ON CONFLICT (job, base, client, dataset) \
                 DO UPDATE SET last_listed = excluded.last_listed, absent_since = NULL, \
                 absent_lists = 0, absent_guid = NULL",
                params![l.job, l.base, l.client, dataset, l.now],
            )
            .map_err(self.sql(what))?;
        }
        let set_absence = |dataset: &str, since: Option<i64>, lists: u32, guid: Option<u64>| {
            tx.execute(
                "UPDATE listed SET absent_since = ?5, absent_lists = ?6, absent_guid = ?7 \
                 WHERE job = ?1 AND base = ?2 AND client = ?3 AND dataset = ?4",
                params![
                    l.job,
                    l.base,
                    l.client,
                    dataset,
                    since,
                    lists,
                    guid.map(|g| g.to_string())
                ],
            )
            .map(drop)
            .map_err(self.sql(what))
        };
        let (mut absent, mut fed) = (Vec::new(), Vec::new());
        for (dataset, row) in &known {
            if delivered.contains(dataset.as_str()) {
                continue;
            }
            if listed.contains(dataset.as_str()) {
                // Named, not delivered this time (a filter left it out): not absent.
                if row.absent_since.is_some() {
                    set_absence(dataset, None, 0, None)?;
                }
                continue;
            }
            let Some(newest) = replicas.get(dataset.as_str()).copied() else {
                tx.execute(
                    "DELETE FROM listed \
                     WHERE job = ?1 AND base = ?2 AND client = ?3 AND dataset = ?4",
                    params![l.job, l.base, l.client, dataset],
                )
                .map_err(self.sql(what))?;
                continue;
            };
            if fed_since(row, newest) {
                set_absence(dataset, None, 0, None)?;
                fed.push(dataset.clone());
                continue;
            }
            let (since, lists) = match row.absent_since {
                Some(since) if restarted.is_none() => (since, row.absent_lists.saturating_add(1)),
                _ => (l.now, 1),
            };
            set_absence(dataset, Some(since), lists, newest)?;
            absent.push(Absence {
                dataset: dataset.clone(),
                since,
                lists,
            });
        }
        tx.execute(
            "INSERT INTO listings (job, base, client, last_whole) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (job, base, client) DO UPDATE SET last_whole = excluded.last_whole",
            params![l.job, l.base, l.client, l.now],
        )
        .map_err(self.sql(what))?;
        tx.commit().map_err(self.sql(what))?;
        Ok(Noted::Counted {
            absent,
            fed,
            restarted,
        })
    }

    /// Records that `orphan.dataset` was destroyed, and forgets it and everything below
    /// it as listed: a dataset made there later is another, absent only once a list has
    /// named it and a later one lacks it.
    pub fn record_orphan_destroyed(&self, orphan: &DestroyedOrphan) -> Result<()> {
        let what = "recording a destroyed orphan";
        let tx = self.conn.unchecked_transaction().map_err(self.sql(what))?;
        // substr, not LIKE: `_` and `%` are ordinary in dataset names.
        tx.execute(
            "DELETE FROM listed WHERE job = ?1 \
             AND (dataset = ?2 OR substr(dataset, 1, length(?3)) = ?3)",
            params![orphan.job, orphan.dataset, format!("{}/", orphan.dataset)],
        )
        .map_err(self.sql(what))?;
        tx.execute(
            "INSERT INTO orphans_destroyed (job, dataset, client, since, destroyed) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                orphan.job,
                orphan.dataset,
                orphan.client,
                orphan.since,
                orphan.destroyed
            ],
        )
        .map_err(self.sql(what))?;
        tx.commit().map_err(self.sql(what))
    }

    /// The orphans destroyed at or after `since`, oldest first.
    pub fn orphans_destroyed(&self, since: i64) -> Result<Vec<DestroyedOrphan>> {
        let what = "reading destroyed orphans";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT job, dataset, client, since, destroyed FROM orphans_destroyed \
                 WHERE destroyed >= ?1 ORDER BY destroyed, id",
            )
            .map_err(self.sql(what))?;
        let rows = stmt
            .query_map(params![since], |row| {
                Ok(DestroyedOrphan {
                    job: row.get(0)?,
                    dataset: row.get(1)?,
                    client: row.get(2)?,
                    since: row.get(3)?,
                    destroyed: row.get(4)?,
                })
            })
            .map_err(self.sql(what))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(self.sql(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    /// Space-separated names below `base` ("a a/b") as full names.
    fn full(base: &str, rels: &str) -> Vec<String> {
        rels.split_whitespace()
            .map(|r| format!("{base}/{r}"))
            .collect()
    }

    /// Replicas "a b:7" below `base`: each with newest snapshot GUID 1 unless one is
    /// given (`b` has 7).
    fn replicas(base: &str, spec: &str) -> Vec<Replica> {
        spec.split_whitespace()
            .map(|r| {
                let (rel, guid) = r.split_once(':').unwrap_or((r, "1"));
                Replica {
                    name: format!("{base}/{rel}"),
                    newest: Some(guid.parse().unwrap()),
                }
            })
            .collect()
    }

    /// One list of job `t`: what it names (`listed`), of which `delivered` were
    /// delivered, and the replicas there (see `replicas`), with `--orphans-after` 1000.
    fn list(
        store: &Store,
        (base, client): (&str, &str),
        (listed, delivered): (&str, &str),
        on_disk: &str,
        now: i64,
    ) -> Noted {
        let (listed, delivered) = (full(base, listed), full(base, delivered));
        let on_disk = replicas(base, on_disk);
        store
            .note_listing(&Listing {
                job: "t",
                client,
                base,
                listed: &listed,
                delivered: &delivered,
                replicas: &on_disk,
                after: Some(1000),
                now,
            })
            .unwrap()
    }

    /// `list` where every listed dataset was delivered; returns the absences as
    /// (path below `base`, since).
    fn note(
        store: &Store,
        at: (&str, &str),
        listed: &str,
        on_disk: &str,
        now: i64,
    ) -> Vec<(String, i64)> {
        absences(at.0, list(store, at, (listed, listed), on_disk, now))
    }

    fn absences(base: &str, noted: Noted) -> Vec<(String, i64)> {
        let Noted::Counted { absent, .. } = noted else {
            panic!("not counted: {noted:?}");
        };
        let rel = |d: &str| d[base.len() + 1..].to_string();
        absent.iter().map(|a| (rel(&a.dataset), a.since)).collect()
    }

    fn want(list: &[(&str, i64)]) -> Vec<(String, i64)> {
        list.iter().map(|(d, s)| (d.to_string(), *s)).collect()
    }

    const R: (&str, &str) = ("t/r", "");

    fn store(name: &str) -> (TempDir, Store) {
        let tmp = TempDir::new(name);
        let store = Store::open(tmp.path()).unwrap();
        (tmp, store)
    }

    #[test]
    fn absence_counts_from_the_first_list_that_lacked_a_listed_dataset() {
        let (_tmp, s) = store("absent-first");
        assert!(note(&s, R, "a b", "a b", 100).is_empty());
        assert_eq!(note(&s, R, "a", "a b", 200), want(&[("b", 200)]));
        assert_eq!(note(&s, R, "a", "a b", 300), want(&[("b", 200)]));
        // An empty list: every listed replica is absent; `c` was never listed.
        let got = note(&s, R, "", "a b c", 400);
        assert_eq!(got, want(&[("a", 400), ("b", 200)]));
    }

    #[test]
    fn each_list_that_lacks_a_dataset_counts_once() {
        let (_tmp, s) = store("absent-lists");
        note(&s, R, "a b", "a b", 100);
        for (now, lists) in [(200, 1), (300, 2), (400, 3)] {
            let Noted::Counted { absent, .. } = list(&s, R, ("a", "a"), "a b", now) else {
                panic!("not counted at {now}");
            };
            let got: Vec<(i64, u32)> = absent.iter().map(|a| (a.since, a.lists)).collect();
            assert_eq!(got, [(200, lists)], "at {now}");
        }
    }

    // A dataset made by hand below the base, or the replicas of another sender whose base
    // is below this one, are in no list of this sender: never absent, however long.
    #[test]
    fn a_dataset_never_listed_is_never_absent() {
        let (_tmp, s) = store("absent-never");
        let cases = [
            ("a", "a hand hand/x"),
            ("a", "a x x/c"),
            ("", "a"),
            ("a/b", "a a/b a/hand"),
        ];
        for (i, (listed, replicas)) in cases.into_iter().enumerate() {
            let base = format!("t/r{i}");
            for now in [100, 100_000, 100_000_000] {
                let got = note(&s, (&base, ""), listed, replicas, now);
                assert!(got.is_empty(), "{listed:?} of {replicas:?}: {got:?}");
            }
        }
    }

    // issue 16, review: a list names another sender's datasets, which this sender never
    // delivered; its later empty lists must not count them absent.
    #[test]
    fn a_dataset_listed_but_never_delivered_is_never_absent() {
        let (_tmp, s) = store("absent-undelivered");
        assert!(absences("t/r", list(&s, R, ("a b", "a"), "a b", 100)).is_empty());
        let got = absences("t/r", list(&s, R, ("", ""), "a b", 200));
        assert_eq!(got, want(&[("a", 200)]));
        // Delivered once, it counts from then on.
        list(&s, R, ("b", "b"), "a b", 300);
        let got = absences("t/r", list(&s, R, ("", ""), "a b", 400));
        assert_eq!(got, want(&[("a", 200), ("b", 400)]));
    }

    // A known dataset named but not delivered (a filter left it out): not absent.
    #[test]
    fn a_known_dataset_named_without_being_delivered_is_not_absent() {
        let (_tmp, s) = store("absent-named");
        note(&s, R, "a b", "a b", 100);
        assert_eq!(note(&s, R, "a", "a b", 200), want(&[("b", 200)]));
        assert!(absences("t/r", list(&s, R, ("a b", "a"), "a b", 300)).is_empty());
        assert_eq!(note(&s, R, "a", "a b", 400), want(&[("b", 400)]));
    }

    // A replica whose newest snapshot changes while it is absent is still being fed (by
    // another sender, or by hand): its absence ends.
    #[test]
    fn a_replica_still_fed_is_not_absent() {
        let (_tmp, s) = store("absent-fed");
        note(&s, R, "a b", "a b", 100);
        assert_eq!(note(&s, R, "a", "a b:5", 200), want(&[("b", 200)]));
        assert_eq!(note(&s, R, "a", "a b:5", 300), want(&[("b", 200)]));
        let noted = list(&s, R, ("a", "a"), "a b:6", 400);
        let Noted::Counted { absent, fed, .. } = noted else {
            panic!("not counted");
        };
        assert!(absent.is_empty(), "{absent:?}");
        assert_eq!(fed, ["t/r/b"]);
        assert_eq!(note(&s, R, "a", "a b:6", 500), want(&[("b", 500)]));
    }

    // The clock went back: a list dated before what was noted notes nothing.
    #[test]
    fn a_list_dated_before_the_last_notes_nothing() {
        let (_tmp, s) = store("absent-behind");
        note(&s, R, "a b", "a b", 1000);
        assert_eq!(note(&s, R, "a", "a b", 1100), want(&[("b", 1100)]));
        let noted = list(&s, R, ("", ""), "a b", 900);
        assert_eq!(noted, Noted::ClockBehind { newest: 1100 });
        // Nothing was noted: `a` is not absent, `b` counts one list.
        let Noted::Counted { absent, .. } = list(&s, R, ("a", "a"), "a b", 1200) else {
            panic!("not counted");
        };
        let got: Vec<(&str, i64, u32)> = absent
            .iter()
            .map(|a| (a.dataset.as_str(), a.since, a.lists))
            .collect();
        assert_eq!(got, [("t/r/b", 1100, 2)]);
    }

    // A list that comes --orphans-after or more after the one before (the receiver was
    // off, or the clock jumped): every absence starts again from it.
    #[test]
    fn a_list_after_a_long_gap_starts_every_absence_again() {
        let (_tmp, s) = store("absent-gap");
        note(&s, R, "a b c", "a b c", 100);
        assert_eq!(
            note(&s, R, "a", "a b c", 200),
            want(&[("b", 200), ("c", 200)])
        );
        let noted = list(&s, R, ("a", "a"), "a b c", 1200);
        assert!(
            matches!(
                noted,
                Noted::Counted {
                    restarted: Some(1000),
                    ..
                }
            ),
            "{noted:?}"
        );
        assert_eq!(absences("t/r", noted), want(&[("b", 1200), ("c", 1200)]));
        // Within the duration of the one before, the times stay.
        assert_eq!(
            note(&s, R, "", "a b c", 2100),
            want(&[("a", 2100), ("b", 1200), ("c", 1200)])
        );
    }

    #[test]
    fn a_dataset_listed_again_starts_over() {
        let (_tmp, s) = store("absent-back");
        note(&s, R, "b", "b", 100);
        assert_eq!(note(&s, R, "", "b", 200), want(&[("b", 200)]));
        assert!(note(&s, R, "b", "b", 300).is_empty());
        assert_eq!(note(&s, R, "", "b", 400), want(&[("b", 400)]));
    }

    // A listed dataset never received (excluded from sending) and then destroyed on the
    // source: nothing to count, and a dataset made there by hand later is not its replica.
    #[test]
    fn a_listed_dataset_lacked_without_a_replica_is_forgotten() {
        let (_tmp, s) = store("absent-forget");
        note(&s, R, "a b", "a", 100);
        assert!(note(&s, R, "a", "a", 200).is_empty());
        assert!(note(&s, R, "a", "a b", 300).is_empty());
    }

    #[test]
    fn each_base_client_and_target_has_its_own_lists() {
        let (_tmp, s) = store("absent-base");
        // Nested bases: t/r's sender never listed its x, t/r/x's sender listed c.
        note(&s, R, "a", "a x x/c", 100);
        note(&s, ("t/r/x", ""), "c", "c", 100);
        assert!(note(&s, R, "a", "a x x/c", 200).is_empty());
        assert_eq!(note(&s, ("t/r/x", ""), "", "c", 300), want(&[("c", 300)]));
        // t/r_x is not below t/r: a list of t/r says nothing of its datasets.
        note(&s, ("t/r_x", ""), "b", "b", 100);
        note(&s, R, "a", "a", 400);
        assert_eq!(note(&s, ("t/r_x", ""), "", "b", 500), want(&[("b", 500)]));
        // Another client with the same base: its lists never named `a`.
        assert!(note(&s, ("t/r", "k"), "", "a", 600).is_empty());
        assert_eq!(note(&s, R, "", "a", 600), want(&[("a", 600)]));
        // Names outside the base in a list are not taken.
        let outside = vec!["t/other/c".to_string()];
        let on_disk = replicas("t/other", "c");
        let listing = Listing {
            job: "t",
            client: "",
            base: "t/r",
            listed: &outside,
            delivered: &outside,
            replicas: &on_disk,
            after: None,
            now: 700,
        };
        s.note_listing(&listing).unwrap();
        let rows: i64 = s
            .conn
            .query_row(
                "SELECT COUNT(*) FROM listed WHERE dataset = 't/other/c'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, 0);
    }

    #[test]
    fn a_destroyed_orphan_is_recorded_and_forgotten_with_its_descendants() {
        let (_tmp, s) = store("absent-destroyed");
        let base = ("t/r", "k");
        note(&s, base, "b b/x bc", "b b/x bc", 100);
        let got = note(&s, base, "", "b b/x bc", 200);
        assert_eq!(got, want(&[("b", 200), ("b/x", 200), ("bc", 200)]));
        let orphan = DestroyedOrphan {
            job: "t".into(),
            dataset: "t/r/b".into(),
            client: "k".into(),
            since: 200,
            destroyed: 500,
        };
        s.record_orphan_destroyed(&orphan).unwrap();
        assert_eq!(s.orphans_destroyed(0).unwrap(), [orphan]);
        assert!(s.orphans_destroyed(501).unwrap().is_empty());
        // Made there again by hand: not the destroyed replica, never listed.
        assert_eq!(note(&s, base, "", "b b/x bc", 600), want(&[("bc", 200)]));
    }
}
