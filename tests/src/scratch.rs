//! Scratch space: the root every test file lives under, unique names, and temp dirs.
//!
//! Owns: `TEST_ROOT`, the per-process counter behind every name the harness makes, and
//! `temp_dir`. Must not: remove what it creates (the caller does, or keeps it when a test
//! fails), or run any zfs command.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Root of every file the tests create. /var/tmp, not /tmp: a pool's vdev file is up to
/// a GiB of (sparse) data and /tmp is often a small tmpfs.
pub const TEST_ROOT: &str = "/var/tmp/zfsync-tests";

/// Every name the harness makes (pools, temp dirs, clones) carries this process's pid
/// and a number from here, so tests in one binary and concurrent test binaries never
/// collide.
static COUNTER: AtomicU64 = AtomicU64::new(0);

pub(crate) fn next_id() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Creates and returns a fresh directory `TEST_ROOT/<tag>-<pid>-<n>`. The caller removes
/// it (or keeps it when a test fails, for inspection).
pub fn temp_dir(tag: &str) -> PathBuf {
    fs::create_dir_all(TEST_ROOT).unwrap_or_else(|e| panic!("mkdir {TEST_ROOT}: {e}"));
    loop {
        let dir = Path::new(TEST_ROOT).join(format!("{tag}-{}-{}", std::process::id(), next_id()));
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            // Left behind by an earlier process that had the same pid: take the next.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("mkdir {}: {e}", dir.display()),
        }
    }
}
