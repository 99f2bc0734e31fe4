//! Applying a plan: snapshots + plan + time zone + now -> one [`Verdict`] per snapshot.
//!
//! This module owns the rules of keeping: which snapshot each rule keeps, that the newest
//! and protected snapshots are never destroyed, and that nothing but zfsync's own snapshots
//! ([`crate::parse_name`]) is ever destroyed. It reads no clock (`now` is an argument), runs
//! nothing and destroys nothing: callers act on the verdicts.

use crate::bucket::{self, Key, Local};
use crate::name::parse_name;
use crate::plan::{Plan, Rule};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// One snapshot of a dataset as the planner sees it. `name` is the part after `@`. `time`
/// is the caller's choice: for zfsync's names the time in the name ([`crate::parse_name`]),
/// for others their creation property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub name: String,
    pub time: Timestamp,
}

impl Snapshot {
    pub fn new(name: impl Into<String>, time: Timestamp) -> Snapshot {
        Snapshot {
            name: name.into(),
            time,
        }
    }
}

/// What becomes of one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Kept, for every one of these reasons (never empty).
    Keep(Vec<Reason>),
    /// A zfsync snapshot no rule keeps.
    Destroy,
    /// Named by the caller as protected (a receiver's base, held, marked), with why. Rules
    /// are not consulted for it.
    Protect(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Keep(reasons) => write!(f, "keep: {}", join(reasons)),
            Verdict::Destroy => f.write_str("destroy"),
            Verdict::Protect(why) => write!(f, "protect: {why}"),
        }
    }
}

/// Why a snapshot is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A bucket rule keeps the oldest snapshot of this bucket; `bucket` is the bucket's start
    /// (`2026-12-01`, `2026-W48`, `2026-10-25T02:00+01`).
    Bucket { rule: Rule, bucket: String },
    /// A `last` or `within` rule keeps it.
    Rule(Rule),
    /// The newest of zfsync's snapshots, always kept: the next incremental starts from it.
    Newest,
    /// Not named by zfsync's pattern: never zfsync's to destroy.
    NotOurs,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Bucket { rule, bucket } => write!(f, "{rule} ({bucket})"),
            Reason::Rule(rule) => write!(f, "{rule}"),
            Reason::Newest => f.write_str("newest"),
            Reason::NotOurs => f.write_str("not zfsync's"),
        }
    }
}

/// Reasons as one short line: `daily=30 (2026-12-01), last=5`.
pub(crate) fn join(reasons: &[Reason]) -> String {
    let texts: Vec<String> = reasons.iter().map(Reason::to_string).collect();
    texts.join(", ")
}

/// The order of time, oldest first, ties broken by name, so equal times plan the same way
/// on every run.
pub(crate) fn by_time(a: &Snapshot, b: &Snapshot) -> Ordering {
    a.time.cmp(&b.time).then_with(|| a.name.cmp(&b.name))
}

impl Plan {
    /// The verdict on each of `snapshots` (any order; the result is in input order).
    ///
    /// - A name in `protected` is [`Verdict::Protect`]ed with the reason given for it.
    /// - A name not in zfsync's pattern is kept as [`Reason::NotOurs`]. Such snapshots take
    ///   no place in any rule: zfsync does not control how long they live, so they must not
    ///   stand in for a snapshot of its own.
    /// - Of zfsync's snapshots, each rule keeps its share (see the crate doc), the newest is
    ///   always kept, and the rest are [`Verdict::Destroy`].
    ///
    /// Buckets are taken in `tz`; `now` serves `within` only. O(n log n) in the number of
    /// snapshots.
    pub fn verdicts(
        &self,
        snapshots: &[Snapshot],
        protected: &HashMap<String, String>,
        tz: &TimeZone,
        now: Timestamp,
    ) -> Vec<Verdict> {
        let mut ours: Vec<usize> = (0..snapshots.len())
            .filter(|&i| parse_name(&snapshots[i].name).is_some())
            .collect();
        ours.sort_by(|&a, &b| by_time(&snapshots[a], &snapshots[b]));
        let local: Vec<Local> = ours
            .iter()
            .map(|&i| Local::new(snapshots[i].time, tz))
            .collect();

        let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); snapshots.len()];
        for rule in self.rules() {
            match *rule {
                Rule::Buckets { size, keep } => {
                    // The first snapshot met of a bucket is its oldest: `ours` is in order.
                    let mut oldest: BTreeMap<Key, usize> = BTreeMap::new();
                    for (pos, at) in local.iter().enumerate() {
                        oldest.entry(bucket::key(size, at)).or_insert(pos);
                    }
                    for &pos in oldest.values().rev().take(keep as usize) {
                        reasons[ours[pos]].push(Reason::Bucket {
                            rule: *rule,
                            bucket: bucket::label(size, &local[pos]),
                        });
                    }
                }
                Rule::Last { keep } => {
                    for &i in ours.iter().rev().take(keep as usize) {
                        reasons[i].push(Reason::Rule(*rule));
                    }
                }
                Rule::Within { age } => {
                    let age = age.duration();
                    for &i in ours.iter().rev() {
                        if now.duration_since(snapshots[i].time) >= age {
                            break;
                        }
                        reasons[i].push(Reason::Rule(*rule));
                    }
                }
            }
        }
        if let Some(&newest) = ours.last() {
            reasons[newest].push(Reason::Newest);
        }

        let mut is_ours = vec![false; snapshots.len()];
        for &i in &ours {
            is_ours[i] = true;
        }
        snapshots
            .iter()
            .zip(reasons)
            .zip(is_ours)
            .map(|((snap, reasons), ours)| {
                if let Some(why) = protected.get(&snap.name) {
                    Verdict::Protect(why.clone())
                } else if !ours {
                    Verdict::Keep(vec![Reason::NotOurs])
                } else if reasons.is_empty() {
                    Verdict::Destroy
                } else {
                    Verdict::Keep(reasons)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::format_name;
    use std::collections::BTreeSet;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// zfsync snapshots at these UTC times.
    fn snaps(times: &[&str]) -> Vec<Snapshot> {
        times
            .iter()
            .map(|t| Snapshot::new(format_name(ts(t)), ts(t)))
            .collect()
    }

    fn zone(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    fn run(plan: &str, zone_name: &str, snapshots: &[Snapshot]) -> Vec<Verdict> {
        let now = snapshots
            .iter()
            .map(|s| s.time)
            .max()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        Plan::parse(plan)
            .unwrap()
            .verdicts(snapshots, &HashMap::new(), &zone(zone_name), now)
    }

    /// Each snapshot's verdict as one line: `2026-01-31T23:00:00Z keep: monthly=3 (2026-01)`.
    fn outcome(plan: &str, zone_name: &str, times: &[&str]) -> Vec<String> {
        let snapshots = snaps(times);
        let verdicts = run(plan, zone_name, &snapshots);
        times
            .iter()
            .zip(verdicts)
            .map(|(t, v)| format!("{t} {v}"))
            .collect()
    }

    fn lines(verdicts: &[Verdict]) -> Vec<String> {
        verdicts.iter().map(Verdict::to_string).collect()
    }

    fn kept(verdicts: &[Verdict]) -> usize {
        verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Keep(_)))
            .count()
    }

    #[test]
    fn empty_input() {
        assert!(run("daily=7", "UTC", &[]).is_empty());
    }

    #[test]
    fn month_ends() {
        assert_eq!(
            outcome(
                "monthly=3",
                "UTC",
                &[
                    "2026-01-30T12:00:00Z",
                    "2026-01-31T23:00:00Z",
                    "2026-02-01T00:00:00Z",
                    "2026-02-28T23:59:59Z",
                    "2026-03-01T00:00:00Z",
                    "2026-03-31T00:00:00Z",
                ]
            ),
            [
                "2026-01-30T12:00:00Z keep: monthly=3 (2026-01)",
                "2026-01-31T23:00:00Z destroy",
                "2026-02-01T00:00:00Z keep: monthly=3 (2026-02)",
                "2026-02-28T23:59:59Z destroy",
                "2026-03-01T00:00:00Z keep: monthly=3 (2026-03)",
                "2026-03-31T00:00:00Z keep: newest",
            ]
        );
    }

    #[test]
    fn month_ends_follow_the_plans_zone() {
        // 23:00 UTC on January 31 is already February 1 in Berlin, and 23:00 UTC on
        // February 28 is March 1.
        assert_eq!(
            outcome(
                "monthly=3",
                "Europe/Berlin",
                &[
                    "2026-01-31T22:59:59Z",
                    "2026-01-31T23:00:00Z",
                    "2026-02-28T22:59:59Z",
                    "2026-02-28T23:00:00Z",
                ]
            ),
            [
                "2026-01-31T22:59:59Z keep: monthly=3 (2026-01)",
                "2026-01-31T23:00:00Z keep: monthly=3 (2026-02)",
                "2026-02-28T22:59:59Z destroy",
                "2026-02-28T23:00:00Z keep: monthly=3 (2026-03), newest",
            ]
        );
    }

    #[test]
    fn leap_day() {
        assert_eq!(
            outcome(
                "daily=2,monthly=2",
                "UTC",
                &[
                    "2024-02-28T12:00:00Z",
                    "2024-02-29T00:00:00Z",
                    "2024-02-29T23:59:59Z",
                    "2024-03-01T00:00:00Z",
                ]
            ),
            [
                "2024-02-28T12:00:00Z keep: monthly=2 (2024-02)",
                "2024-02-29T00:00:00Z keep: daily=2 (2024-02-29)",
                "2024-02-29T23:59:59Z destroy",
                "2024-03-01T00:00:00Z keep: daily=2 (2024-03-01), monthly=2 (2024-03), newest",
            ]
        );
    }

    #[test]
    fn berlin_spring_forward_skips_an_hour_and_keeps_the_day_whole() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00 UTC; no 02:00 bucket exists.
        assert_eq!(
            outcome(
                "hourly=10,daily=2",
                "Europe/Berlin",
                &[
                    "2026-03-28T22:30:00Z",
                    "2026-03-28T23:30:00Z",
                    "2026-03-29T00:00:00Z",
                    "2026-03-29T00:30:00Z",
                    "2026-03-29T01:00:00Z",
                    "2026-03-29T01:30:00Z",
                    "2026-03-29T02:00:00Z",
                ]
            ),
            [
                "2026-03-28T22:30:00Z keep: hourly=10 (2026-03-28T23:00+01), daily=2 (2026-03-28)",
                "2026-03-28T23:30:00Z keep: hourly=10 (2026-03-29T00:00+01), daily=2 (2026-03-29)",
                "2026-03-29T00:00:00Z keep: hourly=10 (2026-03-29T01:00+01)",
                "2026-03-29T00:30:00Z destroy",
                "2026-03-29T01:00:00Z keep: hourly=10 (2026-03-29T03:00+02)",
                "2026-03-29T01:30:00Z destroy",
                "2026-03-29T02:00:00Z keep: hourly=10 (2026-03-29T04:00+02), newest",
            ]
        );
    }

    #[test]
    fn berlin_fall_back_repeats_an_hour_as_two_buckets() {
        // 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00 UTC; 02:00-03:00 local happens
        // twice, first at +02 then at +01, and each is an hourly bucket of its own.
        assert_eq!(
            outcome(
                "hourly=24,daily=2",
                "Europe/Berlin",
                &[
                    "2026-10-24T23:30:00Z",
                    "2026-10-25T00:00:00Z",
                    "2026-10-25T00:30:00Z",
                    "2026-10-25T01:00:00Z",
                    "2026-10-25T01:30:00Z",
                    "2026-10-25T02:00:00Z",
                    "2026-10-25T22:59:59Z",
                    "2026-10-25T23:00:00Z",
                ]
            ),
            [
                "2026-10-24T23:30:00Z keep: hourly=24 (2026-10-25T01:00+02), daily=2 (2026-10-25)",
                "2026-10-25T00:00:00Z keep: hourly=24 (2026-10-25T02:00+02)",
                "2026-10-25T00:30:00Z destroy",
                "2026-10-25T01:00:00Z keep: hourly=24 (2026-10-25T02:00+01)",
                "2026-10-25T01:30:00Z destroy",
                "2026-10-25T02:00:00Z keep: hourly=24 (2026-10-25T03:00+01)",
                "2026-10-25T22:59:59Z keep: hourly=24 (2026-10-25T23:00+01)",
                "2026-10-25T23:00:00Z keep: hourly=24 (2026-10-26T00:00+01), daily=2 (2026-10-26), newest",
            ]
        );
    }

    #[test]
    fn berlin_fall_back_day_has_25_hourly_buckets() {
        let times: Vec<String> = (0..25 * 6)
            .map(|i| {
                let t = ts("2026-10-24T22:00:00Z") + jiff::SignedDuration::from_mins(10 * i);
                t.to_string()
            })
            .collect();
        let times: Vec<&str> = times.iter().map(String::as_str).collect();
        let verdicts = run("hourly=100", "Europe/Berlin", &snaps(&times));
        // 25 buckets, each keeping its first snapshot; the newest is also kept.
        assert_eq!(kept(&verdicts), 26);
    }

    #[test]
    fn two_hourly_across_fall_back_splits_at_the_change_of_offset() {
        // The local 02:00-04:00 bucket is 02:00+02 until the change, 02:00+01 after it.
        assert_eq!(
            outcome(
                "2hourly=5",
                "Europe/Berlin",
                &[
                    "2026-10-24T23:30:00Z",
                    "2026-10-25T00:00:00Z",
                    "2026-10-25T00:30:00Z",
                    "2026-10-25T01:00:00Z",
                    "2026-10-25T02:30:00Z",
                    "2026-10-25T03:00:00Z",
                ]
            ),
            [
                "2026-10-24T23:30:00Z keep: 2hourly=5 (2026-10-25T00:00+02)",
                "2026-10-25T00:00:00Z keep: 2hourly=5 (2026-10-25T02:00+02)",
                "2026-10-25T00:30:00Z destroy",
                "2026-10-25T01:00:00Z keep: 2hourly=5 (2026-10-25T02:00+01)",
                "2026-10-25T02:30:00Z destroy",
                "2026-10-25T03:00:00Z keep: 2hourly=5 (2026-10-25T04:00+01), newest",
            ]
        );
    }

    #[test]
    fn new_york_fall_back_day_is_one_daily_bucket_of_25_hours() {
        // 2026-11-01 in New York runs from 04:00 UTC (EDT) to 05:00 UTC next day (EST).
        assert_eq!(
            outcome(
                "daily=5",
                "America/New_York",
                &[
                    "2026-11-01T03:59:59Z",
                    "2026-11-01T04:00:00Z",
                    "2026-11-02T04:30:00Z",
                    "2026-11-02T05:00:00Z",
                ]
            ),
            [
                "2026-11-01T03:59:59Z keep: daily=5 (2026-10-31)",
                "2026-11-01T04:00:00Z keep: daily=5 (2026-11-01)",
                "2026-11-02T04:30:00Z destroy",
                "2026-11-02T05:00:00Z keep: daily=5 (2026-11-02), newest",
            ]
        );
    }

    #[test]
    fn new_york_spring_forward_day_is_one_daily_bucket_of_23_hours() {
        // 2026-03-08 in New York runs from 05:00 UTC (EST) to 04:00 UTC next day (EDT).
        assert_eq!(
            outcome(
                "daily=5",
                "America/New_York",
                &[
                    "2026-03-08T05:00:00Z",
                    "2026-03-09T03:59:59Z",
                    "2026-03-09T04:00:00Z",
                    "2026-03-09T05:00:00Z",
                ]
            ),
            [
                "2026-03-08T05:00:00Z keep: daily=5 (2026-03-08)",
                "2026-03-09T03:59:59Z destroy",
                "2026-03-09T04:00:00Z keep: daily=5 (2026-03-09)",
                "2026-03-09T05:00:00Z keep: newest",
            ]
        );
    }

    #[test]
    fn iso_weeks_across_a_year_boundary() {
        // 2026-12-31 (Thursday) and 2027-01-03 (Sunday) are in 2026-W53.
        assert_eq!(
            outcome(
                "weekly=3",
                "UTC",
                &[
                    "2026-12-27T12:00:00Z",
                    "2026-12-28T00:00:00Z",
                    "2026-12-31T12:00:00Z",
                    "2027-01-03T23:59:59Z",
                    "2027-01-04T00:00:00Z",
                    "2027-01-05T00:00:00Z",
                ]
            ),
            [
                "2026-12-27T12:00:00Z keep: weekly=3 (2026-W52)",
                "2026-12-28T00:00:00Z keep: weekly=3 (2026-W53)",
                "2026-12-31T12:00:00Z destroy",
                "2027-01-03T23:59:59Z destroy",
                "2027-01-04T00:00:00Z keep: weekly=3 (2027-W01)",
                "2027-01-05T00:00:00Z keep: newest",
            ]
        );
    }

    #[test]
    fn fifteen_minutely_starts_at_quarter_hours() {
        assert_eq!(
            outcome(
                "15minutely=8",
                "UTC",
                &[
                    "2026-12-01T10:14:59Z",
                    "2026-12-01T10:15:00Z",
                    "2026-12-01T10:29:59Z",
                    "2026-12-01T10:30:00Z",
                    "2026-12-01T10:44:00Z",
                ]
            ),
            [
                "2026-12-01T10:14:59Z keep: 15minutely=8 (2026-12-01T10:00+00)",
                "2026-12-01T10:15:00Z keep: 15minutely=8 (2026-12-01T10:15+00)",
                "2026-12-01T10:29:59Z destroy",
                "2026-12-01T10:30:00Z keep: 15minutely=8 (2026-12-01T10:30+00)",
                "2026-12-01T10:44:00Z keep: newest",
            ]
        );
    }

    #[test]
    fn two_hourly_starts_at_even_local_hours() {
        assert_eq!(
            outcome(
                "2hourly=12",
                "Europe/Berlin",
                &[
                    "2026-12-01T00:30:00Z",
                    "2026-12-01T01:00:00Z",
                    "2026-12-01T02:59:00Z",
                    "2026-12-01T03:30:00Z",
                ]
            ),
            [
                "2026-12-01T00:30:00Z keep: 2hourly=12 (2026-12-01T00:00+01)",
                "2026-12-01T01:00:00Z keep: 2hourly=12 (2026-12-01T02:00+01)",
                "2026-12-01T02:59:00Z destroy",
                "2026-12-01T03:30:00Z keep: 2hourly=12 (2026-12-01T04:00+01), newest",
            ]
        );
    }

    #[test]
    fn two_daily_pairs_days_from_1970_across_a_month_end() {
        // Day 20484 since 1970-01-01 is January 31: it and February 1 share a bucket.
        assert_eq!(
            outcome(
                "2daily=10",
                "UTC",
                &[
                    "2026-01-30T12:00:00Z",
                    "2026-01-31T12:00:00Z",
                    "2026-02-01T12:00:00Z",
                    "2026-02-02T12:00:00Z",
                    "2026-02-03T12:00:00Z",
                ]
            ),
            [
                "2026-01-30T12:00:00Z keep: 2daily=10 (2026-01-29)",
                "2026-01-31T12:00:00Z keep: 2daily=10 (2026-01-31)",
                "2026-02-01T12:00:00Z destroy",
                "2026-02-02T12:00:00Z keep: 2daily=10 (2026-02-02)",
                "2026-02-03T12:00:00Z keep: newest",
            ]
        );
    }

    #[test]
    fn three_monthly_is_calendar_quarters() {
        assert_eq!(
            outcome(
                "3monthly=3",
                "UTC",
                &[
                    "2026-02-15T00:00:00Z",
                    "2026-03-31T00:00:00Z",
                    "2026-04-01T00:00:00Z",
                    "2026-09-30T00:00:00Z",
                    "2026-10-01T00:00:00Z",
                ]
            ),
            [
                "2026-02-15T00:00:00Z destroy",
                "2026-03-31T00:00:00Z destroy",
                "2026-04-01T00:00:00Z keep: 3monthly=3 (2026-04)",
                "2026-09-30T00:00:00Z keep: 3monthly=3 (2026-07)",
                "2026-10-01T00:00:00Z keep: 3monthly=3 (2026-10), newest",
            ]
        );
    }

    #[test]
    fn empty_buckets_do_not_count() {
        // A source that stopped in 2024: yearly=2 still keeps its last two years.
        assert_eq!(
            outcome(
                "yearly=2",
                "UTC",
                &[
                    "2021-06-01T00:00:00Z",
                    "2022-06-01T00:00:00Z",
                    "2022-07-01T00:00:00Z",
                    "2024-06-01T00:00:00Z"
                ]
            ),
            [
                "2021-06-01T00:00:00Z destroy",
                "2022-06-01T00:00:00Z keep: yearly=2 (2022)",
                "2022-07-01T00:00:00Z destroy",
                "2024-06-01T00:00:00Z keep: yearly=2 (2024), newest",
            ]
        );
    }

    #[test]
    fn last_keeps_the_newest_n() {
        assert_eq!(
            outcome(
                "last=2,daily=0",
                "UTC",
                &[
                    "2026-12-01T00:00:00Z",
                    "2026-12-01T01:00:00Z",
                    "2026-12-01T02:00:00Z"
                ]
            ),
            [
                "2026-12-01T00:00:00Z destroy",
                "2026-12-01T01:00:00Z keep: last=2",
                "2026-12-01T02:00:00Z keep: last=2, newest",
            ]
        );
    }

    #[test]
    fn within_keeps_younger_than_the_age_at_now() {
        let snapshots = snaps(&[
            "2026-12-01T00:00:00Z",
            "2026-12-01T10:29:59Z",
            "2026-12-01T10:30:00Z",
            "2026-12-01T11:59:00Z",
            "2026-12-01T13:00:00Z",
        ]);
        let verdicts = Plan::parse("within=90m").unwrap().verdicts(
            &snapshots,
            &HashMap::new(),
            &TimeZone::UTC,
            ts("2026-12-01T12:00:00Z"),
        );
        // Exactly 90 minutes old is no longer younger; a snapshot from the future is.
        assert_eq!(
            lines(&verdicts),
            [
                "destroy",
                "destroy",
                "destroy",
                "keep: within=90m",
                "keep: within=90m, newest"
            ]
        );
    }

    #[test]
    fn input_order_does_not_matter_and_verdicts_follow_it() {
        let times = [
            "2026-12-01T00:00:00Z",
            "2026-12-01T01:00:00Z",
            "2026-12-02T00:30:00Z",
            "2026-12-02T05:00:00Z",
        ];
        let forward = run("daily=2", "UTC", &snaps(&times));
        let mut backward = snaps(&times);
        backward.reverse();
        let mut verdicts = run("daily=2", "UTC", &backward);
        verdicts.reverse();
        assert_eq!(verdicts, forward);
        assert_eq!(forward[1], Verdict::Destroy);
    }

    #[test]
    fn equal_times_are_ordered_by_name() {
        let t = ts("2026-12-01T00:00:00Z");
        let snapshots = vec![
            Snapshot::new("zfsync_2026-12-01T00:00:00Z_H", t),
            Snapshot::new("zfsync_2026-12-01T00:00:00Z", t),
            Snapshot::new("zfsync_2026-12-01T00:00:00Z_D", t),
        ];
        assert_eq!(
            lines(&run("daily=1", "UTC", &snapshots)),
            ["keep: newest", "keep: daily=1 (2026-12-01)", "destroy"]
        );
    }

    #[test]
    fn names_not_ours_are_never_destroyed_and_take_no_place() {
        let t = |s| ts(s);
        let snapshots = vec![
            Snapshot::new("manual", t("2026-12-01T00:00:00Z")),
            Snapshot::new("zfsync_2026-12-01T01:00:00Z", t("2026-12-01T01:00:00Z")),
            Snapshot::new("zfsync_2026-12-01T02:00:00Z", t("2026-12-01T02:00:00Z")),
            Snapshot::new("zfsync_2026-12-01T03:00:00Z_W", t("2026-12-01T03:00:00Z")),
        ];
        assert_eq!(
            lines(&run("daily=1", "UTC", &snapshots)),
            [
                "keep: not zfsync's",
                "keep: daily=1 (2026-12-01)",
                "keep: newest",
                "keep: not zfsync's"
            ]
        );
    }

    #[test]
    fn protected_are_never_destroyed() {
        let snapshots = snaps(&[
            "2026-12-01T00:00:00Z",
            "2026-12-01T01:00:00Z",
            "2026-12-01T02:00:00Z",
            "2026-12-01T03:00:00Z",
        ]);
        let protected = HashMap::from([
            (snapshots[1].name.clone(), "receiver base".to_string()),
            (snapshots[0].name.clone(), "held".to_string()),
            ("manual".to_string(), "mark".to_string()),
        ]);
        let verdicts = Plan::parse("last=1").unwrap().verdicts(
            &snapshots,
            &protected,
            &TimeZone::UTC,
            ts("2026-12-01T03:00:00Z"),
        );
        assert_eq!(
            verdicts,
            [
                Verdict::Protect("held".into()),
                Verdict::Protect("receiver base".into()),
                Verdict::Destroy,
                Verdict::Keep(vec![Reason::Rule(Rule::Last { keep: 1 }), Reason::Newest]),
            ]
        );
    }

    #[test]
    fn the_newest_is_never_destroyed() {
        // Every rule's buckets are older than the newest snapshot's own, or keep 0.
        assert_eq!(
            outcome(
                "yearly=1,daily=0",
                "UTC",
                &[
                    "2026-01-01T00:00:00Z",
                    "2026-06-01T00:00:00Z",
                    "2026-12-31T23:59:59Z"
                ]
            ),
            [
                "2026-01-01T00:00:00Z keep: yearly=1 (2026)",
                "2026-06-01T00:00:00Z destroy",
                "2026-12-31T23:59:59Z keep: newest",
            ]
        );
        let snapshots = snaps(&["2026-01-01T00:00:00Z"]);
        let verdicts = Plan::parse("within=1s").unwrap().verdicts(
            &snapshots,
            &HashMap::new(),
            &TimeZone::UTC,
            ts("2030-01-01T00:00:00Z"),
        );
        assert_eq!(verdicts, [Verdict::Keep(vec![Reason::Newest])]);
    }

    #[test]
    fn reasons_list_every_rule_that_keeps() {
        let snapshots = snaps(&["2026-12-01T00:00:00Z", "2026-12-01T00:30:00Z"]);
        let verdicts = run("last=5,hourly=2,daily=2,within=1d", "UTC", &snapshots);
        let rule = |text: &str| Plan::parse(text).unwrap().rules()[0];
        assert_eq!(
            verdicts[0],
            Verdict::Keep(vec![
                Reason::Rule(rule("last=5")),
                Reason::Bucket {
                    rule: rule("hourly=2"),
                    bucket: "2026-12-01T00:00+00".into()
                },
                Reason::Bucket {
                    rule: rule("daily=2"),
                    bucket: "2026-12-01".into()
                },
                Reason::Rule(rule("within=1d")),
            ])
        );
        assert_eq!(
            verdicts[0].to_string(),
            "keep: last=5, hourly=2 (2026-12-01T00:00+00), daily=2 (2026-12-01), within=1d"
        );
    }

    #[test]
    fn huge_input_keeps_what_the_plan_allows() {
        // One snapshot a minute from 2026-01-01 00:00 UTC: 100,000 of them end at
        // 2026-03-11 10:39. minutely=60 keeps 09:40-10:39; hourly=24 the full hours from
        // 2026-03-10 11:00 (10:00 already kept); daily=30 the midnights from 2026-02-10
        // (03-11 already kept); monthly=3 adds 2026-01-01 and 2026-02-01 (03-01 kept).
        let start = ts("2026-01-01T00:00:00Z");
        let mut snapshots: Vec<Snapshot> = (0..100_000)
            .map(|i| {
                let t = start + jiff::SignedDuration::from_mins(i);
                Snapshot::new(format_name(t), t)
            })
            .collect();
        snapshots.reverse();
        let verdicts = run(
            "minutely=60,hourly=24,daily=30,monthly=3",
            "UTC",
            &snapshots,
        );
        assert_eq!(snapshots[0].name, "zfsync_2026-03-11T10:39:00Z");
        assert_eq!(kept(&verdicts), 60 + 23 + 29 + 2);
        let kept_names: BTreeSet<&str> = snapshots
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| matches!(v, Verdict::Keep(_)))
            .map(|(s, _)| s.name.as_str())
            .collect();
        for name in [
            "zfsync_2026-01-01T00:00:00Z",
            "zfsync_2026-02-01T00:00:00Z",
            "zfsync_2026-02-10T00:00:00Z",
            "zfsync_2026-03-10T11:00:00Z",
            "zfsync_2026-03-11T09:40:00Z",
        ] {
            assert!(kept_names.contains(name), "{name}");
        }
    }

    /// Which snapshot each bucket of a verdict list keeps: (rule, bucket) -> name.
    fn bucket_keepers(snapshots: &[Snapshot], verdicts: &[Verdict]) -> BTreeMap<String, String> {
        let mut keepers = BTreeMap::new();
        for (snap, verdict) in snapshots.iter().zip(verdicts) {
            if let Verdict::Keep(reasons) = verdict {
                for reason in reasons {
                    if let Reason::Bucket { rule, bucket } = reason {
                        keepers.insert(format!("{} {bucket}", rule.name()), snap.name.clone());
                    }
                }
            }
        }
        keepers
    }

    #[test]
    fn a_week_of_minutely_runs_with_pruning_is_stable() {
        // Each minute of a week (across Berlin's fall-back): take a snapshot, plan, destroy
        // what the plan says. A bucket, once it keeps a snapshot, keeps that same snapshot
        // until the bucket falls out of its rule's window.
        let plan = Plan::parse("minutely=60,hourly=24,daily=7").unwrap();
        let limits = HashMap::from([("minutely", 60), ("hourly", 24), ("daily", 7)]);
        let tz = zone("Europe/Berlin");
        let start = ts("2026-10-21T22:00:00Z"); // Thursday 00:00 in Berlin
        let mut live: Vec<Snapshot> = Vec::new();
        let mut before: BTreeMap<String, String> = BTreeMap::new();
        // A week of 169 hours (Sunday has 25), ending on Thursday 00:00.
        for minute in 0..=7 * 24 * 60 + 60 {
            let now = start + jiff::SignedDuration::from_mins(minute);
            live.push(Snapshot::new(format_name(now), now));
            let verdicts = plan.verdicts(&live, &HashMap::new(), &tz, now);
            let after = bucket_keepers(&live, &verdicts);
            for (bucket, name) in &before {
                match after.get(bucket) {
                    Some(now_kept) => assert_eq!(now_kept, name, "run {minute}: {bucket}"),
                    None => {
                        // Gone only because the rule already holds its full count.
                        let rule = bucket.split(' ').next().unwrap();
                        let held = after
                            .keys()
                            .filter(|b| b.starts_with(&format!("{rule} ")))
                            .count();
                        assert_eq!(held, limits[rule], "run {minute}: {bucket} dropped early");
                    }
                }
            }
            live = live
                .into_iter()
                .zip(&verdicts)
                .filter(|(_, v)| !matches!(v, Verdict::Destroy))
                .map(|(s, _)| s)
                .collect();
            before = after;
        }
        // The last run is at Thursday 00:00 local: its 60 minutes, 24 hours (23 besides the
        // one of the newest minute) and 7 days (6 besides today's midnight), nothing more.
        assert_eq!(live.len(), 60 + 23 + 6, "{live:#?}");
        // Every day of the week is represented by its local midnight.
        for day in 23..=29 {
            let midnight = jiff::civil::date(2026, 10, day)
                .to_zoned(tz.clone())
                .unwrap();
            let name = format_name(midnight.timestamp());
            assert!(live.iter().any(|s| s.name == name), "{name}");
        }
    }
}
