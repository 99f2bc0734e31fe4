//! `zfsync check snapshots`: are zfsync's snapshots being taken? Per dataset, the age of
//! its newest zfsync snapshot against the thresholds (from the retention plan: its rules'
//! smallest period, x1.5 warning and x3 critical), the oldest one's age reported, and any
//! snapshot dated in the future is a warning (a clock that went back, or a wrong
//! `ZFSYNC_NOW`). A dataset without any zfsync snapshot is critical.
//!
//! Pure: the caller lists the tree. Snapshots not named by zfsync are not counted.

use super::verdict::{count, Family, Metric, Status, Verdict};
use super::Thresholds;
use crate::age::show;
use zfsync_retention::parse_name;
use zfsync_zfs::DatasetFacts;

static NEWEST: Family = Family {
    name: "zfsync_snapshot_newest_age_seconds",
    help: "Age of the dataset's newest zfsync snapshot, by the time in its name.",
    unit: "s",
};
static OLDEST: Family = Family {
    name: "zfsync_snapshot_oldest_age_seconds",
    help: "Age of the dataset's oldest zfsync snapshot, by the time in its name.",
    unit: "s",
};
static COUNT: Family = Family {
    name: "zfsync_snapshot_count",
    help: "How many zfsync snapshots the dataset has.",
    unit: "",
};

/// The verdict on `tree` (a dataset and those below it) at `now`.
pub fn judge(tree: &[DatasetFacts], limits: Thresholds, now: i64) -> Verdict {
    let mut v = Verdict::new("snapshots");
    let (mut newest_max, mut oldest_max) = (None::<i64>, None::<i64>);
    for ds in tree {
        let times: Vec<(&str, i64)> = ds
            .snapshots
            .iter()
            .filter_map(|s| Some((s.name.as_str(), parse_name(&s.name)?.as_second())))
            .collect();
        let labels = [("dataset", ds.name.clone())];
        let metric = |family, value, limits| Metric::new(family, &labels, value, limits);
        v.metrics.push(metric(&COUNT, times.len() as i64, None));
        let (Some(newest), Some(oldest)) = (
            times.iter().max_by_key(|(_, t)| *t),
            times.iter().min_by_key(|(_, t)| *t),
        ) else {
            v.problem(Status::Critical, format!("{}: no zfsync snapshot", ds.name));
            continue;
        };
        let (newest_age, oldest_age) = (now - newest.1, now - oldest.1);
        v.metrics.push(metric(&NEWEST, newest_age, Some(limits)));
        v.metrics.push(metric(&OLDEST, oldest_age, None));
        newest_max = newest_max.max(Some(newest_age));
        oldest_max = oldest_max.max(Some(oldest_age));
        let status = Status::of(newest_age, limits.warning, limits.critical);
        if status != Status::Ok {
            v.problem(
                status,
                format!(
                    "{}: newest zfsync snapshot @{} is {} old ({})",
                    ds.name,
                    newest.0,
                    show(newest_age),
                    limits
                ),
            );
        }
        for (name, t) in times.iter().filter(|(_, t)| *t > now) {
            v.problem(
                Status::Warning,
                format!(
                    "{}@{name} is dated {} in the future: is the clock (or ZFSYNC_NOW) right?",
                    ds.name,
                    show(t - now)
                ),
            );
        }
    }
    if v.problems.is_empty() {
        v.summary = match (newest_max, oldest_max) {
            (Some(n), Some(o)) => format!(
                "{}, newest zfsync snapshots at most {} old, the oldest {} ({limits})",
                count(tree.len(), "dataset"),
                show(n),
                show(o)
            ),
            _ => "no dataset".into(),
        };
        if tree.is_empty() {
            v.status = Status::Unknown;
        }
    } else {
        v.summarise_problems(tree.len(), "dataset");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use zfsync_zfs::{Kind, SnapshotFacts};

    /// 2026-12-02T00:00:00Z.
    const DEC2: i64 = 1_796_169_600;
    const LIMITS: Thresholds = Thresholds {
        warning: 5400,
        critical: 10_800,
    };

    fn dataset(name: &str, snaps: &[&str]) -> DatasetFacts {
        DatasetFacts {
            name: name.into(),
            kind: Kind::Filesystem,
            written: None,
            snapshots: snaps
                .iter()
                .enumerate()
                .map(|(i, s)| SnapshotFacts {
                    name: s.to_string(),
                    createtxg: i as u64,
                    creation: None,
                    userrefs: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn fresh_snapshots_are_ok() {
        let tree = [
            dataset(
                "tank/a",
                &["zfsync_2026-12-01T00:00:00Z", "zfsync_2026-12-02T00:00:00Z"],
            ),
            dataset("tank/a/b", &["zfsync_2026-12-02T00:00:00Z", "manual"]),
        ];
        let v = judge(&tree, LIMITS, DEC2 + 600);
        assert_eq!(v.status, Status::Ok);
        assert_eq!(
            v.summary,
            "2 datasets, newest zfsync snapshots at most 10m old, the oldest 1d (warning 1h30m, critical 3h)"
        );
        assert_eq!(v.metrics.len(), 6);
    }

    #[test]
    fn old_missing_and_future_snapshots() {
        let tree = [
            dataset("tank/a", &["zfsync_2026-12-02T00:00:00Z"]),
            dataset("tank/b", &["manual"]),
            dataset("tank/c", &["zfsync_2026-12-02T09:00:00Z"]),
        ];
        // 2 hours on: a is past warning; c is dated 7 h ahead.
        let v = judge(&tree, LIMITS, DEC2 + 7200);
        let lines: Vec<(Status, &str)> = v
            .problems
            .iter()
            .map(|p| (p.status, p.text.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                (
                    Status::Warning,
                    "tank/a: newest zfsync snapshot @zfsync_2026-12-02T00:00:00Z is 2h old (warning 1h30m, critical 3h)"
                ),
                (Status::Critical, "tank/b: no zfsync snapshot"),
                (
                    Status::Warning,
                    "tank/c@zfsync_2026-12-02T09:00:00Z is dated 7h in the future: is the clock (or ZFSYNC_NOW) right?"
                ),
            ]
        );
        assert_eq!(v.status, Status::Critical);
        assert!(v
            .summary
            .starts_with("1 critical, 2 warning of 3 datasets: tank/b"));
        // Past the critical threshold.
        let v = judge(&tree[..1], LIMITS, DEC2 + 10_801);
        assert_eq!(v.status, Status::Critical);
    }
}
