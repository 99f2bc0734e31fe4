//! A byte count for people: `180 MB`, `8.4 MB`, `512 bytes` (SI units, as `df -H`; three
//! significant digits at most, so a note stays short).

/// `bytes` in SI units: "0 bytes", "512 bytes", "1.5 kB", "180 MB", "12 GB".
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 1000 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    // 999.5 kB would print as "1000 kB": the next unit says it better.
    while value >= 999.5 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if value < 9.95 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_short() {
        let cases = [
            (0, "0 bytes"),
            (999, "999 bytes"),
            (1000, "1.0 kB"),
            (1536, "1.5 kB"),
            (9_949, "9.9 kB"),
            (9_950, "10 kB"),
            (999_499, "999 kB"),
            (999_500, "1.0 MB"),
            (8_400_000, "8.4 MB"),
            (180_000_000, "180 MB"),
            (188_743_680, "189 MB"),
            (12_000_000_000, "12 GB"),
            (u64::MAX, "18 EB"),
        ];
        for (bytes, want) in cases {
            assert_eq!(size(bytes), want, "{bytes}");
        }
    }
}
