//! The run in the history (`--state-dir`, the history crate's database): one run row for
//! the invocation (job, receiver, counts, exit status), and one attempt row for each try
//! of each dataset, with what its [`Delivery`] says: kind, from and to snapshots with
//! GUIDs, raw, compressed, bytes, seconds, outcome, error. A try that streams is written
//! when its stream starts (so it shows in flight) and finished at its end; one that does
//! not (up to date, refused, failed before streaming: most tries of a quiet round) is
//! written once, at its end, which halves the commits of a round where nothing changed. Datasets that were never tried (no snapshots, not
//! listable) get a row at the end. A dry run records nothing.
//!
//! The job is the `--mark` id, else the receiver's `HOST:PORT`. While the run goes on the
//! recorder holds the job's lock; having it, it first closes the runs of the job that a
//! killed sender left unended ([`Store::interrupt_runs`]).
//!
//! History never costs a replication: a state directory that cannot be opened or written
//! (read-only, full, locked for too long) is one warning, and the run goes on unrecorded
//! from there. This module must not decide or change anything about the replication
//! itself, nor print anything but that warning.

use crate::pool::Job;
use crate::report::{Delivery, Report, RunReport, SnapshotRef, Status, StreamKind};
use crate::{Config, Result};
use log::{debug, info, warn};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use zfsync_history as history;
use zfsync_history::{AttemptEnd, AttemptId, AttemptStart, JobLock, Outcome, Role, RunId, Store};

/// The history of one run, shared by the workers.
pub(crate) struct Recorder<'a> {
    config: &'a Config,
    job: String,
    /// The open store; `None` when recording is off (no state directory, a dry run) or
    /// the state directory failed.
    state: Mutex<Option<State>>,
    /// Datasets that have an attempt row: the others get one at the end.
    recorded: Mutex<HashSet<String>>,
    /// The tries begun and not yet written, by dataset (one try of a dataset at a time).
    pending: Mutex<HashMap<String, AttemptStart>>,
    /// The tries written when their stream started, by dataset.
    in_flight: Mutex<HashMap<String, AttemptId>>,
    warned: AtomicBool,
}

/// A try whose start was noted.
pub(crate) struct Started {
    dataset: String,
    /// The snapshot the try was about: the newest offered.
    newest: Option<history::SnapshotRef>,
}

struct State {
    store: Store,
    run: Option<RunId>,
    /// Held for the run: tells later runs, and readers, that this job is alive.
    _lock: Option<JobLock>,
}

impl<'a> Recorder<'a> {
    /// Opens the history and begins the run; records nothing without `--state-dir` or in
    /// a dry run.
    pub(crate) fn open(config: &'a Config) -> Recorder<'a> {
        let job = config
            .mark
            .clone()
            .unwrap_or_else(|| config.address.clone());
        let recorder = Recorder {
            config,
            job,
            state: Mutex::new(None),
            recorded: Mutex::new(HashSet::new()),
            pending: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            warned: AtomicBool::new(false),
        };
        let Some(dir) = config.state_dir.as_deref().filter(|_| !config.dry_run) else {
            return recorder;
        };
        if let Some(why) = check_clock() {
            recorder.failed(&why);
        }
        let opened = (|| -> history::Result<State> {
            let store = Store::open(dir)?;
            let lock = JobLock::try_acquire(dir, Role::Send, &recorder.job)?;
            if lock.is_some() {
                // No process of this job is alive: its unended runs died with theirs.
                for id in store.interrupt_runs(Role::Send, &recorder.job)? {
                    info!(
                        "history closed interrupted run={} job={}",
                        id.0, recorder.job
                    );
                }
            }
            let run = store.begin_run(&history::RunStart {
                role: Role::Send,
                job: recorder.job.clone(),
                peer: config.address.clone(),
                started: now(),
            })?;
            Ok(State {
                store,
                run: Some(run),
                _lock: lock,
            })
        })();
        match opened {
            Ok(state) => *recorder.lock_state() = Some(state),
            Err(e) => recorder.failed(&e),
        }
        recorder
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, Option<State>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The one warning a run gives about its history; later failures go to debug.
    fn failed(&self, e: &dyn std::fmt::Display) {
        if self.warned.swap(true, Ordering::SeqCst) {
            debug!("history error={e}");
        } else {
            warn!("history not recorded, the run goes on: {e}");
        }
    }

    /// Runs `f` on the store, if there is one; a failure is [`Recorder::failed`].
    fn with_store<T>(&self, f: impl FnOnce(&State) -> history::Result<T>) -> Option<T> {
        let state = self.lock_state();
        let result = f(state.as_ref()?);
        drop(state);
        result.map_err(|e| self.failed(&e)).ok()
    }

    /// Notes the start of a try of `job`, written by [`Recorder::streaming`] or with its
    /// end by [`Recorder::finish`]. The snapshot it is about is the newest the filters
    /// offer; what it streams, the receiver decides later.
    pub(crate) fn start(&self, job: &Job) -> Option<Started> {
        let newest = job
            .info
            .snapshots
            .iter()
            .rev()
            .find(|s| self.config.snapshots.keeps(&s.name))
            .map(|s| history::SnapshotRef {
                name: s.name.clone(),
                guid: s.guid,
            });
        let start = {
            let state = self.lock_state();
            AttemptStart {
                to: newest.clone(),
                attempt: job.attempt + 1,
                ..self.attempt_start(state.as_ref()?.run, &job.info.name, now())
            }
        };
        let dataset = job.info.name.clone();
        lock(&self.pending).insert(dataset.clone(), start);
        self.mark_recorded(&dataset);
        Some(Started { dataset, newest })
    }

    /// Writes the try of `dataset` begun by [`Recorder::start`], in flight, as its stream
    /// starts: `zfsync status` shows it from then on.
    pub(crate) fn streaming(&self, dataset: &str) {
        let Some(start) = lock(&self.pending).remove(dataset) else {
            return;
        };
        if let Some(id) = self.with_store(|state| state.store.start_attempt(&start)) {
            lock(&self.in_flight).insert(dataset.to_string(), id);
        }
    }

    /// Records how a try ended: its report's delivery. `started` is what
    /// [`Recorder::start`] gave (none: the start was not recorded, and neither is the end).
    pub(crate) fn finish(&self, started: Option<Started>, report: &Report) {
        let Some(started) = started else { return };
        let pending = lock(&self.pending).remove(&started.dataset);
        let in_flight = lock(&self.in_flight).remove(&started.dataset);
        self.with_store(|state| {
            let (mut streamed, end) = attempt_of(&report.delivery, now());
            // A try that failed before streaming still was about the newest snapshot.
            streamed.to = streamed.to.or(started.newest);
            match (in_flight, pending) {
                (Some(id), _) => state.store.finish_attempt_with(id, &streamed, &end),
                (None, Some(start)) => {
                    let start = with_streamed(start, streamed);
                    state.store.record_attempt(&start, &end).map(|_| ())
                }
                // Its start could not be written: neither is its end.
                (None, None) => Ok(()),
            }
        });
    }

    /// Ends the run: a row for each dataset no try was recorded for, then the run's
    /// counts and exit status.
    pub(crate) fn end(&self, result: &Result<RunReport>) {
        if let Ok(report) = result {
            for r in &report.datasets {
                if !self.is_recorded(&r.dataset) {
                    self.with_store(|state| {
                        let now = now();
                        let (streamed, end) = attempt_of(&r.delivery, now);
                        let start = with_streamed(
                            AttemptStart {
                                attempt: r.delivery.attempts,
                                ..self.attempt_start(state.run, &r.dataset, now)
                            },
                            streamed,
                        );
                        state.store.record_attempt(&start, &end)
                    });
                }
            }
        }
        self.with_store(|state| match state.run {
            Some(run) => state.store.end_run(run, &run_end(result, now())),
            None => Ok(()),
        });
    }

    /// An attempt of `dataset` in `run` starting at `started`, with nothing known yet of
    /// what it streams.
    fn attempt_start(&self, run: Option<RunId>, dataset: &str, started: i64) -> AttemptStart {
        AttemptStart {
            run,
            role: Role::Send,
            job: self.job.clone(),
            peer: self.config.address.clone(),
            dataset: dataset.to_string(),
            kind: None,
            from: None,
            to: None,
            raw: false,
            compressed: false,
            attempt: 1,
            started,
        }
    }

    fn mark_recorded(&self, dataset: &str) {
        let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        recorded.insert(dataset.to_string());
    }

    fn is_recorded(&self, dataset: &str) -> bool {
        let recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        recorded.contains(dataset)
    }
}

/// `start` with what the try turned out to stream.
fn with_streamed(start: AttemptStart, streamed: history::Streamed) -> AttemptStart {
    AttemptStart {
        kind: streamed.kind,
        from: streamed.from,
        to: streamed.to,
        raw: streamed.raw,
        compressed: streamed.compressed,
        ..start
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The time now in unix seconds: `ZFSYNC_NOW` if set, else the clock. A bad
/// `ZFSYNC_NOW` is warned about when the history opens ([`check_clock`]) and the clock
/// is used: the sender's replication reads no time the variable could replace.
fn now() -> i64 {
    let t = zfsync_cli::now().unwrap_or_else(|_| SystemTime::now());
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// Why the history's times will come from the clock despite `ZFSYNC_NOW`, if they will.
fn check_clock() -> Option<String> {
    zfsync_cli::now()
        .err()
        .map(|e| format!("{e}: the history uses the system clock"))
}

/// What a delivery streamed and how it ended, as the history keeps it. The `to`
/// snapshot is the one now newest on the receiver when the delivery reached it (sent or
/// up to date), else the last stream's end.
fn attempt_of(d: &Delivery, ended: i64) -> (history::Streamed, AttemptEnd) {
    let snap = |s: &SnapshotRef| history::SnapshotRef {
        name: s.name.clone(),
        guid: s.guid,
    };
    let first = d.streams().next();
    let streamed = history::Streamed {
        kind: d.kind().map(|k| match k {
            StreamKind::Full => history::Kind::Full,
            StreamKind::Incremental => history::Kind::Incremental,
            StreamKind::Resume => history::Kind::Resume,
        }),
        from: d.from().map(snap),
        to: d
            .newest
            .as_ref()
            .or(d.streams().last().map(|s| &s.to))
            .map(snap),
        raw: d.streams().any(|s| s.raw),
        compressed: first.and_then(|s| s.compressed).unwrap_or(false),
    };
    let end = AttemptEnd {
        ended,
        outcome: outcome(&d.status),
        bytes: d.bytes(),
        seconds: d.seconds,
        error: d.error.clone(),
    };
    (streamed, end)
}

fn outcome(status: &Status) -> Outcome {
    match status {
        Status::Sent => Outcome::Done,
        Status::UpToDate => Outcome::UpToDate,
        // A dry run records nothing; were it asked to, nothing was tried.
        Status::NoSnapshots | Status::WouldSend => Outcome::Skipped,
        Status::Refused(_) => Outcome::Refused,
        Status::Failed => Outcome::Failed,
    }
}

/// The run's counts and exit status, as `zfsync-send` exits: 0 all done, 1 a dataset
/// failed or the run could not start, 2 a configuration this ZFS cannot do.
fn run_end(result: &Result<RunReport>, ended: i64) -> history::RunEnd {
    let (done, failed, up_to_date, exit_status) = match result {
        Ok(report) => {
            let count = |f: fn(&Status) -> bool| {
                report
                    .datasets
                    .iter()
                    .filter(|r| f(&r.delivery.status))
                    .count() as u32
            };
            (
                count(|s| *s == Status::Sent),
                count(|s| !s.is_ok()),
                count(|s| *s == Status::UpToDate),
                i32::from(!report.all_ok()),
            )
        }
        Err(e) => (0, 0, 0, e.exit() as i32),
    };
    history::RunEnd {
        ended,
        done,
        failed,
        up_to_date,
        exit_status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Step, Stream};
    use zfsync_protocol::Reason;

    fn snap(name: &str, guid: u64) -> SnapshotRef {
        SnapshotRef {
            name: name.into(),
            guid,
        }
    }

    fn hsnap(name: &str, guid: u64) -> history::SnapshotRef {
        history::SnapshotRef {
            name: name.into(),
            guid,
        }
    }

    fn stream(kind: StreamKind, from: Option<SnapshotRef>, to: SnapshotRef, bytes: u64) -> Step {
        Step::Stream(Stream {
            kind,
            from,
            to,
            snapshots: 1,
            raw: false,
            compressed: Some(true),
            buffered: false,
            saved: 0,
            bytes,
            failed: None,
        })
    }

    #[test]
    fn a_full_then_incremental_delivery_is_one_attempt_to_the_newest() {
        let d = Delivery {
            steps: vec![
                stream(StreamKind::Full, None, snap("s1", 1), 100),
                stream(
                    StreamKind::Incremental,
                    Some(snap("s1", 1)),
                    snap("s3", 3),
                    20,
                ),
            ],
            newest: Some(snap("s3", 3)),
            seconds: 1.5,
            attempts: 1,
            ..Delivery::new(Status::Sent)
        };
        let (streamed, end) = attempt_of(&d, 500);
        assert_eq!(
            streamed,
            history::Streamed {
                kind: Some(history::Kind::Full),
                from: None,
                to: Some(hsnap("s3", 3)),
                raw: false,
                compressed: true,
            }
        );
        assert_eq!(
            end,
            AttemptEnd {
                ended: 500,
                outcome: Outcome::Done,
                bytes: 120,
                seconds: 1.5,
                error: None,
            }
        );
    }

    #[test]
    fn outcomes_and_what_each_delivery_was_about() {
        let incremental = |bytes| {
            stream(
                StreamKind::Incremental,
                Some(snap("s1", 1)),
                snap("s2", 2),
                bytes,
            )
        };
        let refused = Delivery {
            error: Some("diverged".into()),
            ..Delivery::new(Status::Refused(Reason::Diverged))
        };
        let cut = Delivery {
            steps: vec![incremental(7)],
            error: Some("connection reset".into()),
            ..Delivery::new(Status::Failed)
        };
        let up_to_date = Delivery {
            newest: Some(snap("s2", 2)),
            ..Delivery::new(Status::UpToDate)
        };
        // A delivery, and its outcome, kind, `to` GUID and bytes in the history.
        type Case = (Delivery, Outcome, Option<history::Kind>, Option<u64>, u64);
        let cases: Vec<Case> = vec![
            (up_to_date, Outcome::UpToDate, None, Some(2), 0),
            (refused, Outcome::Refused, None, None, 0),
            (
                cut,
                Outcome::Failed,
                Some(history::Kind::Incremental),
                Some(2),
                7,
            ),
            (
                Delivery::new(Status::NoSnapshots),
                Outcome::Skipped,
                None,
                None,
                0,
            ),
        ];
        for (d, want, kind, to, bytes) in cases {
            let (streamed, end) = attempt_of(&d, 9);
            let got = (
                end.outcome,
                streamed.kind,
                streamed.to.map(|s| s.guid),
                end.bytes,
            );
            assert_eq!(got, (want, kind, to, bytes), "{d:?}");
            assert_eq!(end.error, d.error);
        }
    }

    #[test]
    fn the_run_ends_with_the_exit_status_of_the_command() {
        let report = |statuses: Vec<Status>| RunReport {
            datasets: statuses
                .into_iter()
                .enumerate()
                .map(|(i, s)| Report {
                    dataset: format!("tank/{i}"),
                    delivery: Delivery::new(s),
                })
                .collect(),
            excluded: Vec::new(),
            cleanup: None,
            warnings: Vec::new(),
            stopped: None,
            waiting: 0,
        };
        let ok = Ok(report(vec![
            Status::Sent,
            Status::UpToDate,
            Status::NoSnapshots,
        ]));
        let failed = Ok(report(vec![
            Status::Sent,
            Status::Failed,
            Status::Refused(Reason::Diverged),
        ]));
        let summary = |r: &Result<RunReport>| {
            let e = run_end(r, 7);
            (e.done, e.failed, e.up_to_date, e.exit_status)
        };
        assert_eq!(summary(&ok), (1, 0, 1, 0));
        assert_eq!(summary(&failed), (1, 2, 0, 1));
        assert_eq!(summary(&Err(crate::Error::Closed)), (0, 0, 0, 1));
        assert_eq!(summary(&Err(crate::Error::Usage("x".into()))), (0, 0, 0, 2));
    }
}
