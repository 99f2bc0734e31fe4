//! The command-line scaffold every zfsync binary starts from: what a parse can end in
//! ([`Parsed`], [`UsageError`]), the exit codes ([`Exit`]), how help, version and usage
//! errors are printed, the process's settings ([`Output`]) and logging, and the value
//! parsers options share ([`values`]).
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
mod output;
pub mod values;

pub use exit::{Exit, Parsed, Special, UsageError};
pub use output::{parse_options, Output};

use std::fmt;
use std::process::ExitCode;

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

    /// Logs and prints an error that ended the run; the exit status to use.
    pub fn runtime_error(&self, e: &dyn fmt::Display) -> Exit {
        log::error!("{e}");
        eprintln!("{}: {e}", self.name);
        Exit::Failed
    }
}

/// Parses the command line with `parse`, prints help or version or a usage error, sets up
/// logging, then runs the job with `run` and exits with the status it returns (1 if it
/// fails).
pub fn main<J, E: fmt::Display>(
    program: &Program,
    parse: impl FnOnce(&[String]) -> Result<Parsed<(J, Output)>, UsageError>,
    run: impl FnOnce(&J, &Output) -> Result<Exit, E>,
) -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (job, output) = match parse(&argv) {
        Ok(Parsed::Run(r)) => r,
        Ok(Parsed::Special(s)) => {
            program.print_special(s);
            return Exit::Done.into();
        }
        Err(e) => return program.usage_error(&e).into(),
    };
    // A log file that cannot be opened is a configuration error, reported as such but
    // without the pointer to --help: the options were right.
    if let Err(e) = output.init_logging(program.levels) {
        eprintln!("{}: {e}", program.name);
        return Exit::Usage.into();
    }
    match run(&job, &output) {
        Ok(exit) => exit.into(),
        Err(e) => program.runtime_error(&e).into(),
    }
}
