//! Option values every binary parses the same way: whole numbers and seconds within
//! bounds, and `HOST[:PORT]` addresses. Each returns a [`UsageError`] that says what is
//! wrong with what was given; none knows which options exist or resolves a name.

use crate::UsageError;
use std::fmt;
use std::net::Ipv6Addr;
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

/// A TCP address as users write it: `backup`, `backup:7612`, `10.0.0.2`, `[::1]`,
/// `[fe80::1]:7612`. Displays as `HOST:PORT` (`[V6]:PORT`), what `ToSocketAddrs` takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// A name or an IPv4 address, or an IPv6 address without its brackets.
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// Parses `HOST[:PORT]`, with `default_port` when none is given. A port below
    /// `min_port` is refused: 1 for an address to connect to, 0 for one to listen on
    /// (port 0: any free port). The host is not resolved here.
    pub fn parse(s: &str, default_port: u16, min_port: u16) -> Result<HostPort, UsageError> {
        let (host, port) = match s.strip_prefix('[') {
            Some(rest) => {
                let (host, after) = rest
                    .split_once(']')
                    .ok_or("missing ']' after the IPv6 address")?;
                if host.parse::<Ipv6Addr>().is_err() {
                    return Err(format!("[{host}] is not an IPv6 address").into());
                }
                let port = match after {
                    "" => None,
                    _ => Some(after.strip_prefix(':').ok_or_else(|| {
                        format!("expected :PORT after [{host}], got {after:?}")
                    })?),
                };
                (host, port)
            }
            None => match s.split_once(':') {
                None => (s, None),
                Some((_, p)) if p.contains(':') => {
                    return Err(format!(
                        "an IPv6 address goes in brackets: [ADDRESS] or [ADDRESS]:PORT, e.g. [::1]:{default_port}"
                    )
                    .into())
                }
                Some((host, port)) => (host, Some(port)),
            },
        };
        if host.is_empty() {
            return Err(format!("missing host in {s:?}").into());
        }
        if host.bytes().all(|b| b.is_ascii_digit()) {
            // A lone number is a port given without its host, not a host.
            return Err(format!("{host} is not a host: write HOST:{host}").into());
        }
        let port = match port {
            None => default_port,
            Some("") => return Err(format!("missing port after ':' in {s:?}").into()),
            Some(p) if !p.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(format!("port {p:?} is not a number").into())
            }
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|n| *n >= min_port)
                .ok_or_else(|| format!("port {p} is out of range {min_port}-65535"))?,
        };
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Seconds of `s`, `m`, `h`, `d`, `w`.
const UNITS: [(char, i64); 5] = [
    ('s', 1),
    ('m', 60),
    ('h', 3600),
    ('d', 86_400),
    ('w', 7 * 86_400),
];

/// `N` followed by one of s, m, h, d, w (`d` is 24 h, `w` 7 d), or plain seconds: seconds.
/// The spelling of every duration option (`--older-than 7d`, `--orphans-after 30d`).
pub fn duration_secs(text: &str) -> Result<i64, String> {
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
            assert_eq!(duration_secs(text), want, "{text}");
        }
        for bad in ["", "d", "7x", "-1d", "1.5h", "7 d", "99999999999999999999d"] {
            assert!(duration_secs(bad).is_err(), "{bad:?}");
        }
    }

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

    /// `HostPort::parse` to connect (ports 1-65535) and to listen (0-65535), default 7611.
    fn connect(s: &str) -> Result<String, String> {
        HostPort::parse(s, 7611, 1)
            .map(|a| a.to_string())
            .map_err(|e| e.to_string())
    }

    fn listen(s: &str) -> Result<String, String> {
        HostPort::parse(s, 7611, 0)
            .map(|a| a.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn addresses() {
        for (given, want) in [
            ("backup", "backup:7611"),
            ("backup:9000", "backup:9000"),
            ("backup.example.org:1", "backup.example.org:1"),
            ("10.0.0.2", "10.0.0.2:7611"),
            ("10.0.0.2:65535", "10.0.0.2:65535"),
            ("[::1]", "[::1]:7611"),
            ("[::1]:9000", "[::1]:9000"),
            ("[fe80::1:2]:7612", "[fe80::1:2]:7612"),
            ("[::]", "[::]:7611"),
        ] {
            assert_eq!(connect(given).as_deref(), Ok(want), "{given}");
            assert_eq!(listen(given).as_deref(), Ok(want), "{given}");
        }
    }

    #[test]
    fn port_zero_is_for_listening_only() {
        assert_eq!(listen("127.0.0.1:0").as_deref(), Ok("127.0.0.1:0"));
        assert_eq!(listen("[::1]:0").as_deref(), Ok("[::1]:0"));
        assert_eq!(
            connect("backup:0").unwrap_err(),
            "port 0 is out of range 1-65535"
        );
    }

    #[test]
    fn bad_addresses() {
        for (given, want) in [
            ("backup:99999", "port 99999 is out of range 1-65535"),
            ("backup:65536", "port 65536 is out of range 1-65535"),
            ("[::1]:99999", "port 99999 is out of range 1-65535"),
            (
                "backup:123456789012345678901",
                "port 123456789012345678901 is out of range",
            ),
            ("backup:x", "port \"x\" is not a number"),
            ("backup:-1", "port \"-1\" is not a number"),
            ("backup:+1", "port \"+1\" is not a number"),
            ("backup: 1", "port \" 1\" is not a number"),
            ("backup:", "missing port after ':'"),
            ("[::1]:", "missing port after ':'"),
            (":7611", "missing host"),
            ("", "missing host"),
            ("7611", "7611 is not a host: write HOST:7611"),
            ("::1", "an IPv6 address goes in brackets"),
            ("fe80::1:7611", "an IPv6 address goes in brackets"),
            ("[::1", "missing ']'"),
            ("[::1]7611", "expected :PORT after [::1], got \"7611\""),
            ("[backup]:7611", "[backup] is not an IPv6 address"),
            ("[]", "[] is not an IPv6 address"),
            ("[10.0.0.2]", "[10.0.0.2] is not an IPv6 address"),
        ] {
            let e = connect(given).unwrap_err();
            assert!(e.contains(want), "{given:?}: {e:?} lacks {want:?}");
        }
    }
}
