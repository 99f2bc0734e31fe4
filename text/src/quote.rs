//! Values in `key=value` log lines: as they are, or in double quotes when they would break
//! the line's parsing (`dataset="tank/My Documents"`), so that a log stays one record per
//! line and one value per key whatever names and errors it carries.

use std::fmt::{self, Write};

/// `value` for a log line, quoted if it needs to be: `log::info!("recv done dataset={}",
/// quoted(&ds))`. Quoted: an empty value, and one that holds white space, a quote, a
/// backslash, `=` or a control character. Inside the quotes `"` and `\` are escaped with
/// a backslash, and control characters are written `\n`, `\r`, `\t` or `\u{1b}`.
pub fn quoted<T: fmt::Display>(value: T) -> Quoted<T> {
    Quoted(value)
}

/// A value that displays as [`quoted`] says.
pub struct Quoted<T>(pub T);

impl<T: fmt::Display> fmt::Display for Quoted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.to_string();
        if !s.is_empty() && !s.chars().any(needs_quotes) {
            return f.write_str(&s);
        }
        f.write_char('"')?;
        for c in s.chars() {
            match c {
                '"' | '\\' => write!(f, "\\{c}")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

fn needs_quotes(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_only_when_they_need_it() {
        let cases = [
            ("tank/data", "tank/data"),
            (
                "tank/data@zfsync_2026-12-02_D",
                "tank/data@zfsync_2026-12-02_D",
            ),
            ("127.0.0.1:7611", "127.0.0.1:7611"),
            ("[::1]:7611", "[::1]:7611"),
            ("", r#""""#),
            ("tank/My Documents", r#""tank/My Documents""#),
            ("a=b", r#""a=b""#),
            (r#"say "hi""#, r#""say \"hi\"""#),
            (r"C:\dir", r#""C:\\dir""#),
            ("two\nlines", r#""two\nlines""#),
            ("tab\there", r#""tab\there""#),
            ("esc\u{1b}[0m", r#""esc\u{1b}[0m""#),
            ("ünïcode", "ünïcode"),
        ];
        for (value, want) in cases {
            assert_eq!(quoted(value).to_string(), want, "{value:?}");
        }
    }

    #[test]
    fn anything_displayable_can_be_quoted() {
        let e = std::io::Error::other("broken pipe");
        assert_eq!(format!("error={}", quoted(&e)), r#"error="broken pipe""#);
        assert_eq!(format!("bytes={}", quoted(42)), "bytes=42");
    }
}
