//! zfsync's history: every run and every dataset attempt, on both sides, kept in SQLite.
//!
//! This crate owns the history database (`history.sqlite` in the `--state-dir`): its schema
//! and migrations, the queries that `zfsync-send`, `zfsync-recv` and
//! `zfsync status | history | check | report` make of it ([`Store`]), and the text forms of
//! `zfsync history --format table|csv|json` ([`mod@format`]).
//!
//! It must not depend on any other zfsync crate (plain types in, plain types out), run zfs,
//! start a thread, or read the clock: every time is unix seconds passed in by the caller, so
//! tests can move time with `ZFSYNC_NOW` as the binaries do.
//!
//! # A failing state disk costs a warning
//!
//! Every call returns a [`Result`]; a full, read-only or failing state disk, or a lock held
//! by another process for longer than the busy timeout (5 s), comes back as an [`Error`].
//! Callers log it as a warning and carry on: history is never a reason for a replication to
//! fail or to stop. (A caller that could not begin a run records its attempts with no run.)
//!
//! # Runs and attempts
//!
//! An *attempt* is one try of one dataset: what was sent or received (kind, from and to
//! snapshots with their GUIDs, raw, compressed), when, how it ended, bytes and seconds. A
//! sender records one with [`Store::record_attempt`] when it ends, or with
//! [`Store::start_attempt`] and [`Store::finish_attempt`] so that status can show it in
//! flight. A *run* groups attempts:
//! - on the sender, one run is one `zfsync-send` invocation (job id, receiver, counts,
//!   exit status);
//! - on the receiver, one run is one connection: the receiver cannot see the sender's run
//!   (the protocol carries no run id, and a sender run spreads over several connections),
//!   but it does see each connection open and close. Its job is the receiver's id, its peer
//!   the sender's address, its counts the datasets of that connection, and its exit status
//!   0 if none of them failed, 1 otherwise.
//!
//! An attempt's run may be `None`: when `begin_run` failed (see above), or for an attempt
//! made outside any run.
//!
//! A process killed mid-run leaves its run unended and its attempt in flight. A sender
//! holds its job's [`JobLock`] while it runs; the next run of the job that takes the lock
//! closes what the dead one left with [`Store::interrupt_runs`], and a reader that finds
//! the lock free knows that an attempt in flight was interrupted.
//!
//! # Sharing the file
//!
//! The database is in WAL mode: a writer never blocks readers, and readers see the last
//! committed state. `zfsync-send`, `zfsync-recv` and the readers may all have it open at
//! once; writers take turns, each waiting up to the busy timeout. A [`Store`] is one
//! connection: one per thread, or behind a `Mutex`. Readers use
//! [`Store::open_read_only`], which never creates anything, and upgrades an older history
//! only where it may write it (else it reads it as it is, where it can).

mod absent;
mod error;
pub mod format;
mod lock;
mod record;
mod schema;
mod store;
mod time;

pub use absent::{Absence, DestroyedOrphan, Listing, Noted, Replica};
pub use error::{Error, Result};
pub use format::Format;
pub use lock::JobLock;
pub use record::{
    Attempt, AttemptEnd, AttemptId, AttemptQuery, AttemptStart, DatasetStatus, DayTotal, Kind,
    Outcome, Role, Run, RunEnd, RunId, RunQuery, RunStart, SnapshotRef, Streamed,
};
pub use schema::latest as schema_version;
pub use store::{Store, ABANDONED, FILE_NAME, INTERRUPTED, INTERRUPTED_STATUS};

/// The state directory when neither `--state-dir` nor `ZFSYNC_STATE_DIR` says.
pub const DEFAULT_DIR: &str = "/var/lib/zfsync";

/// The variable that changes the default state directory of every zfsync command (a
/// service's environment, a test run: see `.cargo/config.toml`).
pub const DIR_VAR: &str = "ZFSYNC_STATE_DIR";

/// The state directory when `--state-dir` is not given: `$ZFSYNC_STATE_DIR` if set and
/// not empty, else [`DEFAULT_DIR`].
pub fn default_dir() -> std::path::PathBuf {
    dir_from(std::env::var_os(DIR_VAR))
}

fn dir_from(var: Option<std::ffi::OsString>) -> std::path::PathBuf {
    match var {
        Some(v) if !v.is_empty() => v.into(),
        _ => DEFAULT_DIR.into(),
    }
}
pub use time::rfc3339;

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_moves_the_default_state_dir() {
        for (var, want) in [
            (None, "/var/lib/zfsync"),
            (Some(""), "/var/lib/zfsync"),
            (Some("/srv/zfsync"), "/srv/zfsync"),
        ] {
            assert_eq!(
                dir_from(var.map(Into::into)),
                std::path::PathBuf::from(want),
                "{var:?}"
            );
        }
    }
}
