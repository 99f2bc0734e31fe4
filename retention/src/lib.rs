//! The one retention planner of zfsync: snapshots + plan + time zone + now -> keep or
//! destroy, with reasons.
//!
//! Source-side pruning, receiver-side pruning, `--dry-run --explain` and the monitoring
//! checks' expected ages all come from here, so they cannot disagree. The crate is pure: no
//! ZFS, no I/O, no threads, no clock (the time is an argument). Calendar work (time zones,
//! ISO weeks, month lengths, daylight saving) is the `jiff` crate's.
//!
//! # Plan grammar
//!
//! ```text
//! plan     = rule *( "," rule )                  ; spaces around rules and "=" are ignored
//! rule     = [multiple] unit "=" N               ; the oldest snapshot of each of the
//!                                                ;   N newest buckets holding a snapshot
//!          / "last=" N                           ; the N newest snapshots
//!          / "within=" age                       ; every snapshot younger than age at now
//! unit     = "secondly" / "minutely" / "hourly" / "daily" / "weekly" / "monthly" / "yearly"
//! multiple = 1*DIGIT  ; from 1; for secondly and minutely a divisor of 60 below 60,
//!                     ; for hourly a divisor of 24 below 24; any for the longer units
//! N        = 1*DIGIT  ; 0 to 4294967295; 0 keeps nothing
//! age      = 1*DIGIT ( "s" / "m" / "h" / "d" / "w" )   ; d = 24 h, w = 7 d
//! ```
//!
//! Each rule may appear once (`daily` and `2daily` are different rules). A plan in which
//! every rule keeps 0 is refused as an empty plan: it would destroy everything but the
//! newest snapshot.
//!
//! Buckets are calendar units in the plan's time zone (a `jiff::tz::TimeZone` from the
//! caller, `UTC` included; another zone moves the buckets, so keep it fixed):
//! - `secondly`, `minutely`, `hourly`: the local wall clock, multiples aligned inside the
//!   next larger unit (`15minutely` starts at :00, :15, :30, :45; `2hourly` at 00:00, 02:00,
//!   ..). A bucket is a wall-clock time under one UTC offset, so the hour a daylight-saving
//!   change repeats is two buckets (`2026-10-25T02:00+02` and `2026-10-25T02:00+01` in
//!   Europe/Berlin), and an hour it skips holds no snapshot.
//! - `daily`, `weekly` (ISO weeks, Monday to Sunday), `monthly`, `yearly`: the local date,
//!   a day being one bucket whatever its length. Multiples are counted from 1970 so buckets
//!   never move: `2daily` pairs days from 1970-01-01 (2026-01-01 starts a pair), `2weekly`
//!   pairs ISO weeks from 1970-W01, `3monthly` is the quarters, `2yearly` starts in even
//!   years.
//!
//! Only buckets that hold a snapshot count, so a source that stops taking snapshots keeps
//! its history. A bucket keeps its oldest snapshot, so once a snapshot is kept for a
//! bucket, newer snapshots never take its place.
//!
//! A snapshot is kept if any rule keeps it, and its reasons list every rule and bucket that
//! do. The newest of zfsync's snapshots is always kept. Snapshots the caller protects (a
//! receiver's base, a held or marked snapshot) are protected whatever the plan says, and
//! only snapshots named by zfsync ([`parse_name`]) can ever be destroyed; the others take
//! no place in any rule, since zfsync does not control how long they live.
//!
//! # Examples
//!
//! A plan of hours and days in Berlin:
//!
//! ```
//! use std::collections::HashMap;
//! use jiff::{tz::TimeZone, Timestamp};
//! use zfsync_retention::{format_name, Plan, Snapshot, Verdict};
//!
//! let plan: Plan = "hourly=2,daily=2".parse().unwrap();
//! let snapshots: Vec<Snapshot> = ["2026-12-01T10:00:00Z", "2026-12-01T10:30:00Z",
//!     "2026-12-02T09:00:00Z", "2026-12-02T09:40:00Z", "2026-12-02T11:10:00Z"]
//!     .iter()
//!     .map(|t| {
//!         let t: Timestamp = t.parse().unwrap();
//!         Snapshot::new(format_name(t), t)
//!     })
//!     .collect();
//! let tz = TimeZone::get("Europe/Berlin").unwrap();
//! let now: Timestamp = "2026-12-02T11:15:00Z".parse().unwrap();
//! let verdicts = plan.verdicts(&snapshots, &HashMap::new(), &tz, now);
//! let lines: Vec<String> = verdicts.iter().map(Verdict::to_string).collect();
//! assert_eq!(lines, [
//!     "keep: daily=2 (2026-12-01)",
//!     "destroy",
//!     "keep: hourly=2 (2026-12-02T10:00+01), daily=2 (2026-12-02)",
//!     "destroy",
//!     "keep: hourly=2 (2026-12-02T12:00+01), newest",
//! ]);
//! assert_eq!(plan.expected_period().unwrap().as_secs(), 3600);
//! ```
//!
//! A receiver keeping the last 3 and a week of snapshots, never its incremental base or a
//! snapshot it did not name, with the `--dry-run --explain` lines and the safety check:
//!
//! ```
//! use std::collections::HashMap;
//! use jiff::{tz::TimeZone, Timestamp};
//! use zfsync_retention::{explain, parse_name, too_destructive, Plan, Snapshot};
//!
//! let plan = Plan::parse("last=3,within=1w").unwrap();
//! let names = ["zfsync_2026-11-01T00:00:00Z_D", "zfsync_2026-11-02T00:00:00Z",
//!     "zfsync_2026-11-03T00:00:00Z", "zfsync_2026-11-04T00:00:00Z",
//!     "zfsync_2026-11-05T00:00:00Z", "zfsync_2026-11-06T00:00:00Z"];
//! let mut snapshots: Vec<Snapshot> = names
//!     .iter()
//!     .map(|n| Snapshot::new(*n, parse_name(n).unwrap()))
//!     .collect();
//! snapshots.push(Snapshot::new("before-upgrade", "2026-11-01T12:00:00Z".parse().unwrap()));
//! let protected = HashMap::from([(names[1].to_string(), "receiver base".to_string())]);
//! let now: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
//! let verdicts = plan.verdicts(&snapshots, &protected, &TimeZone::UTC, now);
//! assert_eq!(explain("backup/a", &snapshots, &verdicts), [
//!     "DESTROY  backup/a@zfsync_2026-11-01T00:00:00Z_D",
//!     "KEEP     backup/a@before-upgrade                 not zfsync's",
//!     "PROTECT  backup/a@zfsync_2026-11-02T00:00:00Z    (receiver base)",
//!     "DESTROY  backup/a@zfsync_2026-11-03T00:00:00Z",
//!     "KEEP     backup/a@zfsync_2026-11-04T00:00:00Z    last=3",
//!     "KEEP     backup/a@zfsync_2026-11-05T00:00:00Z    last=3",
//!     "KEEP     backup/a@zfsync_2026-11-06T00:00:00Z    last=3, newest",
//! ]);
//! assert_eq!(too_destructive(&snapshots, &verdicts), None);
//! ```

mod bucket;
mod decide;
mod keep;
mod name;
mod plan;
mod report;

pub use decide::{Reason, Snapshot, Verdict};
pub use keep::{plan_dataset, Candidate, DatasetPlan, Keep, DEFAULT_TZ};
pub use name::{format_name, parse_name};
pub use plan::{Age, BucketSize, Plan, PlanError, Rule, Unit};
pub use report::{explain, too_destructive};
