//! The process's settings, apart from any job it runs: where the log goes and how much of
//! it, and how much is printed. Owns the options every binary has (`-o`, `-v`, `-h`, `-V`)
//! and the logging setup; a binary's own options and its job's settings are its own.

use crate::log_file::{LogFile, LogWriter};
use crate::{Parsed, Special, UsageError};
use std::path::PathBuf;
use std::sync::Arc;
use zfsync_text::IoWords;

/// How the process reports, whatever job it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// `-o FILE`: the log goes to FILE instead of stderr.
    pub log_file: Option<PathBuf>,
    /// How many `-v`.
    pub verbose: usize,
    /// `-q`: no summary table, only the final line and errors, and the log at errors only
    /// unless `-v` (for commands that have it).
    pub quiet: bool,
}

/// Parses `argv` with the binary's options `o` plus those every binary has: `-o/--log-file
/// FILE`, `-v/--verbose` (repeatable), `-h/--help`, `-V/--version`. Help and version win
/// over everything else but a malformed command line.
pub fn parse_options(
    mut o: getopts::Options,
    argv: &[String],
) -> Result<Parsed<(getopts::Matches, Output)>, UsageError> {
    o.optopt("o", "log-file", "", "FILE");
    o.optflagmulti("v", "verbose", "");
    o.optflag("h", "help", "");
    o.optflag("V", "version", "");
    let m = o.parse(argv)?;
    if m.opt_present("h") {
        return Ok(Parsed::Special(Special::Help));
    }
    if m.opt_present("V") {
        return Ok(Parsed::Special(Special::Version));
    }
    let output = Output {
        log_file: m.opt_str("o").map(PathBuf::from),
        verbose: m.opt_count("v"),
        quiet: false,
    };
    Ok(Parsed::Run((m, output)))
}

impl Output {
    /// The log filter for this many `-v`: `levels[verbose]`, or the last of `levels`; with
    /// `-q` and no `-v`, errors only (what makes the exit status non-zero).
    pub fn log_level<'a>(&self, levels: &[&'a str]) -> &'a str {
        if self.quiet && self.verbose == 0 {
            return "error";
        }
        levels
            .get(self.verbose)
            .or(levels.last())
            .copied()
            .unwrap_or("warn")
    }

    /// Sets up `env_logger` (once per process): `key=value` lines with millisecond
    /// timestamps, to the log file or stderr, at [`Output::log_level`] unless `RUST_LOG`
    /// says otherwise. Returns the log file, for the signal thread to reopen.
    pub fn init_logging(&self, levels: &[&str]) -> Result<Option<Arc<LogFile>>, String> {
        let env = env_logger::Env::default().default_filter_or(self.log_level(levels));
        let mut b = env_logger::Builder::from_env(env);
        let file = match &self.log_file {
            None => None,
            Some(path) => {
                let f = LogFile::open(path).map_err(|e| {
                    format!("cannot open log file {}: {}", path.display(), IoWords(&e))
                })?;
                let f = Arc::new(f);
                b.target(env_logger::Target::Pipe(Box::new(LogWriter(f.clone()))));
                Some(f)
            }
        };
        b.format_timestamp_millis();
        b.init();
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed<(getopts::Matches, Output)>, UsageError> {
        let mut o = getopts::Options::new();
        o.optflag("n", "dry-run", "");
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse_options(o, &argv)
    }

    fn output(args: &[&str]) -> Output {
        match parse(args).unwrap() {
            Parsed::Run((_, out)) => out,
            Parsed::Special(s) => panic!("{args:?}: {s:?}"),
        }
    }

    #[test]
    fn process_options_become_output() {
        assert_eq!(output(&["-n", "x"]), Output::default());
        let o = output(&["-vv", "-o", "/var/log/z.log", "x"]);
        assert_eq!(o.verbose, 2);
        assert_eq!(o.log_file, Some(PathBuf::from("/var/log/z.log")));
        assert_eq!(output(&["--verbose", "-v"]).verbose, 2);
    }

    #[test]
    fn help_and_version_are_special() {
        for (args, want) in [
            (&["-h"][..], Special::Help),
            (&["-n", "--help", "x"], Special::Help),
            (&["-V"], Special::Version),
            (&["--version", "-v"], Special::Version),
            (&["-h", "-V"], Special::Help),
        ] {
            assert!(
                matches!(parse(args), Ok(Parsed::Special(s)) if s == want),
                "{args:?}"
            );
        }
    }

    #[test]
    fn a_malformed_line_is_a_usage_error_even_with_help() {
        for args in [&["--bogus"][..], &["-h", "--bogus"], &["-o"], &["-v=1"]] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn log_level_by_verbosity() {
        let levels = ["warn", "info", "debug"];
        for (verbose, want) in [(0, "warn"), (1, "info"), (2, "debug"), (5, "debug")] {
            let o = Output {
                verbose,
                ..Output::default()
            };
            assert_eq!(o.log_level(&levels), want, "-v x {verbose}");
        }
    }

    #[test]
    fn quiet_logs_errors_only_unless_verbose() {
        let levels = ["warn", "info", "debug"];
        for (verbose, want) in [(0, "error"), (1, "info"), (2, "debug")] {
            let o = Output {
                verbose,
                quiet: true,
                ..Output::default()
            };
            assert_eq!(o.log_level(&levels), want, "-q -v x {verbose}");
        }
    }
}
