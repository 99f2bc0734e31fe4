//! `zfsync report --html`: the nightly report of what was sent and received, from the
//! history: every transfer of the window, the failures first, and a summary per dataset
//! (`report/page.rs` draws it), written to stdout or a file, or mailed through
//! `sendmail -t`.
//!
//! Owns the command line of `report`, where the document goes and the mail message around
//! it. Must not write to the history, run zfs, or judge what it shows beyond "failed":
//! alerting is `zfsync check`'s.

mod page;

use crate::context::{self, now};
use crate::Error;
use page::{Counts, Heading};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use zfsync_cli::{parse_options, Exit, Output, Parsed, Program, UsageError};
use zfsync_history::{AttemptQuery, Store};

pub const USAGE: &str = "\
Usage: zfsync report --html [options]

Write a report of what zfsync-send and zfsync-recv recorded in the history over
a window (the last 24 hours unless --since says otherwise), as one HTML page
with everything inline (no script, nothing fetched): a heading with the host,
the window and the counts (done, up to date, failed, ...); every transfer with
its dataset, peer, kind, from and to snapshots, bytes, time, result and error,
the failed ones first; then one line per dataset with its totals. Made for a
nightly cron job with --mail. Reads the history only.

Options:
      --html               the format (the only one, and required: other formats
                           may come)
      --since AGE|TIME     the window: the last AGE (90m, 12h, 7d, 2w) or from
                           TIME (2026-12-01T00:00:00Z) on (default 24h)
      --output FILE        write the report to FILE (replaced whole, or left as
                           it was if writing fails) instead of stdout
      --mail TO            mail the report to TO (an address, or several
                           separated by commas) with 'sendmail -t'; the subject
                           has the host and the counts, and starts with FAILED
                           when a transfer failed. Nothing goes to stdout then.
      --sendmail PATH      the sendmail program (default: $ZFSYNC_SENDMAIL, else
                           sendmail); it is run as 'PATH -t' with the message on
                           its input
      --state-dir DIR      where the history is (default: /var/lib/zfsync)
  -o, --log-file FILE      write the log to FILE instead of stderr
  -v, --verbose            more log output (-vv for debug)
  -h, --help               show this help
  -V, --version            show the version

Environment: ZFSYNC_NOW=SECONDS replaces the clock (unix seconds);
ZFSYNC_SENDMAIL=PATH the sendmail program.
Exit status: 0 the report was written or handed to sendmail, failed transfers
or not (zfsync check replication is the alarm); 1 the history cannot be read, or
the report cannot be written, or sendmail failed; 2 usage error.

Examples:
  zfsync report --html --output /var/www/zfsync.html
      the last 24 hours, as a page for a web server
  zfsync report --html --since 7d --mail root@example.org
      the last week, by mail
  zfsync report --html --state-dir /srv/zfsync --mail ops@example.org,me@x.org
      a receiver's report (its --state-dir), to two addresses
";

pub static PROGRAM: Program = crate::program("zfsync report", USAGE);

/// The window without `--since`: a day, for a nightly report.
const DEFAULT_WINDOW: i64 = 86_400;

/// `zfsync report ARGS`.
pub fn main(argv: &[String]) -> ExitCode {
    zfsync_cli::main_with(&PROGRAM, argv, config, run)
}

/// A checked command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Unix seconds: the window is from `since` to `now`.
    pub since: i64,
    pub now: i64,
    pub output: Option<PathBuf>,
    pub mail: Option<Mail>,
    pub state_dir: PathBuf,
}

/// Where and how the report is mailed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub sendmail: PathBuf,
}

pub fn config(argv: &[String]) -> Result<Parsed<(Config, Output)>, UsageError> {
    let mut o = getopts::Options::new();
    o.optflag("", "html", "");
    o.optopt("", "since", "", "AGE|TIME");
    o.optopt("", "output", "", "FILE");
    o.optopt("", "mail", "", "TO");
    o.optopt("", "sendmail", "", "PATH");
    context::state_dir_option(&mut o);
    parse_options(o, argv)?.try_map(|(m, output)| {
        if let Some(extra) = m.free.first() {
            return Err(format!("unexpected argument {extra:?}: report takes options only").into());
        }
        if !m.opt_present("html") {
            return Err("missing --html (the report's format)".into());
        }
        let now = now()?.as_second();
        let since = match m.opt_str("since") {
            None => now - DEFAULT_WINDOW,
            Some(s) => crate::history::since(&s, now).map_err(|e| e.context("--since"))?,
        };
        let sendmail = m
            .opt_str("sendmail")
            .or_else(|| std::env::var("ZFSYNC_SENDMAIL").ok())
            .unwrap_or_else(|| "sendmail".into());
        let mail = match m.opt_str("mail") {
            None if m.opt_present("sendmail") => {
                return Err("--sendmail goes with --mail".into());
            }
            None => None,
            Some(to) => Some(Mail {
                to: recipients(&to).map_err(|e| e.context("--mail"))?,
                sendmail: PathBuf::from(sendmail),
            }),
        };
        let config = Config {
            since,
            now,
            output: m.opt_str("output").map(PathBuf::from),
            mail,
            state_dir: context::state_dir(&m),
        };
        Ok((config, output))
    })
}

/// `TO` as the To header: addresses separated by commas. A line break would let the
/// argument add headers of its own, so it is refused.
fn recipients(to: &str) -> Result<String, UsageError> {
    let all: Vec<&str> = to.split(',').map(str::trim).collect();
    if all.iter().any(|a| a.is_empty()) {
        return Err(format!("wants addresses separated by commas, got {to:?}").into());
    }
    if to.chars().any(|c| c.is_control()) {
        return Err(format!("an address cannot hold a control character, got {to:?}").into());
    }
    Ok(all.join(", "))
}

pub fn run(config: &Config, _output: &Output) -> Result<Exit, Error> {
    let store = Store::open_read_only(&config.state_dir)?;
    let attempts = store.attempts(&AttemptQuery {
        since: Some(config.since),
        ..AttemptQuery::default()
    })?;
    let heading = Heading {
        host: host_name(),
        since: config.since,
        now: config.now,
    };
    let html = page::render(&heading, &attempts);
    if let Some(path) = &config.output {
        write_file(path, &html)?;
        log::info!("report written file={}", path.display());
    }
    if let Some(mail) = &config.mail {
        let message = message(
            &mail.to,
            &subject(&heading.host, &Counts::of(&attempts)),
            &html,
        );
        send(&mail.sendmail, &message)?;
        log::info!("report mailed to={}", zfsync_text::quoted(&mail.to));
    }
    if config.output.is_none() && config.mail.is_none() {
        let mut out = std::io::stdout().lock();
        out.write_all(html.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| Error::Io(format!("writing the report: {}", zfsync_text::IoWords(&e))))?;
    }
    Ok(Exit::Done)
}

/// This machine's name, as the kernel has it; `localhost` when it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Writes `text` to `path` whole: into a file beside it first, renamed over it once
/// written, so a web server never serves half a report.
fn write_file(path: &std::path::Path, text: &str) -> Result<(), Error> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::Io(format!("--output {}: not a file name", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let failed = |e: std::io::Error| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io(format!(
            "writing {}: {}",
            path.display(),
            zfsync_text::IoWords(&e)
        ))
    };
    std::fs::write(&tmp, text).map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(failed)
}

/// `zfsync on HOST: 12 transfers: 10 done, 2 failed`, with `FAILED` in front when a
/// transfer failed, so a mail filter or a glance at the inbox finds it.
fn subject(host: &str, counts: &Counts) -> String {
    let failed = if counts.failed > 0 { "FAILED " } else { "" };
    let host: String = host.chars().filter(|c| !c.is_control()).collect();
    format!("{failed}zfsync report on {host}: {}", counts.words())
}

/// The mail message: headers, a blank line, the HTML. The headers are ASCII (the host
/// name is, and so are the counts); the body is UTF-8, declared as 8bit, its lines folded
/// to fit mail's limit.
fn message(to: &str, subject: &str, html: &str) -> String {
    format!(
        "To: {to}\nSubject: {subject}\nMIME-Version: 1.0\n\
         Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n{}",
        fold(html, MAIL_LINE)
    )
}

/// The longest body line a message gets, in bytes: below the 998 that SMTP allows
/// (RFC 5322), which a long error text in a row would pass.
const MAIL_LINE: usize = 900;

/// `text` with each line longer than `max` bytes broken at its last space before the
/// limit (HTML reads a line break there as the space it was; an error cell, which keeps
/// line breaks, shows one), or at a character boundary when there is no space.
fn fold(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut rest = line;
        while rest.trim_end_matches('\n').len() > max {
            let mut cut = max;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            // A space right at the limit is a place to break too: it goes.
            let window = match rest.as_bytes().get(cut) {
                Some(b' ') => &rest[..=cut],
                _ => &rest[..cut],
            };
            match window.rfind(' ') {
                // A line that starts with the space it could break at (after a break
                // inside a word): drop the space, no empty line.
                Some(0) => rest = &rest[1..],
                Some(space) => {
                    out.push_str(&rest[..space]);
                    out.push('\n');
                    rest = &rest[space + 1..];
                }
                _ => {
                    out.push_str(&rest[..cut]);
                    out.push('\n');
                    rest = &rest[cut..];
                }
            }
        }
        out.push_str(rest);
    }
    out
}

/// Runs `sendmail -t` with `message` on its input; a sendmail that cannot start or exits
/// non-zero is an error with its stderr.
fn send(sendmail: &std::path::Path, message: &str) -> Result<(), Error> {
    let shown = sendmail.display();
    let mut child = Command::new(sendmail)
        .arg("-t")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Io(format!("cannot run {shown}: {}", zfsync_text::IoWords(&e))))?;
    // Written on this thread while stderr fills its pipe: sendmail reads all of its input
    // before it says anything, and whatever it says fits a pipe.
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(message.as_bytes());
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Io(format!("{shown} -t: {}", zfsync_text::IoWords(&e))))?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if !out.status.success() {
        let status = match out.status.code() {
            Some(c) => format!("exit {c}"),
            None => "killed by a signal".into(),
        };
        return Err(Error::Io(format!(
            "the report was not mailed: {shown} -t: {status}{}{stderr}",
            if stderr.is_empty() { "" } else { ": " }
        )));
    }
    written.map_err(|e| {
        Error::Io(format!(
            "the report was not mailed: writing to {shown} -t: {}",
            zfsync_text::IoWords(&e)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_of(argv: &[&str]) -> Result<Config, UsageError> {
        crate::tests::run_of(config, argv)
    }

    #[test]
    fn command_lines() {
        let c = config_of(&["--html"]).unwrap();
        assert_eq!(c.now - c.since, 86_400);
        assert_eq!((c.output, c.mail), (None, None));
        let c = config_of(&[
            "--html",
            "--since",
            "2026-12-01T00:00:00Z",
            "--output",
            "/tmp/r.html",
            "--mail",
            "a@example.org, b@example.org",
            "--sendmail",
            "/bin/fake",
        ])
        .unwrap();
        assert_eq!(c.since, 1_796_083_200);
        assert_eq!(c.output, Some(PathBuf::from("/tmp/r.html")));
        assert_eq!(
            c.mail,
            Some(Mail {
                to: "a@example.org, b@example.org".into(),
                sendmail: PathBuf::from("/bin/fake"),
            })
        );
    }

    #[test]
    fn bad_command_lines() {
        for (argv, want) in [
            (&[][..], "missing --html"),
            (&["--html", "--since", "soon"], "--since: wants an age"),
            (&["--html", "--mail", "a@x,"], "--mail: wants addresses"),
            (
                &["--html", "--mail", "a@x\nBcc: b@y"],
                "--mail: an address cannot",
            ),
            (
                &["--html", "--sendmail", "/bin/true"],
                "--sendmail goes with --mail",
            ),
            (&["--html", "x"], "unexpected argument"),
        ] {
            let e = config_of(argv).unwrap_err().to_string();
            assert!(e.starts_with(want), "{argv:?}: {e}");
        }
    }

    #[test]
    fn the_subject_says_failed_when_a_transfer_failed() {
        let ok = Counts {
            total: 2,
            done: 2,
            ..Counts::default()
        };
        assert_eq!(
            subject("src", &ok),
            "zfsync report on src: 2 transfers: 2 done"
        );
        let bad = Counts {
            failed: 1,
            total: 3,
            ..ok
        };
        assert_eq!(
            subject("src\n", &bad),
            "FAILED zfsync report on src: 3 transfers: 2 done, 1 failed"
        );
    }

    #[test]
    fn the_message_has_headers_then_the_page() {
        let m = message("a@x", "S", "<html></html>\n");
        assert_eq!(
            m,
            "To: a@x\nSubject: S\nMIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\
             Content-Transfer-Encoding: 8bit\n\n<html></html>\n"
        );
    }

    #[test]
    fn long_lines_are_folded_for_mail() {
        for (text, max, want) in [
            ("short\nlines\n", 10, "short\nlines\n"),
            ("one two three four\n", 10, "one two\nthree four\n"),
            ("abcdefghijkl\n", 5, "abcde\nfghij\nkl\n"),
            ("ééé\n", 3, "é\né\né\n"),
            ("a b", 1, "a\nb"),
        ] {
            assert_eq!(fold(text, max), want, "{text:?}");
        }
        let html = format!("<td>{}</td>\n", "word ".repeat(1000));
        let folded = fold(&html, MAIL_LINE);
        assert!(folded.lines().all(|l| l.len() <= MAIL_LINE));
        assert_eq!(folded.replace('\n', " ").trim_end(), html.trim_end());
    }

    #[test]
    fn a_failing_sendmail_is_an_error_with_its_words() {
        let e = send(std::path::Path::new("/bin/false"), "x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the report was not mailed: /bin/false -t: exit 1"
        );
        let e = send(std::path::Path::new("/nonexistent/sendmail"), "x").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot run /nonexistent/sendmail"),
            "{e}"
        );
    }

    #[test]
    fn help_ends_with_examples_that_parse() {
        crate::tests::examples_parse(&PROGRAM, config);
    }
}
