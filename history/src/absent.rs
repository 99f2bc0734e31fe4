//! Replicas whose source dataset is gone: since when a sender's listing has lacked each
//! one, and the ones the receiver destroyed for it (`zfsync-recv --orphans-after`).
//!
//! Owns the queries of the tables `absent` and `orphans_destroyed`. Decides nothing: what
//! counts as absent, and what may be destroyed, is the receiver's.

use crate::error::Result;
use crate::store::Store;
use rusqlite::params;
use std::collections::{BTreeMap, BTreeSet};

/// A replica a sender's listing lacked, and the time of the first run that lacked it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Absence {
    pub dataset: String,
    pub since: i64,
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
    /// One run's word on the replicas below `base` (a full name; itself never absent):
    /// `absent` are those its listing lacked. In one transaction, a replica below `base`
    /// that is not in `absent` loses its row (its source is there again, or the replica
    /// is gone), and one in `absent` without a row gets one with `since = now`. Returns
    /// every replica of `absent` with the time it was first seen absent, in name order.
    pub fn note_absent(
        &self,
        job: &str,
        client: &str,
        base: &str,
        absent: &[String],
        now: i64,
    ) -> Result<Vec<Absence>> {
        let what = "recording absent datasets";
        let prefix = format!("{base}/");
        let tx = self.conn.unchecked_transaction().map_err(self.sql(what))?;
        let known: BTreeMap<String, i64> = {
            // substr, not LIKE: `_` and `%` are ordinary in dataset names.
            let mut stmt = tx
                .prepare(
                    "SELECT dataset, since FROM absent WHERE job = ?1 \
                     AND substr(dataset, 1, length(?2)) = ?2",
                )
                .map_err(self.sql(what))?;
            let rows = stmt
                .query_map(params![job, prefix], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(self.sql(what))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(self.sql(what))?
        };
        let wanted: BTreeSet<&str> = absent
            .iter()
            .map(String::as_str)
            .filter(|d| d.starts_with(&prefix))
            .collect();
        for gone in known.keys().filter(|d| !wanted.contains(d.as_str())) {
            tx.execute(
                "DELETE FROM absent WHERE job = ?1 AND dataset = ?2",
                params![job, gone],
            )
            .map_err(self.sql(what))?;
        }
        let mut out = Vec::with_capacity(wanted.len());
        for dataset in wanted {
            let since = match known.get(dataset) {
                Some(since) => *since,
                None => {
                    tx.execute(
                        "INSERT INTO absent (job, dataset, client, since) VALUES (?1, ?2, ?3, ?4)",
                        params![job, dataset, client, now],
                    )
                    .map_err(self.sql(what))?;
                    now
                }
            };
            out.push(Absence {
                dataset: dataset.to_string(),
                since,
            });
        }
        tx.commit().map_err(self.sql(what))?;
        Ok(out)
    }

    /// Records that `orphan.dataset` was destroyed, and drops its absence: a dataset made
    /// there later is another replica, absent only from when a listing lacks it.
    pub fn record_orphan_destroyed(&self, orphan: &DestroyedOrphan) -> Result<()> {
        let what = "recording a destroyed orphan";
        let tx = self.conn.unchecked_transaction().map_err(self.sql(what))?;
        tx.execute(
            "DELETE FROM absent WHERE job = ?1 AND dataset = ?2",
            params![orphan.job, orphan.dataset],
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

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn since(list: &[Absence]) -> Vec<(&str, i64)> {
        list.iter().map(|a| (a.dataset.as_str(), a.since)).collect()
    }

    #[test]
    fn absence_counts_from_the_first_run_that_saw_it() {
        let tmp = TempDir::new("absent-first");
        let store = Store::open(tmp.path()).unwrap();
        let got = store
            .note_absent("t", "", "t/r", &names(&["t/r/b"]), 100)
            .unwrap();
        assert_eq!(since(&got), [("t/r/b", 100)]);
        let got = store
            .note_absent("t", "", "t/r", &names(&["t/r/b", "t/r/c"]), 200)
            .unwrap();
        assert_eq!(since(&got), [("t/r/b", 100), ("t/r/c", 200)]);
    }

    #[test]
    fn a_dataset_present_again_starts_over() {
        let tmp = TempDir::new("absent-back");
        let store = Store::open(tmp.path()).unwrap();
        store
            .note_absent("t", "", "t/r", &names(&["t/r/b"]), 100)
            .unwrap();
        assert!(store
            .note_absent("t", "", "t/r", &[], 200)
            .unwrap()
            .is_empty());
        let got = store
            .note_absent("t", "", "t/r", &names(&["t/r/b"]), 300)
            .unwrap();
        assert_eq!(since(&got), [("t/r/b", 300)]);
    }

    #[test]
    fn a_run_speaks_only_for_its_own_base_and_target() {
        let tmp = TempDir::new("absent-base");
        let store = Store::open(tmp.path()).unwrap();
        let cases: [(&str, &str, &[&str]); 3] = [
            ("t", "t/r", &["t/r/b"]),
            ("t", "t/r_x", &["t/r_x/b"]),
            ("u", "t/r", &["t/r/b"]),
        ];
        for (job, base, absent) in cases {
            store
                .note_absent(job, "", base, &names(absent), 100)
                .unwrap();
        }
        // Another base (t/r_x is not below t/r) and another target keep their rows.
        store.note_absent("t", "", "t/r", &[], 200).unwrap();
        let got = store
            .note_absent("t", "", "t/r_x", &names(&["t/r_x/b"]), 300)
            .unwrap();
        assert_eq!(since(&got), [("t/r_x/b", 100)]);
        let got = store
            .note_absent("u", "", "t/r", &names(&["t/r/b", "t/other/c"]), 300)
            .unwrap();
        assert_eq!(since(&got), [("t/r/b", 100)], "outside the base: ignored");
    }

    #[test]
    fn a_destroyed_orphan_is_recorded_and_no_longer_absent() {
        let tmp = TempDir::new("absent-destroyed");
        let store = Store::open(tmp.path()).unwrap();
        store
            .note_absent("t", "k", "t/r", &names(&["t/r/b"]), 100)
            .unwrap();
        let orphan = DestroyedOrphan {
            job: "t".into(),
            dataset: "t/r/b".into(),
            client: "k".into(),
            since: 100,
            destroyed: 500,
        };
        store.record_orphan_destroyed(&orphan).unwrap();
        assert_eq!(store.orphans_destroyed(0).unwrap(), [orphan]);
        assert!(store.orphans_destroyed(501).unwrap().is_empty());
        let got = store
            .note_absent("t", "k", "t/r", &names(&["t/r/b"]), 600)
            .unwrap();
        assert_eq!(since(&got), [("t/r/b", 600)], "a new replica there");
    }
}
