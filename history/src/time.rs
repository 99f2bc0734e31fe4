//! Unix seconds as RFC 3339 UTC text (`2026-12-02T00:39:40Z`), the form every output of the
//! history uses.
//!
//! Only this one conversion is needed, so it is done here with Howard Hinnant's
//! `civil_from_days` rather than a date library. It reads no clock.

/// `secs` (unix seconds) as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// The proleptic Gregorian date of a day counted from 1970-01-01, by Howard Hinnant's
/// algorithm (<https://howardhinnant.github.io/date_algorithms.html#civil_from_days>): shift
/// the epoch to 0000-03-01 so a leap day ends each year, then count 400-year eras.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1, [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values from GNU `date -u -d @SECS +%Y-%m-%dT%H:%M:%SZ`.
    #[test]
    fn formats_like_date() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (-1, "1969-12-31T23:59:59Z"),
            (68_256_000, "1972-03-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (951_868_800, "2000-03-01T00:00:00Z"),
            (1_709_164_800, "2024-02-29T00:00:00Z"),
            (1_796_171_980, "2026-12-02T00:39:40Z"),
            (4_107_456_000, "2100-02-28T00:00:00Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (-62_135_596_800, "0001-01-01T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ];
        for (secs, want) in cases {
            assert_eq!(rfc3339(secs), want, "{secs}");
        }
    }

    #[test]
    fn every_day_follows_the_one_before() {
        // 1969-01-01 .. 2101-01-01: each day is the day after the previous one.
        let mut prev = civil_from_days(-366);
        assert_eq!(prev, (1968, 12, 31));
        for days in -365..=47_847 {
            let (y, m, d) = civil_from_days(days);
            let next_of_prev = if d == 1 {
                (m == 1 && prev.0 + 1 == y && prev.1 == 12 && prev.2 == 31)
                    || (m > 1 && prev.0 == y && prev.1 + 1 == m && prev.2 >= 28)
            } else {
                prev == (y, m, d - 1)
            };
            assert!(next_of_prev, "{prev:?} -> {:?}", (y, m, d));
            prev = (y, m, d);
        }
        assert_eq!(prev, (2101, 1, 1));
    }
}
