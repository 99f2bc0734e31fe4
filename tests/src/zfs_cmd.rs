//! Running `zfs` and `zpool` for the tests, one mounting command at a time.
//!
//! Owns: which `zfs`/`zpool` the tests use (`$ZFSYNC_ZFS`, `$ZFSYNC_ZPOOL`), running them
//! with stdin closed and turning a failure into `"zfs ARGS: exit N: STDERR"`, the
//! cross-process lock that serialises commands that may mount (`MountLock`), and the
//! retry of zfs-fuse's passing "dataset is busy". Must not: know about pools, datasets or
//! files (`pool`, `datasets` and `inspect` do), or run the zfsync binaries.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use crate::process::describe_status;
use crate::scratch::TEST_ROOT;

fn tool(var: &str, default: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => default.to_string(),
    }
}

/// The `zfs` command the tests use (`$ZFSYNC_ZFS` or `zfs`). Tests that pass `--zfs` to
/// the binaries should pass this too, so both sides see the same ZFS.
pub fn zfs_bin() -> String {
    tool("ZFSYNC_ZFS", "zfs")
}

/// The `zpool` command the tests use (`$ZFSYNC_ZPOOL` or `zpool`).
pub fn zpool_bin() -> String {
    tool("ZFSYNC_ZPOOL", "zpool")
}

fn run_try(program: &str, args: &[&str]) -> Result<String, String> {
    let _lock = may_mount(args).then(MountLock::acquire);
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "{program} {}: cannot run: {e} (is zfs-fuse installed and running? see scripts/setup-zfs-fuse)",
                args.join(" ")
            )
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}: {}",
            args.join(" "),
            describe_status(out.status),
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

/// Whether a zfs or zpool command may mount a filesystem. Only reading commands (and
/// `snapshot`, `send`) are known not to.
fn may_mount(args: &[&str]) -> bool {
    !matches!(
        args.first().copied(),
        Some("list" | "get" | "status" | "snapshot" | "send" | "version")
    )
}

/// Serialises commands that may mount, across every test thread and test process.
///
/// zfs-fuse 0.7 hands each new mount to its FUSE listener threads over a pipe with two
/// separate `write`s (a header, then the mountpoint). Two mounts at once can interleave
/// them; a listener then reads a piece of a path as a length and blocks in `read` while
/// holding the listener mutex, and every FUSE request and every later mount hangs until
/// the daemon is restarted. Seen with several test binaries running at once. One mount
/// at a time avoids it; the commands are short, so the cost is small.
pub(crate) struct MountLock(#[allow(dead_code)] fs::File);

impl MountLock {
    pub(crate) fn acquire() -> MountLock {
        extern "C" {
            fn flock(fd: i32, operation: i32) -> i32;
        }
        const LOCK_EX: i32 = 2;
        let _ = fs::create_dir_all(TEST_ROOT);
        let path = Path::new(TEST_ROOT).join(".zfs-mount.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own; it has no memory effects. Each
        // acquire opens its own file description, so threads of one process exclude
        // each other too. The lock goes with the descriptor when the File is dropped.
        while unsafe { flock(file.as_raw_fd(), LOCK_EX) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                panic!("flock {}: {e}", path.display());
            }
        }
        MountLock(file)
    }
}

/// Runs `zfs ARGS`; returns stdout or `Err("zfs ARGS: exit N: STDERR")`.
pub fn zfs_try(args: &[&str]) -> Result<String, String> {
    run_try(&zfs_bin(), args)
}

/// Runs `zfs ARGS` and returns stdout; panics with the arguments and stderr on failure.
pub fn zfs(args: &[&str]) -> String {
    zfs_try(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `zpool ARGS`; returns stdout or `Err("zpool ARGS: exit N: STDERR")`.
pub fn zpool_try(args: &[&str]) -> Result<String, String> {
    run_try(&zpool_bin(), args)
}

/// Runs `zpool ARGS` and returns stdout; panics with the arguments and stderr on failure.
pub fn zpool(args: &[&str]) -> String {
    zpool_try(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Retries a zfs command that zfs-fuse intermittently refuses with "dataset is busy"
/// right after a filesystem was mounted or read (the FUSE layer still holds it for a
/// moment). Other errors are returned at once.
pub fn zfs_retry_busy(args: &[&str]) -> Result<String, String> {
    let mut tries = 0;
    loop {
        match zfs_try(args) {
            Err(e) if e.contains("busy") && tries < 50 => {
                tries += 1;
                thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::may_mount;

    #[test]
    fn only_known_reading_commands_skip_the_mount_lock() {
        let cases: &[(&[&str], bool)] = &[
            (&["list", "-H", "tank"], false),
            (&["get", "-Hp", "guid", "tank"], false),
            (&["status"], false),
            (&["snapshot", "tank@s1"], false),
            (&["send", "tank@s1"], false),
            (&["version"], false),
            (&["create", "-p", "tank/a"], true),
            (&["destroy", "-f", "tank"], true),
            (&["set", "mountpoint=none", "tank/a"], true),
            (&["clone", "tank@s1", "tank/c"], true),
            (&["recv", "tank/a"], true),
            // Unknown or missing: take the lock, a wasted wait costs less than a hang.
            (&[], true),
        ];
        for (args, want) in cases {
            assert_eq!(may_mount(args), *want, "may_mount({args:?})");
        }
    }
}
