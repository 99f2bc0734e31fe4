//! `zfsync check replication`: is each dataset reaching each peer? From the history
//! (`replica.rs`): the time since its last success and its lag, each against the
//! thresholds. A dataset that never succeeded counts from its oldest recorded try, and
//! one whose tries all failed is at least a warning: there is no copy yet.
//!
//! Pure: the caller reads the history. A dataset whose only tries had nothing to send
//! (no snapshots) is not judged.

use super::verdict::{count, Family, Metric, Status, Verdict};
use super::Thresholds;
use crate::age::show;
use crate::replica::{Replica, State};
use zfsync_history::Role;

static SINCE: Family = Family {
    name: "zfsync_replication_since_success_seconds",
    help: "Seconds since the dataset's last successful send or receive (since its first try if none succeeded).",
    unit: "s",
};
static LAG: Family = Family {
    name: "zfsync_replication_lag_seconds",
    help: "How far the peer's newest snapshot is behind the source's newest known one, in seconds.",
    unit: "s",
};
static BACKLOG: Family = Family {
    name: "zfsync_replication_backlog",
    help: "Failed tries since the last success.",
    unit: "",
};

/// The verdict on `replicas`.
pub fn judge(replicas: &[Replica], limits: Thresholds) -> Verdict {
    let mut v = Verdict::new("replication");
    let judged: Vec<&Replica> = replicas
        .iter()
        .filter(|r| !(r.state == State::Skipped && r.last_success.is_none()))
        .collect();
    for r in &judged {
        let labels = [
            ("dataset", r.dataset.clone()),
            ("peer", r.peer.clone()),
            ("role", r.role.as_str().to_string()),
        ];
        let metric = |family, value, limits| Metric::new(family, &labels, value, limits);
        v.metrics
            .push(metric(&SINCE, r.since_success, Some(limits)));
        if let Some(lag) = r.lag {
            v.metrics.push(metric(&LAG, lag, Some(limits)));
        }
        v.metrics.push(metric(
            &BACKLOG,
            i64::try_from(r.backlog).unwrap_or(i64::MAX),
            None,
        ));
        let mut status = Status::of(r.since_success, limits.warning, limits.critical);
        if let Some(lag) = r.lag {
            status = status.max(Status::of(lag, limits.warning, limits.critical));
        }
        if r.last_success.is_none() && r.backlog > 0 {
            status = status.max(Status::Warning);
        }
        if status != Status::Ok {
            v.problem(status, describe(r, limits));
        }
    }
    if judged.is_empty() {
        return Verdict::unknown(
            "replication",
            "no dataset with snapshots in the history yet: has zfsync-send or zfsync-recv \
             run with this --state-dir?",
        );
    }
    if v.problems.is_empty() {
        let since = judged.iter().map(|r| r.since_success).max().unwrap_or(0);
        let lag = judged.iter().filter_map(|r| r.lag).max().unwrap_or(0);
        v.summary = format!(
            "{}, last success at most {} ago, lag at most {} ({limits})",
            count(judged.len(), "dataset"),
            show(since),
            show(lag)
        );
    } else {
        v.summarise_problems(judged.len(), "dataset");
    }
    v
}

/// `tank/a to backup:7611: last success 2h ago, lag 1h, 3 failures since: ERROR (...)`.
fn describe(r: &Replica, limits: Thresholds) -> String {
    let way = match r.role {
        Role::Send => "to",
        Role::Recv => "from",
    };
    let mut text = format!("{} {way} {}: ", r.dataset, r.peer);
    match r.last_success {
        Some(_) => text.push_str(&format!("last success {} ago", show(r.since_success))),
        None if r.backlog > 0 => text.push_str(&format!(
            "never replicated, failing for {}",
            show(r.since_success)
        )),
        None => text.push_str(&format!(
            "never replicated, first try {} ago",
            show(r.since_success)
        )),
    }
    if let Some(lag) = r.lag {
        text.push_str(&format!(", lag {}", show(lag)));
    }
    if matches!(r.state, State::InFlight | State::Interrupted) {
        text.push_str(&format!(", now {}", r.state.as_str()));
    }
    if r.backlog > 0 {
        let s = if r.backlog == 1 { "" } else { "s" };
        text.push_str(&format!(", {} failure{s} since", r.backlog));
        if let Some(e) = &r.last_error {
            text.push_str(&format!(": {e}"));
        }
    }
    text.push_str(&format!(" ({limits})"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use zfsync_history::SnapshotRef;

    const LIMITS: Thresholds = Thresholds {
        warning: 3600,
        critical: 7200,
    };

    fn replica(dataset: &str, since: i64, lag: Option<i64>) -> Replica {
        Replica {
            dataset: dataset.into(),
            peer: "backup:7611".into(),
            role: Role::Send,
            job: "bk1".into(),
            state: State::Ok,
            last_attempt: 0,
            last_success: Some(0),
            since_success: since,
            base: Some(SnapshotRef {
                name: "s".into(),
                guid: 1,
            }),
            source_newest: None,
            lag,
            backlog: 0,
            last_error: None,
        }
    }

    #[test]
    fn thresholds_on_the_time_since_success_and_the_lag() {
        let cases = [
            (replica("a", 600, Some(0)), Status::Ok),
            (replica("a", 3601, Some(0)), Status::Warning),
            (replica("a", 7201, None), Status::Critical),
            (replica("a", 60, Some(4000)), Status::Warning),
        ];
        for (r, want) in cases {
            assert_eq!(
                judge(std::slice::from_ref(&r), LIMITS).status,
                want,
                "{r:?}"
            );
        }
    }

    #[test]
    fn a_dataset_that_never_succeeded() {
        let failing = Replica {
            state: State::Failed,
            last_success: None,
            lag: None,
            base: None,
            backlog: 2,
            last_error: Some("refused (diverged)".into()),
            ..replica("tank/x", 120, None)
        };
        let v = judge(std::slice::from_ref(&failing), LIMITS);
        assert_eq!(v.status, Status::Warning);
        assert_eq!(
            v.problems[0].text,
            "tank/x to backup:7611: never replicated, failing for 2m, 2 failures since: \
             refused (diverged) (warning 1h, critical 2h)"
        );
        // Failing for longer than critical, with no lag known: critical.
        let old = Replica {
            since_success: 7300,
            ..failing
        };
        assert_eq!(judge(&[old], LIMITS).status, Status::Critical);
    }

    #[test]
    fn nothing_to_judge_is_unknown() {
        assert_eq!(judge(&[], LIMITS).status, Status::Unknown);
        let skipped = Replica {
            state: State::Skipped,
            last_success: None,
            ..replica("tank/empty", 99_999, None)
        };
        assert_eq!(judge(&[skipped], LIMITS).status, Status::Unknown);
    }

    #[test]
    fn ok_says_the_worst_numbers() {
        let v = judge(
            &[replica("a", 300, Some(0)), replica("b", 900, Some(60))],
            LIMITS,
        );
        assert_eq!(
            v.summary,
            "2 datasets, last success at most 15m ago, lag at most 1m (warning 1h, critical 2h)"
        );
        assert_eq!(v.metrics.len(), 6);
    }
}
