//! The database schema and its migrations.
//!
//! The schema's version is `PRAGMA user_version`: 0 for an empty file, N after the first N
//! steps of [`MIGRATIONS`]. A writer applies the missing steps on open, all in one
//! transaction, so a database is never left half-migrated; so does a reader that may write
//! the file. A reader that may not reads an older history through each missing step's
//! stand-in ([`Step::stand_in`]), or is told who can upgrade it. Steps are only ever
//! appended: an existing step never changes, or databases already past it would differ
//! from new ones.
//!
//! This module owns the tables and indexes; the queries are the store's.

use crate::error::{Error, Result};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::path::Path;

/// One migration step.
pub struct Step {
    /// What takes the schema from the version before to this one.
    pub sql: &'static str,
    /// What a reader that cannot write the file puts in its connection's TEMP schema to read
    /// a database without this step as if it had it: empty stand-ins for what the step adds.
    /// None where the step changes what is there: only an upgrade makes such a database
    /// readable.
    pub stand_in: Option<&'static str>,
}

/// Migration steps; step `i` takes the schema from version `i` to `i + 1`.
///
/// Notes on version 1:
/// - STRICT tables, so a value of the wrong type is refused instead of stored.
/// - GUIDs are TEXT in decimal: they are u64, which SQLite's INTEGER (i64) cannot hold, and
///   decimal is how zfs shows them to someone reading the file with `sqlite3`.
/// - `ended` and `outcome` are NULL while a run or an attempt is in flight.
/// - `attempts.run_id` is NULL for an attempt recorded outside any run.
/// - Indexes serve the filters of `attempts()` and `runs()` (time, dataset+peer+role, peer,
///   outcome) and the per-dataset lookups of `latest_per_dataset()`.
///
/// Notes on version 2 (`zfsync forget`, issue 17):
/// - `retired` holds a dataset, peer and role taken out of `latest_per_dataset()` (and so of
///   status and check) by an operator. `after_id` is the newest attempt of that key when it
///   was retired: an attempt with a higher id (the dataset is replicated again) brings the
///   key back, with no clock involved. `retired` is when, for people.
///
/// Notes on version 3 (the receiver's `--orphans-after`, see `absent.rs`):
/// - `listed`: the datasets a sender's whole dataset list has named, per landing dataset
///   (`base`, full name on the receiver), `job` (the receiver's TARGET) and `client` (the
///   sender's key name, "" without keys): only these can ever be counted absent.
///   `last_listed` is the last list that named it; `absent_since` the first list after it
///   that lacked it while its replica was there (NULL while listed). A row goes when a
///   list lacks it and no replica is there, or when the receiver destroys the replica.
/// - `orphans_destroyed`: the replicas destroyed for it, kept like the runs
///   (`--history-days`).
///
/// Notes on version 4 (what a list may count, and the clock's part in it):
/// - `listed.absent_lists`: how many counted lists in a row have lacked it (0 while
///   listed); a replica goes only after two of them, besides the time.
/// - `listed.absent_guid`: the GUID (decimal) of the replica's newest snapshot when its
///   absence began: a replica whose newest snapshot changes since is still being fed, and
///   its absence ends.
/// - `listings`: when each sender's (job, base, client) last counted list came: a list
///   that comes `--orphans-after` or more after it starts every absence again, and one
///   dated before it notes nothing.
pub const MIGRATIONS: &[Step] = &[
    Step {
        sql: r"
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    role        TEXT    NOT NULL CHECK (role IN ('send', 'recv')),
    job         TEXT    NOT NULL,
    peer        TEXT    NOT NULL,
    started     INTEGER NOT NULL,
    ended       INTEGER,
    done        INTEGER,
    failed      INTEGER,
    up_to_date  INTEGER,
    exit_status INTEGER
) STRICT;
CREATE INDEX runs_started ON runs (started);
CREATE INDEX runs_peer ON runs (peer, started);

CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER REFERENCES runs (id),
    role        TEXT    NOT NULL CHECK (role IN ('send', 'recv')),
    job         TEXT    NOT NULL,
    peer        TEXT    NOT NULL,
    dataset     TEXT    NOT NULL,
    kind        TEXT    CHECK (kind IN ('full', 'incremental', 'resume')),
    from_snap   TEXT,
    from_guid   TEXT,
    to_snap     TEXT,
    to_guid     TEXT,
    raw         INTEGER NOT NULL CHECK (raw IN (0, 1)),
    compressed  INTEGER NOT NULL CHECK (compressed IN (0, 1)),
    attempt     INTEGER NOT NULL,
    started     INTEGER NOT NULL,
    ended       INTEGER,
    outcome     TEXT,
    bytes       INTEGER,
    seconds     REAL,
    error       TEXT,
    CHECK ((from_snap IS NULL) = (from_guid IS NULL)),
    CHECK ((to_snap IS NULL) = (to_guid IS NULL)),
    CHECK ((ended IS NULL) = (outcome IS NULL))
) STRICT;
CREATE INDEX attempts_started ON attempts (started);
CREATE INDEX attempts_dataset ON attempts (dataset, peer, role, started);
CREATE INDEX attempts_peer ON attempts (peer, started);
CREATE INDEX attempts_outcome ON attempts (outcome, started);
CREATE INDEX attempts_run ON attempts (run_id);
",
        stand_in: None,
    },
    Step {
        sql: r"
CREATE TABLE retired (
    dataset     TEXT    NOT NULL,
    peer        TEXT    NOT NULL,
    role        TEXT    NOT NULL CHECK (role IN ('send', 'recv')),
    after_id    INTEGER NOT NULL,
    retired     INTEGER NOT NULL,
    PRIMARY KEY (dataset, peer, role)
) STRICT;
",
        // Nothing retired.
        stand_in: Some(
            "CREATE TEMP TABLE retired (dataset TEXT, peer TEXT, role TEXT, after_id INTEGER, \
             retired INTEGER)",
        ),
    },
    Step {
        sql: r"
CREATE TABLE listed (
    job          TEXT    NOT NULL,
    base         TEXT    NOT NULL,
    client       TEXT    NOT NULL,
    dataset      TEXT    NOT NULL,
    last_listed  INTEGER NOT NULL,
    absent_since INTEGER,
    PRIMARY KEY (job, base, client, dataset)
) STRICT;

CREATE TABLE orphans_destroyed (
    id          INTEGER PRIMARY KEY,
    job         TEXT    NOT NULL,
    dataset     TEXT    NOT NULL,
    client      TEXT    NOT NULL,
    since       INTEGER NOT NULL,
    destroyed   INTEGER NOT NULL
) STRICT;
CREATE INDEX orphans_destroyed_at ON orphans_destroyed (destroyed);
",
        // Nothing listed, nothing destroyed: what readers may look at.
        stand_in: Some(
            "CREATE TEMP TABLE listed (job TEXT, base TEXT, client TEXT, dataset TEXT, \
             last_listed INTEGER, absent_since INTEGER); \
             CREATE TEMP TABLE orphans_destroyed (id INTEGER PRIMARY KEY, job TEXT, \
             dataset TEXT, client TEXT, since INTEGER, destroyed INTEGER)",
        ),
    },
    Step {
        sql: r"
ALTER TABLE listed ADD COLUMN absent_lists INTEGER NOT NULL DEFAULT 0;
ALTER TABLE listed ADD COLUMN absent_guid TEXT;
UPDATE listed SET absent_lists = 1 WHERE absent_since IS NOT NULL;

CREATE TABLE listings (
    job          TEXT    NOT NULL,
    base         TEXT    NOT NULL,
    client       TEXT    NOT NULL,
    last_whole   INTEGER NOT NULL,
    PRIMARY KEY (job, base, client)
) STRICT;
",
        // Nothing listed: a TEMP `listed` with the new columns hides the file's (step 3's
        // stand-in, if it ran, is replaced).
        stand_in: Some(
            "DROP TABLE IF EXISTS temp.listed; \
             CREATE TEMP TABLE listed (job TEXT, base TEXT, client TEXT, dataset TEXT, \
             last_listed INTEGER, absent_since INTEGER, absent_lists INTEGER, \
             absent_guid TEXT); \
             CREATE TEMP TABLE listings (job TEXT, base TEXT, client TEXT, \
             last_whole INTEGER)",
        ),
    },
];

/// The schema version this code reads and writes.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

pub fn version(conn: &Connection, path: &Path) -> Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })
}

fn check_not_newer(path: &Path, found: i64) -> Result<()> {
    if found > latest() {
        return Err(Error::TooNew {
            path: path.to_owned(),
            found,
            known: latest(),
        });
    }
    Ok(())
}

/// Brings the schema up to [`latest`], or refuses a database from a newer zfsync.
pub fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    // The common case (up to date) takes no write lock.
    let found = version(conn, path)?;
    check_not_newer(path, found)?;
    if found == latest() {
        return Ok(());
    }
    // IMMEDIATE: two processes opening a new database at once must not both migrate it.
    let migrate_err = |to: i64| {
        move |source| Error::Migrate {
            path: path.to_owned(),
            to,
            source,
        }
    };
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .map_err(migrate_err(latest()))?;
    let found = version(&tx, path)?;
    check_not_newer(path, found)?;
    for (from, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let to = from as i64 + 1;
        tx.execute_batch(step.sql).map_err(migrate_err(to))?;
        tx.pragma_update(None, "user_version", to)
            .map_err(migrate_err(to))?;
    }
    tx.commit().map_err(migrate_err(latest()))
}

/// Makes `conn`, a reader's connection, read the database as [`latest`]: as it is when it
/// is up to date, else through the stand-ins of the steps it lacks, in `conn`'s TEMP schema
/// (the file is not touched). Refuses a database from a newer zfsync, and one that lacks
/// a step without a stand-in or is not a history at all (version 0).
pub fn read_as_latest(conn: &Connection, path: &Path) -> Result<()> {
    let found = version(conn, path)?;
    check_not_newer(path, found)?;
    let stand_ins: Option<Vec<&str>> = MIGRATIONS[found as usize..]
        .iter()
        .map(|step| step.stand_in)
        .collect();
    let stand_ins = match stand_ins {
        Some(s) if found > 0 => s,
        _ => {
            return Err(Error::TooOld {
                path: path.to_owned(),
                found,
                known: latest(),
            })
        }
    };
    for sql in stand_ins {
        conn.execute_batch(sql).map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(())
}
