//! `zfsync-send` as a library: [`run`] replicates a dataset tree to a receiver and returns
//! the per-dataset reports.
//!
//! The tree is listed once (one zfs command), every dataset with snapshots becomes a job on
//! a channel (and so does every dataset without snapshots that has descendants with some:
//! the receiver needs a parent for them), and `threads` workers each hold one connection,
//! reused dataset after dataset.
//! A failure costs its dataset: the others go on. Transient failures (a dropped
//! connection, a busy dataset, a parent that has not arrived yet) are retried a bounded
//! number of times with backoff; refusals (divergence) are not.

pub mod cli;
mod conn;
mod pool;
mod replicate;
mod report;

pub use report::{
    print_summary, Delivery, Parent, Report, RunReport, SnapshotRef, Status, Step, Stream,
    StreamKind,
};

use conn::Connection;
use log::{info, warn};
use pool::{run_jobs, Job};
use replicate::Replicator;
use std::collections::HashSet;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;
use zfsync_protocol::Reason;
use zfsync_zfs::protect::SourceMarks;
use zfsync_zfs::{Dataset, Zfs};

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub dataset: Dataset,
    pub address: String,
    pub threads: usize,
    pub dry_run: bool,
    pub dest: String,
    pub timeout: Duration,
    pub retries: u32,
    /// Receiver id for `zfsync:base:ID` marks on delivered snapshots.
    pub mark: Option<String>,
    pub zfs: PathBuf,
    pub log_file: Option<PathBuf>,
    pub verbose: usize,
    pub quiet: bool,
    /// No `-c -L -e`: a plain stream (for receivers that cannot take them).
    pub plain: bool,
    /// Send encrypted datasets decrypted instead of raw (needs their keys loaded).
    pub no_raw: bool,
    /// The key to authenticate with (the first of `--key-file`).
    pub key: Option<zfsync_protocol::auth::Key>,
}

/// Errors of the sender.
#[derive(Debug)]
pub enum Error {
    Protocol(zfsync_protocol::Error),
    Zfs(zfsync_zfs::Error),
    Io(io::Error),
    Connect(String),
    /// The receiver closed the connection where the conversation expected more.
    Closed,
    /// The receiver sent an `Error` frame.
    Peer {
        reason: Reason,
        text: String,
    },
    /// The receiver broke the protocol.
    Violation(String),
    /// Authentication failed or is missing on one side.
    Auth(String),
}

impl Error {
    /// Whether a new connection and a later try may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Protocol(e) => e.is_retryable(),
            Error::Io(_) | Error::Connect(_) | Error::Closed => true,
            Error::Peer { reason, .. } => reason.is_retryable(),
            Error::Zfs(_) | Error::Violation(_) | Error::Auth(_) => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Protocol(e) => e.fmt(f),
            Error::Zfs(e) => e.fmt(f),
            Error::Io(e) => e.fmt(f),
            Error::Connect(s) => f.write_str(s),
            Error::Closed => f.write_str("receiver closed the connection"),
            Error::Peer { reason, text } => write!(f, "receiver: {}: {text}", reason.as_str()),
            Error::Violation(s) => write!(f, "protocol violation by the receiver: {s}"),
            Error::Auth(s) => write!(f, "authentication: {s}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<zfsync_protocol::Error> for Error {
    fn from(e: zfsync_protocol::Error) -> Self {
        Error::Protocol(e)
    }
}
impl From<zfsync_zfs::Error> for Error {
    fn from(e: zfsync_zfs::Error) -> Self {
        Error::Zfs(e)
    }
}
impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Replicates the tree. Errors only when nothing could be tried at all (the source tree
/// cannot be listed); per-dataset failures are in the report.
pub fn run(config: &Config) -> Result<RunReport> {
    let zfs = Zfs::detect(&config.zfs)?.with_limit(config.timeout * 5);
    info!("zfs flavor={:?}", zfs.capabilities().flavor);
    // Greet the receiver while the tree is listed: the receiver lists its side when
    // greeted, so the two listings (the bulk of a no-change run) overlap. The connection
    // becomes the first worker's. A failure here is retried by the workers as usual.
    let (tree, early_conn) = std::thread::scope(|s| {
        let early = s.spawn(|| Connection::open(config).ok());
        let tree = zfs.list_tree(&config.dataset);
        (tree, early.join().ok().flatten())
    });
    let tree = tree?;
    let parents = parents_of_snapshots(&tree);
    let mut reports = Vec::new();
    let mut jobs = Vec::new();
    for info in tree {
        let ds = Dataset::new(&info.name).map_err(zfsync_zfs::Error::from)?;
        let rel = ds.relative_to(&config.dataset).unwrap_or("").to_string();
        // A dataset without snapshots is offered only when something below it has some:
        // the receiver makes a placeholder for it, or its children would wait for ever.
        if info.snapshots.is_empty() && !parents.contains(&info.name) {
            info!("skip dataset={} reason=no-snapshots", info.name);
            reports.push(Report {
                dataset: info.name,
                delivery: Delivery::new(Status::NoSnapshots),
            });
        } else {
            jobs.push(Job {
                info,
                rel,
                attempt: 0,
            });
        }
    }
    // Level by level: parents go out before anything deeper, so fewer children have to
    // wait in the receiver's buffer (siblings still go in parallel).
    jobs.sort_by_key(|j| {
        if j.rel.is_empty() {
            0
        } else {
            1 + j.rel.matches('/').count()
        }
    });
    let marks = match (&config.mark, config.dry_run) {
        (Some(id), false) => SourceMarks::load(&zfs, &config.dataset, id)?,
        _ => SourceMarks::default(),
    };
    let replicator = Replicator {
        config,
        zfs: &zfs,
        marks: &marks,
    };
    let (done, cleanup_conn) = run_jobs(replicator, jobs, early_conn);
    reports.extend(done);
    // Parents sort before children in the summary.
    reports.sort_by(|a, b| a.dataset.split('/').cmp(b.dataset.split('/')));
    // The receiver places buffered datasets after every connection anyway; asking here
    // places them before this run ends, and the summary says how it went. (A receiver whose
    // buffer has held nothing since its last cleanup answers without a zfs command.)
    let (cleanup, waiting) = if config.dry_run
        || reports
            .iter()
            .all(|r| r.delivery.status == Status::NoSnapshots)
    {
        if let Some(c) = cleanup_conn {
            c.bye();
        }
        (None, 0)
    } else {
        match request_cleanup(config, cleanup_conn) {
            // Copies of this tree left in the buffer: the run is not done.
            Ok(done) => (done.line(), done.waiting + done.failed),
            Err(e) => {
                warn!("cleanup request failed error={e}");
                // Whether what this run put in the buffer is in place now is unknown.
                let buffered = reports.iter().filter(|r| r.delivery.buffered()).count();
                (
                    Some(format!("cleanup request failed: {e}")),
                    buffered as u32,
                )
            }
        }
    };
    Ok(RunReport {
        datasets: reports,
        cleanup,
        waiting,
    })
}

/// The datasets of `tree` that have a descendant with snapshots.
fn parents_of_snapshots(tree: &[zfsync_zfs::DatasetInfo]) -> HashSet<String> {
    let mut parents = HashSet::new();
    for info in tree.iter().filter(|i| !i.snapshots.is_empty()) {
        let mut name = info.name.as_str();
        while let Some((parent, _)) = name.rsplit_once('/') {
            if !parents.insert(parent.to_string()) {
                break; // and its ancestors, from a sibling
            }
            name = parent;
        }
    }
    parents
}

/// Asks for the receiver's cleanup on `conn`, a worker's connection still open (a new one
/// could find the receiver's connection slots still taken by the workers' just closed).
fn request_cleanup(config: &Config, conn: Option<Connection>) -> Result<report::CleanupDone> {
    let mut conn = match conn {
        Some(c) => c,
        None => Connection::open(config)?,
    };
    let done = conn.cleanup()?;
    conn.bye();
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zfsync_zfs::{DatasetInfo, Kind, Snapshot};

    /// "name" without snapshots, "name@" with one.
    fn tree(names: &[&str]) -> Vec<DatasetInfo> {
        names
            .iter()
            .map(|n| DatasetInfo {
                name: n.trim_end_matches('@').into(),
                kind: Kind::Filesystem,
                snapshots: if n.ends_with('@') {
                    vec![Snapshot {
                        name: "s".into(),
                        guid: 1,
                        createtxg: 1,
                    }]
                } else {
                    Vec::new()
                },
                encrypted: false,
                resume_token: None,
            })
            .collect()
    }

    // issue 14 item 2: only a dataset with snapshots below it needs a parent on the
    // receiver; a lone dataset without snapshots is not offered.
    #[test]
    fn parents_are_the_ancestors_of_datasets_with_snapshots() {
        let t = tree(&[
            "p/r", "p/r/a", "p/r/a/b@", "p/r/a/c", "p/r/d", "p/r/e@", "p/r/e/f",
        ]);
        let mut got: Vec<String> = parents_of_snapshots(&t)
            .into_iter()
            .filter(|p| p.starts_with("p/r"))
            .collect();
        got.sort();
        assert_eq!(got, ["p/r", "p/r/a"]);
    }
}
