//! Errors of the zfs crate: [`Error`], and [`FailureKind`], the failures callers act on,
//! recognised from a failed command's stderr.
//!
//! A failed command keeps its command line, exit status and raw stderr whatever its kind;
//! recognising a text never replaces it. This module runs nothing.

use crate::name::NameError;
use std::fmt;
use std::io;
use zfsync_text::IoWords;

/// What kind of failure a zfs command reported, recognised from its stderr. The raw text is
/// always kept beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// "... does not exist"
    NotFound,
    /// "destination ... has been modified since most recent snapshot"
    DestinationModified,
    /// Any other failure: callers act on the two above only.
    Other,
}

/// Errors of this crate.
#[derive(Debug)]
pub enum Error {
    /// The zfs binary could not be started.
    Spawn { cmd: String, source: io::Error },
    /// A zfs command exited non-zero.
    Failed {
        cmd: String,
        status: String,
        stderr: String,
        kind: FailureKind,
    },
    /// A zfs command's output was not what we expect.
    Parse {
        cmd: String,
        line: String,
        why: String,
    },
    /// A name was refused before any command ran.
    Name(NameError),
    /// Reading or writing a zfs pipe failed.
    Io { what: String, source: io::Error },
}

impl Error {
    pub fn kind(&self) -> FailureKind {
        match self {
            Error::Failed { kind, .. } => *kind,
            _ => FailureKind::Other,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Spawn { cmd, source } => write!(f, "{cmd}: cannot run: {}", IoWords(source)),
            Error::Failed {
                cmd,
                status,
                stderr,
                ..
            } => write!(f, "{cmd}: {status}: {stderr}"),
            Error::Parse { cmd, line, why } => {
                write!(f, "{cmd}: unexpected output {line:?}: {why}")
            }
            Error::Name(e) => e.fmt(f),
            Error::Io { what, source } => write!(f, "{what}: {}", IoWords(source)),
        }
    }
}

impl std::error::Error for Error {}

impl From<NameError> for Error {
    fn from(e: NameError) -> Self {
        Error::Name(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Recognises the zfs error texts that callers act on.
pub(crate) fn classify(stderr: &str) -> FailureKind {
    // zfs wraps long messages over lines: compare with the white space folded.
    let s = stderr
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    if s.contains("does not exist") {
        FailureKind::NotFound
    } else if s.contains("has been modified") {
        FailureKind::DestinationModified
    } else {
        FailureKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_classified() {
        for (stderr, kind) in [
            (
                "cannot open 'p/x': dataset does not exist",
                FailureKind::NotFound,
            ),
            (
                "cannot receive incremental stream: destination p/x has been modified\nsince most recent snapshot",
                FailureKind::DestinationModified,
            ),
            // Destination failures that are neither: no caller may take them for one.
            (
                "cannot receive incremental stream: most recent snapshot of p/x does not\nmatch incremental source",
                FailureKind::Other,
            ),
            (
                "cannot receive new filesystem stream: destination 'p/x' exists",
                FailureKind::Other,
            ),
            ("cannot receive: out of space", FailureKind::Other),
        ] {
            assert_eq!(classify(stderr), kind, "{stderr:?}");
        }
    }
}
