//! What every subcommand works with: the zfs binary (`--zfs PATH`) and the time now (the
//! clock, or `ZFSYNC_NOW`), read once when the command line is checked so that a whole
//! run sees one time; and for those that read the history, where it is (`--state-dir`) and
//! which side of it (`--role`).
//!
//! Owns the options and settings subcommands share. Must not run zfs itself beyond
//! detecting it, nor know any subcommand's job.

use jiff::Timestamp;
use std::path::PathBuf;
use zfsync_cli::UsageError;
use zfsync_history::Role;
use zfsync_zfs::{Dataset, Zfs};

/// The shared settings of a subcommand's run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// `--zfs PATH`: the zfs binary.
    pub zfs_bin: PathBuf,
    /// The time of the run, whole seconds (zfsync's snapshot names have no fractions).
    pub now: Timestamp,
}

impl Context {
    /// Adds the options every subcommand has to `o`.
    pub fn options(o: &mut getopts::Options) {
        o.optopt("", "zfs", "", "PATH");
    }

    /// The context from parsed options: the zfs binary, and the time from
    /// [`zfsync_cli::now`] (a bad `ZFSYNC_NOW` is a usage error).
    pub fn from_matches(m: &getopts::Matches) -> Result<Context, UsageError> {
        Ok(Context {
            zfs_bin: PathBuf::from(m.opt_str("zfs").unwrap_or_else(|| "zfs".into())),
            now: now()?,
        })
    }

    /// The one DATASET a subcommand takes, from the free arguments.
    pub fn dataset(m: &getopts::Matches) -> Result<Dataset, UsageError> {
        match m.free.as_slice() {
            [d] => Dataset::new(d).map_err(|e| format!("DATASET: {e}").into()),
            [] => Err("missing DATASET".into()),
            _ => Err(format!("one DATASET expected, got {}", m.free.len()).into()),
        }
    }

    /// The zfs binary, with what it can do.
    pub fn zfs(&self) -> zfsync_zfs::Result<Zfs> {
        Zfs::detect(&self.zfs_bin)
    }
}

/// Adds `--state-dir DIR` to `o`, for subcommands that read the history.
pub fn state_dir_option(o: &mut getopts::Options) {
    o.optopt("", "state-dir", "", "DIR");
}

/// `--role ROLE` (send or recv), for subcommands that choose a side of the history.
pub fn role(m: &getopts::Matches) -> Result<Option<Role>, UsageError> {
    match m.opt_str("role") {
        None => Ok(None),
        Some(r) => Role::parse(&r)
            .map(Some)
            .ok_or_else(|| format!("--role wants send or recv, got {r:?}").into()),
    }
}

/// `--state-dir DIR`, or the history's default directory.
pub fn state_dir(m: &getopts::Matches) -> PathBuf {
    PathBuf::from(
        m.opt_str("state-dir")
            .unwrap_or_else(|| zfsync_history::DEFAULT_DIR.into()),
    )
}

/// The time now in whole seconds, from [`zfsync_cli::now`]: `ZFSYNC_NOW` if set (a bad
/// value is a usage error), else the clock.
pub fn now() -> Result<Timestamp, UsageError> {
    let now = Timestamp::try_from(zfsync_cli::now()?)
        .map_err(|e| UsageError::new(format!("the time is out of range: {e}")))?;
    Ok(Timestamp::from_second(now.as_second()).unwrap_or(now))
}
