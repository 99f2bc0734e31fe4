//! Processes the tests started: exit statuses, signals, deadlines, children.
//!
//! Owns: `describe_status`, `signal` (kill(2) from the C library std already links: the
//! harness needs no crate for one call), waiting for a child with a timeout, and listing
//! a process's children from /proc. Must not: start processes (`receiver`, `sender` and
//! `zfs_cmd` do) or panic when the process is already gone.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// `exit 3` or `killed by signal 9`, for messages.
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => format!("{status}"),
    }
}

/// Sends signal `sig` to process `pid` (e.g. `SIGKILL` to kill a sender or receiver
/// uncleanly). Errors (the process is gone) are ignored: the caller checks the effect.
pub fn signal(pid: u32, sig: i32) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: kill has no memory effects.
    unsafe {
        kill(pid as i32, sig);
    }
}

/// SIGKILL on Linux.
pub const SIGKILL: i32 = 9;

/// SIGTERM on Linux.
const SIGTERM: i32 = 15;

/// Asks process `pid` to stop (SIGTERM). Only for our own unreaped children: such a pid
/// cannot have been recycled for another process.
pub(crate) fn terminate(pid: u32) {
    signal(pid, SIGTERM);
}

/// Waits up to `timeout` for `child` to exit; `None` if it is still running (or cannot
/// be waited for).
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// Pids of the live children of process `pid` (from /proc), e.g. a receiver's `zfs recv`.
pub fn child_pids(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut kids = Vec::new();
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 1 && f[0] != "Z" && f[1].parse() == Ok(pid) {
            kids.push(child);
        }
    }
    kids
}
