//! The worker pool: jobs on a channel, `threads` workers that each hold one connection
//! reused dataset after dataset, retries with backoff for transient failures, and the rule
//! that a worker the receiver turns away as busy hands its job back and stops while
//! another worker has a connection.
//!
//! It owns no replication logic (that is [`crate::replicate`]) and prints nothing.

use crate::conn::Connection;
use crate::deadline::Deadline;
use crate::replicate::Replicator;
use crate::report::{Attempt, Delivery, Report, Status};
use crate::Error;
use crossbeam_channel::{bounded, unbounded, RecvTimeoutError};
use log::{error, info};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zfsync_protocol::Reason;
use zfsync_text::quoted;
use zfsync_zfs::DatasetInfo;

/// One dataset to replicate, and how many times it has been retried.
pub(crate) struct Job {
    pub(crate) info: DatasetInfo,
    /// The dataset's path relative to the sent root: what the offer names.
    pub(crate) rel: String,
    pub(crate) attempt: u32,
    /// How the tries so far failed, oldest first.
    pub(crate) failed_tries: Vec<Attempt>,
}

/// What a worker sends back for a job.
enum JobResult {
    /// The job was tried: its report, and whether a later try may succeed.
    Tried {
        job: Job,
        report: Report,
        retry: bool,
    },
    /// The job was not tried: the receiver turned the worker away as busy, and the worker
    /// stopped. Another worker takes it.
    HandedBack(Job),
    /// The job was not tried: the run's deadline had passed.
    Late(Job),
}

/// Runs the jobs on `threads` workers, retrying transient failures, until they are done
/// or `deadline` passes. `early_conn`, a connection already greeted, becomes the first
/// worker's. Returns the reports and one of the workers' connections, still open, for
/// the cleanup request.
pub(crate) fn run_jobs(
    replicator: Replicator<'_>,
    jobs: Vec<Job>,
    early_conn: Option<Connection>,
    deadline: &Deadline,
) -> (Vec<Report>, Option<Connection>) {
    let config = replicator.config;
    let mut reports = Vec::new();
    if jobs.is_empty() {
        return (reports, early_conn);
    }
    let mut early_conn = early_conn;
    let (job_tx, job_rx) = unbounded::<Job>();
    let (result_tx, result_rx) = unbounded::<JobResult>();
    let quit = AtomicBool::new(false);
    let connected = AtomicUsize::new(0);
    let cleanup_conn = Mutex::new(None);
    let workers = config.threads.min(jobs.len());
    let mut outstanding = jobs.len();
    for j in jobs {
        let _ = job_tx.send(j);
    }
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (job_rx, result_tx) = (job_rx.clone(), result_tx.clone());
            let pool = Pool {
                replicator,
                quit: &quit,
                cleanup_conn: &cleanup_conn,
                deadline,
            };
            let conn = early_conn.take();
            // Counted before any worker runs: a worker turned away must see it.
            let seat = Seat::new(&connected, conn.is_some());
            scope.spawn(move || worker(conn, seat, job_rx, result_tx, pool));
        }
        drop(result_tx);
        let (run_done, run_done_rx) = bounded::<()>(0);
        scope.spawn(move || deadline.enforce(&run_done_rx));
        // Retries waiting out their backoff.
        let mut delayed: Vec<(Instant, Job)> = Vec::new();
        while outstanding > 0 {
            let wait = delayed
                .iter()
                .map(|(t, _)| t.saturating_duration_since(Instant::now()))
                .chain(deadline.left())
                .min()
                .unwrap_or(Duration::from_secs(3600));
            match result_rx.recv_timeout(wait) {
                Ok(JobResult::HandedBack(job)) => {
                    let _ = job_tx.send(job);
                }
                Ok(JobResult::Late(job)) => {
                    outstanding -= 1;
                    reports.push(finished(not_started(job, deadline)));
                }
                Ok(JobResult::Tried {
                    mut job,
                    mut report,
                    retry,
                }) => {
                    let stopped = deadline.passed();
                    if retry
                        && job.attempt < config.retries
                        && !quit.load(Ordering::SeqCst)
                        && !stopped
                    {
                        // Not a failure yet: said at info, the final one is an error.
                        job.attempt += 1;
                        let backoff = Duration::from_millis(500 << job.attempt.min(5));
                        let what = job.failed_tries.last().map(|t| t.what.as_str());
                        info!(
                            "retry dataset={} attempt={} of {} will retry in={:?} error={}",
                            quoted(&job.info.name),
                            job.attempt,
                            config.retries + 1,
                            backoff,
                            quoted(what.unwrap_or_default())
                        );
                        delayed.push((Instant::now() + backoff, job));
                    } else {
                        if stopped && !report.delivery.status.is_ok() {
                            // Cut by the deadline, most likely: say that first.
                            let d = &mut report.delivery;
                            let why = d.error.take().unwrap_or_default();
                            let text = format!("stopped: {} ({why})", deadline.text());
                            if let Some(last) = d.failed_tries.last_mut() {
                                last.what = text.clone();
                            }
                            d.error = Some(text);
                        }
                        outstanding -= 1;
                        reports.push(finished(report));
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
                        let text = "not sent: no connection left (the receiver turned every worker away as busy)";
                        reports.push(finished(Report {
                            dataset: job.info.name,
                            delivery: Delivery {
                                attempts: job.attempt,
                                failed_tries: job.failed_tries,
                                ..Delivery::failed(text)
                            },
                        }));
                    }
                    break;
                }
            }
            if deadline.passed() {
                // Nothing more starts: what waits in the queue or out a backoff is not done.
                let left: Vec<Job> = job_rx
                    .try_iter()
                    .chain(delayed.drain(..).map(|(_, j)| j))
                    .collect();
                outstanding -= left.len();
                for job in left {
                    reports.push(finished(not_started(job, deadline)));
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
        drop(run_done);
    });
    let cleanup_conn = cleanup_conn.into_inner();
    (reports, cleanup_conn.unwrap_or_else(|p| p.into_inner()))
}

/// The report of a job the deadline left undone before its (next) try.
fn not_started(job: Job, deadline: &Deadline) -> Report {
    let text = format!("not started: {}", deadline.text());
    Report {
        dataset: job.info.name,
        delivery: Delivery {
            attempts: job.attempt,
            failed_tries: job.failed_tries,
            ..Delivery::failed(text)
        },
    }
}

/// A dataset's final report, its failure logged: once, as an error, whatever retries
/// came before.
fn finished(report: Report) -> Report {
    let d = &report.delivery;
    if !d.status.is_ok() {
        error!(
            "dataset {} dataset={} attempts={} error={}",
            d.status.label(),
            quoted(&report.dataset),
            d.attempts,
            quoted(d.note())
        );
    }
    report
}

/// What the workers of a pool share.
#[derive(Clone, Copy)]
struct Pool<'a> {
    replicator: Replicator<'a>,
    /// Set by a worker that panicked: no more retries.
    quit: &'a AtomicBool,
    /// The connection of the first worker to finish, kept open for the cleanup request.
    cleanup_conn: &'a Mutex<Option<Connection>>,
    /// The run's bound: past it, jobs taken are not tried.
    deadline: &'a Deadline,
}

/// A worker's place in the count of connected workers (those alive that hold, or held, a
/// connection): while another worker is connected, one the receiver turns away as busy
/// can stop and leave its jobs to the others.
struct Seat<'a> {
    connected: &'a AtomicUsize,
    /// Whether this worker is in the count.
    counted: bool,
}

impl<'a> Seat<'a> {
    fn new(connected: &'a AtomicUsize, has_conn: bool) -> Seat<'a> {
        let mut seat = Seat {
            connected,
            counted: false,
        };
        if has_conn {
            seat.count();
        }
        seat
    }

    /// Counts this worker, once: it has a connection.
    fn count(&mut self) {
        if !self.counted {
            self.counted = true;
            self.connected.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Whether this worker, turned away as busy, may stop: only while another worker is
    /// connected. A counted worker leaves the count in the same atomic step, so two such
    /// workers cannot each see the other and both stop.
    fn stop_if_others_connected(&mut self) -> bool {
        if !self.counted {
            return self.connected.load(Ordering::SeqCst) > 0;
        }
        let left = self
            .connected
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n > 1).then(|| n - 1)
            })
            .is_ok();
        if left {
            self.counted = false;
        }
        left
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.connected.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

type Jobs = crossbeam_channel::Receiver<Job>;
type Results = crossbeam_channel::Sender<JobResult>;

fn worker(conn: Option<Connection>, mut seat: Seat<'_>, jobs: Jobs, results: Results, pool: Pool) {
    let last = worker_loop(conn, &mut seat, jobs, results, pool);
    drop(seat);
    if let Some(c) = last {
        let mut kept = pool.cleanup_conn.lock().unwrap_or_else(|p| p.into_inner());
        match kept.as_ref() {
            None => *kept = Some(c),
            Some(_) => c.bye(),
        }
    }
}

/// Takes jobs until the queue ends; returns the connection still open, if any.
fn worker_loop(
    mut conn: Option<Connection>,
    seat: &mut Seat<'_>,
    jobs: Jobs,
    results: Results,
    pool: Pool<'_>,
) -> Option<Connection> {
    let config = pool.replicator.config;
    if let Some(c) = conn.as_mut() {
        if c.watch(pool.deadline).is_err() {
            conn = None;
        }
    }
    // Keep an idle connection alive while other workers finish or retries wait.
    let idle = (config.timeout / 3).max(Duration::from_secs(1));
    loop {
        let mut job = match jobs.recv_timeout(idle) {
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
        if pool.deadline.passed() {
            if results.send(JobResult::Late(job)).is_err() {
                break;
            }
            continue;
        }
        let started = Instant::now();
        let recorded = pool.replicator.recorder.start(&job);
        let mut open_error = None;
        if conn.is_none() {
            match Connection::open(config) {
                Ok(mut c) => {
                    match c.watch(pool.deadline) {
                        Ok(()) => conn = Some(c),
                        Err(e) => open_error = Some(e),
                    }
                    seat.count();
                }
                // More workers than the receiver takes connections (its -j): while others
                // have connections, this one hands its job back and stops.
                Err(Error::Peer {
                    reason: Reason::Busy,
                    text,
                }) if seat.stop_if_others_connected() => {
                    info!(
                        "worker stops: the receiver takes no more connections text={}",
                        quoted(&text)
                    );
                    let _ = results.send(JobResult::HandedBack(job));
                    return None;
                }
                Err(e) => open_error = Some(e),
            }
        }
        let before = conn.as_ref().map_or((0, 0), Connection::counters);
        let outcome = catch_unwind(AssertUnwindSafe(|| match open_error.take() {
            Some(e) => Err(e),
            None => pool
                .replicator
                .deliver(conn.as_mut().expect("connected"), &job),
        }));
        let after = conn.as_ref().map_or(before, Connection::counters);
        let seconds = started.elapsed().as_secs_f64();
        // An error broke the try off; otherwise it ended with the receiver's verdict.
        let cut = matches!(outcome, Ok(Err(_)));
        let (mut delivery, retry) = match outcome {
            Ok(Ok(delivery)) => {
                let retry = matches!(delivery.status, Status::Refused(r) if r.is_retryable());
                (
                    Delivery {
                        seconds,
                        ..delivery
                    },
                    retry,
                )
            }
            Ok(Err(e)) => {
                // The connection's state is unknown after an error: start afresh.
                conn = None;
                let delivery = Delivery::failed(e.to_string());
                (
                    Delivery {
                        seconds,
                        ..delivery
                    },
                    e.is_retryable(),
                )
            }
            Err(_) => {
                conn = None;
                pool.quit.store(true, Ordering::SeqCst);
                (Delivery::failed("internal error: worker panicked"), false)
            }
        };
        let number = job.attempt + 1;
        if !delivery.status.is_ok() {
            let (sent, confirmed) = (after.0 - before.0, after.1 - before.1);
            let attempt = Attempt::new(number, sent, confirmed, delivery.note(), cut);
            delivery.error = Some(attempt.what.clone());
            job.failed_tries.push(attempt);
        }
        let report = Report {
            dataset: job.info.name.clone(),
            delivery: Delivery {
                attempts: number,
                failed_tries: job.failed_tries.clone(),
                ..delivery
            },
        };
        pool.replicator.recorder.finish(recorded, &report);
        if results
            .send(JobResult::Tried { job, report, retry })
            .is_err()
        {
            break;
        }
    }
    conn
}
