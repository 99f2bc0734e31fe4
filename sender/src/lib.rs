//! `zfsync-send` as a library: [`run`] replicates a dataset tree to a receiver and returns
//! the per-dataset reports.
//!
//! The tree is listed once (one zfs command), [`select`] chooses the datasets to send,
//! every one of them with snapshots becomes a job on a channel (and so does every dataset
//! without snapshots that has descendants with some: the receiver needs a parent for them),
//! and `threads` workers each hold one connection, reused dataset after dataset.
//! A failure costs its dataset: the others go on. Transient failures (a dropped
//! connection, a busy dataset, a parent that has not arrived yet) are retried a bounded
//! number of times with backoff; refusals (divergence) are not.

pub mod cli;
mod conn;
mod deadline;
mod pool;
mod progress;
mod record;
mod replicate;
mod report;
mod select;

pub use report::{
    print_summary, Attempt, Delivery, Parent, Report, RunReport, SnapshotRef, Status, Step, Stream,
    StreamKind,
};
pub use select::{Pattern, SnapshotFilter};

use conn::Connection;
use deadline::Deadline;
use log::{info, warn};
use pool::{run_jobs, Job};
use replicate::Replicator;
use std::collections::HashSet;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use zfsync_cli::Exit;
use zfsync_protocol::Reason;
use zfsync_text::quoted;
use zfsync_text::IoWords;
use zfsync_zfs::protect::SourceMarks;
use zfsync_zfs::{Dataset, FailureKind, Zfs, SYNC_PROPERTY};

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub dataset: Dataset,
    pub address: String,
    pub threads: usize,
    pub dry_run: bool,
    pub dest: String,
    /// `--exclude`: datasets (and their subtrees) left out, by path below `dataset`.
    pub exclude: Vec<Pattern>,
    /// `--include-snaps`, `--exclude-snaps`: the snapshots offered and sent.
    pub snapshots: SnapshotFilter,
    pub timeout: Duration,
    /// How long connecting and the greeting may take together.
    pub connect_timeout: Duration,
    /// The whole run's bound: past it, no dataset is started and streams are aborted.
    pub deadline: Option<Duration>,
    pub retries: u32,
    /// Receiver id for `zfsync:base:ID` marks on delivered snapshots.
    pub mark: Option<String>,
    pub zfs: PathBuf,
    /// No `-c -L -e`: a plain stream (for receivers that cannot take them).
    pub plain: bool,
    /// Send encrypted datasets decrypted instead of raw (needs their keys loaded).
    pub no_raw: bool,
    /// `--props`: each dataset's properties go with its streams (`zfs send -p`).
    pub props: bool,
    /// The key to authenticate with (the first of `--key-file`).
    pub key: Option<zfsync_protocol::auth::Key>,
    /// `--state-dir`: where the run is recorded (the history); `None` records nothing.
    pub state_dir: Option<PathBuf>,
    /// `-q`: no progress bars on a terminal either.
    pub quiet: bool,
}

/// Errors of the sender.
#[derive(Debug)]
pub enum Error {
    Protocol(zfsync_protocol::Error),
    Zfs(zfsync_zfs::Error),
    Io(io::Error),
    /// The receiver's address could not be resolved or connected to.
    Connect(zfsync_link::DialError),
    /// The peer took the connection but did not answer the greeting in time.
    NoGreeting {
        address: String,
        within: Duration,
    },
    /// The peer answered the greeting with something that is not zfsync.
    NotZfsync {
        address: String,
        what: String,
    },
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
    /// The command line cannot work (a source dataset that does not exist): the user must
    /// change it. Exit status 2.
    Usage(String),
}

impl Error {
    /// Whether a new connection and a later try may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Protocol(e) => e.is_retryable(),
            Error::Io(_) | Error::Connect(_) | Error::Closed => true,
            Error::Peer { reason, .. } => reason.is_retryable(),
            Error::Zfs(_) | Error::Violation(_) | Error::Auth(_) | Error::Usage(_) => false,
            // Whatever listens there is not a zfsync receiver: it will not become one.
            Error::NoGreeting { .. } | Error::NotZfsync { .. } => false,
        }
    }

    /// Whether this error says the receiver cannot be reached at all (nothing there, or
    /// not a zfsync receiver): when no connection was ever made, the run ends with it at
    /// once instead of failing every dataset the same way.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Error::Connect(_) | Error::NoGreeting { .. } | Error::NotZfsync { .. }
        )
    }

    /// The exit status of a run this error ended.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Usage(_) => Exit::Usage,
            _ => Exit::Failed,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Protocol(e) => e.fmt(f),
            Error::Zfs(e) => e.fmt(f),
            Error::Io(e) => IoWords(e).fmt(f),
            Error::Connect(e) => unreachable(f, e),
            Error::NoGreeting { address, within } => write!(
                f,
                "{address} did not answer the zfsync greeting within {} s: is it a zfsync-recv?",
                within.as_secs()
            ),
            Error::NotZfsync { address, what } => write!(
                f,
                "{address} does not speak zfsync ({what}): is it a zfsync-recv?"
            ),
            Error::Closed => f.write_str("receiver closed the connection"),
            Error::Peer { reason, text } => write!(f, "{}: {text}", reason.words()),
            Error::Violation(s) => write!(f, "protocol violation by the receiver: {s}"),
            Error::Auth(s) => write!(f, "authentication: {s}"),
            Error::Usage(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for Error {}

/// "cannot reach HOST:PORT: connection refused (is zfsync-recv running there?)".
fn unreachable(f: &mut fmt::Formatter<'_>, e: &zfsync_link::DialError) -> fmt::Result {
    use zfsync_link::DialError;
    match e {
        DialError::Resolve { address, error } => write!(
            f,
            "cannot reach {address}: cannot resolve the host name ({})",
            IoWords(error)
        ),
        DialError::Connect {
            address,
            error: Some(error),
        } if error.kind() == io::ErrorKind::ConnectionRefused => write!(
            f,
            "cannot reach {address}: {} (is zfsync-recv running there?)",
            IoWords(error)
        ),
        DialError::Connect {
            address,
            error: Some(error),
        } => write!(f, "cannot reach {address}: {}", IoWords(error)),
        DialError::Connect {
            address,
            error: None,
        } => write!(f, "cannot reach {address}: the host name has no address"),
    }
}

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
/// cannot be listed); per-dataset failures are in the report. The run and each try are
/// recorded in the history of `config.state_dir` (see `record.rs`).
pub fn run(config: &Config) -> Result<RunReport> {
    let recorder = record::Recorder::open(config);
    let result = run_recorded(config, &recorder);
    recorder.end(&result);
    result
}

fn run_recorded(config: &Config, recorder: &record::Recorder) -> Result<RunReport> {
    let deadline = Deadline::new(config.deadline, Instant::now());
    let zfs = Zfs::detect(&config.zfs)?.with_limit(config.timeout * 5);
    info!("zfs flavor={:?}", zfs.capabilities().flavor);
    check_props(config, zfs.capabilities())?;
    // Greet the receiver while the tree is listed: the receiver lists its side when
    // greeted, so the two listings (the bulk of a no-change run) overlap. The connection
    // becomes the first worker's. A receiver that cannot be reached at all ends the run
    // here; any other failure is retried by the workers as usual.
    let (tree, early) = std::thread::scope(|s| {
        let early = s.spawn(|| Connection::open(config));
        let tree = zfs.list_source_tree(&config.dataset);
        (tree, early.join().ok())
    });
    let tree = tree.map_err(|e| source_error(&zfs, &config.dataset, e))?;
    let early_conn = match early {
        Some(Err(e)) if e.is_unreachable() => return Err(e),
        Some(conn) => conn.ok(),
        None => None,
    };
    // What the receiver judges the root's replica by, on every connection (see
    // `Connection::announce_root`): the entries its offers can hold, the snapshots the
    // filters keep and the base bookmarks standing for snapshots that are gone.
    let root_guids: Vec<u64> = tree
        .iter()
        .find(|i| i.name == config.dataset.as_str())
        .map(|i| {
            let offer = select::Offer::of(i, &config.snapshots);
            offer.entries.iter().map(|s| s.guid).collect()
        })
        .unwrap_or_default();
    let root_guids = zfsync_protocol::root_sample(&root_guids);
    let mut listed = listed_below(&tree, &config.dataset);
    let chosen = select::choose(tree, &config.dataset, &config.exclude);
    if !chosen.unreadable.is_empty() {
        // Not the whole tree: what was not read must not look absent to the receiver.
        listed = None;
    }
    let parents = parents_of_snapshots(chosen.datasets.iter().map(|(_, i)| i), |i| {
        has_kept_snapshots(i, config)
    });
    for p in &chosen.unmatched {
        warn!("--exclude {p} matched no dataset below {}", config.dataset);
    }
    let mut excluded = chosen.excluded;
    for e in &excluded {
        info!("skip dataset={} reason=excluded ({e})", quoted(&e.dataset));
    }
    let by_property = excluded
        .iter()
        .any(|e| matches!(e.why, select::Why::Property { .. }));
    if config.dry_run && by_property {
        // Where an inherited value comes from is not in the listing: one more zfs command,
        // only for a dry run that shows it.
        match zfs.get_sources_recursive(&config.dataset, SYNC_PROPERTY) {
            Ok(sources) => select::add_sources(&mut excluded, &sources),
            Err(e) => warn!("cannot read where {SYNC_PROPERTY} comes from: {e}"),
        }
    }
    let mut reports: Vec<Report> = chosen
        .unreadable
        .into_iter()
        .map(|(dataset, why)| Report {
            dataset,
            delivery: Delivery::failed(why),
        })
        .collect();
    let mut jobs = Vec::new();
    for (rel, info) in chosen.datasets {
        // A dataset without snapshots (that the filters keep) is offered only when
        // something below it has some: the receiver makes a placeholder for it, or its
        // children would wait for ever.
        if !has_kept_snapshots(&info, config) && !parents.contains(&info.name) {
            info!("skip dataset={} reason=no-snapshots", quoted(&info.name));
            reports.push(Report {
                dataset: info.name,
                delivery: Delivery::new(Status::NoSnapshots),
            });
        } else {
            jobs.push(Job {
                info,
                rel,
                attempt: 0,
                failed_tries: Vec::new(),
            });
        }
    }
    // An excluded dataset with an included descendant sends no data, but the receiver
    // needs a parent for that descendant: it is offered without snapshots, for a
    // placeholder, as a parent without snapshots is.
    for e in excluded.iter().filter(|e| parents.contains(&e.dataset)) {
        let Ok(ds) = Dataset::new(&e.dataset) else {
            continue;
        };
        jobs.push(Job {
            rel: ds.relative_to(&config.dataset).unwrap_or("").to_string(),
            info: zfsync_zfs::DatasetInfo {
                name: e.dataset.clone(),
                kind: zfsync_zfs::Kind::Filesystem,
                snapshots: Vec::new(),
                encrypted: false,
                resume_token: None,
                sync: None,
                marks: Default::default(),
                bookmarks: Vec::new(),
            },
            attempt: 0,
            failed_tries: Vec::new(),
        });
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
        (Some(id), false) => {
            let listed = jobs.iter().map(|j| &j.info);
            SourceMarks::load(&zfs, &config.dataset, id, listed)?
        }
        _ => SourceMarks::default(),
    };
    let meter = progress::Meter::new(config.quiet);
    let replicator = Replicator {
        config,
        zfs: &zfs,
        marks: &marks,
        root_guids: &root_guids,
        recorder,
        meter: &meter,
    };
    let (done, cleanup_conn) = run_jobs(replicator, jobs, early_conn, &deadline);
    reports.extend(done);
    // Parents sort before children in the summary.
    reports.sort_by(|a, b| a.dataset.split('/').cmp(b.dataset.split('/')));
    // The receiver places buffered datasets after every connection anyway; asking here
    // places them before this run ends, and the summary says how it went. (A receiver whose
    // buffer has held nothing since its last cleanup answers without a zfs command.)
    let mut warnings = Vec::new();
    let (cleanup, waiting) = if config.dry_run
        || deadline.passed()
        || reports
            .iter()
            .all(|r| r.delivery.status == Status::NoSnapshots)
    {
        if let Some(c) = cleanup_conn {
            c.bye();
        }
        (None, 0)
    } else {
        // The receiver may work on it a while (it waits for offers still finishing): the
        // deadline bounds it as it bounds the datasets.
        let (cleaned, cleaned_rx) = crossbeam_channel::bounded::<()>(0);
        let requested = std::thread::scope(|s| {
            s.spawn(|| deadline.enforce(&cleaned_rx));
            let r = request_cleanup(
                config,
                cleanup_conn,
                listed.as_deref(),
                &root_guids,
                &deadline,
            );
            drop(cleaned);
            r
        });
        match requested {
            // Copies of this tree left in the buffer: the run is not done.
            Ok(done) => (done.line(), done.waiting + done.failed),
            // Not the run's failure as such: the datasets are where the run left them, and
            // the receiver places buffered ones after every connection anyway. But whether
            // what this run put in the buffer is in place now is unknown.
            Err(e) => {
                let why = match deadline.passed() {
                    true => deadline.text(),
                    false => e.to_string(),
                };
                warnings.push(format!("cleanup request failed: {why}"));
                let buffered = reports.iter().filter(|r| r.delivery.buffered()).count();
                (None, buffered as u32)
            }
        }
    };
    let stopped = deadline.passed().then(|| deadline.text());
    Ok(RunReport {
        datasets: reports,
        excluded: match config.dry_run {
            true => excluded.iter().map(|e| e.to_string()).collect(),
            false => Vec::new(),
        },
        cleanup,
        warnings,
        stopped,
        waiting,
    })
}

/// `--props` only where properties can be kept safe: a stream with properties sets every
/// one it carries on a ZFS whose `zfs recv` has no `-x` (zfs-fuse mounts the copy at the
/// stream's mountpoint), and this side cannot see the receiver's ZFS. Refused on such a
/// ZFS, where the receiver is most likely of the same kind.
fn check_props(config: &Config, caps: &zfsync_zfs::Capabilities) -> Result<()> {
    if config.props && !caps.recv_exclude {
        return Err(Error::Usage(format!(
            "--props is refused on this ZFS ({}): its zfs recv cannot keep properties such \
             as mountpoint out of a stream (no -x), so properties are sent only between \
             OpenZFS hosts",
            caps.flavor
        )));
    }
    Ok(())
}

/// The error of a source tree that cannot be listed: a usage error when the dataset does
/// not exist (a typo on the command line), else zfs's own.
fn source_error(zfs: &Zfs, dataset: &Dataset, e: zfsync_zfs::Error) -> Error {
    if e.kind() == FailureKind::NotFound && !zfs.exists(dataset).unwrap_or(true) {
        return Error::Usage(format!("cannot use {dataset}: dataset does not exist"));
    }
    e.into()
}

/// Whether `info` has a snapshot the filters keep: one it can offer.
fn has_kept_snapshots(info: &zfsync_zfs::DatasetInfo, config: &Config) -> bool {
    info.snapshots
        .iter()
        .any(|s| config.snapshots.keeps(&s.name))
}

/// The datasets with a descendant among `datasets` that `offers` snapshots.
fn parents_of_snapshots<'a>(
    datasets: impl IntoIterator<Item = &'a zfsync_zfs::DatasetInfo>,
    offers: impl Fn(&zfsync_zfs::DatasetInfo) -> bool,
) -> HashSet<String> {
    let mut parents = HashSet::new();
    for info in datasets.into_iter().filter(|i| offers(i)) {
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

/// Every dataset of the listed `tree` below `root`, by relative path, whatever the filters
/// choose: what the receiver's `--orphans-after` counts absence by (issue 16). `None` when
/// the listing holds a name that is not below the root: not a listing to trust.
fn listed_below(tree: &[zfsync_zfs::DatasetInfo], root: &Dataset) -> Option<Vec<String>> {
    let mut paths = Vec::with_capacity(tree.len());
    for info in tree.iter().filter(|i| i.name != root.as_str()) {
        let rel = Dataset::new(&info.name)
            .ok()
            .and_then(|d| d.relative_to(root).map(str::to_string))?;
        paths.push(rel);
    }
    Some(paths)
}

/// Asks for the receiver's cleanup on `conn`, a worker's connection still open (a new one
/// could find the receiver's connection slots still taken by the workers' just closed),
/// with the run's dataset list (`listed_below`) when its listing was whole.
fn request_cleanup(
    config: &Config,
    conn: Option<Connection>,
    listed: Option<&[String]>,
    root_guids: &[u64],
    deadline: &Deadline,
) -> Result<report::CleanupDone> {
    let mut conn = match conn {
        Some(c) => c,
        None => Connection::open(config)?,
    };
    conn.watch(deadline)?;
    // The receiver counts a dataset list only on a connection that announced the root
    // (one opened for the cleanup, or whose worker offered nothing, has not).
    conn.announce_root(root_guids)?;
    let done = conn.cleanup(listed)?;
    conn.bye();
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zfsync_zfs::{Capabilities, DatasetInfo, Kind, Snapshot};

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
                sync: None,
                marks: Default::default(),
                bookmarks: Vec::new(),
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
        let mut got: Vec<String> = parents_of_snapshots(&t, |i| !i.snapshots.is_empty())
            .into_iter()
            .filter(|p| p.starts_with("p/r"))
            .collect();
        got.sort();
        assert_eq!(got, ["p/r", "p/r/a"]);
    }

    fn config(args: &[&str]) -> Config {
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match cli::config(&argv) {
            Ok(cli::Parsed::Run((c, _))) => c,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    // issue 16: the list is the whole listing, excluded datasets too, never the root.
    #[test]
    fn the_list_holds_every_listed_dataset_below_the_root() {
        let root = Dataset::new("p/r").unwrap();
        let t = tree(&["p/r", "p/r/a@", "p/r/a/x", "p/r/b"]);
        assert_eq!(
            listed_below(&t, &root).unwrap(),
            ["a", "a/x", "b"].map(String::from)
        );
        assert_eq!(listed_below(&t[..1], &root).unwrap(), Vec::<String>::new());
        let stray = tree(&["p/r", "p/other"]);
        assert_eq!(listed_below(&stray, &root), None);
    }

    #[test]
    fn props_are_sent_only_from_a_zfs_that_can_keep_them_out() {
        let props = config(&["--props", "tank/data", "h"]);
        let plain = config(&["tank/data", "h"]);
        assert!(check_props(&props, &Capabilities::openzfs("2.2.0")).is_ok());
        assert!(check_props(&plain, &Capabilities::legacy()).is_ok());
        match check_props(&props, &Capabilities::legacy()) {
            Err(Error::Usage(why)) => {
                assert!(why.starts_with("--props is refused"), "{why}");
                assert!(why.contains("no -x"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }
}
