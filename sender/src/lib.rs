//! `zfsync-send` as a library: [`run`] replicates a dataset tree to a receiver and returns
//! the per-dataset reports.
//!
//! The tree is listed once (one zfs command), every dataset with snapshots becomes a job on
//! a channel, and `threads` workers each hold one connection, reused dataset after dataset.
//! A failure costs its dataset: the others go on. Transient failures (a dropped
//! connection, a busy dataset, a parent that has not arrived yet) are retried a bounded
//! number of times with backoff; refusals (divergence) are not.

pub mod cli;
mod conn;

use conn::Connection;
use crossbeam_channel::{unbounded, RecvTimeoutError};
use log::{info, warn};
use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zfsync_protocol::{Outcome, Plan, Reason};
use zfsync_zfs::protect::SourceMarks;
use zfsync_zfs::{Dataset, DatasetInfo, SendOptions, Zfs};

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

/// How one dataset ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Snapshots were sent; the note says which.
    Sent,
    UpToDate,
    /// The dataset has no snapshot: nothing to send, not an error.
    NoSnapshots,
    /// Dry run: what would be sent.
    WouldSend,
    Refused(Reason),
    Failed,
}

impl Status {
    pub fn is_ok(&self) -> bool {
        matches!(
            self,
            Status::Sent | Status::UpToDate | Status::NoSnapshots | Status::WouldSend
        )
    }

    pub fn label(&self) -> String {
        match self {
            Status::Sent => "sent".into(),
            Status::UpToDate => "up-to-date".into(),
            Status::NoSnapshots => "no-snapshots".into(),
            Status::WouldSend => "would-send".into(),
            Status::Refused(r) => format!("refused:{}", r.as_str()),
            Status::Failed => "failed".into(),
        }
    }
}

/// The report of one dataset.
#[derive(Clone, Debug)]
pub struct Report {
    pub dataset: String,
    pub status: Status,
    pub bytes: u64,
    pub secs: f64,
    pub note: String,
}

/// The outcome of a whole run.
#[derive(Debug)]
pub struct RunReport {
    pub datasets: Vec<Report>,
    /// The receiver's cleanup, if it was asked for and answered.
    pub cleanup: Option<String>,
}

impl RunReport {
    pub fn all_ok(&self) -> bool {
        self.datasets.iter().all(|r| r.status.is_ok())
    }
}

struct Job {
    info: DatasetInfo,
    rel: String,
    attempt: u32,
}

/// Replicates the tree. Errors only when nothing could be tried at all (the source tree
/// cannot be listed); per-dataset failures are in the report.
pub fn run(config: &Config) -> Result<RunReport> {
    let zfs = Zfs::detect(&config.zfs)?.with_limit(config.timeout * 5);
    info!("zfs flavor={:?}", zfs.capabilities().flavor);
    // Greet the receiver while the tree is listed: the receiver lists its side when
    // greeted, so the two listings (the bulk of a no-change run) overlap. The connection
    // becomes the first worker's. A failure here is retried by the workers as usual.
    let (tree, first) = std::thread::scope(|s| {
        let early = s.spawn(|| Connection::open(config).ok());
        let tree = zfs.list_tree(&config.dataset);
        (tree, early.join().ok().flatten())
    });
    let tree = tree?;
    // What the receiver judges the root's replica by, on every connection (see
    // `Connection::announce_root`).
    let root_guids: Vec<u64> = tree
        .iter()
        .find(|i| i.name == config.dataset.as_str())
        .map(|i| i.snapshots.iter().map(|s| s.guid).collect())
        .unwrap_or_default();
    let root_guids = zfsync_protocol::root_sample(&root_guids);
    let mut reports = Vec::new();
    let mut jobs = Vec::new();
    for info in tree {
        let ds = Dataset::new(&info.name).map_err(zfsync_zfs::Error::from)?;
        let rel = ds.relative_to(&config.dataset).unwrap_or("").to_string();
        if info.snapshots.is_empty() {
            info!("skip dataset={} reason=no-snapshots", info.name);
            reports.push(Report {
                dataset: info.name,
                status: Status::NoSnapshots,
                bytes: 0,
                secs: 0.0,
                note: String::new(),
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
    let (done, spare) = run_jobs(config, &zfs, &marks, &root_guids, jobs, first);
    reports.extend(done);
    // Parents sort before children in the summary.
    reports.sort_by(|a, b| a.dataset.split('/').cmp(b.dataset.split('/')));
    // The receiver places buffered datasets after every connection anyway; asking here
    // places them before this run ends, and the summary says how it went. (A receiver whose
    // buffer has held nothing since its last cleanup answers without a zfs command.)
    let cleanup = if config.dry_run || reports.iter().all(|r| r.status == Status::NoSnapshots) {
        if let Some(c) = spare {
            c.bye();
        }
        None
    } else {
        match request_cleanup(config, spare) {
            Ok(s) => s,
            Err(e) => {
                warn!("cleanup request failed error={e}");
                Some(format!("cleanup request failed: {e}"))
            }
        }
    };
    Ok(RunReport {
        datasets: reports,
        cleanup,
    })
}

/// Asks for the receiver's cleanup on `spare`, a worker's connection still open (a new one
/// could find the receiver's connection slots still taken by the workers' just closed).
fn request_cleanup(config: &Config, spare: Option<Connection>) -> Result<Option<String>> {
    let mut conn = match spare {
        Some(c) => c,
        None => Connection::open(config)?,
    };
    let (placed, removed, waiting, failed, text) = conn.cleanup()?;
    conn.bye();
    if placed + removed + waiting + failed == 0 {
        return Ok(None);
    }
    let mut s = format!("receiver cleanup: {placed} placed, {removed} stale copies removed, {waiting} waiting, {failed} failed");
    if !text.is_empty() {
        s.push_str(":\n  ");
        s.push_str(&text.replace('\n', "\n  "));
    }
    Ok(Some(s))
}

/// Runs the jobs on `config.threads` workers, retrying transient failures. Returns the
/// reports and one of the workers' connections, still open.
fn run_jobs(
    config: &Config,
    zfs: &Zfs,
    marks: &SourceMarks,
    root_guids: &[u64],
    jobs: Vec<Job>,
    first: Option<Connection>,
) -> (Vec<Report>, Option<Connection>) {
    let mut reports = Vec::new();
    if jobs.is_empty() {
        return (reports, first);
    }
    let mut first = first;
    let (job_tx, job_rx) = unbounded::<Job>();
    // (job, its report, whether to retry); no report: put back untouched (see `worker`).
    let (res_tx, res_rx) = unbounded::<(Job, Option<Report>, bool)>();
    let quit = AtomicBool::new(false);
    // Workers that hold (or held) a connection: while there is one, a worker the receiver
    // turns away as busy hands its job back and stops (see `worker`).
    let established = AtomicUsize::new(0);
    let spare = Mutex::new(None);
    let workers = config.threads.min(jobs.len());
    let mut outstanding = jobs.len();
    for j in jobs {
        let _ = job_tx.send(j);
    }
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (job_rx, res_tx) = (job_rx.clone(), res_tx.clone());
            let shared = Crew {
                config,
                zfs,
                marks,
                root_guids,
                quit: &quit,
                established: &established,
                spare: &spare,
            };
            let conn = first.take();
            // Counted before any worker runs: a worker turned away must see it.
            if conn.is_some() {
                established.fetch_add(1, Ordering::SeqCst);
            }
            scope.spawn(move || worker(conn, job_rx, res_tx, shared));
        }
        drop(res_tx);
        let mut delayed: Vec<(Instant, Job)> = Vec::new();
        while outstanding > 0 {
            let wait = delayed
                .iter()
                .map(|(t, _)| t.saturating_duration_since(Instant::now()))
                .min()
                .unwrap_or(Duration::from_secs(3600));
            match res_rx.recv_timeout(wait) {
                Ok((job, None, _)) => {
                    let _ = job_tx.send(job);
                }
                Ok((mut job, Some(report), retry)) => {
                    if retry && job.attempt < config.retries && !quit.load(Ordering::SeqCst) {
                        job.attempt += 1;
                        let backoff = Duration::from_millis(500 << job.attempt.min(5));
                        info!(
                            "retry dataset={} attempt={} in={:?} after={:?}",
                            job.info.name, job.attempt, backoff, report.note
                        );
                        delayed.push((Instant::now() + backoff, job));
                    } else {
                        outstanding -= 1;
                        reports.push(report);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // Every worker is gone with datasets still to do (each was turned away
                    // as busy): those failed, and the run must say so.
                    let left: Vec<Job> = job_rx
                        .try_iter()
                        .chain(delayed.drain(..).map(|(_, j)| j))
                        .collect();
                    for job in left {
                        warn!("no worker left dataset={}", job.info.name);
                        reports.push(Report {
                            dataset: job.info.name,
                            status: Status::Failed,
                            bytes: 0,
                            secs: 0.0,
                            note: "not sent: no connection left (the receiver turned every worker away as busy)".into(),
                        });
                    }
                    break;
                }
            }
            let now = Instant::now();
            let (due, later): (Vec<_>, Vec<_>) = delayed.drain(..).partition(|(t, _)| *t <= now);
            delayed = later;
            for (_, j) in due {
                let _ = job_tx.send(j);
            }
        }
        drop(job_tx);
    });
    (
        reports,
        spare.into_inner().unwrap_or_else(|p| p.into_inner()),
    )
}

/// What the workers of a run share.
#[derive(Clone, Copy)]
struct Crew<'a> {
    config: &'a Config,
    zfs: &'a Zfs,
    marks: &'a SourceMarks,
    /// What each connection announces of the root before its first offer.
    root_guids: &'a [u64],
    /// Set by a worker that panicked: no more retries.
    quit: &'a AtomicBool,
    /// Workers alive that have had a connection.
    established: &'a AtomicUsize,
    /// The connection of the first worker to finish, kept open for the cleanup request.
    spare: &'a Mutex<Option<Connection>>,
}

/// A worker's queues: jobs in, (job, report, retry?) out.
type Jobs = crossbeam_channel::Receiver<Job>;
type Results = crossbeam_channel::Sender<(Job, Option<Report>, bool)>;

fn worker(conn: Option<Connection>, jobs: Jobs, results: Results, crew: Crew<'_>) {
    // Whether this worker counts in `crew.established` (one given a connection was
    // counted by `run_jobs`).
    let mut counted = conn.is_some();
    let last = worker_loop(conn, jobs, results, crew, &mut counted);
    if counted {
        crew.established.fetch_sub(1, Ordering::SeqCst);
    }
    if let Some(c) = last {
        let mut spare = crew.spare.lock().unwrap_or_else(|p| p.into_inner());
        match spare.as_ref() {
            None => *spare = Some(c),
            Some(_) => c.bye(),
        }
    }
}

/// Whether a worker turned away as busy may stop, leaving its jobs to the others: only
/// while another worker has a connection. A worker counted in `established` leaves the
/// count in the same atomic step, so two such workers cannot each see the other and
/// both stop.
fn leave_if_others(established: &AtomicUsize, counted: &mut bool) -> bool {
    if !*counted {
        return established.load(Ordering::SeqCst) > 0;
    }
    let left = established
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n > 1).then(|| n - 1)
        })
        .is_ok();
    if left {
        *counted = false;
    }
    left
}

/// Takes jobs until the queue ends; returns the connection still open, if any.
fn worker_loop(
    mut conn: Option<Connection>,
    jobs: Jobs,
    results: Results,
    crew: Crew<'_>,
    counted: &mut bool,
) -> Option<Connection> {
    let Crew {
        config,
        zfs,
        marks,
        root_guids,
        quit,
        ..
    } = crew;
    // Keep an idle connection alive while other workers finish or retries wait.
    let idle = (config.timeout / 3).max(Duration::from_secs(1));
    loop {
        let job = match jobs.recv_timeout(idle) {
            Ok(j) => j,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(c) = conn.as_mut() {
                    if c.keepalive().is_err() {
                        conn = None;
                    }
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let started = Instant::now();
        let mut open_error = None;
        if conn.is_none() {
            match Connection::open(config) {
                Ok(c) => {
                    conn = Some(c);
                    if !*counted {
                        *counted = true;
                        crew.established.fetch_add(1, Ordering::SeqCst);
                    }
                }
                // More workers than the receiver takes connections (its -j): while others
                // have connections, this one hands its job back and stops.
                Err(Error::Peer {
                    reason: Reason::Busy,
                    text,
                }) if leave_if_others(crew.established, counted) => {
                    info!("worker stops: the receiver takes no more connections text={text:?}");
                    let _ = results.send((job, None, false));
                    return None;
                }
                Err(e) => open_error = Some(e),
            }
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            if let Some(e) = open_error.take() {
                return Err(e);
            }
            let conn = conn.as_mut().expect("connected");
            conn.announce_root(root_guids)?;
            let (status, bytes, note) = replicate(conn, config, zfs, &job)?;
            if matches!(status, Status::Sent | Status::UpToDate) {
                if let Err(e) = marks.mark_delivered(zfs, &job.info.name, newest_name(&job.info)) {
                    return Ok::<_, Error>((
                        Status::Failed,
                        bytes,
                        format!("delivered, but marking the base failed: {e}"),
                    ));
                }
            }
            Ok((status, bytes, note))
        }));
        let (report, retry) = match outcome {
            Ok(Ok((status, bytes, note))) => {
                let retry = matches!(status, Status::Refused(r) if r.is_retryable());
                (
                    Report {
                        dataset: job.info.name.clone(),
                        status,
                        bytes,
                        secs: started.elapsed().as_secs_f64(),
                        note,
                    },
                    retry,
                )
            }
            Ok(Err(e)) => {
                // The connection's state is unknown after an error: start afresh.
                conn = None;
                warn!("dataset failed dataset={} error={e}", job.info.name);
                let retry = e.is_retryable();
                (
                    Report {
                        dataset: job.info.name.clone(),
                        status: Status::Failed,
                        bytes: 0,
                        secs: started.elapsed().as_secs_f64(),
                        note: e.to_string(),
                    },
                    retry,
                )
            }
            Err(_) => {
                conn = None;
                quit.store(true, Ordering::SeqCst);
                (
                    Report {
                        dataset: job.info.name.clone(),
                        status: Status::Failed,
                        bytes: 0,
                        secs: 0.0,
                        note: "internal error: worker panicked".into(),
                    },
                    false,
                )
            }
        };
        if results.send((job, Some(report), retry)).is_err() {
            break;
        }
    }
    conn
}

/// Whether a resume token from the receiver may be used for `job`: it must end with one of
/// the snapshots offered (name and GUID, in this dataset), start (if incremental) from one
/// of them, and be raw when this run sends the dataset raw, so that a receiver cannot get
/// another dataset's data, or an encrypted dataset's plaintext, by naming it in a token.
fn check_token(
    t: &zfsync_zfs::TokenInfo,
    job: &Job,
    config: &Config,
) -> std::result::Result<(), String> {
    let ds = &job.info.name;
    let snaps = &job.info.snapshots;
    let toname = t.toname.as_deref().ok_or("it names no snapshot")?;
    let snap = match toname.split_once('@') {
        Some((d, s)) if d == ds.as_str() => s,
        _ => return Err(format!("it is for {toname}, not a snapshot of {ds}")),
    };
    let Some(to) = snaps.iter().find(|s| s.name == snap) else {
        return Err(format!("it is for @{snap}, which this run did not offer"));
    };
    if t.toguid != Some(to.guid) {
        return Err(format!("its @{snap} is not this source's (another GUID)"));
    }
    if let Some(from) = t.fromguid {
        if !snaps.iter().any(|s| s.guid == from) {
            return Err(format!(
                "it starts from a snapshot this source does not have (guid {from})"
            ));
        }
    }
    if job.info.encrypted && !config.no_raw && !t.rawok {
        return Err(format!(
            "it would send @{snap} decrypted, and this run sends encrypted datasets raw"
        ));
    }
    Ok(())
}

/// What to stream for one plan.
enum Source {
    Snapshot { name: String, opts: SendOptions },
    Resume { token: String },
}

/// One dataset's session: offer, and stream what the receiver asks for. A new dataset
/// gets its oldest snapshot in full, then the rest incrementally, on the same connection;
/// an interrupted stream is first resumed. Each round ends with the receiver's verdict.
fn replicate(
    conn: &mut Connection,
    config: &Config,
    zfs: &Zfs,
    job: &Job,
) -> Result<(Status, u64, String)> {
    let snaps = &job.info.snapshots;
    let newest = snaps.last().expect("jobs have snapshots");
    let ds = &job.info.name;
    let mut bytes = 0;
    let mut notes: Vec<String> = Vec::new();
    let mut resume_failed = false;
    // Rounds: resume, full, incremental, and one spare for a resume that failed. More
    // would mean the receiver does not keep what it acknowledged.
    for _round in 0..4 {
        let plan = conn.offer(&job.rel, job.info.kind, snaps, config.dry_run)?;
        let (source, what) = match plan {
            // Up to date means the receiver has our newest snapshot; it names it.
            Plan::UpToDate { name } if name != newest.name => {
                return Ok((
                    Status::Failed,
                    bytes,
                    format!(
                        "receiver says up to date with @{name}, but the newest snapshot is @{}",
                        newest.name
                    ),
                ))
            }
            Plan::UpToDate { .. } if notes.is_empty() => {
                return Ok((Status::UpToDate, 0, format!("@{}", newest.name)))
            }
            Plan::UpToDate { .. } => return Ok((Status::Sent, bytes, notes.join(", "))),
            Plan::Refused { reason, text } => return Ok((Status::Refused(reason), bytes, text)),
            Plan::Resume { token } => {
                if resume_failed {
                    let text = "receiver offered a resume token again after it failed";
                    conn.abandon(text)?;
                    return Ok((Status::Failed, bytes, text.into()));
                }
                // The token is the receiver's word for what to send, and `zfs send -t`
                // sends whatever it names, as it names it: it is checked first
                // (`check_token`). An unusable token (a stale one: its snapshot is gone)
                // or a refused one ends like a failed resume: the receiver drops its
                // partial state on Abort, and the next offer gets a plan from scratch.
                let refusal = match zfs.resume_token_info(&token) {
                    Err(e) => Err(format!("resume failed ({e})")),
                    Ok(t) => match check_token(&t, job, config) {
                        Ok(()) => Ok(t.bytes.unwrap_or(0)),
                        Err(why) => Err(format!("resume refused ({why})")),
                    },
                };
                let saved = match refusal {
                    Ok(saved) => saved,
                    Err(what) => {
                        warn!("resume token not used dataset={ds}: {what}");
                        conn.abandon(&format!("resume token not used: {what}"))?;
                        notes.push(format!("{what}, token discarded"));
                        resume_failed = true;
                        continue;
                    }
                };
                (
                    Source::Resume { token },
                    format!("resumed ({saved} bytes saved)"),
                )
            }
            Plan::Full { buffered } => {
                let first = &snaps[0];
                let mut what = format!("full @{}", first.name);
                if buffered {
                    what.push_str(" (buffered: parent not there yet)");
                }
                if config.dry_run && snaps.len() > 1 {
                    what.push_str(&format!(
                        ", then @{}..@{} ({})",
                        first.name,
                        newest.name,
                        snapshots(snaps.len() - 1)
                    ));
                }
                let name = format!("{ds}@{}", first.name);
                (
                    Source::Snapshot {
                        name,
                        opts: send_options(config, &job.info, None),
                    },
                    what,
                )
            }
            Plan::Incremental {
                from_guid,
                from_name,
            } => {
                let Some(from) = snaps.iter().find(|s| s.guid == from_guid) else {
                    let text = format!("receiver named base @{from_name} (guid {from_guid}), which this source does not have");
                    conn.abandon(&text)?;
                    return Ok((Status::Failed, bytes, text));
                };
                let count = snaps
                    .iter()
                    .rev()
                    .take_while(|s| s.guid != from_guid)
                    .count();
                let what = format!(
                    "incremental @{}..@{} ({})",
                    from.name,
                    newest.name,
                    snapshots(count)
                );
                let mut opts = send_options(config, &job.info, Some(format!("{ds}@{}", from.name)));
                opts.intermediates = count > 1;
                (
                    Source::Snapshot {
                        name: format!("{ds}@{}", newest.name),
                        opts,
                    },
                    what,
                )
            }
        };
        if config.dry_run {
            return Ok((Status::WouldSend, 0, what));
        }
        info!("send start dataset={ds} {what}");
        let spawned = match &source {
            Source::Snapshot { name, opts } => zfs.send(name, opts),
            Source::Resume { token } => zfs.send_resume(token),
        };
        let (outcome, sent) = conn.stream(spawned, ds)?;
        bytes += sent;
        match outcome {
            Outcome::Done {
                newest: got,
                newest_guid,
                ..
            } => {
                notes.push(what);
                if newest_guid == newest.guid {
                    return Ok((Status::Sent, bytes, notes.join(", ")));
                }
                if !snaps.iter().any(|s| s.guid == newest_guid) {
                    return Ok((
                        Status::Failed,
                        bytes,
                        format!(
                            "receiver's newest snapshot is now @{got}, which is not one of ours"
                        ),
                    ));
                }
            }
            // A resume that fails (stale token, source snapshot gone) is dropped by the
            // receiver: offer again for a normal incremental.
            Outcome::Failed { text, .. } if matches!(source, Source::Resume { .. }) => {
                warn!("resume failed dataset={ds} error={text}");
                notes.push(format!("resume failed ({text}), token discarded"));
                resume_failed = true;
            }
            Outcome::Failed { reason, text } => {
                let status = if reason == Reason::StreamFailed {
                    Status::Failed
                } else {
                    Status::Refused(reason)
                };
                return Ok((status, bytes, text));
            }
        }
    }
    Ok((
        Status::Failed,
        bytes,
        "receiver did not advance after the streams it accepted".into(),
    ))
}

/// The send flags for one dataset: the fast ones the ZFS has (the zfs module drops what
/// it lacks), and raw for an encrypted dataset so it stays encrypted on the receiver.
/// The newest snapshot of a job: what the receiver has once the job is delivered.
fn newest_name(info: &DatasetInfo) -> &str {
    &info.snapshots.last().expect("jobs have snapshots").name
}

fn send_options(config: &Config, info: &DatasetInfo, from: Option<String>) -> SendOptions {
    SendOptions {
        from,
        intermediates: false,
        compressed: !config.plain,
        large_blocks: !config.plain,
        embedded: !config.plain,
        raw: info.encrypted && !config.no_raw,
    }
}

/// "1 snapshot", "3 snapshots".
fn snapshots(n: usize) -> String {
    format!("{n} snapshot{}", if n == 1 { "" } else { "s" })
}

/// Prints the summary table and the closing line.
pub fn print_summary(report: &RunReport, quiet: bool, out: &mut dyn io::Write) -> io::Result<()> {
    let width = report
        .datasets
        .iter()
        .map(|r| r.dataset.len())
        .max()
        .unwrap_or(7)
        .max(7);
    if !quiet {
        writeln!(
            out,
            "{:<width$}  {:<22}  {:>14}  {:>8}  NOTE",
            "DATASET", "OUTCOME", "BYTES", "SECS"
        )?;
        for r in &report.datasets {
            writeln!(
                out,
                "{:<width$}  {:<22}  {:>14}  {:>8.2}  {}",
                r.dataset,
                r.status.label(),
                r.bytes,
                r.secs,
                r.note.replace('\n', " ")
            )?;
        }
    }
    if let Some(c) = &report.cleanup {
        writeln!(out, "{c}")?;
    }
    let failed = report.datasets.iter().filter(|r| !r.status.is_ok()).count();
    let sent = report
        .datasets
        .iter()
        .filter(|r| r.status == Status::Sent)
        .count();
    let bytes: u64 = report.datasets.iter().map(|r| r.bytes).sum();
    writeln!(
        out,
        "zfsync-send: {} datasets, {sent} sent, {failed} failed, {bytes} bytes",
        report.datasets.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use zfsync_zfs::{Kind, Snapshot, TokenInfo};

    fn job(encrypted: bool) -> Job {
        let snap = |name: &str, guid| Snapshot {
            name: name.into(),
            guid,
            createtxg: guid,
        };
        Job {
            info: DatasetInfo {
                name: "tank/data".into(),
                kind: Kind::Filesystem,
                snapshots: vec![snap("s1", 11), snap("s2", 22)],
                encrypted,
                resume_token: None,
            },
            rel: String::new(),
            attempt: 0,
        }
    }

    fn config(no_raw: bool) -> Config {
        let argv: Vec<String> = ["tank/data", "backup"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut c = match cli::parse(&argv).unwrap() {
            cli::Parsed::Run(a) => a.into_config().unwrap(),
            _ => unreachable!(),
        };
        c.no_raw = no_raw;
        c
    }

    fn token(toname: &str, toguid: u64, fromguid: Option<u64>, rawok: bool) -> TokenInfo {
        TokenInfo {
            toname: Some(toname.into()),
            toguid: Some(toguid),
            fromguid,
            bytes: Some(1),
            rawok,
        }
    }

    #[test]
    fn resume_tokens_are_checked_against_the_offer() {
        let (j, c) = (job(false), config(false));
        assert_eq!(
            check_token(&token("tank/data@s2", 22, Some(11), false), &j, &c),
            Ok(())
        );
        assert_eq!(
            check_token(&token("tank/data@s1", 11, None, false), &j, &c),
            Ok(())
        );
        let refused = |t: TokenInfo, why: &str| {
            let e = check_token(&t, &j, &c).unwrap_err();
            assert!(e.contains(why), "{e:?} lacks {why:?}");
        };
        refused(
            token("tank/other@s2", 22, None, false),
            "not a snapshot of tank/data",
        );
        refused(
            token("tank/data/kid@s2", 22, None, false),
            "not a snapshot of tank/data",
        );
        refused(token("tank/data@s3", 33, None, false), "did not offer");
        refused(token("tank/data@s2", 99, None, false), "another GUID");
        refused(token("tank/data@s2", 22, Some(7), false), "does not have");
        refused(TokenInfo::default(), "names no snapshot");
    }

    #[test]
    fn an_encrypted_dataset_resumes_only_raw_unless_sent_decrypted() {
        let t = |rawok| token("tank/data@s2", 22, Some(11), rawok);
        let e = check_token(&t(false), &job(true), &config(false)).unwrap_err();
        assert!(e.contains("decrypted"), "{e}");
        assert_eq!(check_token(&t(true), &job(true), &config(false)), Ok(()));
        // --no-raw: the user sends it decrypted anyway.
        assert_eq!(check_token(&t(false), &job(true), &config(true)), Ok(()));
    }
}
