//! Where each dataset stands, as `/metrics`, `/status.json` and the status page show it:
//! read from the history (a read-only connection of its own per request, so a page never
//! waits for a session's write) and this process's live figures.
//!
//! It owns what "lag" means: seconds since the creation of the newest snapshot the replica
//! has. That snapshot is the one the newest success (done or up to date) ends with; its
//! time is the UTC stamp in its name when it is zfsync's (`zfsync_<YYYY-MM-DDThh:mm:ssZ>`),
//! else the time it was received, from the history (at worst the time it was last found
//! up to date, when the receive itself is no longer there).
//!
//! It must not write anything, and every read is bounded: the per-dataset summary is a
//! few indexed `LIMIT 1` lookups per dataset, the chart reads at most [`LAG_POINTS`]
//! attempts and 30 rows of daily sums, and callers list at most a fixed number of rows.

use crate::record::{History, InFlight};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use zfsync_history::{
    Attempt, AttemptQuery, DatasetStatus, DayTotal, Outcome, Role, SnapshotRef, Store,
};

/// The days the charts cover.
pub(crate) const CHART_DAYS: i64 = 30;

/// At most this many successes of the worst dataset are read for the lag chart.
pub(crate) const LAG_POINTS: usize = 2000;

/// One dataset's row.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row {
    /// Its full name (TARGET/PATH).
    pub(crate) dataset: String,
    /// The replica's newest snapshot, by the newest success.
    pub(crate) newest: Option<SnapshotRef>,
    pub(crate) lag: Option<i64>,
    /// When the newest success ended.
    pub(crate) last_success: Option<i64>,
    /// The newest attempt's outcome (`done`, `refused`, ...), or `in-flight`.
    pub(crate) result: &'static str,
    /// The newest finished attempt failed or was refused.
    pub(crate) failing: bool,
    pub(crate) last_error: Option<String>,
    pub(crate) failures_since_success: u64,
    pub(crate) in_flight: Option<InFlight>,
}

/// Everything a response shows, read once.
pub(crate) struct View {
    pub(crate) target: String,
    pub(crate) now: i64,
    /// Failing first, then by lag (largest first), then by name.
    pub(crate) rows: Vec<Row>,
    /// Why the history could not be read, if it could not.
    pub(crate) history_error: Option<String>,
    pub(crate) bytes: u64,
    pub(crate) datasets: u64,
    pub(crate) pruned: u64,
    pub(crate) failures: BTreeMap<&'static str, u64>,
    pub(crate) in_flight: Vec<InFlight>,
}

/// The charts' data (the page only).
pub(crate) struct Charts {
    /// Bytes received per UTC day, the last [`CHART_DAYS`] days.
    pub(crate) per_day: Vec<DayTotal>,
    /// The dataset with the largest lag and its lag over time: (unix seconds, lag).
    pub(crate) lag: Option<(String, Vec<(i64, i64)>)>,
}

impl View {
    /// Reads the history and the live figures now.
    pub(crate) fn read(history: &History, now: i64) -> (View, Option<Store>) {
        let live = &history.live;
        let in_flight = live.in_flight();
        let (rows, store, history_error) = match Store::open_read_only(&history.dir) {
            Ok(store) => match rows(&store, &history.job, now, &in_flight) {
                Ok(rows) => (rows, Some(store), None),
                Err(e) => (Vec::new(), None, Some(e.to_string())),
            },
            Err(e) => (Vec::new(), None, Some(e.to_string())),
        };
        let mut rows = rows;
        // A first receive in flight has no row in the history yet.
        for f in &in_flight {
            if !rows.iter().any(|r| r.dataset == f.dataset) {
                rows.push(Row {
                    dataset: f.dataset.clone(),
                    newest: None,
                    lag: None,
                    last_success: None,
                    result: "in-flight",
                    failing: false,
                    last_error: None,
                    failures_since_success: 0,
                    in_flight: Some(f.clone()),
                });
            }
        }
        sort(&mut rows);
        let view = View {
            target: history.job.clone(),
            now,
            rows,
            history_error,
            bytes: live.bytes.load(Ordering::Relaxed),
            datasets: live.datasets.load(Ordering::Relaxed),
            pruned: live.pruned.load(Ordering::Relaxed),
            failures: live.failures(),
            in_flight,
        };
        (view, store)
    }

    /// How many rows fail.
    pub(crate) fn failing(&self) -> usize {
        self.rows.iter().filter(|r| r.failing).count()
    }

    /// The row with the largest lag.
    pub(crate) fn worst(&self) -> Option<&Row> {
        self.rows
            .iter()
            .filter(|r| r.lag.is_some())
            .max_by_key(|r| r.lag)
    }

    /// The charts' data, from `store` (the view's own read connection).
    pub(crate) fn charts(&self, history: &History, store: Option<&Store>) -> Charts {
        let Some(store) = store else {
            return Charts {
                per_day: Vec::new(),
                lag: None,
            };
        };
        let since = (self.now.div_euclid(86_400) - (CHART_DAYS - 1)) * 86_400;
        let per_day = store
            .bytes_per_day(Role::Recv, &history.job, since)
            .unwrap_or_default();
        let lag = self.worst().and_then(|w| {
            let q = AttemptQuery {
                since: Some(self.now - CHART_DAYS * 86_400),
                dataset: Some(w.dataset.clone()),
                role: Some(Role::Recv),
                job: Some(history.job.clone()),
                limit: Some(LAG_POINTS),
                ..AttemptQuery::default()
            };
            let attempts = store.attempts(&q).ok()?;
            Some((w.dataset.clone(), lag_series(&attempts, self.now)))
        });
        Charts { per_day, lag }
    }
}

/// Failing first, then the largest lag, then by name.
fn sort(rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        b.failing
            .cmp(&a.failing)
            .then(b.lag.cmp(&a.lag))
            .then(a.dataset.cmp(&b.dataset))
    });
}

/// Every dataset of this receiver in the history, one row each (a dataset sent from two
/// addresses has two statuses in the history: the newest counts).
fn rows(
    store: &Store,
    job: &str,
    now: i64,
    in_flight: &[InFlight],
) -> zfsync_history::Result<Vec<Row>> {
    let mut newest: BTreeMap<String, DatasetStatus> = BTreeMap::new();
    for s in store.latest_per_dataset()? {
        if s.role != Role::Recv || s.last.start.job != job {
            continue;
        }
        match newest.get(&s.dataset) {
            Some(old) if key(&old.last) >= key(&s.last) => {}
            _ => {
                newest.insert(s.dataset.clone(), s);
            }
        }
    }
    let mut rows = Vec::with_capacity(newest.len());
    for (dataset, s) in newest {
        let success = s.last_success.as_ref();
        let snap_time = match success {
            Some(a) => Some(snapshot_time(store, job, a)?),
            None => None,
        };
        let finished = s.last.end.as_ref();
        let flying = in_flight.iter().find(|f| f.dataset == dataset).cloned();
        rows.push(Row {
            newest: success.and_then(|a| a.start.to.clone()),
            lag: snap_time.map(|t| (now - t).max(0)),
            last_success: success.and_then(|a| a.end.as_ref().map(|e| e.ended)),
            result: match (&flying, finished) {
                (Some(_), _) | (None, None) => "in-flight",
                (None, Some(e)) => e.outcome.as_str(),
            },
            failing: finished.is_some_and(|e| e.outcome.is_failure()),
            last_error: s
                .last_failure
                .as_ref()
                .and_then(|a| a.end.as_ref())
                .and_then(|e| e.error.clone()),
            failures_since_success: s.failures_since_success,
            in_flight: flying,
            dataset,
        });
    }
    Ok(rows)
}

/// The history's order of attempts: start time, then id.
fn key(a: &Attempt) -> (i64, i64) {
    (a.start.started, a.id.0)
}

/// When the snapshot a success ends with was made (see the module doc).
fn snapshot_time(store: &Store, job: &str, success: &Attempt) -> zfsync_history::Result<i64> {
    let end = success
        .end
        .as_ref()
        .map_or(success.start.started, |e| e.ended);
    let Some(to) = &success.start.to else {
        return Ok(end);
    };
    if let Some(t) = zfsync_retention::parse_name(&to.name) {
        return Ok(t.as_second());
    }
    if success.end.as_ref().map(|e| e.outcome) == Some(Outcome::Done) {
        return Ok(end);
    }
    // Found up to date: the receive that brought it, if the history still has it.
    let q = AttemptQuery {
        dataset: Some(success.start.dataset.clone()),
        role: Some(Role::Recv),
        job: Some(job.to_owned()),
        outcome: Some(Outcome::Done),
        limit: Some(1),
        ..AttemptQuery::default()
    };
    let received = store
        .attempts(&q)?
        .into_iter()
        .next()
        .filter(|a| a.start.to.as_ref().map(|t| t.guid) == Some(to.guid));
    Ok(received.and_then(|a| a.end.map(|e| e.ended)).unwrap_or(end))
}

/// The lag over time from a dataset's attempts (newest first, as the history returns
/// them): a saw-tooth that falls at each success to the age of the snapshot it brought or
/// found, and grows with time in between, up to `now`.
pub(crate) fn lag_series(attempts: &[Attempt], now: i64) -> Vec<(i64, i64)> {
    let mut points = Vec::new();
    let mut snap: Option<(u64, i64)> = None;
    for a in attempts.iter().rev() {
        let Some(e) = &a.end else { continue };
        if !e.outcome.is_success() {
            continue;
        }
        let Some(to) = &a.start.to else { continue };
        let made = match zfsync_retention::parse_name(&to.name) {
            Some(t) => t.as_second(),
            // The same snapshot found again: it was made when it first arrived.
            None => match snap {
                Some((guid, t)) if guid == to.guid => t,
                _ => e.ended,
            },
        };
        if let Some((_, t)) = snap {
            points.push((e.ended, (e.ended - t).max(0)));
        }
        snap = Some((to.guid, made));
        points.push((e.ended, (e.ended - made).max(0)));
    }
    if let Some((_, t)) = snap {
        points.push((now, (now - t).max(0)));
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use zfsync_history::{AttemptEnd, AttemptId, AttemptStart};

    fn success(id: i64, ended: i64, outcome: Outcome, name: &str, guid: u64) -> Attempt {
        Attempt {
            id: AttemptId(id),
            start: AttemptStart {
                run: None,
                role: Role::Recv,
                job: "tank/b".into(),
                peer: "10.0.0.5".into(),
                dataset: "tank/b/a".into(),
                kind: None,
                from: None,
                to: Some(SnapshotRef {
                    name: name.into(),
                    guid,
                }),
                raw: false,
                compressed: false,
                attempt: 1,
                started: ended - 1,
            },
            end: Some(AttemptEnd {
                ended,
                outcome,
                bytes: 0,
                seconds: 1.0,
                error: None,
            }),
        }
    }

    #[test]
    fn lag_falls_at_each_success_and_grows_between() {
        // zfsync_2026-12-02T00:00:00Z is 1796169600.
        let t0 = 1_796_169_600;
        let newest_first = [
            success(
                3,
                t0 + 7200 + 60,
                Outcome::Done,
                "zfsync_2026-12-02T02:00:00Z",
                3,
            ),
            success(
                2,
                t0 + 3600 + 30,
                Outcome::UpToDate,
                "zfsync_2026-12-02T00:00:00Z",
                1,
            ),
            success(1, t0 + 10, Outcome::Done, "zfsync_2026-12-02T00:00:00Z", 1),
        ];
        let got = lag_series(&newest_first, t0 + 9000);
        let want = [
            (t0 + 10, 10),
            (t0 + 3630, 3630),
            (t0 + 3630, 3630),
            (t0 + 7260, 7260),
            (t0 + 7260, 60),
            (t0 + 9000, 1800),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_name_that_is_not_zfsyncs_dates_from_its_receive() {
        let newest_first = [
            success(2, 500, Outcome::UpToDate, "daily", 7),
            success(1, 100, Outcome::Done, "daily", 7),
        ];
        assert_eq!(
            lag_series(&newest_first, 900),
            [(100, 0), (500, 400), (500, 400), (900, 800)]
        );
        assert_eq!(lag_series(&[], 900), []);
    }

    #[test]
    fn rows_sort_failing_first_then_by_lag() {
        let row = |dataset: &str, failing: bool, lag: Option<i64>| Row {
            dataset: dataset.into(),
            newest: None,
            lag,
            last_success: None,
            result: "done",
            failing,
            last_error: None,
            failures_since_success: 0,
            in_flight: None,
        };
        let mut rows = vec![
            row("a", false, Some(10)),
            row("b", true, Some(5)),
            row("c", false, Some(99)),
            row("d", false, None),
            row("e", true, None),
        ];
        sort(&mut rows);
        let order: Vec<&str> = rows.iter().map(|r| r.dataset.as_str()).collect();
        assert_eq!(order, ["b", "e", "c", "a", "d"]);
    }
}
