//! The command-line scaffold every zfsync binary starts from: what a parse can end in
//! ([`Parsed`], [`UsageError`]), the exit codes ([`Exit`]), how help, version and usage
//! errors are printed, the process's settings ([`Output`]) and logging, signals
//! ([`signals`]: SIGHUP reopens the log file, SIGTERM and SIGINT are logged), and the
//! value parsers options share ([`values`]), and the clock every tool reads ([`now`]:
//! `ZFSYNC_NOW` replaces it).
//!
//! A binary's `main.rs` is one call:
//!
//! ```ignore
//! fn main() -> ExitCode {
//!     zfsync_cli::main(&PROGRAM, cli::config, run)
//! }
//! ```
//!
//! where `cli::config` turns the arguments into the job's settings and an [`Output`], and
//! `run` does the job. This crate knows nothing of ZFS, the protocol or any one binary's
//! options; it owns only what every binary must do the same way.

mod exit;
mod log_file;
mod output;
pub mod signals;
pub mod values;

pub use exit::{Exit, Parsed, Special, UsageError};
pub use log_file::LogFile;
pub use output::{parse_options, Output};
pub use signals::OnStop;

use std::fmt;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The environment variable that replaces the system clock in every zfsync tool: unix
/// seconds. Tests move time with it.
pub const NOW_VAR: &str = "ZFSYNC_NOW";

/// The time now: `$ZFSYNC_NOW` if it is set and not empty, else the system clock. A value
/// that is not unix seconds is a usage error.
pub fn now() -> Result<SystemTime, UsageError> {
    now_from(std::env::var(NOW_VAR).ok().as_deref())
}

/// [`now`] with the variable's value given.
fn now_from(value: Option<&str>) -> Result<SystemTime, UsageError> {
    match value {
        None | Some("") => Ok(SystemTime::now()),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
            .ok_or_else(|| format!("{NOW_VAR} wants unix seconds, got {v:?}").into()),
    }
}

/// What the scaffold needs to know about a binary.
#[derive(Clone, Copy, Debug)]
pub struct Program {
    /// The command's name, as users type it: `zfsync-send`.
    pub name: &'static str,
    /// `env!("CARGO_PKG_VERSION")` of the binary.
    pub version: &'static str,
    /// The whole `--help` text.
    pub usage: &'static str,
    /// Log level (an `env_logger` filter) with no `-v`, with `-v`, and so on; the last
    /// one also serves for more `-v`. `RUST_LOG` overrides it.
    pub levels: &'static [&'static str],
    /// What SIGTERM and SIGINT do once logged.
    pub on_stop: OnStop,
}

impl Program {
    /// Prints `--help` (the usage text) or `--version` on stdout.
    pub fn print_special(&self, special: Special) {
        match special {
            Special::Help => print!("{}", self.usage),
            Special::Version => println!("{} {}", self.name, self.version),
        }
    }

    /// Prints `PROG: MESSAGE` and where to find help on stderr; the exit status to use.
    pub fn usage_error(&self, e: &UsageError) -> Exit {
        eprintln!("{}: {e}\nTry '{} --help'.", self.name, self.name);
        Exit::Usage
    }

    /// Says a warning once: `PROG: warning: MESSAGE` on stderr unless `-q`, and in the log
    /// too when the log goes to a file.
    pub fn warn(&self, w: &dyn fmt::Display, output: &Output) {
        if output.log_file.is_some() {
            log::warn!("{w}");
        }
        if !output.quiet {
            eprintln!("{}: warning: {w}", self.name);
        }
    }

    /// Says an error that ended the run once: `PROG: MESSAGE` on stderr, and in the log
    /// too when the log goes to a file (on stderr, the log line would say it twice).
    /// Returns `exit`, the status to end with.
    pub fn fail(&self, e: &dyn fmt::Display, output: &Output, exit: Exit) -> Exit {
        if output.log_file.is_some() {
            log::error!("{e}");
        }
        eprintln!("{}: {e}", self.name);
        exit
    }
}

/// The command lines of the `Examples:` section that ends `usage`, split into arguments
/// (without the command's `name`). The section is `  NAME ARGS` lines, each followed by
/// lines indented further that say what it does; anything else there is an error, so
/// tests can check that every help ends with examples that parse.
pub fn examples(usage: &str, name: &str) -> Result<Vec<Vec<String>>, String> {
    let (_, section) = usage
        .split_once("\n\nExamples:\n")
        .ok_or("no 'Examples:' section after an empty line")?;
    let prefix = format!("  {name} ");
    let mut examples: Vec<Vec<String>> = Vec::new();
    for line in section.lines() {
        if let Some(args) = line.strip_prefix(&prefix) {
            examples.push(args.split_whitespace().map(str::to_string).collect());
        } else if examples.is_empty() || !line.starts_with("      ") {
            return Err(format!("not an example or its description: {line:?}"));
        }
    }
    if examples.is_empty() {
        return Err("no example".into());
    }
    Ok(examples)
}

/// Parses the command line with `parse`, prints help or version or a usage error, sets up
/// logging and signals, then runs the job with `run` and exits with the status it returns
/// (1 if it fails; a job that fails otherwise says so with [`Program::fail`] and returns
/// the status).
pub fn main<J, E: fmt::Display>(
    program: &Program,
    parse: impl FnOnce(&[String]) -> Result<Parsed<(J, Output)>, UsageError>,
    run: impl FnOnce(&J, &Output) -> Result<Exit, E>,
) -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    main_with(program, &argv, parse, run)
}

/// [`main`] for the arguments `argv` (without the command's name): for a command with
/// subcommands, each of which is a [`Program`] of its own (`zfsync prune`).
pub fn main_with<J, E: fmt::Display>(
    program: &Program,
    argv: &[String],
    parse: impl FnOnce(&[String]) -> Result<Parsed<(J, Output)>, UsageError>,
    run: impl FnOnce(&J, &Output) -> Result<Exit, E>,
) -> ExitCode {
    let (job, output) = match parse(argv) {
        Ok(Parsed::Run(r)) => r,
        Ok(Parsed::Special(s)) => {
            program.print_special(s);
            return Exit::Done.into();
        }
        Err(e) => return program.usage_error(&e).into(),
    };
    // A log file that cannot be opened is a configuration error, reported as such but
    // without the pointer to --help: the options were right.
    let log_file = match output.init_logging(program.levels) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{}: {e}", program.name);
            return Exit::Usage.into();
        }
    };
    if let Err(e) = signals::handle(program.on_stop, log_file) {
        let e = format!("cannot handle signals: {}", zfsync_text::IoWords(&e));
        return program.fail(&e, &output, Exit::Failed).into();
    }
    let exit = match run(&job, &output) {
        Ok(exit) => exit,
        Err(e) => program.fail(&e, &output, Exit::Failed),
    };
    // For the benchmarks, which would otherwise sample /proc while the run goes.
    if let Some(kib) = peak_rss_kib() {
        log::debug!("process end peak_rss_kib={kib}");
    }
    exit.into()
}

/// The peak resident set size of this process so far (not its children, nor the program
/// it was before exec, which `getrusage` would count), in KiB: Linux's `VmHWM`.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.trim_start_matches("VmHWM:")
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_is_read() {
        // 64 MiB touched: far above what a test process needs otherwise.
        let v = std::hint::black_box(vec![1u8; 64 << 20]);
        assert!(peak_rss_kib().unwrap() >= 64 << 10, "{}", v.len());
    }

    #[test]
    fn examples_are_the_command_lines_of_the_last_section() {
        let usage = "Usage: z [options] A\n\nExamples:\n  z -v a\n      what it does\n      on two lines\n  z  b\n      other\n";
        assert_eq!(
            examples(usage, "z"),
            Ok(vec![vec!["-v".to_string(), "a".into()], vec!["b".into()]])
        );
    }

    #[test]
    fn the_clock_variable_replaces_the_clock() {
        let at = |v: &str| now_from(Some(v)).map(|t| t.duration_since(UNIX_EPOCH).unwrap());
        assert_eq!(at("0"), Ok(Duration::ZERO));
        assert_eq!(at("1835424000"), Ok(Duration::from_secs(1_835_424_000)));
        for bad in ["-1", "+5", "1.5", "x", " 1", "99999999999999999999"] {
            assert_eq!(
                at(bad).unwrap_err().to_string(),
                format!("ZFSYNC_NOW wants unix seconds, got {bad:?}")
            );
        }
        // Unset or empty: the system clock.
        for v in [None, Some("")] {
            let t = now_from(v).unwrap().duration_since(UNIX_EPOCH).unwrap();
            assert!(t.as_secs() > 1_700_000_000, "{v:?}");
        }
    }

    #[test]
    fn a_help_without_examples_at_its_end_is_refused() {
        for usage in [
            "Usage: z A\n",
            "Usage: z A\n\nExamples:\n",
            "Usage: z A\n\nExamples:\n      a description first\n  z a\n",
            "Usage: z A\n\nExamples:\n  z a\n\nExit status: 0\n",
            "Usage: z A\n\nExamples:\n  other a\n",
        ] {
            assert!(examples(usage, "z").is_err(), "{usage:?}");
        }
    }
}
