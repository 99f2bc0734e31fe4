//! Durations as people write and read them: `7d`, `90m` on a command line ([`parse`]),
//! `2h05m`, `3d4h` in output ([`show`]).
//!
//! Owns only these two spellings; what a duration means (a threshold, how far back) is
//! the caller's.

/// Seconds of `s`, `m`, `h`, `d`, `w`.
const UNITS: [(char, i64); 5] = [
    ('s', 1),
    ('m', 60),
    ('h', 3600),
    ('d', 86_400),
    ('w', 7 * 86_400),
];

/// `N` followed by one of s, m, h, d, w (`d` is 24 h, `w` 7 d), or plain seconds: seconds.
pub fn parse(text: &str) -> Result<i64, String> {
    let bad = || format!("wants a duration such as 90s, 45m, 12h, 7d or 2w, got {text:?}");
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let per = UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, secs)| *secs)
        .ok_or_else(bad)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(per))
        .ok_or_else(bad)
}

/// `secs` in its two largest units: `45s`, `12m30s`, `2h05m`, `3d4h`; a negative
/// duration (a time in the future) gets a `-`.
pub fn show(secs: i64) -> String {
    if secs < 0 {
        return format!("-{}", show(secs.saturating_neg()));
    }
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) if m == 0 => format!("{h}h"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ if h == 0 => format!("{d}d"),
        _ => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_written() {
        for (text, want) in [
            ("90", Ok(90)),
            ("90s", Ok(90)),
            ("45m", Ok(2700)),
            ("12h", Ok(43_200)),
            ("7d", Ok(604_800)),
            ("2w", Ok(1_209_600)),
            ("0m", Ok(0)),
        ] {
            assert_eq!(parse(text), want, "{text}");
        }
        for bad in ["", "d", "7x", "-1d", "1.5h", "7 d", "99999999999999999999d"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_as_shown() {
        for (secs, want) in [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (750, "12m30s"),
            (3600, "1h"),
            (7500, "2h05m"),
            (86_400, "1d"),
            (273_600, "3d4h"),
            (-90, "-1m30s"),
        ] {
            assert_eq!(show(secs), want, "{secs}");
        }
    }
}
