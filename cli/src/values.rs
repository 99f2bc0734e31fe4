//! Option values every binary parses the same way: whole numbers and seconds within
//! bounds. Each returns a [`UsageError`] that names the option and repeats what was
//! given; none knows which options exist.

use crate::UsageError;
use std::ops::RangeInclusive;
use std::time::Duration;

/// A whole number from `range`, `default` when the option is absent.
pub fn number(
    name: &str,
    value: Option<&str>,
    default: u64,
    range: RangeInclusive<u64>,
) -> Result<u64, UsageError> {
    whole(name, value, default, range, "a whole number")
}

/// Whole seconds from `range`, `default` when the option is absent.
pub fn seconds(
    name: &str,
    value: Option<&str>,
    default: u64,
    range: RangeInclusive<u64>,
) -> Result<Duration, UsageError> {
    whole(name, value, default, range, "whole seconds").map(Duration::from_secs)
}

fn whole(
    name: &str,
    value: Option<&str>,
    default: u64,
    range: RangeInclusive<u64>,
    what: &str,
) -> Result<u64, UsageError> {
    let Some(s) = value else {
        return Ok(default);
    };
    match s.parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => {
            let bounds = match (*range.start(), *range.end()) {
                (min, u64::MAX) => format!("of at least {min}"),
                (min, max) => format!("from {min} to {max}"),
            };
            Err(format!("{name} wants {what} {bounds}, got {s:?}").into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let n = |v: Option<&str>| number("-t", v, 8, 1..=u64::MAX);
        assert_eq!(n(None), Ok(8));
        assert_eq!(n(Some("1")), Ok(1));
        assert_eq!(n(Some("256")), Ok(256));
        for bad in ["0", "-1", "x", "", " 3", "1.5", "99999999999999999999"] {
            assert_eq!(
                n(Some(bad)).unwrap_err().to_string(),
                format!("-t wants a whole number of at least 1, got {bad:?}")
            );
        }
        assert_eq!(number("--retries", Some("0"), 3, 0..=u64::MAX), Ok(0));
    }

    #[test]
    fn seconds_within_bounds() {
        let s = |v: &str| seconds("--parent-wait", Some(v), 2, 0..=3600);
        assert_eq!(s("0"), Ok(Duration::ZERO));
        assert_eq!(s("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(
            s("3601").unwrap_err().to_string(),
            "--parent-wait wants whole seconds from 0 to 3600, got \"3601\""
        );
        assert_eq!(
            seconds("--timeout", None, 60, 1..=u64::MAX),
            Ok(Duration::from_secs(60))
        );
        assert_eq!(
            seconds("--timeout", Some("0"), 60, 1..=u64::MAX)
                .unwrap_err()
                .to_string(),
            "--timeout wants whole seconds of at least 1, got \"0\""
        );
    }
}
