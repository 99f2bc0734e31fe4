//! An [`io::Error`] as words for people: `connection refused`, `broken pipe`, `timed
//! out`, not `Connection refused (os error 111)`. The OS's own text, lowercased, without
//! the error number; a timeout (which a socket read reports as EAGAIN, "Resource
//! temporarily unavailable") says so.

use std::fmt;
use std::io;

/// `e` as lowercase words without the OS error number.
pub fn io_error(e: &io::Error) -> String {
    // An error made with its own message (`io::Error::new(kind, "zfs took no data for
    // 5s")`) already says what happened in words: only the OS's are rephrased.
    if e.get_ref().is_none()
        && matches!(
            e.kind(),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
        )
    {
        return "timed out".into();
    }
    let text = e.to_string();
    let text = match e.raw_os_error() {
        // std writes "TEXT (os error N)" for an OS error: the number says nothing to a
        // person, and the logs and notes that show it are read by people.
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .unwrap_or(&text)
            .to_string(),
        None => text,
    };
    lowercase_first(&text)
}

/// Displays an [`io::Error`] as [`io_error`] words: `write!(f, "{}: {}", path, IoWords(&e))`.
pub struct IoWords<'a>(pub &'a io::Error);

impl fmt::Display for IoWords<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&io_error(self.0))
    }
}

/// "Connection refused" -> "connection refused"; an acronym ("TLS ...") stays as it is.
fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(a), Some(b)) if a.is_uppercase() && !b.is_uppercase() => {
            a.to_lowercase().chain(s[a.len_utf8()..].chars()).collect()
        }
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_become_lowercase_words_without_their_number() {
        let cases = [
            (libc_code::ECONNREFUSED, "connection refused"),
            (libc_code::EPIPE, "broken pipe"),
            (libc_code::ECONNRESET, "connection reset by peer"),
            (libc_code::ENOENT, "no such file or directory"),
            (libc_code::EACCES, "permission denied"),
            (libc_code::EHOSTUNREACH, "no route to host"),
            // A socket read past its timeout fails with EAGAIN.
            (libc_code::EAGAIN, "timed out"),
            (libc_code::ETIMEDOUT, "timed out"),
        ];
        for (code, want) in cases {
            let e = io::Error::from_raw_os_error(code);
            assert_eq!(io_error(&e), want, "{e}");
            assert_eq!(IoWords(&e).to_string(), want, "{e}");
        }
    }

    #[test]
    fn other_errors_keep_their_text_lowercased() {
        let cases = [
            (io::Error::other("Bad thing"), "bad thing"),
            (io::Error::other("TLS failed"), "TLS failed"),
            (
                io::Error::new(io::ErrorKind::TimedOut, "zfs took no data for 5s"),
                "zfs took no data for 5s",
            ),
            (
                io::Error::new(io::ErrorKind::UnexpectedEof, "failed to fill whole buffer"),
                "failed to fill whole buffer",
            ),
            (io::Error::other(""), ""),
        ];
        for (e, want) in cases {
            assert_eq!(io_error(&e), want, "{e}");
        }
    }

    /// Linux's numbers, so the tests need no libc crate.
    mod libc_code {
        pub const ENOENT: i32 = 2;
        pub const EAGAIN: i32 = 11;
        pub const EACCES: i32 = 13;
        pub const EPIPE: i32 = 32;
        pub const ECONNRESET: i32 = 104;
        pub const ETIMEDOUT: i32 = 110;
        pub const ECONNREFUSED: i32 = 111;
        pub const EHOSTUNREACH: i32 = 113;
    }
}
