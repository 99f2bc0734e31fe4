//! Calendar buckets: which bucket of a [`BucketSize`] a snapshot's time falls in, and the
//! bucket's label. All calendar work is jiff's; this module only chooses the alignment.
//!
//! Alignment, in the plan's time zone:
//! - seconds, minutes and hours: the local wall clock truncated to the multiple inside the
//!   next larger unit (`15minutely`: :00, :15, :30, :45 of the hour; `2hourly`: 00:00,
//!   02:00, .. of the day). The bucket is that wall-clock time *under the snapshot's UTC
//!   offset*, so when a daylight-saving change repeats an hour (Europe/Berlin, last Sunday
//!   of October, 02:00-03:00 twice) the two 02:00 hours are two buckets, `02:00+02` and
//!   `02:00+01`; an hour skipped in spring simply holds no snapshot.
//! - days, ISO weeks (Monday to Sunday), months and years: the local civil date, with
//!   multiples counted from 1970 so buckets never move: `2daily` pairs days counted from
//!   1970-01-01 (2026-01-01 starts a pair), `2weekly` pairs ISO weeks counted from the week
//!   of 1970-01-01 (Monday 1969-12-29), `3monthly` is the quarters January, April, July,
//!   October, `2yearly` starts in even years. A day is one bucket whatever its length (23
//!   or 25 hours across a daylight-saving change).
//!
//! It does not decide what is kept: [`crate::decide`] does.

use crate::plan::{BucketSize, Unit};
use jiff::civil::{self, Date, DateTime, DateTimeRound};
use jiff::tz::{Offset, TimeZone};
use jiff::{RoundMode, Span, Timestamp};

/// The origin of multiples of days, months and years.
const EPOCH: Date = civil::date(1970, 1, 1);
/// The Monday of the ISO week of [`EPOCH`]: the origin of multiples of weeks.
const EPOCH_MONDAY: Date = civil::date(1969, 12, 29);

/// A snapshot's time as the wall clock in the plan's zone showed it, computed once per
/// snapshot and shared by every rule.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Local {
    time: Timestamp,
    civil: DateTime,
    offset: Offset,
}

impl Local {
    pub(crate) fn new(time: Timestamp, tz: &TimeZone) -> Local {
        let offset = tz.to_offset(time);
        Local {
            time,
            civil: offset.to_datetime(time),
            offset,
        }
    }
}

/// Identifies a bucket; buckets of one size order as they do in time. For seconds, minutes
/// and hours it is the bucket's first instant in nanoseconds, for longer units the number of
/// buckets since 1970.
pub(crate) type Key = i128;

pub(crate) fn key(size: BucketSize, at: &Local) -> Key {
    let k = i64::from(size.multiple);
    match size.unit {
        Unit::Second | Unit::Minute | Unit::Hour => {
            let start = wall_clock_start(size, at);
            at.time.as_nanosecond() - at.civil.duration_since(start).as_nanos()
        }
        Unit::Day => i128::from(days_since(EPOCH, at).div_euclid(k)),
        Unit::Week => i128::from(days_since(EPOCH_MONDAY, at).div_euclid(7 * k)),
        Unit::Month => i128::from(months_since_epoch(at).div_euclid(k)),
        Unit::Year => i128::from((i64::from(at.civil.year()) - 1970).div_euclid(k)),
    }
}

/// The bucket's start as people read it: `2026-10-25T02:00+01` (wall clock and offset),
/// `2026-12-01`, `2026-W53`, `2026-12`, `2026`.
pub(crate) fn label(size: BucketSize, at: &Local) -> String {
    let k = i64::from(size.multiple);
    match size.unit {
        Unit::Second | Unit::Minute | Unit::Hour => {
            let format = match size.unit {
                Unit::Second => "%Y-%m-%dT%H:%M:%S",
                _ => "%Y-%m-%dT%H:%M",
            };
            let start = wall_clock_start(size, at);
            format!("{}{}", start.strftime(format), at.offset)
        }
        Unit::Day => {
            let start = days_since(EPOCH, at).div_euclid(k) * k;
            let date = Span::new()
                .try_days(start)
                .and_then(|s| EPOCH.checked_add(s));
            date.map(|d| d.to_string())
                .unwrap_or_else(|_| at.civil.date().to_string())
        }
        Unit::Week => {
            let start = days_since(EPOCH_MONDAY, at).div_euclid(7 * k) * 7 * k;
            let monday = Span::new()
                .try_days(start)
                .and_then(|s| EPOCH_MONDAY.checked_add(s));
            let week = monday.unwrap_or(at.civil.date()).iso_week_date();
            format!("{:04}-W{:02}", week.year(), week.week())
        }
        Unit::Month => {
            let start = months_since_epoch(at).div_euclid(k) * k;
            let first = Span::new()
                .try_months(start)
                .and_then(|s| EPOCH.checked_add(s));
            first
                .unwrap_or(at.civil.date())
                .strftime("%Y-%m")
                .to_string()
        }
        Unit::Year => {
            let start = (i64::from(at.civil.year()) - 1970).div_euclid(k) * k;
            format!("{:04}", 1970 + start)
        }
    }
}

/// The wall-clock time a second, minute or hour bucket starts at.
fn wall_clock_start(size: BucketSize, at: &Local) -> DateTime {
    let unit = match size.unit {
        Unit::Second => jiff::Unit::Second,
        Unit::Minute => jiff::Unit::Minute,
        _ => jiff::Unit::Hour,
    };
    let round = DateTimeRound::new()
        .smallest(unit)
        .increment(i64::from(size.multiple))
        .mode(RoundMode::Trunc);
    // Truncating to a divisor of the next unit never fails (plan.rs only accepts those).
    at.civil.round(round).unwrap_or(at.civil)
}

fn days_since(origin: Date, at: &Local) -> i64 {
    i64::from((at.civil.date() - origin).get_days())
}

/// Months since January 1970: counting, not calendar arithmetic (a year has 12 months).
fn months_since_epoch(at: &Local) -> i64 {
    (i64::from(at.civil.year()) - 1970) * 12 + i64::from(at.civil.month()) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(multiple: u32, unit: Unit) -> BucketSize {
        BucketSize { multiple, unit }
    }

    fn at(time: &str, zone: &str) -> Local {
        Local::new(time.parse().unwrap(), &TimeZone::get(zone).unwrap())
    }

    #[test]
    fn labels() {
        for (multiple, unit, time, zone, want) in [
            (
                1,
                Unit::Second,
                "2026-12-01T12:34:56Z",
                "UTC",
                "2026-12-01T12:34:56+00",
            ),
            (
                10,
                Unit::Second,
                "2026-12-01T12:34:56Z",
                "UTC",
                "2026-12-01T12:34:50+00",
            ),
            (
                15,
                Unit::Minute,
                "2026-12-01T12:34:56Z",
                "Europe/Berlin",
                "2026-12-01T13:30+01",
            ),
            (
                1,
                Unit::Hour,
                "2026-07-01T12:34:56Z",
                "Europe/Berlin",
                "2026-07-01T14:00+02",
            ),
            (
                1,
                Unit::Hour,
                "2026-12-01T12:34:56Z",
                "Asia/Kolkata",
                "2026-12-01T18:00+05:30",
            ),
            (
                2,
                Unit::Hour,
                "2026-12-01T12:34:56Z",
                "America/New_York",
                "2026-12-01T06:00-05",
            ),
            (
                1,
                Unit::Day,
                "2026-12-01T23:30:00Z",
                "Europe/Berlin",
                "2026-12-02",
            ),
            (1, Unit::Week, "2026-12-31T12:00:00Z", "UTC", "2026-W53"),
            (1, Unit::Week, "2027-01-03T12:00:00Z", "UTC", "2026-W53"),
            (1, Unit::Week, "2027-01-04T12:00:00Z", "UTC", "2027-W01"),
            (1, Unit::Month, "2026-12-31T23:30:00Z", "UTC", "2026-12"),
            (
                1,
                Unit::Month,
                "2026-12-31T23:30:00Z",
                "Europe/Berlin",
                "2027-01",
            ),
            (3, Unit::Month, "2026-12-31T12:00:00Z", "UTC", "2026-10"),
            (1, Unit::Year, "2026-06-01T00:00:00Z", "UTC", "2026"),
            (2, Unit::Year, "2027-06-01T00:00:00Z", "UTC", "2026"),
        ] {
            let s = size(multiple, unit);
            assert_eq!(label(s, &at(time, zone)), want, "{s} {time} {zone}");
        }
    }

    #[test]
    fn keys_order_as_time_does() {
        let times = [
            "2026-10-24T23:59:59Z",
            "2026-10-25T00:00:00Z",
            "2026-10-25T00:59:59Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T03:00:00Z",
            "2026-12-31T12:00:00Z",
            "2027-01-04T12:00:00Z",
        ];
        for unit in Unit::ALL {
            for multiple in [1, 2, 3] {
                let keys: Vec<Key> = times
                    .iter()
                    .map(|t| key(size(multiple, unit), &at(t, "Europe/Berlin")))
                    .collect();
                assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{multiple} {unit:?}");
            }
        }
    }

    #[test]
    fn two_daily_pairs_days_counted_from_1970() {
        // 2026-01-01 is day 20454 after 1970-01-01, an even number: it starts a pair.
        assert_eq!((civil::date(2026, 1, 1) - EPOCH).get_days(), 20454);
        let two = size(2, Unit::Day);
        for (time, want) in [
            ("2026-01-01T00:00:00Z", "2026-01-01"),
            ("2026-01-02T23:59:59Z", "2026-01-01"),
            ("2026-01-03T00:00:00Z", "2026-01-03"),
            ("2026-01-31T12:00:00Z", "2026-01-31"),
            ("2026-02-01T12:00:00Z", "2026-01-31"),
            ("1970-01-02T12:00:00Z", "1970-01-01"),
            ("1969-12-31T12:00:00Z", "1969-12-30"),
        ] {
            assert_eq!(label(two, &at(time, "UTC")), want, "{time}");
        }
    }

    #[test]
    fn two_weekly_pairs_iso_weeks_counted_from_1970() {
        let two = size(2, Unit::Week);
        for (time, want) in [
            ("1969-12-29T00:00:00Z", "1970-W01"),
            ("1970-01-11T23:59:59Z", "1970-W01"),
            ("1970-01-12T00:00:00Z", "1970-W03"),
            ("2026-12-28T00:00:00Z", "2026-W53"),
            ("2027-01-04T00:00:00Z", "2026-W53"),
            ("2027-01-11T00:00:00Z", "2027-W02"),
        ] {
            assert_eq!(label(two, &at(time, "UTC")), want, "{time}");
        }
    }
}
