//! Replicas whose source dataset is gone: which datasets each sender's lists have named,
//! since when a list has lacked each one, and the replicas the receiver destroyed for it
//! (`zfsync-recv --orphans-after`).
//!
//! Owns the queries of the tables `listed` and `orphans_destroyed`, and the rule that
//! only a dataset a sender's list once named can be absent from its later lists (a
//! dataset made by hand below the base, or another sender's replicas there, never are).
//! Decides nothing else: what may be destroyed is the receiver's.

use crate::error::Result;
use crate::store::Store;
use rusqlite::params;
use std::collections::{BTreeMap, HashSet};

/// A replica a sender's lists once named and have lacked since `since` (the first list
/// that lacked it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Absence {
    pub dataset: String,
    pub since: i64,
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
    /// The datasets the list named, full names below `base`.
    pub listed: &'a [String],
    /// The replicas below `base` now, full names.
    pub replicas: &'a [String],
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

impl Store {
    /// Takes one whole list of a sender (its job, client and base), in one transaction:
    /// each dataset it names is known from now on (`last_listed = now`, no longer
    /// absent); each known one it lacks is absent from `now` on if its replica is there
    /// (a row already absent keeps its time), and forgotten if not (nothing to count).
    /// A replica this sender's lists never named gets no row, whatever the list says.
    /// Returns the known replicas absent now, with the time each was first lacked, in
    /// name order.
    pub fn note_listing(&self, l: &Listing) -> Result<Vec<Absence>> {
        let what = "recording a sender's dataset list";
        let prefix = format!("{}/", l.base);
        let below = |d: &&String| d.starts_with(&prefix);
        let listed: HashSet<&str> = l.listed.iter().filter(below).map(String::as_str).collect();
        let replicas: HashSet<&str> = l
            .replicas
            .iter()
            .filter(below)
            .map(String::as_str)
            .collect();
        let tx = self.conn.unchecked_transaction().map_err(self.sql(what))?;
        let known: BTreeMap<String, Option<i64>> = {
            let mut stmt = tx
                .prepare(
                    "SELECT dataset, absent_since FROM listed \
                     WHERE job = ?1 AND base = ?2 AND client = ?3",
                )
                .map_err(self.sql(what))?;
            let rows = stmt
                .query_map(params![l.job, l.base, l.client], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .map_err(self.sql(what))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(self.sql(what))?
        };
        for dataset in &listed {
            tx.execute(
                "INSERT INTO listed (job, base, client, dataset, last_listed, absent_since) \
                 VALUES (?1, ?2, ?3, ?4, ?5, NULL) \
                 ON CONFLICT (job, base, client, dataset) \
                 DO UPDATE SET last_listed = excluded.last_listed, absent_since = NULL",
                params![l.job, l.base, l.client, dataset, l.now],
            )
            .map_err(self.sql(what))?;
        }
        let mut out = Vec::new();
        for (dataset, since) in known.iter().filter(|(d, _)| !listed.contains(d.as_str())) {
            if !replicas.contains(dataset.as_str()) {
                tx.execute(
                    "DELETE FROM listed \
                     WHERE job = ?1 AND base = ?2 AND client = ?3 AND dataset = ?4",
                    params![l.job, l.base, l.client, dataset],
                )
                .map_err(self.sql(what))?;
                continue;
            }
            let since = match since {
                Some(since) => *since,
                None => {
                    tx.execute(
                        "UPDATE listed SET absent_since = ?5 \
                         WHERE job = ?1 AND base = ?2 AND client = ?3 AND dataset = ?4",
                        params![l.job, l.base, l.client, dataset, l.now],
                    )
                    .map_err(self.sql(what))?;
                    l.now
                }
            };
            out.push(Absence {
                dataset: dataset.clone(),
                since,
            });
        }
        tx.commit().map_err(self.sql(what))?;
        Ok(out)
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

    /// One list of job `t` at `now`: what it names, and the replicas there, as names
    /// below `base`. Returns the absences, below `base` too.
    fn note(
        store: &Store,
        (base, client): (&str, &str),
        listed: &str,
        replicas: &str,
        now: i64,
    ) -> Vec<(String, i64)> {
        let (listed, replicas) = (full(base, listed), full(base, replicas));
        let got = store
            .note_listing(&Listing {
                job: "t",
                client,
                base,
                listed: &listed,
                replicas: &replicas,
                now,
            })
            .unwrap();
        let rel = |d: &str| d[base.len() + 1..].to_string();
        got.iter().map(|a| (rel(&a.dataset), a.since)).collect()
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
        let listed = vec!["t/other/c".to_string()];
        let replicas = vec!["t/other/c".to_string()];
        let listing = Listing {
            job: "t",
            client: "",
            base: "t/r",
            listed: &listed,
            replicas: &replicas,
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
