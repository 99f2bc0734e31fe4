//! How a command line ends: parsed into something to run, a special request (`--help`,
//! `--version`) that ends the process with success, or a usage error; and the exit codes.
//! Printing is the caller's ([`crate::Program`]); nothing here writes anything.

use std::fmt;
use std::process::ExitCode;

/// What a parse found: the settings to run with, or a request answered by printing.
#[derive(Debug)]
pub enum Parsed<T> {
    Run(T),
    Special(Special),
}

/// A request the command answers by printing, then exits 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    Help,
    Version,
}

impl<T> Parsed<T> {
    /// The next parsing step for `Run`; a special request passes through.
    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Parsed<U>, E> {
        match self {
            Parsed::Run(t) => f(t).map(Parsed::Run),
            Parsed::Special(s) => Ok(Parsed::Special(s)),
        }
    }
}

/// A command line (or a file it names, such as a key file) that cannot work: the user
/// must change it. Exit status 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(String);

impl UsageError {
    pub fn new(message: impl Into<String>) -> UsageError {
        UsageError(message.into())
    }

    /// The same error with `context: ` in front (an option's name, say).
    pub fn context(self, context: &str) -> UsageError {
        UsageError(format!("{context}: {}", self.0))
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

impl From<String> for UsageError {
    fn from(s: String) -> Self {
        UsageError(s)
    }
}

impl From<&str> for UsageError {
    fn from(s: &str) -> Self {
        UsageError(s.to_string())
    }
}

impl From<getopts::Fail> for UsageError {
    fn from(e: getopts::Fail) -> Self {
        UsageError(e.to_string())
    }
}

/// Exit status of a replication command (the sender, the receiver, and commands that act
/// like them). A monitoring command will bring its own (0/1/2/3 = OK/WARNING/CRITICAL/
/// UNKNOWN, as monitoring plugins do); these codes are not shared with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: everything done (every dataset sent, up to date or without snapshots; a clean
    /// stop; help or version printed).
    Done = 0,
    /// 1: at least one dataset failed (the others were still tried), or a runtime error
    /// ended the command.
    Failed = 1,
    /// 2: a usage or configuration error; nothing was done.
    Usage = 2,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        for (exit, code) in [(Exit::Done, 0), (Exit::Failed, 1), (Exit::Usage, 2)] {
            assert_eq!(exit.code(), code, "{exit:?}");
        }
    }

    #[test]
    fn try_map_runs_the_next_step_only_for_run() {
        let next = |n: u32| -> Result<u32, UsageError> { Ok(n + 1) };
        assert!(matches!(Parsed::Run(1).try_map(next), Ok(Parsed::Run(2))));
        assert!(matches!(
            Parsed::Special(Special::Help).try_map(next),
            Ok(Parsed::Special(Special::Help))
        ));
        let fail = |_: u32| -> Result<u32, UsageError> { Err("bad".into()) };
        assert_eq!(Parsed::Run(1).try_map(fail).unwrap_err().to_string(), "bad");
    }

    #[test]
    fn context_goes_in_front() {
        assert_eq!(
            UsageError::new("not a number")
                .context("--threads")
                .to_string(),
            "--threads: not a number"
        );
    }
}
