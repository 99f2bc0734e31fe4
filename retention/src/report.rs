//! What callers show or check about a set of verdicts: the `--dry-run --explain` lines and
//! the safety check that makes a prune ask for `--force`.
//!
//! Pure text and counting over verdicts from [`crate::decide`]; nothing here decides a
//! verdict or acts on one.

use crate::decide::{by_time, join, Snapshot, Verdict};
use crate::name::parse_name;

/// One line per snapshot of `dataset`, oldest first, columns aligned:
///
/// ```text
/// KEEP     tank/a@zfsync_2026-11-30T00:00:00Z  daily=30 (2026-11-30)
/// DESTROY  tank/a@zfsync_2026-11-30T12:00:00Z
/// PROTECT  tank/a@zfsync_2026-12-01T00:00:00Z  (receiver base)
/// KEEP     tank/a@manual                       not zfsync's
/// ```
///
/// `snapshots` and `verdicts` are in the same order, as [`crate::Plan::verdicts`] returns.
pub fn explain(dataset: &str, snapshots: &[Snapshot], verdicts: &[Verdict]) -> Vec<String> {
    let mut order: Vec<usize> = (0..snapshots.len().min(verdicts.len())).collect();
    order.sort_by(|&a, &b| by_time(&snapshots[a], &snapshots[b]));
    let width = order
        .iter()
        .map(|&i| snapshots[i].name.chars().count())
        .max()
        .unwrap_or(0);
    order
        .iter()
        .map(|&i| {
            let (action, why) = match &verdicts[i] {
                Verdict::Keep(reasons) => ("KEEP", join(reasons)),
                Verdict::Destroy => ("DESTROY", String::new()),
                Verdict::Protect(why) => ("PROTECT", format!("({why})")),
            };
            let line = format!(
                "{action:<7}  {dataset}@{:<width$}  {why}",
                snapshots[i].name
            );
            line.trim_end().to_string()
        })
        .collect()
}

/// Why a prune is too destructive to run without `--force`, or `None` if it is not: it
/// would destroy more than half of the dataset's zfsync snapshots, or all of them but the
/// newest. Snapshots not named by zfsync are not counted (they are never destroyed).
pub fn too_destructive(snapshots: &[Snapshot], verdicts: &[Verdict]) -> Option<String> {
    let ours = snapshots
        .iter()
        .filter(|s| parse_name(&s.name).is_some())
        .count();
    let destroyed = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Destroy))
        .count();
    if ours >= 2 && destroyed + 1 >= ours {
        Some(format!(
            "would destroy all {ours} zfsync snapshots but the newest ({destroyed} of {ours})"
        ))
    } else if destroyed * 2 > ours {
        Some(format!(
            "would destroy {destroyed} of {ours} zfsync snapshots, more than half"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::Reason;
    use crate::plan::Plan;
    use jiff::Timestamp;

    fn snap(name: &str, time: &str) -> Snapshot {
        Snapshot::new(name, time.parse::<Timestamp>().unwrap())
    }

    #[test]
    fn explain_lines_are_aligned_and_in_time_order() {
        let snapshots = vec![
            snap("zfsync_2026-12-01T00:00:00Z", "2026-12-01T00:00:00Z"),
            snap("manual", "2026-11-29T00:00:00Z"),
            snap("zfsync_2026-11-30T12:00:00Z", "2026-11-30T12:00:00Z"),
            snap("zfsync_2026-11-30T00:00:00Z_D", "2026-11-30T00:00:00Z"),
        ];
        let rule = Plan::parse("daily=30").unwrap().rules()[0];
        let verdicts = vec![
            Verdict::Protect("receiver base".into()),
            Verdict::Keep(vec![Reason::NotOurs]),
            Verdict::Destroy,
            Verdict::Keep(vec![
                Reason::Bucket {
                    rule,
                    bucket: "2026-11-30".into(),
                },
                Reason::Newest,
            ]),
        ];
        assert_eq!(
            explain("tank/a", &snapshots, &verdicts),
            [
                "KEEP     tank/a@manual                         not zfsync's",
                "KEEP     tank/a@zfsync_2026-11-30T00:00:00Z_D  daily=30 (2026-11-30), newest",
                "DESTROY  tank/a@zfsync_2026-11-30T12:00:00Z",
                "PROTECT  tank/a@zfsync_2026-12-01T00:00:00Z    (receiver base)",
            ]
        );
    }

    #[test]
    fn explain_of_nothing_is_nothing() {
        assert!(explain("tank/a", &[], &[]).is_empty());
    }

    /// `n` zfsync snapshots, one a day, the first `destroy` of them destroyed, the rest kept.
    fn case(n: usize, destroy: usize) -> Option<String> {
        let snapshots: Vec<Snapshot> = (0..n)
            .map(|i| {
                let time = format!("2026-12-{:02}T00:00:00Z", i + 1);
                snap(&format!("zfsync_{time}"), &time)
            })
            .chain([snap("manual", "2026-11-01T00:00:00Z")])
            .collect();
        let verdicts: Vec<Verdict> = (0..n)
            .map(|i| match i < destroy {
                true => Verdict::Destroy,
                false => Verdict::Keep(vec![Reason::Newest]),
            })
            .chain([Verdict::Keep(vec![Reason::NotOurs])])
            .collect();
        too_destructive(&snapshots, &verdicts)
    }

    #[test]
    fn safety_check() {
        for (n, destroy, want) in [
            (0, 0, None),
            (1, 0, None),
            (2, 0, None),
            (
                2,
                1,
                Some("would destroy all 2 zfsync snapshots but the newest (1 of 2)"),
            ),
            (3, 1, None),
            (
                3,
                2,
                Some("would destroy all 3 zfsync snapshots but the newest (2 of 3)"),
            ),
            (10, 5, None),
            (
                10,
                6,
                Some("would destroy 6 of 10 zfsync snapshots, more than half"),
            ),
            (
                10,
                9,
                Some("would destroy all 10 zfsync snapshots but the newest (9 of 10)"),
            ),
        ] {
            assert_eq!(case(n, destroy).as_deref(), want, "{n} {destroy}");
        }
    }
}
