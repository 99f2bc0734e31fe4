//! What pruning keeps: a retention plan with the time zone of its buckets ([`Keep`], from
//! `--keep PLAN` and `--tz ZONE`), and what that means for one dataset's snapshots
//! ([`plan_dataset`]: the plan's verdicts with zfsync's protections and the safety stop).
//!
//! Shared by `zfsync prune` (the admin crate) and the receiver's pruning after a receive, so both keep and
//! protect the same way. Pure: the caller lists the snapshots and destroys what the
//! [`DatasetPlan`] says; nothing here runs zfs or reads a clock. The rules of keeping are
//! the retention crate's; this module adds only what ZFS knows (holds, marks) and the
//! decision to stop.

use crate::{explain, parse_name, too_destructive, Plan, Snapshot, Verdict};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::collections::HashMap;

/// The time zone of a plan's buckets when none is given.
pub const DEFAULT_TZ: &str = "UTC";

/// A retention plan and the time zone its calendar buckets are taken in.
#[derive(Clone, Debug, PartialEq)]
pub struct Keep {
    pub plan: Plan,
    pub tz: TimeZone,
}

impl Keep {
    /// `--keep PLAN` with `--tz ZONE` (UTC if `None`): an empty or malformed plan or an
    /// unknown zone is an error that names the option and says what is accepted.
    pub fn parse(plan: &str, tz: Option<&str>) -> Result<Keep, String> {
        let plan = Plan::parse(plan).map_err(|e| format!("--keep: {e}"))?;
        let zone = tz.unwrap_or(DEFAULT_TZ);
        let tz = TimeZone::get(zone).map_err(|_| {
            format!("--tz: unknown time zone {zone:?}: an IANA name such as Europe/Berlin, or UTC")
        })?;
        Ok(Keep { plan, tz })
    }
}

/// One snapshot of a dataset as pruning sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Candidate {
    /// The part after `@`.
    pub name: String,
    /// Its time, where the name does not say it or the caller knows better: the
    /// creation property of a snapshot not named by zfsync, the receiver's checked time
    /// of one that is. `None`: the time in its zfsync name.
    pub time: Option<Timestamp>,
    /// Its holds (`userrefs`): a held snapshot is never destroyed.
    pub userrefs: u64,
    /// The receivers whose base it is (`zfsync:base:ID` set on it).
    pub marks: Vec<String>,
}

impl Candidate {
    pub fn new(name: impl Into<String>) -> Candidate {
        Candidate {
            name: name.into(),
            ..Candidate::default()
        }
    }
}

/// What pruning does to one dataset: a verdict for each snapshot, and whether the
/// safety check stopped it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetPlan {
    pub dataset: String,
    pub snapshots: Vec<Snapshot>,
    /// One per snapshot, in the same order.
    pub verdicts: Vec<Verdict>,
    /// Why nothing may be destroyed in this dataset: the plan destroys more than half of
    /// its zfsync snapshots, or all but the newest, and `force` was not given.
    pub stop: Option<String>,
}

impl DatasetPlan {
    /// The snapshots to destroy (names after `@`), oldest first; none when stopped.
    pub fn to_destroy(&self) -> Vec<&str> {
        if self.stop.is_some() {
            return Vec::new();
        }
        let mut doomed: Vec<&Snapshot> = self
            .snapshots
            .iter()
            .zip(&self.verdicts)
            .filter(|(_, v)| matches!(v, Verdict::Destroy))
            .map(|(s, _)| s)
            .collect();
        doomed.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.name.cmp(&b.name)));
        doomed.iter().map(|s| s.name.as_str()).collect()
    }

    /// The `--explain` lines: one per snapshot, oldest first, `KEEP` with the rules and
    /// buckets that keep it, `DESTROY`, or `PROTECT` with why.
    pub fn explain(&self) -> Vec<String> {
        explain(&self.dataset, &self.snapshots, &self.verdicts)
    }
}

/// Plans `dataset`'s prune: the verdicts of `keep` on `candidates` at `now`, where these
/// are protected whatever the plan says, each with every reason that applies:
/// - the newest zfsync snapshot (`newest`): the next incremental starts from it;
/// - a snapshot not named by zfsync (`not zfsync's`): zfsync does not decide its life;
/// - a held snapshot (`held`): whoever holds it wants it, and zfs would refuse anyway;
/// - a receiver's base (`base of receiver ID`): its next incremental starts from it;
/// - each of `also`, with the reason given (the receiver names its base this way).
///
/// Unless `force`, a plan that destroys more than half of the zfsync snapshots, or all
/// but the newest, is stopped ([`DatasetPlan::stop`]).
pub fn plan_dataset(
    dataset: &str,
    candidates: &[Candidate],
    also: &[(String, String)],
    keep: &Keep,
    now: Timestamp,
    force: bool,
) -> DatasetPlan {
    let snapshots: Vec<Snapshot> = candidates
        .iter()
        .map(|c| {
            let time = c
                .time
                .or_else(|| parse_name(&c.name))
                .unwrap_or(Timestamp::UNIX_EPOCH);
            Snapshot::new(c.name.clone(), time)
        })
        .collect();
    let newest = snapshots
        .iter()
        .filter(|s| parse_name(&s.name).is_some())
        .max_by(|a, b| a.time.cmp(&b.time).then_with(|| a.name.cmp(&b.name)))
        .map(|s| s.name.clone());
    let mut why: HashMap<String, Vec<String>> = HashMap::new();
    for c in candidates {
        let mut reasons = Vec::new();
        if Some(&c.name) == newest.as_ref() {
            reasons.push("newest".to_string());
        }
        if parse_name(&c.name).is_none() {
            reasons.push("not zfsync's".to_string());
        }
        if c.userrefs > 0 {
            reasons.push("held".to_string());
        }
        if !c.marks.is_empty() {
            reasons.push(format!("base of receiver {}", c.marks.join(", ")));
        }
        for (_, reason) in also.iter().filter(|(name, _)| *name == c.name) {
            reasons.push(reason.clone());
        }
        if !reasons.is_empty() {
            why.insert(c.name.clone(), reasons);
        }
    }
    let protected: HashMap<String, String> = why
        .into_iter()
        .map(|(name, reasons)| (name, reasons.join(", ")))
        .collect();
    let verdicts = keep.plan.verdicts(&snapshots, &protected, &keep.tz, now);
    let stop = if force {
        None
    } else {
        too_destructive(&snapshots, &verdicts)
    };
    DatasetPlan {
        dataset: dataset.to_string(),
        snapshots,
        verdicts,
        stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn keep(plan: &str) -> Keep {
        Keep::parse(plan, None).unwrap()
    }

    /// zfsync snapshots every 6 hours for 3 days from 2026-12-01T00:00Z: 12 of them.
    fn six_hourly() -> Vec<Candidate> {
        (0..12)
            .map(|i| {
                let t = ts("2026-12-01T00:00:00Z") + jiff::SignedDuration::from_hours(6 * i);
                Candidate::new(crate::format_name(t))
            })
            .collect()
    }

    fn names(plan: &DatasetPlan) -> Vec<String> {
        plan.to_destroy()
            .iter()
            .map(|n| n.trim_start_matches("zfsync_2026-12-").to_string())
            .collect()
    }

    #[test]
    fn plans_and_zones_from_the_command_line() {
        let k = Keep::parse("hourly=24, daily=30", None).unwrap();
        assert_eq!(k.plan.to_string(), "hourly=24,daily=30");
        assert_eq!(k.tz, TimeZone::UTC);
        let k = Keep::parse("daily=7", Some("Europe/Berlin")).unwrap();
        assert_eq!(k.tz.iana_name(), Some("Europe/Berlin"));
        for (plan, tz, want) in [
            ("", None, "--keep: retention plan has no rule"),
            (
                "hourly=0,daily=0",
                None,
                "--keep: retention plan \"hourly=0,daily=0\" is an empty plan",
            ),
            ("fortnightly=2", None, "--keep: unknown retention rule"),
            (
                "daily=7",
                Some("Mars/Olympus"),
                "--tz: unknown time zone \"Mars/Olympus\"",
            ),
        ] {
            let e = Keep::parse(plan, tz).unwrap_err().to_string();
            assert!(e.starts_with(want), "{plan:?} {tz:?}: {e}");
        }
    }

    #[test]
    fn a_small_plan_by_hand() {
        // hourly=3: the 3 newest hours holding a snapshot: Dec 3 06, 12, 18.
        // daily=2: the oldest of Dec 2 and Dec 3: Dec 2 00, Dec 3 00.
        let plan = plan_dataset(
            "p/a",
            &six_hourly(),
            &[],
            &keep("hourly=3,daily=2"),
            ts("2026-12-04T00:00:00Z"),
            true,
        );
        assert_eq!(
            names(&plan),
            [
                "01T00:00:00Z",
                "01T06:00:00Z",
                "01T12:00:00Z",
                "01T18:00:00Z",
                "02T06:00:00Z",
                "02T12:00:00Z",
                "02T18:00:00Z"
            ]
        );
        assert_eq!(plan.stop, None);
    }

    #[test]
    fn protections_are_never_destroyed_and_say_why() {
        let mut snaps = six_hourly();
        snaps[0].userrefs = 1;
        snaps[1].marks = vec!["bk1".into(), "bk2".into()];
        snaps.push(Candidate {
            name: "before-upgrade".into(),
            time: Some(ts("2026-12-01T03:00:00Z")),
            ..Candidate::default()
        });
        let also = [(snaps[2].name.clone(), "receiver's base".to_string())];
        let plan = plan_dataset(
            "p/a",
            &snaps,
            &also,
            &keep("hourly=3,daily=2"),
            ts("2026-12-04T00:00:00Z"),
            true,
        );
        assert_eq!(
            names(&plan),
            [
                "01T18:00:00Z",
                "02T06:00:00Z",
                "02T12:00:00Z",
                "02T18:00:00Z"
            ]
        );
        assert_eq!(
            plan.explain(),
            [
                "PROTECT  p/a@zfsync_2026-12-01T00:00:00Z  (held)",
                "PROTECT  p/a@before-upgrade               (not zfsync's)",
                "PROTECT  p/a@zfsync_2026-12-01T06:00:00Z  (base of receiver bk1, bk2)",
                "PROTECT  p/a@zfsync_2026-12-01T12:00:00Z  (receiver's base)",
                "DESTROY  p/a@zfsync_2026-12-01T18:00:00Z",
                "KEEP     p/a@zfsync_2026-12-02T00:00:00Z  daily=2 (2026-12-02)",
                "DESTROY  p/a@zfsync_2026-12-02T06:00:00Z",
                "DESTROY  p/a@zfsync_2026-12-02T12:00:00Z",
                "DESTROY  p/a@zfsync_2026-12-02T18:00:00Z",
                "KEEP     p/a@zfsync_2026-12-03T00:00:00Z  daily=2 (2026-12-03)",
                "KEEP     p/a@zfsync_2026-12-03T06:00:00Z  hourly=3 (2026-12-03T06:00+00)",
                "KEEP     p/a@zfsync_2026-12-03T12:00:00Z  hourly=3 (2026-12-03T12:00+00)",
                "PROTECT  p/a@zfsync_2026-12-03T18:00:00Z  (newest)",
            ]
        );
    }

    #[test]
    fn the_safety_check_stops_a_dataset_unless_forced() {
        // last=1 destroys all but the newest.
        let stopped = plan_dataset(
            "p/a",
            &six_hourly(),
            &[],
            &keep("last=1"),
            ts("2026-12-04T00:00:00Z"),
            false,
        );
        assert_eq!(
            stopped.stop.as_deref(),
            Some("would destroy all 12 zfsync snapshots but the newest (11 of 12)")
        );
        assert!(stopped.to_destroy().is_empty());
        let forced = plan_dataset(
            "p/a",
            &six_hourly(),
            &[],
            &keep("last=1"),
            ts("2026-12-04T00:00:00Z"),
            true,
        );
        assert_eq!(forced.to_destroy().len(), 11);
        // Half is not more than half.
        let half = plan_dataset(
            "p/a",
            &six_hourly(),
            &[],
            &keep("last=6"),
            ts("2026-12-04T00:00:00Z"),
            false,
        );
        assert_eq!((half.stop.clone(), half.to_destroy().len()), (None, 6));
    }

    #[test]
    fn a_dataset_without_zfsync_snapshots_keeps_everything() {
        let snaps = [Candidate::new("manual"), Candidate::new("other")];
        let plan = plan_dataset(
            "p/a",
            &snaps,
            &[],
            &keep("last=1"),
            ts("2026-12-04T00:00:00Z"),
            false,
        );
        assert!(plan.to_destroy().is_empty());
        assert_eq!(plan.stop, None);
    }
}
