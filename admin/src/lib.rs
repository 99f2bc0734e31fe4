//! `zfsync`, the administration command, as a library: one subcommand a module, each a
//! [`zfsync_cli::Program`] of its own (`zfsync snapshot --help`), chosen here by the first
//! argument.
//!
//! - `snapshot`: zfsync's snapshot of a dataset tree (`snapshot.rs`).
//! - `prune`: destroying what a retention plan does not keep (`prune.rs`), planned per
//!   dataset by `keep.rs`, which the receiver's pruning shares.
//! - `status`, `history`: what the history says (`status.rs`, `history.rs`), each
//!   dataset's standing worked out once in `replica.rs`.
//! - `check`: monitoring-plugin checks (`check.rs`).
//! - `forget`: retiring datasets no longer replicated from status and check (`forget.rs`).
//! - `report`: the nightly HTML report of the history, to a file or by mail (`report.rs`).
//!
//! Every subcommand gets the shared [`Context`] (the zfs binary, the time of the run)
//! from its command line. A new subcommand is a module with a `PROGRAM`, a `main` and a
//! line in [`SUBCOMMANDS`]. This file only dispatches: it must not hold any subcommand's
//! options or work.

mod age;
pub mod check;
mod context;
pub mod forget;
pub mod history;
pub mod prune;
mod replica;
pub mod report;
pub mod snapshot;
pub mod status;

pub use context::{now, Context};
pub use zfsync_retention::{plan_dataset, Candidate, DatasetPlan, Keep};

use std::fmt;
use std::process::ExitCode;
use zfsync_cli::{Exit, OnStop, Output, Program, Special, UsageError};

pub const USAGE: &str = "\
Usage: zfsync SUBCOMMAND [options] [ARGS]

zfsync's administration command, on a source or on a backup host: snapshots and
their lifecycle, and whether the backup works (status, history, monitoring
checks). 'zfsync help SUBCOMMAND' or 'zfsync SUBCOMMAND --help' shows a
subcommand's options.

Subcommands:
  snapshot   take zfsync's snapshot of a dataset tree
  prune      destroy the snapshots a retention plan does not keep
  status     where each dataset's replica stands, from the history
  history    what was sent and received, try by try
  check      monitoring-plugin checks: snapshots, replication, pools
  forget     retire datasets no longer sent from status and check
  report     the history of a day (or --since) as an HTML page, or by mail
  help       show this help, or a subcommand's

Options:
  -h, --help     show this help
  -V, --version  show the version

Environment: ZFSYNC_NOW=SECONDS replaces the clock (unix seconds).
Exit status: 0 done, 1 something failed, 2 usage error.

Examples:
  zfsync snapshot tank/home
      snapshot tank/home and everything below it
  zfsync prune --keep hourly=24,daily=30 tank/home
      keep a day of hourly and a month of daily snapshots, destroy the rest
  zfsync help prune
      the options of prune, the rules of a plan, and examples
";

pub static PROGRAM: Program = program("zfsync", USAGE);

/// `zfsync` or one of its subcommands as a program: logs warnings (-v info, -vv debug),
/// and dies of SIGTERM or SIGINT, as a command run by hand or from cron does.
pub const fn program(name: &'static str, usage: &'static str) -> Program {
    Program {
        name,
        version: env!("CARGO_PKG_VERSION"),
        usage,
        levels: &["warn", "info", "debug"],
        on_stop: OnStop::Die,
    }
}

/// One subcommand: its name, its program (name, help) and what runs it.
pub struct Subcommand {
    pub name: &'static str,
    pub program: &'static Program,
    pub main: fn(&[String]) -> ExitCode,
}

/// Every subcommand, in the order of the help.
pub const SUBCOMMANDS: &[Subcommand] = &[
    Subcommand {
        name: "snapshot",
        program: &snapshot::PROGRAM,
        main: snapshot::main,
    },
    Subcommand {
        name: "prune",
        program: &prune::PROGRAM,
        main: prune::main,
    },
    Subcommand {
        name: "status",
        program: &status::PROGRAM,
        main: status::main,
    },
    Subcommand {
        name: "history",
        program: &history::PROGRAM,
        main: history::main,
    },
    Subcommand {
        name: "check",
        program: &check::PROGRAM,
        main: check::main,
    },
    Subcommand {
        name: "forget",
        program: &forget::PROGRAM,
        main: forget::main,
    },
    Subcommand {
        name: "report",
        program: &report::PROGRAM,
        main: report::main,
    },
];

/// What the first arguments ask for.
pub enum Choice<'a> {
    /// Help or version of `zfsync` itself, or a subcommand's help (`zfsync help prune`).
    Print(&'a Program, Special),
    /// A subcommand with the rest of the arguments.
    Run(&'a Subcommand, &'a [String]),
}

/// Chooses what `argv` (without the program's name) asks for.
pub fn choose(argv: &[String]) -> Result<Choice<'_>, UsageError> {
    let find = |name: &str| {
        SUBCOMMANDS.iter().find(|s| s.name == name).ok_or_else(|| {
            let names: Vec<&str> = SUBCOMMANDS.iter().map(|s| s.name).collect();
            UsageError::new(format!(
                "unknown subcommand {name:?}; subcommands: {}, help",
                names.join(", ")
            ))
        })
    };
    let Some(first) = argv.first() else {
        return Err("missing SUBCOMMAND".into());
    };
    match (first.as_str(), &argv[1..]) {
        ("-h" | "--help", []) | ("help", []) => Ok(Choice::Print(&PROGRAM, Special::Help)),
        ("-V" | "--version", []) => Ok(Choice::Print(&PROGRAM, Special::Version)),
        ("help", [name]) => Ok(Choice::Print(find(name)?.program, Special::Help)),
        ("help", _) => Err("help takes one SUBCOMMAND at most".into()),
        (option, _) if option.starts_with('-') => Err(format!(
            "{option:?} before the SUBCOMMAND: options follow it (zfsync SUBCOMMAND [options])"
        )
        .into()),
        (name, rest) => Ok(Choice::Run(find(name)?, rest)),
    }
}

/// `zfsync ARGS`: the binary's whole job.
pub fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match choose(&argv) {
        Ok(Choice::Print(program, special)) => {
            program.print_special(special);
            Exit::Done.into()
        }
        Ok(Choice::Run(subcommand, rest)) => (subcommand.main)(rest),
        Err(e) => PROGRAM.usage_error(&e).into(),
    }
}

/// Prints a line of a subcommand's output on stdout, like `println!`, but a stdout that
/// is gone (a closed pipe: `zfsync prune ... | head`) does not stop the work: what was
/// done is in the log either way.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Reports a problem that does not end the run by itself: on stderr, and in the log when
/// the log goes to a file (on stderr it would say it twice).
pub fn problem(program: &Program, output: &Output, message: &str) {
    eprintln!("{}: {message}", program.name);
    if output.log_file.is_some() {
        log::warn!("{message}");
    }
}

/// Errors that end a subcommand's run (exit 1).
#[derive(Debug)]
pub enum Error {
    Zfs(zfsync_zfs::Error),
    /// The history could not be read.
    History(zfsync_history::Error),
    /// Reading a zfs command's output failed.
    Io(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Zfs(e) => e.fmt(f),
            Error::History(e) => e.fmt(f),
            Error::Io(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for Error {}

impl From<zfsync_zfs::Error> for Error {
    fn from(e: zfsync_zfs::Error) -> Self {
        Error::Zfs(e)
    }
}

impl From<zfsync_history::Error> for Error {
    fn from(e: zfsync_history::Error) -> Self {
        Error::History(e)
    }
}

impl From<zfsync_zfs::NameError> for Error {
    fn from(e: zfsync_zfs::NameError) -> Self {
        Error::Zfs(e.into())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use zfsync_cli::Parsed;

    pub(crate) fn args(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    /// A subcommand's command-line parser.
    pub(crate) type Parse<T> = fn(&[String]) -> Result<Parsed<(T, Output)>, UsageError>;

    /// What `parse` makes of `argv` to run, or why not.
    pub(crate) fn run_of<T>(parse: Parse<T>, argv: &[&str]) -> Result<T, UsageError> {
        match parse(&args(argv))? {
            Parsed::Run((t, _)) => Ok(t),
            Parsed::Special(s) => Err(format!("special {s:?}").into()),
        }
    }

    /// Panics unless `program`'s help ends with three examples that `parse` takes.
    pub(crate) fn examples_parse<T>(program: &Program, parse: Parse<T>) {
        let examples = zfsync_cli::examples(program.usage, program.name).unwrap();
        assert_eq!(examples.len(), 3, "{}", program.name);
        for argv in examples {
            assert!(parse(&argv).is_ok(), "{argv:?}");
        }
    }

    /// What `zfsync ARGS` does, in words.
    fn chosen(argv: &[&str]) -> String {
        let argv = args(argv);
        match choose(&argv) {
            Ok(Choice::Print(p, s)) => format!("print {} {s:?}", p.name),
            Ok(Choice::Run(sub, rest)) => format!("run {} {rest:?}", sub.name),
            Err(e) => format!("error {e}"),
        }
    }

    #[test]
    fn the_first_argument_chooses() {
        for (argv, want) in [
            (&[][..], "error missing SUBCOMMAND"),
            (&["--help"], "print zfsync Help"),
            (&["-h"], "print zfsync Help"),
            (&["help"], "print zfsync Help"),
            (&["-V"], "print zfsync Version"),
            (&["help", "snapshot"], "print zfsync snapshot Help"),
            (&["help", "prune"], "print zfsync prune Help"),
            (
                &["prune", "--keep", "last=1", "t/a"],
                r#"run prune ["--keep", "last=1", "t/a"]"#,
            ),
            (
                &["snapshot", "-n", "tank/a"],
                r#"run snapshot ["-n", "tank/a"]"#,
            ),
            (&["snapshot", "--help"], r#"run snapshot ["--help"]"#),
            (
                &["bogus"],
                r#"error unknown subcommand "bogus"; subcommands: snapshot, prune, status, history, check, forget, report, help"#,
            ),
            (&["help", "bogus"], "error unknown subcommand"),
            (
                &["help", "a", "b"],
                "error help takes one SUBCOMMAND at most",
            ),
            (&["-v", "snapshot"], "error \"-v\" before the SUBCOMMAND"),
            (
                &["--help", "snapshot"],
                "error \"--help\" before the SUBCOMMAND",
            ),
        ] {
            let got = chosen(argv);
            assert!(got.starts_with(want), "{argv:?}: {got}");
        }
    }

    #[test]
    fn every_subcommand_is_in_the_help_and_named_by_its_program() {
        for sub in SUBCOMMANDS {
            assert_eq!(sub.program.name, format!("zfsync {}", sub.name));
            assert!(
                USAGE.contains(&format!("\n  {:<10} ", sub.name)),
                "{} is not listed in zfsync --help",
                sub.name
            );
        }
    }

    #[test]
    fn help_ends_with_examples_that_choose() {
        let examples = zfsync_cli::examples(USAGE, "zfsync").unwrap();
        assert_eq!(examples.len(), 3);
        for argv in examples {
            assert!(choose(&argv).is_ok(), "{argv:?}");
        }
    }
}
