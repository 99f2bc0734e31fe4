//! `zfsync history`: what zfsync-send and zfsync-recv recorded, one line per attempt,
//! newest first, as a table, JSON or CSV (the history crate's formats).
//!
//! Owns the command line of `history` (the filters) and nothing else: the query and the
//! formats are the history crate's. Must not write to the history or run zfs.

use crate::context::{self, now};
use crate::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use zfsync_cli::values::number;
use zfsync_cli::{parse_options, Exit, Output, Parsed, Program, UsageError};
use zfsync_history::{AttemptQuery, Format, Store};

pub const USAGE: &str = "\
Usage: zfsync history [options]

Show what zfsync-send and zfsync-recv recorded in the history, one line per try
of a dataset, newest first: when it started, which side (send or recv) and peer,
the dataset, what was streamed (full, incremental or resume, from and to which
snapshot), bytes, seconds, the outcome (done, up-to-date, refused, failed,
skipped, or in-flight while it goes on) and the error. Reads the history only.

Options:
      --since AGE|TIME     only tries started in the last AGE (90m, 12h, 7d, 2w)
                           or at or after TIME (2026-12-01T00:00:00Z)
      --dataset D          only the tries of dataset D (as the side recorded it:
                           the source's name on a sender, where it landed on a
                           receiver)
      --role ROLE          only the sender's (send) or the receiver's (recv)
      --format FORMAT      table (default), or json or csv with every field, the
                           snapshots' GUIDs included
      --limit N            at most N tries, the newest (default 100; 0: all)
      --state-dir DIR      where the history is (default: /var/lib/zfsync)
  -o, --log-file FILE      write the log to FILE instead of stderr
  -v, --verbose            more log output (-vv for debug)
  -h, --help               show this help
  -V, --version            show the version

Environment: ZFSYNC_NOW=SECONDS replaces the clock (unix seconds).
Exit status: 0 shown, 1 the history cannot be read (nothing recorded in that
directory yet, or not a history database), 2 usage error.

Examples:
  zfsync history --since 7d
      every try of the last week, sent and received
  zfsync history --dataset tank/home --format json --limit 10
      the last 10 tries of tank/home, with GUIDs, for a script
  zfsync history --role recv --since 2026-12-01T00:00:00Z --format csv --limit 0
      everything a receiver recorded since December 1, for a spreadsheet
";

pub static PROGRAM: Program = crate::program("zfsync history", USAGE);

/// How many tries are shown without `--limit`.
const DEFAULT_LIMIT: u64 = 100;

/// `zfsync history ARGS`.
pub fn main(argv: &[String]) -> ExitCode {
    zfsync_cli::main_with(&PROGRAM, argv, config, run)
}

/// A checked command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub query: AttemptQuery,
    pub format: Format,
    pub state_dir: PathBuf,
}

pub fn config(argv: &[String]) -> Result<Parsed<(Config, Output)>, UsageError> {
    let mut o = getopts::Options::new();
    o.optopt("", "since", "", "AGE|TIME");
    o.optopt("", "dataset", "", "D");
    o.optopt("", "role", "", "ROLE");
    o.optopt("", "format", "", "FORMAT");
    o.optopt("", "limit", "", "N");
    context::state_dir_option(&mut o);
    parse_options(o, argv)?.try_map(|(m, output)| {
        if let Some(extra) = m.free.first() {
            return Err(
                format!("unexpected argument {extra:?}: history takes options only").into(),
            );
        }
        let since = match m.opt_str("since") {
            None => None,
            Some(s) => Some(since(&s, now()?.as_second()).map_err(|e| e.context("--since"))?),
        };
        let role = context::role(&m)?;
        let format = match m.opt_str("format") {
            None => Format::Table,
            Some(f) => Format::parse(&f)
                .ok_or_else(|| format!("--format wants table, json or csv, got {f:?}"))?,
        };
        let limit = number(
            "--limit",
            m.opt_str("limit").as_deref(),
            DEFAULT_LIMIT,
            0..=u64::MAX,
        )?;
        let config = Config {
            query: AttemptQuery {
                since,
                dataset: m.opt_str("dataset"),
                role,
                limit: (limit > 0).then(|| usize::try_from(limit).unwrap_or(usize::MAX)),
                ..AttemptQuery::default()
            },
            format,
            state_dir: context::state_dir(&m),
        };
        Ok((config, output))
    })
}

/// `--since`: an age back from `now`, or a time (RFC 3339), as unix seconds.
pub(crate) fn since(text: &str, now: i64) -> Result<i64, UsageError> {
    if let Ok(age) = crate::age::parse(text) {
        return Ok(now - age);
    }
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|_| {
            format!(
                "wants an age (90m, 12h, 7d, 2w) or a time (2026-12-01T00:00:00Z), got {text:?}"
            )
            .into()
        })
}

pub fn run(config: &Config, _output: &Output) -> Result<Exit, Error> {
    let store = Store::open_read_only(&config.state_dir)?;
    let attempts = store.attempts(&config.query)?;
    crate::say!("{}", config.format.render(&attempts).trim_end_matches('\n'));
    Ok(Exit::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zfsync_history::Role;

    fn config_of(argv: &[&str]) -> Result<Config, UsageError> {
        crate::tests::run_of(config, argv)
    }

    #[test]
    fn command_lines() {
        let c = config_of(&[]).unwrap();
        assert_eq!(c.query.limit, Some(100));
        assert_eq!((c.query.since, c.query.role), (None, None));
        assert_eq!(c.format, Format::Table);
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/zfsync"));
        let c = config_of(&[
            "--since",
            "2026-12-01T00:00:00Z",
            "--dataset",
            "tank/a",
            "--role",
            "recv",
            "--format",
            "csv",
            "--limit",
            "0",
            "--state-dir",
            "/srv/z",
        ])
        .unwrap();
        assert_eq!(c.query.since, Some(1_796_083_200));
        assert_eq!(c.query.dataset.as_deref(), Some("tank/a"));
        assert_eq!(c.query.role, Some(Role::Recv));
        assert_eq!((c.query.limit, c.format), (None, Format::Csv));
        assert_eq!(c.state_dir, PathBuf::from("/srv/z"));
    }

    #[test]
    fn since_is_an_age_or_a_time() {
        assert_eq!(since("7d", 1_000_000), Ok(1_000_000 - 604_800));
        assert_eq!(since("2026-12-01T00:00:00Z", 0), Ok(1_796_083_200));
        assert!(since("last week", 0).is_err());
    }

    #[test]
    fn bad_command_lines() {
        for (argv, want) in [
            (&["--role", "both"][..], "--role wants send or recv"),
            (&["--format", "yaml"], "--format wants table, json or csv"),
            (&["--since", "soon"], "--since: wants an age"),
            (&["--limit", "-1"], "--limit wants a whole number"),
            (&["tank/a"], "unexpected argument"),
        ] {
            let e = config_of(argv).unwrap_err().to_string();
            assert!(e.starts_with(want), "{argv:?}: {e}");
        }
    }

    #[test]
    fn help_ends_with_examples_that_parse() {
        crate::tests::examples_parse(&PROGRAM, config);
    }
}
