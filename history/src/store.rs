//! [`Store`]: one connection to `history.sqlite`, and every query zfsync makes of it.
//!
//! This module owns the SQL (inserts, filters, the per-dataset summary, trimming) and the
//! connection's settings (WAL, `synchronous=NORMAL`, busy timeout, foreign keys). It reads
//! no clock: every time comes from the caller.

use crate::error::{Error, Result};
use crate::record::{
    Attempt, AttemptEnd, AttemptId, AttemptQuery, AttemptStart, DatasetStatus, DayTotal, Kind,
    Outcome, Role, Run, RunEnd, RunId, RunQuery, RunStart, SnapshotRef, Streamed,
};
use crate::schema;
use rusqlite::types::{Type, Value};
use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension, Row};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The database's file name inside the state directory.
pub const FILE_NAME: &str = "history.sqlite";

/// How long a statement waits for another process's write lock before it fails. Writes are
/// single small rows, so a lock held longer than this means something is wrong.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const ATTEMPT_COLUMNS: &str = "id, run_id, role, job, peer, dataset, kind, from_snap, \
     from_guid, to_snap, to_guid, raw, compressed, attempt, started, ended, outcome, bytes, \
     seconds, error";

const RUN_COLUMNS: &str =
    "id, role, job, peer, started, ended, done, failed, up_to_date, exit_status";

/// The error text given to attempts still in flight when their run ends.
pub const ABANDONED: &str = "the run ended before this attempt finished";

/// The error text given to attempts left in flight by a run whose process died (killed,
/// or the machine stopped), when [`Store::interrupt_runs`] closes them.
pub const INTERRUPTED: &str = "interrupted: the process recording this run ended before the attempt did (killed, or the machine stopped)";

/// The exit status recorded for a run closed by [`Store::interrupt_runs`]: no process
/// exits with it, so it cannot be mistaken for a real one.
pub const INTERRUPTED_STATUS: i32 = -1;

/// A connection to the history database. It is `Send` but not `Sync`: use it from one
/// thread, or share it behind a `Mutex`. Several processes may use the same file at once.
pub struct Store {
    pub(crate) conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens `dir/history.sqlite` for writing, creating the directory and the file if
    /// needed, and migrates its schema.
    pub fn open(dir: &Path) -> Result<Store> {
        fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
            dir: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let conn = open_with(&path, OpenFlags::default())?;
        let open_err = |source| Error::Open {
            path: path.clone(),
            source,
        };
        // WAL: readers (status, the page) never wait for a writer, nor a writer for them.
        // A file system without shared memory keeps its old mode; that still works, with
        // readers and writers waiting for each other up to the busy timeout.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .map_err(open_err)?;
        // NORMAL in WAL mode: a power cut may lose the last few rows, never corrupt the
        // file; history is not worth an fsync per row.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_err)?;
        schema::migrate(&conn, &path)?;
        Ok(Store { conn, path })
    }

    /// Opens `dir/history.sqlite` for reading only. Creates nothing: a missing file is
    /// [`Error::Missing`]. A history older than this code's is upgraded first when this
    /// process may write it (as a writer would on open: monitoring reads right after an
    /// upgrade of zfsync, without waiting for the next replication), else read through
    /// the stand-ins of what it lacks; one that is neither is [`Error::TooOld`]. One from
    /// a newer zfsync is [`Error::TooNew`].
    ///
    /// A WAL reader maps the `history.sqlite-shm` file beside the database: a reader that may
    /// not write the directory can read only while a writer has the database open.
    pub fn open_read_only(dir: &Path) -> Result<Store> {
        Store::open_reader(dir, true)
    }

    /// [`Store::open_read_only`]; `upgrade` false reads an older history as a process that
    /// may not write it does.
    fn open_reader(dir: &Path, upgrade: bool) -> Result<Store> {
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            return Err(Error::Missing { path });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = open_with(&path, flags)?;
        let found = schema::version(&conn, &path)?;
        if upgrade && (1..schema::latest()).contains(&found) {
            // Not creating: the file is there. Failing (no right to write, a full disk, a
            // writer holding the lock) leaves the reading to the stand-ins.
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let _ = open_with(&path, flags).and_then(|rw| schema::migrate(&rw, &path));
        }
        schema::read_as_latest(&conn, &path)?;
        Ok(Store { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal mode in force ("wal" unless the file system cannot do it).
    pub fn journal_mode(&self) -> Result<String> {
        self.conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .map_err(self.sql("reading the journal mode"))
    }

    pub(crate) fn sql(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
        move |source| Error::Sqlite {
            path: self.path.clone(),
            what,
            source,
        }
    }

    /// Records the start of a run.
    pub fn begin_run(&self, run: &RunStart) -> Result<RunId> {
        self.conn
            .execute(
                "INSERT INTO runs (role, job, peer, started) VALUES (?1, ?2, ?3, ?4)",
                params![run.role.as_str(), run.job, run.peer, run.started],
            )
            .map_err(self.sql("recording the start of a run"))?;
        Ok(RunId(self.conn.last_insert_rowid()))
    }

    /// Records the end of a run. Attempts of the run still in flight are closed as failed
    /// with the error [`ABANDONED`]: nothing will finish them any more.
    pub fn end_run(&self, id: RunId, end: &RunEnd) -> Result<()> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(self.sql("recording the end of a run"))?;
        let changed = set_run_end(&tx, id, end).map_err(self.sql("recording the end of a run"))?;
        if changed == 0 {
            return Err(Error::UnknownRun {
                path: self.path.clone(),
                id,
            });
        }
        tx.execute(
            "UPDATE attempts SET ended = ?2, outcome = ?3, error = ?4 \
             WHERE run_id = ?1 AND ended IS NULL",
            params![id.0, end.ended, Outcome::Failed.as_str(), ABANDONED],
        )
        .map_err(self.sql("closing the attempts of an ended run"))?;
        tx.commit().map_err(self.sql("recording the end of a run"))
    }

    /// Records a finished attempt in one insert.
    pub fn record_attempt(&self, start: &AttemptStart, end: &AttemptEnd) -> Result<AttemptId> {
        self.insert_attempt(start, Some(end), "recording an attempt")
    }

    /// Records the start of an attempt, in flight until [`finish_attempt`](Self::finish_attempt).
    pub fn start_attempt(&self, start: &AttemptStart) -> Result<AttemptId> {
        self.insert_attempt(start, None, "recording the start of an attempt")
    }

    fn insert_attempt(
        &self,
        a: &AttemptStart,
        end: Option<&AttemptEnd>,
        what: &'static str,
    ) -> Result<AttemptId> {
        let (from_snap, from_guid) = snapshot_to_sql(&a.from);
        let (to_snap, to_guid) = snapshot_to_sql(&a.to);
        self.conn
            .execute(
                &format!(
                    "INSERT INTO attempts ({ATTEMPT_COLUMNS}) VALUES (NULL, ?1, ?2, ?3, ?4, \
                     ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
                ),
                params![
                    a.run.map(|r| r.0),
                    a.role.as_str(),
                    a.job,
                    a.peer,
                    a.dataset,
                    a.kind.map(Kind::as_str),
                    from_snap,
                    from_guid,
                    to_snap,
                    to_guid,
                    a.raw,
                    a.compressed,
                    a.attempt,
                    a.started,
                    end.map(|e| e.ended),
                    end.map(|e| e.outcome.as_str()),
                    end.map(|e| bytes_to_sql(e.bytes)),
                    end.map(|e| e.seconds),
                    end.and_then(|e| e.error.as_deref()),
                ],
            )
            .map_err(self.sql(what))?;
        Ok(AttemptId(self.conn.last_insert_rowid()))
    }

    /// Records the end of an attempt begun with [`start_attempt`](Self::start_attempt).
    pub fn finish_attempt(&self, id: AttemptId, end: &AttemptEnd) -> Result<()> {
        let changed = self
            .conn
            .execute(
                "UPDATE attempts SET ended = ?2, outcome = ?3, bytes = ?4, seconds = ?5, \
                 error = ?6 WHERE id = ?1 AND ended IS NULL",
                params![
                    id.0,
                    end.ended,
                    end.outcome.as_str(),
                    bytes_to_sql(end.bytes),
                    end.seconds,
                    end.error
                ],
            )
            .map_err(self.sql("recording the end of an attempt"))?;
        if changed == 0 {
            return Err(Error::UnknownAttempt {
                path: self.path.clone(),
                id,
            });
        }
        Ok(())
    }

    /// Records the end of an attempt begun with [`start_attempt`](Self::start_attempt),
    /// with what it turned out to stream: kind, snapshots, raw and compressed replace what
    /// its start said (a sender starts an attempt before the receiver has chosen).
    pub fn finish_attempt_with(
        &self,
        id: AttemptId,
        streamed: &Streamed,
        end: &AttemptEnd,
    ) -> Result<()> {
        let what = "recording the end of an attempt";
        let tx = self.conn.unchecked_transaction().map_err(self.sql(what))?;
        let (from_snap, from_guid) = snapshot_to_sql(&streamed.from);
        let (to_snap, to_guid) = snapshot_to_sql(&streamed.to);
        tx.execute(
            "UPDATE attempts SET kind = ?2, from_snap = ?3, from_guid = ?4, to_snap = ?5, \
             to_guid = ?6, raw = ?7, compressed = ?8 WHERE id = ?1 AND ended IS NULL",
            params![
                id.0,
                streamed.kind.map(Kind::as_str),
                from_snap,
                from_guid,
                to_snap,
                to_guid,
                streamed.raw,
                streamed.compressed
            ],
        )
        .map_err(self.sql(what))?;
        self.finish_attempt(id, end)?;
        tx.commit().map_err(self.sql(what))
    }

    /// Closes the unfinished runs of `role`'s `job`, for a caller that knows no process of
    /// that job runs any more (it holds the job's [`JobLock`](crate::JobLock)): their
    /// processes died without ending them. Call it before [`begin_run`](Self::begin_run).
    ///
    /// Each such run ends at the last time recorded for it (its attempts' starts and ends,
    /// else its own start), with exit status [`INTERRUPTED_STATUS`] and the counts of its
    /// datasets' last attempts; its attempts still in flight end then too, as failed with
    /// the error [`INTERRUPTED`]. Returns the runs closed, oldest first.
    pub fn interrupt_runs(&self, role: Role, job: &str) -> Result<Vec<RunId>> {
        let what = "closing interrupted runs";
        let tx = self.conn.unchecked_transaction().map_err(self.sql(what))?;
        let ids: Vec<RunId> = {
            let mut stmt = tx
                .prepare(
                    "SELECT id FROM runs WHERE role = ?1 AND job = ?2 AND ended IS NULL \
                     ORDER BY started, id",
                )
                .map_err(self.sql(what))?;
            let rows = stmt
                .query_map(params![role.as_str(), job], |row| row.get(0).map(RunId))
                .map_err(self.sql(what))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(self.sql(what))?
        };
        for id in &ids {
            let last: i64 = tx
                .query_row(
                    "SELECT MAX(r.started, COALESCE((SELECT MAX(MAX(a.started, \
                     COALESCE(a.ended, a.started))) FROM attempts a WHERE a.run_id = r.id), \
                     r.started)) FROM runs r WHERE r.id = ?1",
                    params![id.0],
                    |row| row.get(0),
                )
                .map_err(self.sql(what))?;
            tx.execute(
                "UPDATE attempts SET ended = ?2, outcome = ?3, error = ?4 \
                 WHERE run_id = ?1 AND ended IS NULL",
                params![id.0, last, Outcome::Failed.as_str(), INTERRUPTED],
            )
            .map_err(self.sql(what))?;
            // Per dataset, its last attempt in the run: a retried dataset counts once.
            let count = |pick: fn(Outcome) -> bool| -> rusqlite::Result<u32> {
                tx.query_row(
                    &format!(
                        "SELECT COUNT(*) FROM attempts a WHERE a.run_id = ?1 AND a.outcome IN \
                         ({}) AND a.id = (SELECT MAX(b.id) FROM attempts b WHERE \
                         b.run_id = a.run_id AND b.dataset = a.dataset AND b.peer = a.peer)",
                        outcome_list(pick)
                    ),
                    params![id.0],
                    |row| row.get(0),
                )
            };
            let end = RunEnd {
                ended: last,
                done: count(|o| o == Outcome::Done).map_err(self.sql(what))?,
                failed: count(Outcome::is_failure).map_err(self.sql(what))?,
                up_to_date: count(|o| o == Outcome::UpToDate).map_err(self.sql(what))?,
                exit_status: INTERRUPTED_STATUS,
            };
            set_run_end(&tx, *id, &end).map_err(self.sql(what))?;
        }
        tx.commit().map_err(self.sql(what))?;
        Ok(ids)
    }

    /// Attempts matching `q`, newest first.
    pub fn attempts(&self, q: &AttemptQuery) -> Result<Vec<Attempt>> {
        let mut filter = Filter::default();
        filter.time(q.since, q.until);
        filter.eq("dataset", q.dataset.clone());
        filter.eq("role", q.role.map(|r| r.as_str().to_owned()));
        filter.eq("peer", q.peer.clone());
        filter.eq("job", q.job.clone());
        filter.eq("outcome", q.outcome.map(|o| o.as_str().to_owned()));
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts{} ORDER BY started DESC, id DESC LIMIT ?",
            filter.clause()
        );
        self.select(
            &sql,
            filter.limit(q.limit),
            attempt_from_row,
            "reading attempts",
        )
    }

    /// Runs matching `q`, newest first.
    pub fn runs(&self, q: &RunQuery) -> Result<Vec<Run>> {
        let mut filter = Filter::default();
        filter.time(q.since, q.until);
        filter.eq("role", q.role.map(|r| r.as_str().to_owned()));
        filter.eq("peer", q.peer.clone());
        filter.eq("job", q.job.clone());
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs{} ORDER BY started DESC, id DESC LIMIT ?",
            filter.clause()
        );
        self.select(&sql, filter.limit(q.limit), run_from_row, "reading runs")
    }

    fn select<T>(
        &self,
        sql: &str,
        values: Vec<Value>,
        from_row: fn(&Row) -> rusqlite::Result<T>,
        what: &'static str,
    ) -> Result<Vec<T>> {
        let run = || -> rusqlite::Result<Vec<T>> {
            let mut stmt = self.conn.prepare_cached(sql)?;
            let rows = stmt.query_map(params_from_iter(values), from_row)?;
            rows.collect()
        };
        run().map_err(self.sql(what))
    }

    /// Where each dataset stands, per dataset, peer and role (in that order); those
    /// [retired](Store::retire) and not attempted since are left out.
    pub fn latest_per_dataset(&self) -> Result<Vec<DatasetStatus>> {
        let what = "summarising the history per dataset";
        // One read transaction: every dataset's summary from the same moment.
        let tx = self.conn.unchecked_transaction().map_err(self.sql(what))?;
        let keys = {
            let mut stmt = tx
                .prepare(
                    "SELECT DISTINCT dataset, peer, role FROM attempts \
                     ORDER BY dataset, peer, role",
                )
                .map_err(self.sql(what))?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        role_at(row, 2)?,
                    ))
                })
                .map_err(self.sql(what))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(self.sql(what))?
        };
        let mut out = Vec::with_capacity(keys.len());
        for (dataset, peer, role) in keys {
            let summary = self
                .summarise(&dataset, &peer, role)
                .map_err(self.sql(what))?;
            if let Some(status) = summary {
                out.push(status);
            }
        }
        tx.commit().map_err(self.sql(what))?;
        Ok(out)
    }

    fn summarise(
        &self,
        dataset: &str,
        peer: &str,
        role: Role,
    ) -> rusqlite::Result<Option<DatasetStatus>> {
        let key = "dataset = ?1 AND peer = ?2 AND role = ?3";
        let newest = |extra: &str| -> rusqlite::Result<Option<Attempt>> {
            self.conn
                .prepare_cached(&format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE {key}{extra} \
                     ORDER BY started DESC, id DESC LIMIT 1"
                ))?
                .query_row(params![dataset, peer, role.as_str()], attempt_from_row)
                .optional()
        };
        let successes = format!(" AND outcome IN ({})", outcome_list(Outcome::is_success));
        let failures = format!(" AND outcome IN ({})", outcome_list(Outcome::is_failure));
        let Some(last) = newest("")? else {
            return Ok(None);
        };
        let retired_after: Option<i64> = self
            .conn
            .prepare_cached(&format!("SELECT after_id FROM retired WHERE {key}"))?
            .query_row(params![dataset, peer, role.as_str()], |row| row.get(0))
            .optional()?;
        if retired_after.is_some_and(|after| last.id.0 <= after) {
            return Ok(None);
        }
        let last_success = newest(&successes)?;
        let last_failure = newest(&failures)?;
        // "After the last success" in the same order as "newest": start time, then id.
        let (after_started, after_id) = match &last_success {
            Some(s) => (s.start.started, s.id.0),
            None => (i64::MIN, i64::MIN),
        };
        let failures_since_success: i64 = self
            .conn
            .prepare_cached(&format!(
                "SELECT COUNT(*) FROM attempts WHERE {key}{failures} \
                 AND (started > ?4 OR (started = ?4 AND id > ?5))"
            ))?
            .query_row(
                params![dataset, peer, role.as_str(), after_started, after_id],
                |row| row.get(0),
            )?;
        Ok(Some(DatasetStatus {
            dataset: dataset.to_owned(),
            peer: peer.to_owned(),
            role,
            in_flight: last.end.is_none(),
            last,
            last_success,
            last_failure,
            failures_since_success: failures_since_success as u64,
        }))
    }

    /// Retires `dataset`'s replica with `peer` on side `role` (`zfsync forget`): it is left
    /// out of [`Store::latest_per_dataset`] until an attempt of it newer than the newest
    /// today is recorded. Returns false, and changes nothing, when the history has no
    /// attempt of it. `at` (unix seconds) is kept for people reading the file.
    pub fn retire(&self, dataset: &str, peer: &str, role: Role, at: i64) -> Result<bool> {
        let what = "retiring a dataset";
        let changed = self
            .conn
            .execute(
                "INSERT OR REPLACE INTO retired (dataset, peer, role, after_id, retired) \
                 SELECT ?1, ?2, ?3, MAX(id), ?4 FROM attempts \
                 WHERE dataset = ?1 AND peer = ?2 AND role = ?3 HAVING COUNT(*) > 0",
                params![dataset, peer, role.as_str(), at],
            )
            .map_err(self.sql(what))?;
        Ok(changed > 0)
    }

    /// Stream bytes and streams of the finished attempts with outcome `done` of one side's
    /// `job`, per UTC day (unix seconds / 86400) of their start, for the days from `since`
    /// (unix seconds) on, oldest first. One aggregate query: at most one row a day,
    /// however many attempts the days hold.
    pub fn bytes_per_day(&self, role: Role, job: &str, since: i64) -> Result<Vec<DayTotal>> {
        let sql = "SELECT started / 86400 AS day, SUM(bytes), COUNT(*) FROM attempts \
                   WHERE role = ? AND job = ? AND outcome = 'done' AND started >= ? \
                   GROUP BY day ORDER BY day LIMIT 100000";
        let values = vec![
            Value::Text(role.as_str().to_owned()),
            Value::Text(job.to_owned()),
            Value::Integer(since),
        ];
        self.select(
            sql,
            values,
            |row| {
                Ok(DayTotal {
                    day: row.get(0)?,
                    bytes: row.get::<_, Option<i64>>(1)?.unwrap_or(0).max(0) as u64,
                    streams: row.get::<_, i64>(2)?.max(0) as u64,
                })
            },
            "summing bytes per day",
        )
    }

    /// Deletes what started before `older_than` (unix seconds; the caller's now minus the
    /// age to keep), and returns how many rows went (attempts, runs and destroyed orphans).
    ///
    /// For each dataset, peer and role, the newest attempt and the newest success are kept
    /// whatever their age, so `latest_per_dataset` still knows where an idle or failing
    /// dataset stands; runs go once no kept attempt belongs to them.
    pub fn trim(&self, older_than: i64) -> Result<usize> {
        let what = "trimming the history";
        let tx = self.conn.unchecked_transaction().map_err(self.sql(what))?;
        let newest = |extra: &str| {
            format!(
                "SELECT (SELECT b.id FROM attempts b WHERE b.dataset = k.dataset \
                 AND b.peer = k.peer AND b.role = k.role{extra} \
                 ORDER BY b.started DESC, b.id DESC LIMIT 1) AS id \
                 FROM (SELECT DISTINCT dataset, peer, role FROM attempts) k"
            )
        };
        let successes = format!(" AND b.outcome IN ({})", outcome_list(Outcome::is_success));
        // NULLs (a key with no success) are left out: `id NOT IN (.., NULL)` is never true.
        let attempts = tx
            .execute(
                &format!(
                    "DELETE FROM attempts WHERE started < ?1 AND id NOT IN \
                     (SELECT id FROM ({} UNION {}) WHERE id IS NOT NULL)",
                    newest(""),
                    newest(&successes)
                ),
                params![older_than],
            )
            .map_err(self.sql(what))?;
        let runs = tx
            .execute(
                "DELETE FROM runs WHERE started < ?1 AND id NOT IN \
                 (SELECT run_id FROM attempts WHERE run_id IS NOT NULL)",
                params![older_than],
            )
            .map_err(self.sql(what))?;
        let orphans = tx
            .execute(
                "DELETE FROM orphans_destroyed WHERE destroyed < ?1",
                params![older_than],
            )
            .map_err(self.sql(what))?;
        tx.commit().map_err(self.sql(what))?;
        Ok(attempts + runs + orphans)
    }
}

/// A WHERE clause and its values, built from a query's filters.
#[derive(Default)]
struct Filter {
    conditions: Vec<String>,
    values: Vec<Value>,
}

impl Filter {
    fn time(&mut self, since: Option<i64>, until: Option<i64>) {
        if let Some(since) = since {
            self.conditions.push("started >= ?".into());
            self.values.push(Value::Integer(since));
        }
        if let Some(until) = until {
            self.conditions.push("started < ?".into());
            self.values.push(Value::Integer(until));
        }
    }

    /// `column` is one of this module's literals, never input.
    fn eq(&mut self, column: &'static str, value: Option<String>) {
        if let Some(value) = value {
            self.conditions.push(format!("{column} = ?"));
            self.values.push(Value::Text(value));
        }
    }

    fn clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        }
    }

    /// The values, with the LIMIT's last (-1: no limit, as SQLite reads it).
    fn limit(mut self, limit: Option<usize>) -> Vec<Value> {
        let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        self.values.push(Value::Integer(limit));
        self.values
    }
}

/// `'done', 'up-to-date'`: the outcomes for which `pick` holds, as an SQL list. The names
/// are this crate's constants, so they need no escaping.
fn outcome_list(pick: fn(Outcome) -> bool) -> String {
    Outcome::ALL
        .into_iter()
        .filter(|o| pick(*o))
        .map(|o| format!("'{}'", o.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Ends run `id` if it has not ended; how many rows changed (0 or 1).
fn set_run_end(conn: &Connection, id: RunId, end: &RunEnd) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE runs SET ended = ?2, done = ?3, failed = ?4, up_to_date = ?5, \
         exit_status = ?6 WHERE id = ?1 AND ended IS NULL",
        params![
            id.0,
            end.ended,
            end.done,
            end.failed,
            end.up_to_date,
            end.exit_status
        ],
    )
}

/// A snapshot as its name and GUID columns (GUIDs are decimal text: see the schema).
fn snapshot_to_sql(s: &Option<SnapshotRef>) -> (Option<String>, Option<String>) {
    match s {
        Some(s) => (Some(s.name.clone()), Some(s.guid.to_string())),
        None => (None, None),
    }
}

/// Stream sizes are u64; SQLite's integers are i64. No stream reaches 8 EiB, but a bogus
/// count must not fail the insert.
fn bytes_to_sql(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// A value this code cannot read (written by a newer zfsync, or edited by hand).
#[derive(Debug)]
struct Unreadable(String);

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (written by a newer zfsync?)", self.0)
    }
}

impl std::error::Error for Unreadable {}

fn unreadable(idx: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(Unreadable(what)))
}

fn parsed_at<T>(
    row: &Row,
    idx: usize,
    what: &str,
    parse: fn(&str) -> Option<T>,
) -> rusqlite::Result<Option<T>> {
    match row.get::<_, Option<String>>(idx)? {
        None => Ok(None),
        Some(s) => match parse(&s) {
            Some(v) => Ok(Some(v)),
            None => Err(unreadable(idx, format!("unknown {what} {s:?}"))),
        },
    }
}

fn role_at(row: &Row, idx: usize) -> rusqlite::Result<Role> {
    parsed_at(row, idx, "role", Role::parse)?.ok_or_else(|| unreadable(idx, "no role".into()))
}

/// A snapshot from its name and GUID columns (the schema keeps both or neither).
fn snapshot_at(row: &Row, idx: usize) -> rusqlite::Result<Option<SnapshotRef>> {
    let name: Option<String> = row.get(idx)?;
    let guid = parsed_at(row, idx + 1, "GUID", |s| s.parse::<u64>().ok())?;
    Ok(name
        .zip(guid)
        .map(|(name, guid)| SnapshotRef { name, guid }))
}

/// One row of `SELECT ATTEMPT_COLUMNS`.
fn attempt_from_row(row: &Row) -> rusqlite::Result<Attempt> {
    let start = AttemptStart {
        run: row.get::<_, Option<i64>>(1)?.map(RunId),
        role: role_at(row, 2)?,
        job: row.get(3)?,
        peer: row.get(4)?,
        dataset: row.get(5)?,
        kind: parsed_at(row, 6, "kind", Kind::parse)?,
        from: snapshot_at(row, 7)?,
        to: snapshot_at(row, 9)?,
        raw: row.get(11)?,
        compressed: row.get(12)?,
        attempt: row.get(13)?,
        started: row.get(14)?,
    };
    let end = match row.get::<_, Option<i64>>(15)? {
        None => None,
        Some(ended) => Some(AttemptEnd {
            ended,
            outcome: parsed_at(row, 16, "outcome", Outcome::parse)?
                .ok_or_else(|| unreadable(16, "an end with no outcome".into()))?,
            bytes: row.get::<_, Option<i64>>(17)?.unwrap_or(0).max(0) as u64,
            seconds: row.get::<_, Option<f64>>(18)?.unwrap_or(0.0),
            error: row.get(19)?,
        }),
    };
    Ok(Attempt {
        id: AttemptId(row.get(0)?),
        start,
        end,
    })
}

/// One row of `SELECT RUN_COLUMNS`.
fn run_from_row(row: &Row) -> rusqlite::Result<Run> {
    let end = match row.get::<_, Option<i64>>(5)? {
        None => None,
        Some(ended) => Some(RunEnd {
            ended,
            done: row.get::<_, Option<u32>>(6)?.unwrap_or(0),
            failed: row.get::<_, Option<u32>>(7)?.unwrap_or(0),
            up_to_date: row.get::<_, Option<u32>>(8)?.unwrap_or(0),
            exit_status: row.get::<_, Option<i32>>(9)?.unwrap_or(0),
        }),
    };
    Ok(Run {
        id: RunId(row.get(0)?),
        start: RunStart {
            role: role_at(row, 1)?,
            job: row.get(2)?,
            peer: row.get(3)?,
            started: row.get(4)?,
        },
        end,
    })
}

/// A connection to `path` with `flags` that waits for other processes' locks.
fn open_with(path: &Path, flags: OpenFlags) -> Result<Connection> {
    let open_err = |source| Error::Open {
        path: path.to_owned(),
        source,
    };
    let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{end, start, TempDir};

    fn open(dir: &TempDir) -> Store {
        Store::open(dir.path()).expect("open the history")
    }

    fn raw(store: &Store) -> Connection {
        Connection::open(store.path()).expect("open the file directly")
    }

    fn ids(attempts: &[Attempt]) -> Vec<i64> {
        attempts.iter().map(|a| a.id.0).collect()
    }

    fn all(store: &Store) -> Vec<Attempt> {
        store.attempts(&AttemptQuery::default()).unwrap()
    }

    /// Records a finished attempt of `dataset` started at `started`; returns its id.
    fn record(store: &Store, dataset: &str, started: i64, outcome: &str) -> i64 {
        let mut e = end(started, outcome);
        if Outcome::parse(outcome).unwrap().is_failure() {
            e.error = Some(format!("{outcome} at {started}"));
        }
        store
            .record_attempt(&start(dataset, started), &e)
            .unwrap()
            .0
    }

    fn run_start(started: i64) -> RunStart {
        RunStart {
            role: Role::Send,
            job: "nightly".into(),
            peer: "backup:9000".into(),
            started,
        }
    }

    fn run_end(ended: i64) -> RunEnd {
        RunEnd {
            ended,
            done: 3,
            failed: 1,
            up_to_date: 2,
            exit_status: 1,
        }
    }

    /// A new history with runs 1 and 2, so attempts of `start()` (run 1) satisfy the
    /// foreign key.
    fn with_runs(name: &str) -> (TempDir, Store) {
        let tmp = TempDir::new(name);
        let store = open(&tmp);
        assert_eq!(store.begin_run(&run_start(1)).unwrap(), RunId(1));
        assert_eq!(store.begin_run(&run_start(2)).unwrap(), RunId(2));
        (tmp, store)
    }

    fn status<'a>(all: &'a [DatasetStatus], dataset: &str) -> &'a DatasetStatus {
        all.iter().find(|s| s.dataset == dataset).expect("a status")
    }

    #[test]
    fn open_creates_the_directory_and_the_schema() {
        let tmp = TempDir::new("create");
        let dir = tmp.path().join("state/sub");
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.path(), dir.join("history.sqlite"));
        assert!(store.path().is_file());
        assert_eq!(schema::version(&store.conn, store.path()).unwrap(), 4);
        assert_eq!(schema::latest(), 4);
        assert!(all(&store).is_empty());
    }

    #[test]
    fn reopening_keeps_the_rows() {
        let (tmp, store) = with_runs("reopen");
        record(&store, "tank/a", 100, "done");
        drop(store);
        let store = open(&tmp);
        assert_eq!(ids(&all(&store)), [1]);
        assert_eq!(store.runs(&RunQuery::default()).unwrap().len(), 2);
    }

    #[test]
    fn a_newer_schema_is_refused_by_writers_and_readers() {
        let tmp = TempDir::new("newer");
        let store = open(&tmp);
        raw(&store).pragma_update(None, "user_version", 5).unwrap();
        drop(store);
        let want = "history database version 5 is newer than this zfsync (knows up to 4): \
                    upgrade zfsync";
        for result in [Store::open(tmp.path()), Store::open_read_only(tmp.path())] {
            let err = result.err().expect("refused");
            assert!(
                matches!(
                    err,
                    Error::TooNew {
                        found: 5,
                        known: 4,
                        ..
                    }
                ),
                "{err:?}"
            );
            assert!(err.to_string().ends_with(want), "{err}");
        }
    }

    #[test]
    fn a_reader_refuses_a_schema_it_would_have_to_migrate() {
        let tmp = TempDir::new("older");
        Connection::open(tmp.path().join(FILE_NAME))
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let err = Store::open_read_only(tmp.path()).err().expect("refused");
        assert!(
            matches!(
                err,
                Error::TooOld {
                    found: 0,
                    known: 4,
                    ..
                }
            ),
            "{err:?}"
        );
        // A writer migrates it.
        let store = open(&tmp);
        assert_eq!(schema::version(&store.conn, store.path()).unwrap(), 4);
        assert!(Store::open_read_only(tmp.path()).is_ok());
    }

    #[test]
    fn a_reader_creates_nothing() {
        let tmp = TempDir::new("missing");
        let dir = tmp.path().join("nothing-here");
        let err = Store::open_read_only(&dir).err().expect("no file");
        assert!(matches!(err, Error::Missing { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("no history database at "),
            "{err}"
        );
        assert!(!dir.exists());
    }

    #[test]
    fn a_reader_cannot_write() {
        let tmp = TempDir::new("reader-write");
        drop(open(&tmp));
        let reader = Store::open_read_only(tmp.path()).unwrap();
        let err = reader.begin_run(&run_start(1)).unwrap_err();
        assert!(matches!(err, Error::Sqlite { .. }), "{err:?}");
    }

    #[test]
    fn an_unwritable_state_directory_is_a_clear_error() {
        // A path under a regular file: refused even to root, which may write anywhere else.
        let tmp = TempDir::new("unwritable");
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = Store::open(&file.join("state")).err().expect("refused");
        assert!(matches!(err, Error::CreateDir { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "cannot create the state directory {}/state: ",
                file.display()
            )),
            "{msg}"
        );
        assert!(
            msg.ends_with("--state-dir must name a directory this user can create and write"),
            "{msg}"
        );
    }

    #[test]
    fn an_unopenable_database_file_is_a_clear_error() {
        let tmp = TempDir::new("unopenable");
        std::fs::create_dir(tmp.path().join(FILE_NAME)).unwrap();
        let err = Store::open(tmp.path()).err().expect("refused");
        assert!(matches!(err, Error::Open { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("cannot open the history database "),
            "{msg}"
        );
        assert!(
            msg.contains("check that its directory is writable"),
            "{msg}"
        );
    }

    #[test]
    fn the_journal_is_a_write_ahead_log() {
        let tmp = TempDir::new("wal");
        let store = open(&tmp);
        assert_eq!(store.journal_mode().unwrap(), "wal");
        let reader = Store::open_read_only(tmp.path()).unwrap();
        assert_eq!(reader.journal_mode().unwrap(), "wal");
    }

    #[test]
    fn a_reader_reads_while_a_writer_holds_a_transaction() {
        let (tmp, store) = with_runs("wal-read");
        record(&store, "tank/a", 100, "done");
        // EXCLUSIVE shuts readers out of a rollback-journal database; WAL lets them in.
        let writer = raw(&store);
        writer
            .execute_batch(
                "BEGIN EXCLUSIVE; \
                 INSERT INTO runs (role, job, peer, started) VALUES ('send', 'j', 'p', 3);",
            )
            .unwrap();
        let reader = Store::open_read_only(tmp.path()).unwrap();
        assert_eq!(ids(&all(&reader)), [1]);
        assert_eq!(reader.runs(&RunQuery::default()).unwrap().len(), 2);
        assert_eq!(reader.latest_per_dataset().unwrap().len(), 1);
        writer.execute_batch("COMMIT").unwrap();
        assert_eq!(reader.runs(&RunQuery::default()).unwrap().len(), 3);
    }

    // issue 17: a dataset no longer sent stays out of status and check once forgotten.
    #[test]
    fn a_retired_dataset_is_left_out_until_it_is_attempted_again() {
        let (_tmp, store) = with_runs("retire");
        record(&store, "tank/a", 100, "done");
        record(&store, "tank/old", 100, "done");
        record(&store, "tank/old", 200, "failed");
        let datasets = |store: &Store| -> Vec<String> {
            let all = store.latest_per_dataset().unwrap();
            all.into_iter().map(|s| s.dataset).collect()
        };
        assert!(store
            .retire("tank/old", "backup:9000", Role::Send, 300)
            .unwrap());
        assert_eq!(datasets(&store), ["tank/a"]);
        // Nothing recorded of it: nothing retired.
        assert!(!store
            .retire("tank/none", "backup:9000", Role::Send, 300)
            .unwrap());
        assert!(!store
            .retire("tank/old", "other:1", Role::Send, 300)
            .unwrap());
        assert!(!store
            .retire("tank/old", "backup:9000", Role::Recv, 300)
            .unwrap());
        // Sent again: back, with what its history says.
        record(&store, "tank/old", 400, "done");
        assert_eq!(datasets(&store), ["tank/a", "tank/old"]);
        let all = store.latest_per_dataset().unwrap();
        assert_eq!(status(&all, "tank/old").failures_since_success, 0);
    }

    /// A database of schema version `version` (its first steps only) with one attempt.
    fn at_version(tmp: &TempDir, version: usize) {
        let conn = Connection::open(tmp.path().join(FILE_NAME)).unwrap();
        for step in &schema::MIGRATIONS[..version] {
            conn.execute_batch(step.sql).unwrap();
        }
        conn.pragma_update(None, "user_version", version as i64)
            .unwrap();
        conn.execute_batch(
            "INSERT INTO attempts (role, job, peer, dataset, raw, compressed, attempt, \
             started, ended, outcome) VALUES ('send', 'j', 'p', 'tank/a', 0, 0, 1, 1, 2, 'done')",
        )
        .unwrap();
    }

    fn file_version(tmp: &TempDir) -> i64 {
        let path = tmp.path().join(FILE_NAME);
        schema::version(&Connection::open(&path).unwrap(), &path).unwrap()
    }

    #[test]
    fn older_versions_are_migrated_with_their_rows() {
        for version in [1, 2, 3] {
            let tmp = TempDir::new(&format!("v{version}"));
            at_version(&tmp, version);
            let store = open(&tmp);
            let got = schema::version(&store.conn, store.path()).unwrap();
            assert_eq!(got, schema::latest(), "from {version}");
            // Nothing retired, nothing listed: each new table starts empty.
            assert_eq!(
                store.latest_per_dataset().unwrap().len(),
                1,
                "from {version}"
            );
            assert!(
                store.orphans_destroyed(0).unwrap().is_empty(),
                "from {version}"
            );
        }
    }

    // After an upgrade of zfsync, status and check read the history at once, not only
    // after the next replication has upgraded it.
    #[test]
    fn a_reader_that_may_write_upgrades_version_1() {
        let tmp = TempDir::new("v1-reader");
        at_version(&tmp, 1);
        let reader = Store::open_read_only(tmp.path()).unwrap();
        assert_eq!(file_version(&tmp), schema::latest());
        assert_eq!(reader.latest_per_dataset().unwrap().len(), 1);
        // Still a reader.
        assert!(reader.begin_run(&run_start(1)).is_err());
        // What it upgraded, a writer retires in.
        let writer = open(&tmp);
        assert!(writer.retire("tank/a", "p", Role::Send, 3).unwrap());
        assert!(reader.latest_per_dataset().unwrap().is_empty());
    }

    #[test]
    fn a_reader_that_may_not_write_reads_version_1_as_it_is() {
        let tmp = TempDir::new("v1-read-only");
        at_version(&tmp, 1);
        let reader = Store::open_reader(tmp.path(), false).unwrap();
        assert_eq!(file_version(&tmp), 1);
        assert_eq!(
            reader.latest_per_dataset().unwrap().len(),
            1,
            "nothing retired"
        );
        assert_eq!(ids(&all(&reader)), [1]);
        // Where a missing step has no stand-in, it says who can upgrade it.
        let err = Error::TooOld {
            path: tmp.path().join(FILE_NAME),
            found: 1,
            known: 2,
        };
        let dir = tmp.path().display();
        assert!(
            err.to_string().ends_with(&format!(
                "history database version 1 is older than this zfsync (expects 2), and this \
                 user cannot upgrade it: run 'zfsync status --state-dir {dir}' once as a \
                 user who can write {dir}"
            )),
            "{err}"
        );
    }

    // Step 4's stand-in replaces step 3's where both run.
    #[test]
    fn a_reader_that_may_not_write_reads_versions_2_and_3_through_stand_ins() {
        for version in [2, 3] {
            let tmp = TempDir::new(&format!("v{version}-read-only"));
            at_version(&tmp, version);
            let reader = Store::open_reader(tmp.path(), false).unwrap();
            assert_eq!(file_version(&tmp), version as i64);
            assert!(reader.orphans_destroyed(0).unwrap().is_empty());
            let rows: i64 = reader
                .conn
                .query_row(
                    "SELECT COUNT(*) FROM listed JOIN listings USING (job, base, client) \
                     WHERE absent_lists > 0 OR absent_guid IS NOT NULL",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(rows, 0, "from {version}");
        }
    }

    #[test]
    fn a_failed_migration_changes_nothing() {
        let tmp = TempDir::new("bad-migration");
        // A table of the schema's name already there: version 1's first step fails.
        let path = tmp.path().join(FILE_NAME);
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE runs (x)")
            .unwrap();
        let err = Store::open(tmp.path()).err().expect("refused");
        assert!(matches!(err, Error::Migrate { to: 1, .. }), "{err:?}");
        assert!(err.to_string().contains("it was left as it was"), "{err}");
        let conn = Connection::open(&path).unwrap();
        assert_eq!(schema::version(&conn, &path).unwrap(), 0);
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1);
    }

    #[test]
    fn an_attempt_reads_back_as_it_was_recorded() {
        let (_tmp, store) = with_runs("round-trip");
        let cases = [
            (start("tank/a", 100), end(100, "done")),
            (
                AttemptStart {
                    run: None,
                    role: Role::Recv,
                    kind: None,
                    from: None,
                    to: None,
                    raw: true,
                    compressed: false,
                    attempt: 3,
                    ..start("backup/b", 200)
                },
                AttemptEnd {
                    error: Some("cannot receive: \"x\",\nline 2".into()),
                    ..end(200, "refused")
                },
            ),
            (
                AttemptStart {
                    kind: Some(Kind::Resume),
                    to: Some(SnapshotRef {
                        name: "big".into(),
                        guid: u64::MAX,
                    }),
                    ..start("tank/c", 300)
                },
                AttemptEnd {
                    bytes: u64::MAX,
                    ..end(300, "failed")
                },
            ),
        ];
        for (s, e) in &cases {
            store.record_attempt(s, e).unwrap();
        }
        let mut got = all(&store);
        got.reverse();
        for (i, (got, (s, e))) in got.iter().zip(&cases).enumerate() {
            assert_eq!(got.id, AttemptId(i as i64 + 1));
            assert_eq!(&got.start, s);
            // Bytes beyond i64 are stored as i64::MAX.
            let want_bytes = e.bytes.min(i64::MAX as u64);
            assert_eq!(
                got.end,
                Some(AttemptEnd {
                    bytes: want_bytes,
                    ..e.clone()
                })
            );
        }
    }

    #[test]
    fn an_attempt_of_an_unknown_run_is_refused() {
        let tmp = TempDir::new("foreign-key");
        let store = open(&tmp);
        let err = store
            .record_attempt(&start("tank/a", 100), &end(100, "done"))
            .unwrap_err();
        assert!(matches!(err, Error::Sqlite { .. }), "{err:?}");
    }

    #[test]
    fn attempts_are_filtered_by_each_field() {
        let (_tmp, store) = with_runs("filters");
        // id: dataset, role, peer, job, started, outcome
        let rows = [
            ("tank/a", Role::Send, "b1", "nightly", 100, "done"),
            ("tank/b", Role::Send, "b1", "nightly", 200, "failed"),
            ("tank/a", Role::Recv, "s1", "recv1", 300, "done"),
            ("tank/a", Role::Send, "b2", "hourly", 400, "up-to-date"),
            ("tank/b", Role::Send, "b2", "hourly", 500, "done"),
        ];
        for (dataset, role, peer, job, started, outcome) in rows {
            let s = AttemptStart {
                role,
                peer: peer.into(),
                job: job.into(),
                ..start(dataset, started)
            };
            store.record_attempt(&s, &end(started, outcome)).unwrap();
        }
        let q = AttemptQuery::default;
        let cases: Vec<(&str, AttemptQuery, Vec<i64>)> = vec![
            ("everything, newest first", q(), vec![5, 4, 3, 2, 1]),
            (
                "since (inclusive)",
                AttemptQuery {
                    since: Some(300),
                    ..q()
                },
                vec![5, 4, 3],
            ),
            (
                "until (exclusive)",
                AttemptQuery {
                    until: Some(300),
                    ..q()
                },
                vec![2, 1],
            ),
            (
                "since and until",
                AttemptQuery {
                    since: Some(200),
                    until: Some(500),
                    ..q()
                },
                vec![4, 3, 2],
            ),
            (
                "dataset",
                AttemptQuery {
                    dataset: Some("tank/a".into()),
                    ..q()
                },
                vec![4, 3, 1],
            ),
            (
                "role",
                AttemptQuery {
                    role: Some(Role::Recv),
                    ..q()
                },
                vec![3],
            ),
            (
                "peer",
                AttemptQuery {
                    peer: Some("b2".into()),
                    ..q()
                },
                vec![5, 4],
            ),
            (
                "job",
                AttemptQuery {
                    job: Some("nightly".into()),
                    ..q()
                },
                vec![2, 1],
            ),
            (
                "outcome",
                AttemptQuery {
                    outcome: Some(Outcome::Done),
                    ..q()
                },
                vec![5, 3, 1],
            ),
            (
                "limit keeps the newest",
                AttemptQuery {
                    limit: Some(2),
                    ..q()
                },
                vec![5, 4],
            ),
            (
                "limit 0",
                AttemptQuery {
                    limit: Some(0),
                    ..q()
                },
                vec![],
            ),
            (
                "filters combine",
                AttemptQuery {
                    dataset: Some("tank/a".into()),
                    role: Some(Role::Send),
                    since: Some(200),
                    ..q()
                },
                vec![4],
            ),
            (
                "nothing matches",
                AttemptQuery {
                    dataset: Some("tank/zz".into()),
                    ..q()
                },
                vec![],
            ),
        ];
        for (name, query, want) in cases {
            assert_eq!(ids(&store.attempts(&query).unwrap()), want, "{name}");
        }
    }

    #[test]
    fn runs_are_recorded_ended_and_filtered() {
        let tmp = TempDir::new("runs");
        let store = open(&tmp);
        let a = store.begin_run(&run_start(100)).unwrap();
        let b = store
            .begin_run(&RunStart {
                role: Role::Recv,
                job: "recv1".into(),
                peer: "source:1234".into(),
                started: 200,
            })
            .unwrap();
        store.end_run(a, &run_end(150)).unwrap();
        let runs = store.runs(&RunQuery::default()).unwrap();
        assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [b, a]);
        assert_eq!(runs[1].start, run_start(100));
        assert_eq!(runs[1].end, Some(run_end(150)));
        assert_eq!(runs[0].end, None);
        let q = RunQuery::default;
        let cases = [
            (
                "since",
                RunQuery {
                    since: Some(150),
                    ..q()
                },
                vec![b],
            ),
            (
                "until",
                RunQuery {
                    until: Some(150),
                    ..q()
                },
                vec![a],
            ),
            (
                "role",
                RunQuery {
                    role: Some(Role::Send),
                    ..q()
                },
                vec![a],
            ),
            (
                "peer",
                RunQuery {
                    peer: Some("source:1234".into()),
                    ..q()
                },
                vec![b],
            ),
            (
                "job",
                RunQuery {
                    job: Some("nightly".into()),
                    ..q()
                },
                vec![a],
            ),
            (
                "limit",
                RunQuery {
                    limit: Some(1),
                    ..q()
                },
                vec![b],
            ),
        ];
        for (name, query, want) in cases {
            let got: Vec<RunId> = store.runs(&query).unwrap().iter().map(|r| r.id).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn a_run_ends_once() {
        let tmp = TempDir::new("run-twice");
        let store = open(&tmp);
        let id = store.begin_run(&run_start(100)).unwrap();
        store.end_run(id, &run_end(150)).unwrap();
        let err = store.end_run(id, &run_end(160)).unwrap_err();
        assert!(
            matches!(err, Error::UnknownRun { id: RunId(1), .. }),
            "{err:?}"
        );
        let err = store.end_run(RunId(99), &run_end(160)).unwrap_err();
        assert!(
            matches!(err, Error::UnknownRun { id: RunId(99), .. }),
            "{err:?}"
        );
    }

    #[test]
    fn ending_a_run_closes_its_attempts_in_flight() {
        let (_tmp, store) = with_runs("abandoned");
        let finished = record(&store, "tank/a", 100, "done");
        let open_in_run = store.start_attempt(&start("tank/b", 110)).unwrap();
        let other_run = store
            .start_attempt(&AttemptStart {
                run: Some(RunId(2)),
                ..start("tank/c", 120)
            })
            .unwrap();
        store.end_run(RunId(1), &run_end(200)).unwrap();
        let got = all(&store);
        let by_id = |id: i64| got.iter().find(|a| a.id.0 == id).unwrap();
        assert_eq!(by_id(finished).end, Some(end(100, "done")));
        let closed = by_id(open_in_run.0).end.as_ref().expect("closed");
        assert_eq!(
            (closed.ended, closed.outcome, closed.error.as_deref()),
            (200, Outcome::Failed, Some(ABANDONED))
        );
        assert_eq!(by_id(other_run.0).end, None);
    }

    #[test]
    fn an_attempt_in_flight_shows_until_it_finishes() {
        let (_tmp, store) = with_runs("in-flight");
        record(&store, "tank/a", 100, "done");
        let id = store.start_attempt(&start("tank/a", 200)).unwrap();

        let st = store.latest_per_dataset().unwrap();
        let a = status(&st, "tank/a");
        assert!(a.in_flight);
        assert_eq!((a.last.id, a.last.end.as_ref()), (id, None));
        assert_eq!(a.last_success.as_ref().unwrap().start.started, 100);
        // An attempt in flight has no outcome yet.
        let done = AttemptQuery {
            outcome: Some(Outcome::Done),
            ..AttemptQuery::default()
        };
        assert_eq!(ids(&store.attempts(&done).unwrap()), [1]);

        store.finish_attempt(id, &end(200, "done")).unwrap();
        let st = store.latest_per_dataset().unwrap();
        let a = status(&st, "tank/a");
        assert!(!a.in_flight);
        assert_eq!(a.last.end, Some(end(200, "done")));
        assert_eq!(a.last_success.as_ref().unwrap().id, id);

        let err = store.finish_attempt(id, &end(200, "failed")).unwrap_err();
        assert!(matches!(err, Error::UnknownAttempt { .. }), "{err:?}");
    }

    #[test]
    fn an_attempt_finishes_with_what_it_streamed() {
        let (_tmp, store) = with_runs("streamed");
        let begun = AttemptStart {
            kind: None,
            from: None,
            ..start("tank/a", 100)
        };
        let id = store.start_attempt(&begun).unwrap();
        let streamed = Streamed {
            kind: Some(Kind::Full),
            from: None,
            to: Some(SnapshotRef {
                name: "s9".into(),
                guid: u64::MAX,
            }),
            raw: true,
            compressed: false,
        };
        store
            .finish_attempt_with(id, &streamed, &end(100, "done"))
            .unwrap();
        let got = &all(&store)[0];
        assert_eq!(
            (
                got.start.kind,
                &got.start.from,
                &got.start.to,
                got.start.raw,
                got.start.compressed
            ),
            (
                streamed.kind,
                &streamed.from,
                &streamed.to,
                streamed.raw,
                streamed.compressed
            )
        );
        assert_eq!(got.end, Some(end(100, "done")));
        // Finished once: a second end changes nothing, not even what it streamed.
        let other = Streamed {
            kind: Some(Kind::Resume),
            ..streamed.clone()
        };
        let err = store
            .finish_attempt_with(id, &other, &end(100, "failed"))
            .unwrap_err();
        assert!(matches!(err, Error::UnknownAttempt { .. }), "{err:?}");
        assert_eq!(all(&store)[0].start.kind, Some(Kind::Full));
    }

    #[test]
    fn interrupted_runs_of_the_job_are_closed_with_their_attempts() {
        let tmp = TempDir::new("interrupted");
        let store = open(&tmp);
        let dead = store.begin_run(&run_start(100)).unwrap();
        let attempt = |run: RunId, dataset: &str, started: i64| AttemptStart {
            run: Some(run),
            ..start(dataset, started)
        };
        // a: retried, done the second time; b: up to date; c: in flight when it died.
        store
            .record_attempt(&attempt(dead, "tank/a", 110), &end(110, "failed"))
            .unwrap();
        store
            .record_attempt(&attempt(dead, "tank/a", 130), &end(130, "done"))
            .unwrap();
        store
            .record_attempt(&attempt(dead, "tank/b", 120), &end(120, "up-to-date"))
            .unwrap();
        let in_flight = store.start_attempt(&attempt(dead, "tank/c", 150)).unwrap();
        // Not the job's: another job, another role, a run that ended.
        let other_job = store
            .begin_run(&RunStart {
                job: "other".into(),
                ..run_start(100)
            })
            .unwrap();
        let recv = store
            .begin_run(&RunStart {
                role: Role::Recv,
                ..run_start(100)
            })
            .unwrap();
        let ended = store.begin_run(&run_start(90)).unwrap();
        store.end_run(ended, &run_end(95)).unwrap();

        assert_eq!(store.interrupt_runs(Role::Send, "nightly").unwrap(), [dead]);
        let runs = store.runs(&RunQuery::default()).unwrap();
        let run = |id: RunId| runs.iter().find(|r| r.id == id).unwrap();
        // a and b from their last attempts, c failed: the newest time recorded is c's start.
        assert_eq!(
            run(dead).end,
            Some(RunEnd {
                ended: 150,
                done: 1,
                failed: 1,
                up_to_date: 1,
                exit_status: INTERRUPTED_STATUS,
            })
        );
        assert_eq!(run(other_job).end, None);
        assert_eq!(run(recv).end, None);
        assert_eq!(run(ended).end, Some(run_end(95)));
        let closed = all(&store).into_iter().find(|a| a.id == in_flight).unwrap();
        let e = closed.end.expect("closed");
        assert_eq!(
            (e.ended, e.outcome, e.error.as_deref()),
            (150, Outcome::Failed, Some(INTERRUPTED))
        );
        // Nothing left to close.
        assert!(store
            .interrupt_runs(Role::Send, "nightly")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn an_interrupted_run_without_attempts_ends_when_it_began() {
        let tmp = TempDir::new("interrupted-empty");
        let store = open(&tmp);
        let dead = store.begin_run(&run_start(100)).unwrap();
        store.interrupt_runs(Role::Send, "nightly").unwrap();
        let runs = store.runs(&RunQuery::default()).unwrap();
        let e = runs[0].end.as_ref().unwrap();
        assert_eq!(runs[0].id, dead);
        assert_eq!(
            (e.ended, e.done, e.failed, e.exit_status),
            (100, 0, 0, INTERRUPTED_STATUS)
        );
    }

    #[test]
    fn an_attempt_left_in_flight_is_superseded_by_the_next() {
        let (_tmp, store) = with_runs("left-in-flight");
        store.start_attempt(&start("tank/a", 100)).unwrap();
        record(&store, "tank/a", 200, "done");
        let st = store.latest_per_dataset().unwrap();
        assert!(!status(&st, "tank/a").in_flight);
    }

    #[test]
    fn a_failure_after_a_success() {
        let (_tmp, store) = with_runs("fail-after-success");
        let success = record(&store, "tank/a", 100, "done");
        record(&store, "tank/a", 200, "failed");
        let last = record(&store, "tank/a", 300, "refused");
        let st = store.latest_per_dataset().unwrap();
        let a = status(&st, "tank/a");
        assert_eq!(a.last.id.0, last);
        assert!(!a.in_flight);
        let s = a.last_success.as_ref().unwrap();
        assert_eq!(s.id.0, success);
        assert_eq!(
            (s.end.as_ref().unwrap().ended, &s.start.to),
            (110, &start("", 0).to)
        );
        let f = a.last_failure.as_ref().unwrap();
        assert_eq!(
            f.end.as_ref().unwrap().error.as_deref(),
            Some("refused at 300")
        );
        assert_eq!(a.failures_since_success, 2);
    }

    #[test]
    fn a_success_after_failures() {
        let (_tmp, store) = with_runs("success-after-fail");
        record(&store, "tank/a", 100, "failed");
        let failure = record(&store, "tank/a", 200, "failed");
        // Up to date counts as a success; skipped is neither.
        let success = record(&store, "tank/a", 300, "up-to-date");
        record(&store, "tank/a", 400, "skipped");
        let st = store.latest_per_dataset().unwrap();
        let a = status(&st, "tank/a");
        assert_eq!(a.last.end.as_ref().unwrap().outcome, Outcome::Skipped);
        assert_eq!(a.last_success.as_ref().unwrap().id.0, success);
        assert_eq!(a.last_failure.as_ref().unwrap().id.0, failure);
        assert_eq!(a.failures_since_success, 0);
    }

    #[test]
    fn a_dataset_that_never_succeeded_counts_every_failure() {
        let (_tmp, store) = with_runs("never");
        record(&store, "tank/a", 100, "failed");
        record(&store, "tank/a", 200, "failed");
        let st = store.latest_per_dataset().unwrap();
        let a = status(&st, "tank/a");
        assert_eq!(
            (a.last_success.as_ref(), a.failures_since_success),
            (None, 2)
        );
    }

    #[test]
    fn a_failure_started_in_the_same_second_as_the_success_is_ordered_by_id() {
        let (_tmp, store) = with_runs("same-second");
        record(&store, "tank/a", 100, "failed");
        record(&store, "tank/a", 100, "done");
        record(&store, "tank/a", 100, "failed");
        let st = store.latest_per_dataset().unwrap();
        let a = status(&st, "tank/a");
        assert_eq!((a.last.id.0, a.last_success.as_ref().unwrap().id.0), (3, 2));
        assert_eq!(a.failures_since_success, 1);
    }

    #[test]
    fn each_dataset_peer_and_role_has_its_own_status() {
        let (_tmp, store) = with_runs("keys");
        record(&store, "tank/b", 100, "done");
        record(&store, "tank/a", 100, "done");
        let other_peer = AttemptStart {
            peer: "b2".into(),
            ..start("tank/a", 200)
        };
        store
            .record_attempt(&other_peer, &end(200, "failed"))
            .unwrap();
        let recv = AttemptStart {
            role: Role::Recv,
            ..start("tank/a", 300)
        };
        store.record_attempt(&recv, &end(300, "failed")).unwrap();
        let got: Vec<(String, String, Role, u64)> = store
            .latest_per_dataset()
            .unwrap()
            .into_iter()
            .map(|s| (s.dataset, s.peer, s.role, s.failures_since_success))
            .collect();
        let key = |d: &str, p: &str, r, n| (d.to_owned(), p.to_owned(), r, n);
        assert_eq!(
            got,
            [
                key("tank/a", "b2", Role::Send, 1),
                key("tank/a", "backup:9000", Role::Recv, 1),
                key("tank/a", "backup:9000", Role::Send, 0),
                key("tank/b", "backup:9000", Role::Send, 0),
            ]
        );
    }

    #[test]
    fn bytes_per_day_sums_the_done_attempts_of_one_job() {
        let (_tmp, store) = with_runs("per-day");
        let day = 86_400;
        let cases = [
            ("tank/a", 10 * day + 5, "done", 100),
            ("tank/b", 10 * day + 7, "done", 20),
            ("tank/a", 10 * day + 9, "failed", 999),
            ("tank/a", 12 * day, "done", 3),
            ("tank/a", 9 * day, "done", 1000), // before `since`
        ];
        for (ds, started, outcome, bytes) in cases {
            let mut e = end(started, outcome);
            e.bytes = bytes;
            store.record_attempt(&start(ds, started), &e).unwrap();
        }
        let mut other_job = start("tank/a", 10 * day);
        other_job.job = "other".into();
        let mut e = end(10 * day, "done");
        e.bytes = 5000;
        store.record_attempt(&other_job, &e).unwrap();
        let got = store
            .bytes_per_day(Role::Send, "nightly", 10 * day)
            .unwrap();
        let want = [
            DayTotal {
                day: 10,
                bytes: 120,
                streams: 2,
            },
            DayTotal {
                day: 12,
                bytes: 3,
                streams: 1,
            },
        ];
        assert_eq!(got, want);
        assert!(store
            .bytes_per_day(Role::Recv, "nightly", 0)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn trim_keeps_what_status_needs() {
        let tmp = TempDir::new("trim");
        let store = open(&tmp);
        let old_run = store.begin_run(&run_start(50)).unwrap();
        let new_run = store.begin_run(&run_start(900)).unwrap();
        let in_run = |run: RunId, dataset: &str, started: i64, outcome: &str| {
            let s = AttemptStart {
                run: Some(run),
                ..start(dataset, started)
            };
            store.record_attempt(&s, &end(started, outcome)).unwrap().0
        };
        // tank/a: old successes, then new attempts: only new ones stay.
        in_run(old_run, "tank/a", 100, "done");
        in_run(old_run, "tank/a", 200, "done");
        let a_new = in_run(new_run, "tank/a", 1000, "done");
        // tank/b: an old success, then old failures: the success and the last failure stay.
        in_run(old_run, "tank/b", 100, "failed");
        let b_success = in_run(old_run, "tank/b", 200, "done");
        in_run(old_run, "tank/b", 300, "failed");
        let b_last = in_run(old_run, "tank/b", 400, "failed");
        // tank/c: only old failures: the last one stays.
        in_run(old_run, "tank/c", 100, "failed");
        let c_last = in_run(old_run, "tank/c", 200, "failed");
        // A run nothing refers to any more goes; one still referred to stays.
        let empty_run = store.begin_run(&run_start(60)).unwrap();

        assert_eq!(store.trim(500).unwrap(), 5 + 1);
        let mut kept = ids(&all(&store));
        kept.sort();
        assert_eq!(kept, [a_new, b_success, b_last, c_last]);
        let runs: Vec<RunId> = store
            .runs(&RunQuery::default())
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(runs, [new_run, old_run]);
        assert!(!runs.contains(&empty_run));

        let st = store.latest_per_dataset().unwrap();
        assert_eq!(
            status(&st, "tank/b").last_success.as_ref().unwrap().id.0,
            b_success
        );
        assert_eq!(status(&st, "tank/b").failures_since_success, 1);
        // Nothing more to trim at the same age.
        assert_eq!(store.trim(500).unwrap(), 0);
    }
}
