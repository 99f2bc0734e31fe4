//! The history store's errors: what happened, why, and what to do.
//!
//! Each variant keeps the path of the database (or directory) it is about, so a caller can
//! log the error as it is. None of them is a reason to stop replicating: see the crate doc.

use crate::record::{AttemptId, RunId};
use std::fmt;
use std::io;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug)]
pub enum Error {
    /// The state directory does not exist and could not be created.
    CreateDir { dir: PathBuf, source: io::Error },
    /// The database file could not be opened, created or set up (WAL, timeouts).
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// A reader found no database file: nothing was ever recorded in that directory.
    Missing { path: PathBuf },
    /// The database was written by a newer zfsync whose schema this one does not know.
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// A reader found a schema older than this code's that it could neither upgrade nor
    /// read as it is.
    TooOld {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// A migration step failed; its transaction was rolled back.
    Migrate {
        path: PathBuf,
        to: i64,
        source: rusqlite::Error,
    },
    /// A statement failed: full or failing disk, a lock held too long, a corrupt row.
    Sqlite {
        path: PathBuf,
        what: &'static str,
        source: rusqlite::Error,
    },
    /// A job's lock file could not be created or locked.
    Lock { path: PathBuf, source: io::Error },
    /// `end_run` of a run that does not exist or has already ended.
    UnknownRun { path: PathBuf, id: RunId },
    /// `finish_attempt` of an attempt that does not exist or has already finished.
    UnknownAttempt { path: PathBuf, id: AttemptId },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::CreateDir { dir, source } => write!(
                f,
                "cannot create the state directory {}: {source}: \
                 --state-dir must name a directory this user can create and write",
                dir.display()
            ),
            Error::Open { path, source } => write!(
                f,
                "cannot open the history database {}: {source}: check that its directory is \
                 writable by this user and that the disk is neither full nor read-only",
                path.display()
            ),
            Error::Missing { path } => write!(
                f,
                "no history database at {}: nothing was recorded there yet: check \
                 --state-dir, or run zfsync-send or zfsync-recv with it first",
                path.display()
            ),
            Error::TooNew { path, found, known } => write!(
                f,
                "{}: history database version {found} is newer than this zfsync \
                 (knows up to {known}): upgrade zfsync",
                path.display()
            ),
            // Version 0: no history tables, which only a writer makes.
            Error::TooOld {
                path,
                found: 0,
                known,
            } => write!(
                f,
                "{}: history database version 0 is older than this zfsync \
                 (expects {known}): run zfsync-send or zfsync-recv once with this \
                 --state-dir to upgrade it",
                path.display()
            ),
            Error::TooOld { path, found, known } => {
                let dir = path.parent().unwrap_or(path).display();
                write!(
                    f,
                    "{}: history database version {found} is older than this zfsync \
                     (expects {known}), and this user cannot upgrade it: run 'zfsync status \
                     --state-dir {dir}' once as a user who can write {dir}",
                    path.display()
                )
            }
            Error::Migrate { path, to, source } => write!(
                f,
                "{}: cannot upgrade the history database to version {to}: {source}: \
                 it was left as it was; check the state disk and run again",
                path.display()
            ),
            Error::Sqlite { path, what, source } => write!(
                f,
                "{}: {what} failed: {source}: check the state disk (free space, \
                 permissions, I/O errors)",
                path.display()
            ),
            Error::Lock { path, source } => write!(
                f,
                "cannot lock {}: {source}: check that the state directory is writable by \
                 this user",
                path.display()
            ),
            Error::UnknownRun { path, id } => write!(
                f,
                "{}: no unfinished run {} to end: it was never begun here, has already \
                 ended, or was trimmed",
                path.display(),
                id.0
            ),
            Error::UnknownAttempt { path, id } => write!(
                f,
                "{}: no in-flight attempt {} to finish: it was never started here, has \
                 already finished, or was trimmed",
                path.display(),
                id.0
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::CreateDir { source, .. } | Error::Lock { source, .. } => Some(source),
            Error::Open { source, .. }
            | Error::Migrate { source, .. }
            | Error::Sqlite { source, .. } => Some(source),
            Error::Missing { .. }
            | Error::TooNew { .. }
            | Error::TooOld { .. }
            | Error::UnknownRun { .. }
            | Error::UnknownAttempt { .. } => None,
        }
    }
}
