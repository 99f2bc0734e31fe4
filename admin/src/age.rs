//! Durations as people write and read them: `7d`, `90m` on a command line ([`parse`], the
//! cli crate's), `2h05m`, `3d4h` in output ([`show`]).
//!
//! Owns only these two spellings; what a duration means (a threshold, how far back) is
//! the caller's.

/// `N` followed by one of s, m, h, d, w, or plain seconds: seconds (shared with
/// `zfsync-recv --orphans-after`, hence in the cli crate).
pub use zfsync_cli::values::duration_secs as parse;

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
