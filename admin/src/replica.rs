//! Where each dataset's replica stands with each peer, worked out from the history alone
//! (no zfs command): state, last success, lag, backlog, base, last error. `zfsync status`
//! shows it and `zfsync check replication` judges it, so the two never disagree.
//!
//! - **state**: of the newest attempt: `in-flight`, `interrupted` (in flight, but no
//!   process of the sender's job is alive: its lock is free), `ok` (sent or up to date),
//!   `failed` (failed or refused), `skipped` (nothing to send).
//! - **base**: the snapshot the last success left on the peer (the next incremental's
//!   base).
//! - **lag**: how far the base is behind the source's newest snapshot (the one the newest
//!   attempt was about): the difference of their times, 0 when the peer has it. A
//!   snapshot's time is the UTC time in a zfsync name, else (for the base) when the
//!   success ended. When the source's newest has no known time, the lag is the base's
//!   age.
//! - **since success**: the time since the last success ended, or, for a dataset that
//!   never succeeded, since its oldest recorded attempt started.
//! - **backlog**: failures since the last success.
//!
//! Must not read anything but the history, nor decide what is good or bad (the check does).

use std::path::Path;
use zfsync_history::{Attempt, AttemptQuery, DatasetStatus, JobLock, Role, SnapshotRef, Store};
use zfsync_retention::parse_name;

/// The state of a dataset's newest attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    InFlight,
    Interrupted,
    Ok,
    Failed,
    Skipped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::InFlight => "in-flight",
            State::Interrupted => "interrupted",
            State::Ok => "ok",
            State::Failed => "failed",
            State::Skipped => "skipped",
        }
    }
}

/// Where one dataset's replica stands with one peer, from one side's history.
#[derive(Clone, Debug, PartialEq)]
pub struct Replica {
    pub dataset: String,
    pub peer: String,
    pub role: Role,
    /// The job of the newest attempt (the sender's `--mark` id or `HOST:PORT`, the
    /// receiver's TARGET).
    pub job: String,
    pub state: State,
    /// When the newest attempt started.
    pub last_attempt: i64,
    /// When the last success ended.
    pub last_success: Option<i64>,
    /// Seconds since the last success, or since the oldest attempt when none succeeded.
    pub since_success: i64,
    /// The snapshot the last success left on the peer.
    pub base: Option<SnapshotRef>,
    /// The newest snapshot the source had, as far as the history knows.
    pub source_newest: Option<SnapshotRef>,
    /// Seconds the base is behind the source's newest; `None` without a success.
    pub lag: Option<i64>,
    /// Failures since the last success.
    pub backlog: u64,
    /// The last failure's error, when it came after the last success.
    pub last_error: Option<String>,
}

/// Every dataset, peer and role of the history in `dir` (opened as `store`) at `now`, in
/// the store's order (dataset, peer, role).
pub fn replicas(store: &Store, dir: &Path, now: i64) -> zfsync_history::Result<Vec<Replica>> {
    let mut out = Vec::new();
    for status in store.latest_per_dataset()? {
        let oldest = match &status.last_success {
            Some(_) => None,
            None => oldest_attempt(store, &status)?,
        };
        let alive = |job: &str| JobLock::is_held(dir, Role::Send, job);
        out.push(replica(&status, oldest, now, alive));
    }
    Ok(out)
}

/// When the oldest recorded attempt of `status`'s dataset, peer and role started.
fn oldest_attempt(store: &Store, status: &DatasetStatus) -> zfsync_history::Result<Option<i64>> {
    let all = store.attempts(&AttemptQuery {
        dataset: Some(status.dataset.clone()),
        peer: Some(status.peer.clone()),
        role: Some(status.role),
        ..AttemptQuery::default()
    })?;
    Ok(all.iter().map(|a| a.start.started).min())
}

/// One replica from the store's summary. `oldest` is when the oldest attempt started
/// (needed only without a success); `alive` says whether a sender job's lock is held.
fn replica(
    status: &DatasetStatus,
    oldest: Option<i64>,
    now: i64,
    alive: impl Fn(&str) -> bool,
) -> Replica {
    let last = &status.last;
    let state = match &last.end {
        None if status.role == Role::Send && !alive(&last.start.job) => State::Interrupted,
        None => State::InFlight,
        Some(e) if e.outcome.is_success() => State::Ok,
        Some(e) if e.outcome.is_failure() => State::Failed,
        Some(_) => State::Skipped,
    };
    let success = status.last_success.as_ref();
    let success_end = success.and_then(|s| s.end.as_ref()).map(|e| e.ended);
    let base = success.and_then(|s| s.start.to.clone());
    // The newest attempt's snapshot, or the success's when the newest knows none.
    let source_newest = last.start.to.clone().or_else(|| base.clone());
    let since_from = success_end.or(oldest).unwrap_or(last.start.started);
    let last_error = match status.failures_since_success {
        0 => None,
        _ => status
            .last_failure
            .as_ref()
            .and_then(|f| f.end.as_ref())
            .and_then(|e| e.error.clone()),
    };
    Replica {
        dataset: status.dataset.clone(),
        peer: status.peer.clone(),
        role: status.role,
        job: last.start.job.clone(),
        state,
        last_attempt: last.start.started,
        last_success: success_end,
        since_success: now - since_from,
        lag: success.and_then(|s| lag(s, source_newest.as_ref(), now)),
        base,
        source_newest,
        backlog: status.failures_since_success,
        last_error,
    }
}

/// How far the last success's snapshot is behind `source_newest` (see the module doc).
fn lag(success: &Attempt, source_newest: Option<&SnapshotRef>, now: i64) -> Option<i64> {
    let base = success.start.to.as_ref()?;
    let ended = success.end.as_ref().map(|e| e.ended);
    let name_time = |s: &SnapshotRef| parse_name(&s.name).map(|t| t.as_second());
    let base_time = name_time(base).or(ended)?;
    match source_newest {
        Some(src) if src.guid == base.guid => Some(0),
        Some(src) => match name_time(src) {
            Some(t) => Some((t - base_time).max(0)),
            None => Some(now - base_time),
        },
        None => Some(now - base_time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zfsync_history::{AttemptEnd, AttemptId, AttemptStart, Kind, Outcome, RunId};

    /// 2026-12-02T00:00:00Z.
    const DEC2: i64 = 1_796_169_600;

    fn snap(name: &str, guid: u64) -> SnapshotRef {
        SnapshotRef {
            name: name.into(),
            guid,
        }
    }

    fn attempt(
        id: i64,
        started: i64,
        to: Option<SnapshotRef>,
        end: Option<(&str, &str)>,
    ) -> Attempt {
        Attempt {
            id: AttemptId(id),
            start: AttemptStart {
                run: Some(RunId(1)),
                role: Role::Send,
                job: "bk1".into(),
                peer: "backup:7611".into(),
                dataset: "tank/a".into(),
                kind: Some(Kind::Incremental),
                from: None,
                to,
                raw: false,
                compressed: false,
                attempt: 1,
                started,
            },
            end: end.map(|(outcome, error)| AttemptEnd {
                ended: started + 60,
                outcome: Outcome::parse(outcome).unwrap(),
                bytes: 0,
                seconds: 60.0,
                error: (!error.is_empty()).then(|| error.to_string()),
            }),
        }
    }

    fn status(
        last: Attempt,
        success: Option<Attempt>,
        failure: Option<Attempt>,
        failures: u64,
    ) -> DatasetStatus {
        DatasetStatus {
            dataset: "tank/a".into(),
            peer: "backup:7611".into(),
            role: last.start.role,
            in_flight: last.end.is_none(),
            last,
            last_success: success,
            last_failure: failure,
            failures_since_success: failures,
        }
    }

    const S1: &str = "zfsync_2026-12-02T00:00:00Z";
    const S2: &str = "zfsync_2026-12-02T01:00:00Z";

    #[test]
    fn an_up_to_date_replica_has_no_lag() {
        let ok = attempt(1, DEC2 + 10, Some(snap(S1, 1)), Some(("done", "")));
        let r = replica(
            &status(ok.clone(), Some(ok), None, 0),
            None,
            DEC2 + 3600,
            |_| true,
        );
        assert_eq!(r.state, State::Ok);
        assert_eq!(r.lag, Some(0));
        assert_eq!(r.last_success, Some(DEC2 + 70));
        assert_eq!(r.since_success, 3600 - 70);
        assert_eq!(r.base, Some(snap(S1, 1)));
        assert_eq!((r.backlog, r.last_error), (0, None));
    }

    #[test]
    fn failures_after_a_success_lag_by_the_snapshots_times() {
        let ok = attempt(1, DEC2 + 10, Some(snap(S1, 1)), Some(("done", "")));
        let failed = attempt(
            2,
            DEC2 + 3610,
            Some(snap(S2, 2)),
            Some(("refused", "diverged")),
        );
        let st = status(failed.clone(), Some(ok), Some(failed), 2);
        let r = replica(&st, None, DEC2 + 7200, |_| true);
        assert_eq!(r.state, State::Failed);
        assert_eq!(r.lag, Some(3600));
        assert_eq!(r.source_newest, Some(snap(S2, 2)));
        assert_eq!(r.backlog, 2);
        assert_eq!(r.last_error.as_deref(), Some("diverged"));
        assert_eq!(r.since_success, 7200 - 70);
    }

    #[test]
    fn a_base_not_named_by_zfsync_is_dated_by_its_success() {
        let ok = attempt(1, DEC2, Some(snap("manual", 1)), Some(("done", "")));
        let newer = attempt(2, DEC2 + 500, Some(snap("other", 2)), Some(("failed", "x")));
        let st = status(newer.clone(), Some(ok), Some(newer), 1);
        // Neither name says a time: the base's age, from when the success ended.
        assert_eq!(replica(&st, None, DEC2 + 1000, |_| true).lag, Some(940));
    }

    #[test]
    fn in_flight_is_interrupted_when_no_sender_of_the_job_is_alive() {
        let running = attempt(1, DEC2, Some(snap(S1, 1)), None);
        let st = status(running, None, None, 0);
        assert_eq!(
            replica(&st, Some(DEC2), DEC2 + 5, |job| job == "bk1").state,
            State::InFlight
        );
        let r = replica(&st, Some(DEC2), DEC2 + 5, |_| false);
        assert_eq!(r.state, State::Interrupted);
        assert_eq!((r.lag, r.last_success, r.base), (None, None, None));
    }

    #[test]
    fn a_receivers_attempt_in_flight_stays_in_flight() {
        let mut running = attempt(1, DEC2, Some(snap(S1, 1)), None);
        running.start.role = Role::Recv;
        let st = status(running, None, None, 0);
        assert_eq!(replica(&st, None, DEC2, |_| false).state, State::InFlight);
    }

    #[test]
    fn never_succeeded_counts_from_the_oldest_attempt() {
        let failed = attempt(3, DEC2 + 900, Some(snap(S1, 1)), Some(("failed", "boom")));
        let st = status(failed.clone(), None, Some(failed), 3);
        let r = replica(&st, Some(DEC2), DEC2 + 1000, |_| true);
        assert_eq!(r.since_success, 1000);
        assert_eq!((r.lag, r.backlog), (None, 3));
        assert_eq!(r.last_error.as_deref(), Some("boom"));
    }

    #[test]
    fn skipped_is_neither() {
        let skipped = attempt(1, DEC2, None, Some(("skipped", "")));
        let st = status(skipped, None, None, 0);
        let r = replica(&st, Some(DEC2), DEC2, |_| true);
        assert_eq!((r.state, r.source_newest), (State::Skipped, None));
    }
}
