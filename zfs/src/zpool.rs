//! `zpool`, for what monitoring asks of pools: each pool's health and capacity
//! (`zpool list -H -o name,health,capacity`), and what `zpool status -x` says of the pools
//! that are not healthy (the status message, data errors, each device's error counts).
//!
//! [`Zpool`] runs its commands the way [`Zfs`] runs zfs's (logged, bounded, stderr kept in
//! the error); the parsing is here, from both CLI families (OpenZFS and zfs-fuse print the
//! same layout). Nothing here changes a pool or judges one: the caller decides what a
//! state means.

use crate::{Capabilities, Error, Result, Zfs};
use std::path::PathBuf;
use std::time::Duration;

/// The zpool command-line tool.
#[derive(Clone, Debug)]
pub struct Zpool {
    /// A runner whose binary is zpool: the same spawning, logging and time limit as zfs.
    runner: Zfs,
}

/// One pool as `zpool list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolInfo {
    pub name: String,
    /// ONLINE, DEGRADED, FAULTED, OFFLINE, REMOVED, UNAVAIL, SUSPENDED.
    pub health: String,
    /// Percent of the pool allocated; `None` where zpool shows `-` (a faulted pool).
    pub capacity: Option<u32>,
}

/// One device line of a `zpool status` config table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceErrors {
    pub name: String,
    pub state: String,
    pub read: u64,
    pub write: u64,
    pub cksum: u64,
}

/// What `zpool status` says of one pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolStatus {
    pub name: String,
    pub state: String,
    /// The `status:` paragraph, joined into one line; none for a pool without a message.
    pub status: Option<String>,
    /// The `errors:` line: `No known data errors`, `N data errors, use '-v' for a list`,
    /// `Permanent errors have been detected ...`.
    pub errors: Option<String>,
    /// The devices of the config table, the pool's own line first.
    pub devices: Vec<DeviceErrors>,
}

impl PoolStatus {
    /// Whether zpool reports data errors (lost or damaged data), not just device errors
    /// that redundancy repaired.
    pub fn has_data_errors(&self) -> bool {
        self.errors
            .as_deref()
            .is_some_and(|e| !e.starts_with("No known data errors"))
    }

    /// The device errors counted (read, write, checksum), summed over every device.
    pub fn error_count(&self) -> u64 {
        self.devices
            .iter()
            .map(|d| d.read + d.write + d.cksum)
            .sum()
    }
}

impl Zpool {
    /// The zpool binary `bin`; a command that takes longer than `limit` is killed.
    pub fn new(bin: impl Into<PathBuf>, limit: Duration) -> Zpool {
        Zpool {
            runner: Zfs {
                bin: bin.into(),
                caps: Capabilities::legacy(),
                limit: Some(limit),
            },
        }
    }

    /// Every imported pool: name, health and capacity. One command.
    pub fn list(&self) -> Result<Vec<PoolInfo>> {
        let args = ["list", "-H", "-o", "name,health,capacity"];
        let out = self.runner.output(&args)?;
        parse_list(&self.runner.command_line(&args), &out)
    }

    /// What `zpool status -x` says: the pools that are not healthy (a state other than
    /// ONLINE, a status message, device errors or data errors), each with its details.
    pub fn unhealthy(&self) -> Result<Vec<PoolStatus>> {
        let out = self.runner.output(&["status", "-x"])?;
        Ok(parse_status(&out))
    }
}

/// The rows of `zpool list -H -o name,health,capacity`. `cmd` is the command line, for
/// errors.
fn parse_list(cmd: &str, out: &str) -> Result<Vec<PoolInfo>> {
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let bad = |why: &str| Error::Parse {
                cmd: cmd.into(),
                line: line.into(),
                why: why.into(),
            };
            let [name, health, capacity] = line.split('\t').collect::<Vec<_>>()[..] else {
                return Err(bad("expected 3 fields"));
            };
            let capacity = match capacity.trim_end_matches('%') {
                "-" => None,
                n => Some(n.parse().map_err(|_| bad("capacity is not a percentage"))?),
            };
            Ok(PoolInfo {
                name: name.into(),
                health: health.into(),
                capacity,
            })
        })
        .collect()
}

/// The pools of `zpool status` output: a block per pool from its `pool:` line, with
/// `key: value` paragraphs (continued on tab-indented lines) and the config table.
/// "all pools are healthy" has none.
fn parse_status(out: &str) -> Vec<PoolStatus> {
    let mut pools: Vec<PoolStatus> = Vec::new();
    let mut key = String::new();
    for line in out.lines() {
        let trimmed = line.trim();
        if let Some((k, v)) = paragraph_start(line) {
            key = k.to_string();
            if k == "pool" {
                pools.push(PoolStatus {
                    name: v.to_string(),
                    state: String::new(),
                    status: None,
                    errors: None,
                    devices: Vec::new(),
                });
                continue;
            }
            let Some(pool) = pools.last_mut() else {
                continue;
            };
            match k {
                "state" => pool.state = v.to_string(),
                "status" => pool.status = Some(v.to_string()),
                "errors" => pool.errors = Some(v.to_string()),
                _ => {}
            }
            continue;
        }
        let Some(pool) = pools.last_mut() else {
            continue;
        };
        if trimmed.is_empty() {
            continue;
        }
        match key.as_str() {
            "status" if line.starts_with('\t') => {
                if let Some(s) = pool.status.as_mut() {
                    s.push(' ');
                    s.push_str(trimmed);
                }
            }
            "config" => {
                if let Some(device) = device_line(trimmed) {
                    pool.devices.push(device);
                }
            }
            _ => {}
        }
    }
    pools
}

/// `  pool: tank`, ` state: ONLINE`, `config:`: a paragraph's key and the rest of its
/// first line. Keys are right-aligned to the colon, lower case, at most 8 wide.
fn paragraph_start(line: &str) -> Option<(&str, &str)> {
    if line.starts_with('\t') {
        return None;
    }
    let (key, value) = line.split_once(':')?;
    let key = key.trim_start();
    let is_key = !key.is_empty() && key.len() <= 8 && key.bytes().all(|b| b.is_ascii_lowercase());
    is_key.then(|| (key, value.trim()))
}

/// A device row of the config table (`NAME STATE READ WRITE CKSUM [note]`); the header
/// and anything else that does not have three counts is not one.
fn device_line(line: &str) -> Option<DeviceErrors> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 5 {
        return None;
    }
    Some(DeviceErrors {
        name: f[0].into(),
        state: f[1].into(),
        read: count(f[2])?,
        write: count(f[3])?,
        cksum: count(f[4])?,
    })
}

/// An error count as zpool prints it: `0`, `463`, or abbreviated, `1.2K`, `3M`.
fn count(text: &str) -> Option<u64> {
    let (digits, scale) = match text.char_indices().last()? {
        (i, c) if "KMGT".contains(c) => {
            let power = 1 + "KMGT".find(c).unwrap_or(0) as i32;
            (&text[..i], 1000f64.powi(power))
        }
        _ => (text, 1.0),
    };
    let n: f64 = digits.parse().ok()?;
    (n >= 0.0).then(|| (n * scale).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_pools_with_capacities() {
        // zfs-fuse shows "27%"; OpenZFS with -p would show 27; a faulted pool "-".
        let out = "tank\tONLINE\t27%\nbackup\tDEGRADED\t91\nold\tFAULTED\t-\n";
        let pool = |name: &str, health: &str, capacity| PoolInfo {
            name: name.into(),
            health: health.into(),
            capacity,
        };
        assert_eq!(
            parse_list("zpool list", out).unwrap(),
            [
                pool("tank", "ONLINE", Some(27)),
                pool("backup", "DEGRADED", Some(91)),
                pool("old", "FAULTED", None),
            ]
        );
        for bad in ["tank\tONLINE\n", "tank\tONLINE\tfull\n"] {
            assert!(parse_list("zpool list", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn all_pools_healthy_is_no_pool() {
        assert!(parse_status("all pools are healthy\n").is_empty());
        assert!(parse_status("pool 'tank' is healthy\n").is_empty());
    }

    // Verbatim from zfs-fuse 0.7 after one side of a mirror was overwritten and scrubbed.
    const REPAIRED: &str = "  pool: obsx
 state: ONLINE
status: One or more devices has experienced an unrecoverable error.  An
\tattempt was made to correct the error.  Applications are unaffected.
action: Determine if the device needs to be replaced, and clear the errors
\tusing 'zpool clear' or replace the device with 'zpool replace'.
   see: http://www.sun.com/msg/ZFS-8000-9P
 scrub: scrub completed after 0h0m with 0 errors on Wed Dec  2 01:57:58 2026
config:

\tNAME                       STATE     READ WRITE CKSUM
\tobsx                       ONLINE       0     0     0
\t  mirror-0                 ONLINE       0     0     0
\t    /var/tmp/obsexp/a.img  ONLINE       0     0     0
\t    /var/tmp/obsexp/b.img  ONLINE       0     0   463  35.4M repaired

errors: No known data errors
";

    #[test]
    fn a_repaired_mirror_has_device_errors_and_no_data_errors() {
        let pools = parse_status(REPAIRED);
        assert_eq!(pools.len(), 1);
        let p = &pools[0];
        assert_eq!((p.name.as_str(), p.state.as_str()), ("obsx", "ONLINE"));
        assert_eq!(
            p.status.as_deref(),
            Some(
                "One or more devices has experienced an unrecoverable error.  An attempt was \
                 made to correct the error.  Applications are unaffected."
            )
        );
        assert_eq!(p.devices.len(), 4);
        assert_eq!(p.devices[3].name, "/var/tmp/obsexp/b.img");
        assert_eq!(p.devices[3].cksum, 463);
        assert_eq!(p.error_count(), 463);
        assert!(!p.has_data_errors());
    }

    #[test]
    fn data_errors_and_several_pools() {
        let out = "  pool: a
 state: DEGRADED
status: One or more devices could not be opened.
config:

\tNAME        STATE     READ WRITE CKSUM
\ta           DEGRADED     0     0     0
\t  mirror-0  DEGRADED     0     0     0
\t    sdb     UNAVAIL      0     0     0  cannot open
\t    sdc     ONLINE       0     0  1.2K

errors: No known data errors

  pool: b
 state: ONLINE
config:

\tNAME        STATE     READ WRITE CKSUM
\tb           ONLINE       0     0   320

errors: 320 data errors, use '-v' for a list
";
        let pools = parse_status(out);
        let names: Vec<(&str, &str, bool, u64)> = pools
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.state.as_str(),
                    p.has_data_errors(),
                    p.error_count(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [("a", "DEGRADED", false, 1200), ("b", "ONLINE", true, 320)]
        );
        assert_eq!(pools[1].status, None);
    }

    #[test]
    fn error_counts_as_zpool_abbreviates_them() {
        for (text, want) in [
            ("0", Some(0)),
            ("463", Some(463)),
            ("1.2K", Some(1200)),
            ("3M", Some(3_000_000)),
            ("x", None),
            ("-1", None),
        ] {
            assert_eq!(count(text), want, "{text}");
        }
    }
}
