//! The one retention planner of zfsync: snapshots + plan + time zone + now -> keep or
//! destroy, with reasons.
//!
//! The crate is pure: no ZFS, no I/O, no threads, no clock (the time is an argument).
//! Calendar work (time zones, ISO weeks, month lengths, daylight saving) is the `jiff`
//! crate's. So far it holds the plan grammar and zfsync's snapshot names.
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
//! every rule keeps 0 is refused as an empty plan.

mod name;
mod plan;

pub use name::{format_name, parse_name};
pub use plan::{Age, BucketSize, Plan, PlanError, Rule, Unit};
