//! The worker pool: jobs on a channel, `threads` workers that each hold one connection
//! reused dataset after dataset, retries with backoff for transient failures, and the rule
//! that a worker the receiver turns away as busy hands its job back and stops while
//! another worker has a connection.
//!
//! It owns no replication logic (that is [`crate::replicate`]) and prints nothing.

use crate::conn::Connection;
use crate::replicate::replicate;
use crate::report::{Delivery, Report, Status};
use crate::{Config, Error};
use crossbeam_channel::{unbounded, RecvTimeoutError};
use log::{info, warn};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zfsync_protocol::Reason;
use zfsync_zfs::protect::SourceMarks;
use zfsync_zfs::{DatasetInfo, Zfs};

/// One dataset to replicate, and how many times it has been retried.
pub(crate) struct Job {
    pub(crate) info: DatasetInfo,
    pub(crate) rel: String,
    pub(crate) attempt: u32,
}

/// Runs the jobs on `config.threads` workers, retrying transient failures. Returns the
/// reports and one of the workers' connections, still open.
pub(crate) fn run_jobs(
    config: &Config,
    zfs: &Zfs,
    marks: &SourceMarks,
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
                            job.info.name,
                            job.attempt,
                            backoff,
                            report.delivery.note()
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
                        let text = "not sent: no connection left (the receiver turned every worker away as busy)";
                        reports.push(Report {
                            dataset: job.info.name,
                            delivery: Delivery {
                                attempts: job.attempt,
                                ..Delivery::failed(text)
                            },
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
            let mut delivery = replicate(conn.as_mut().expect("connected"), config, zfs, &job)?;
            if let Some(newest) = &delivery.newest {
                if let Err(e) = marks.mark_delivered(zfs, &job.info.name, &newest.name) {
                    delivery.status = Status::Failed;
                    delivery.error = Some(format!("delivered, but marking the base failed: {e}"));
                }
            }
            Ok::<_, Error>(delivery)
        }));
        let seconds = started.elapsed().as_secs_f64();
        let (delivery, retry) = match outcome {
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
                warn!("dataset failed dataset={} error={e}", job.info.name);
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
                quit.store(true, Ordering::SeqCst);
                (Delivery::failed("internal error: worker panicked"), false)
            }
        };
        let report = Report {
            dataset: job.info.name.clone(),
            delivery: Delivery {
                attempts: job.attempt + 1,
                ..delivery
            },
        };
        if results.send((job, Some(report), retry)).is_err() {
            break;
        }
    }
    conn
}
