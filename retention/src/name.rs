//! zfsync's own snapshot names: `zfsync_<YYYY-MM-DDThh:mm:ssZ>`, in UTC so names sort by
//! time.
//!
//! This module owns the pattern, and with it what "ours" means: only a snapshot whose name
//! [`parse_name`] accepts may ever be destroyed by a plan. It does not decide the time of
//! other snapshots (the caller takes their creation property).

use jiff::civil::DateTime;
use jiff::tz::Offset;
use jiff::Timestamp;

const PREFIX: &str = "zfsync_";

/// Where the digits of `YYYY-MM-DDThh:mm:ssZ` are; every other byte must match exactly.
const STAMP: &[u8; 20] = b"dddd-dd-ddTdd:dd:ddZ";

/// The retention classes that scripts/zfsyncron appends (`_S`, `_M`, `_H`, `_D`).
const CLASSES: [&str; 4] = ["_S", "_M", "_H", "_D"];

/// The snapshot name zfsync gives a snapshot taken at `time`: `zfsync_2026-12-02T00:39:40Z`
/// (whole seconds, UTC). Names with a class suffix (`zfsync_2026-12-02T00:39:40Z_D`, written
/// by scripts/zfsyncron) still parse, but are no longer made: the plan, not the name, says
/// what a snapshot is kept for.
pub fn format_name(time: Timestamp) -> String {
    format!("{PREFIX}{}", time.strftime("%Y-%m-%dT%H:%M:%SZ"))
}

/// The time in a zfsync snapshot name, or `None` if `name` is not exactly
/// `zfsync_YYYY-MM-DDThh:mm:ssZ`, optionally followed by `_S`, `_M`, `_H` or `_D`, with a
/// valid date and time (no February 30, no second 60).
pub fn parse_name(name: &str) -> Option<Timestamp> {
    let rest = name.strip_prefix(PREFIX)?.as_bytes();
    if rest.len() < STAMP.len() {
        return None;
    }
    let (stamp, class) = rest.split_at(STAMP.len());
    let shape_ok = stamp.iter().zip(STAMP).all(|(&b, &want)| match want {
        b'd' => b.is_ascii_digit(),
        _ => b == want,
    });
    if !shape_ok || !(class.is_empty() || CLASSES.iter().any(|c| c.as_bytes() == class)) {
        return None;
    }
    // All ASCII digits by now, so these parses cannot fail; jiff checks the ranges.
    let num = |from: usize, to: usize| -> Option<i16> {
        std::str::from_utf8(&stamp[from..to]).ok()?.parse().ok()
    };
    let narrow = |v: i16| i8::try_from(v).ok();
    let civil = DateTime::new(
        num(0, 4)?,
        narrow(num(5, 7)?)?,
        narrow(num(8, 10)?)?,
        narrow(num(11, 13)?)?,
        narrow(num(14, 16)?)?,
        narrow(num(17, 19)?)?,
        0,
    )
    .ok()?;
    Offset::UTC.to_timestamp(civil).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn format_is_utc_whole_seconds_without_class() {
        for (time, want) in [
            ("2026-12-02T00:39:40Z", "zfsync_2026-12-02T00:39:40Z"),
            (
                "2026-12-02T01:39:40.75+01:00",
                "zfsync_2026-12-02T00:39:40Z",
            ),
            ("1970-01-01T00:00:00Z", "zfsync_1970-01-01T00:00:00Z"),
        ] {
            assert_eq!(format_name(ts(time)), want, "{time}");
        }
    }

    #[test]
    fn names_round_trip() {
        for time in [
            "2026-12-02T00:39:40Z",
            "2024-02-29T23:59:59Z",
            "2000-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_name(&format_name(ts(time))), Some(ts(time)), "{time}");
        }
    }

    #[test]
    fn cron_names_with_a_class_parse() {
        for class in ["S", "M", "H", "D"] {
            let name = format!("zfsync_2026-12-02T00:39:40Z_{class}");
            assert_eq!(
                parse_name(&name),
                Some(ts("2026-12-02T00:39:40Z")),
                "{name}"
            );
        }
    }

    #[test]
    fn anything_else_is_not_ours() {
        for name in [
            "",
            "zfsync_",
            "zfsync_2026-12-02T00:39:40",
            "zfsync_2026-12-02T00:39:40Z_",
            "zfsync_2026-12-02T00:39:40Z_W",
            "zfsync_2026-12-02T00:39:40Z_DD",
            "zfsync_2026-12-02T00:39:40Zx",
            "zfsync_2026-12-02 00:39:40Z",
            "zfsync_2026-12-02T00:39:40+01:00",
            "zfsync_2026-12-02T00:39:40.5Z",
            "zfsync_+026-12-02T00:39:40Z",
            "zfsync_2026-12-2T00:39:40Z",
            "Zfsync_2026-12-02T00:39:40Z",
            "autosnap_2026-12-02T00:39:40Z",
            "zfsync_2026-12-02T00:39:40Z_\u{e9}",
            "tank/a@zfsync_2026-12-02T00:39:40Z",
        ] {
            assert_eq!(parse_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn impossible_dates_and_times_are_not_ours() {
        for stamp in [
            "2026-02-29T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-10T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-12-02T24:00:00Z",
            "2026-12-02T00:60:00Z",
            "2026-12-02T00:00:60Z",
        ] {
            assert_eq!(parse_name(&format!("zfsync_{stamp}")), None, "{stamp}");
        }
        assert!(parse_name("zfsync_2024-02-29T00:00:00Z").is_some());
    }
}
