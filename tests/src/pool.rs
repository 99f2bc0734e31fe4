//! Throw-away pools on sparse files, and the clean-up of pools a dead test run left.
//!
//! Owns: `Pool` (name `zft_<tag>_<pid>_<n>`, its vdev file and mount root, destroyed on
//! drop), `destroy_pool`, and `clean_stale_pools`, which relies on that name. Must not: create or change
//! datasets inside a pool (`datasets` does), or destroy a pool whose test process is
//! alive.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::thread;
use std::time::Duration;

use crate::scratch::{next_id, temp_dir, TEST_ROOT};
use crate::zfs_cmd::zpool_try;

/// Default size of a pool's sparse vdev file. Sparse, so it costs only what is written.
pub const DEFAULT_POOL_SIZE: u64 = 1 << 30;

/// Prefix of every pool the harness creates; `clean_stale_pools` relies on it.
const POOL_PREFIX: &str = "zft";

/// A throw-away pool on a sparse file, destroyed (with its file) on drop.
///
/// Name: `zft_<tag>_<pid>_<n>`. Pool names must start with a letter and are kept short
/// because every dataset and snapshot name below them counts against ZFS's 255-byte limit
/// (and tests of that limit want the room).
pub struct Pool {
    /// The pool's name, which is also its root dataset.
    pub name: String,
    /// The sparse vdev file.
    pub file: PathBuf,
    /// Where the root dataset is mounted (its children below it), or `None` for a pool
    /// created with `-m none`.
    pub mountroot: Option<PathBuf>,
    /// Holds `file` and `mountroot`; removed on drop.
    dir: PathBuf,
}

impl Pool {
    /// A 1 GiB pool whose datasets are mounted under a temp dir: for sources, whose
    /// files the tests write.
    pub fn new(tag: &str) -> Pool {
        Pool::create(tag, DEFAULT_POOL_SIZE, true)
    }

    /// Like `new` with a vdev of `bytes` (ZFS wants at least 64 MiB).
    pub fn with_size(tag: &str, bytes: u64) -> Pool {
        Pool::create(tag, bytes, true)
    }

    /// A 1 GiB pool with `mountpoint=none` on its root, so nothing received into it is
    /// mounted (zfs-fuse has no `zfs recv -u`): for receivers.
    pub fn unmounted(tag: &str) -> Pool {
        Pool::create(tag, DEFAULT_POOL_SIZE, false)
    }

    fn create(tag: &str, bytes: u64, mounted: bool) -> Pool {
        clean_stale_pools();
        // Only [a-z0-9] from the tag: '_' separates the name's fields, and the pid in it
        // must stay parseable for clean_stale_pools.
        let tag: String = tag
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .take(8)
            .collect();
        let pid = std::process::id();
        let (name, dir) = loop {
            let name = format!("{POOL_PREFIX}_{tag}_{pid}_{}", next_id());
            // A pool of that name may survive from a killed process with the same pid.
            if zpool_try(&["list", "-H", "-o", "name", &name]).is_err() {
                break (name.clone(), temp_dir(&name));
            }
        };
        let file = dir.join("vdev.img");
        let f =
            fs::File::create(&file).unwrap_or_else(|e| panic!("create {}: {e}", file.display()));
        f.set_len(bytes)
            .unwrap_or_else(|e| panic!("truncate {}: {e}", file.display()));
        drop(f);
        let mountroot = if mounted { Some(dir.join("mnt")) } else { None };
        let m = match &mountroot {
            Some(p) => p.to_str().expect("temp dir path is UTF-8").to_string(),
            None => "none".to_string(),
        };
        let file_s = file.to_str().expect("temp dir path is UTF-8");
        let create = || zpool_try(&["create", "-m", &m, &name, file_s]);
        let created = match create() {
            Err(e) if daemon_is_down(&e) && restart_daemon(&e) => create(),
            other => other,
        };
        if let Err(e) = created {
            let _ = fs::remove_dir_all(&dir);
            panic!("{e}");
        }
        Pool {
            name,
            file,
            mountroot,
            dir,
        }
    }

    /// Full name of a dataset in this pool: `ds("data/home")` is `<pool>/data/home`;
    /// `ds("")` is the pool's root dataset.
    pub fn ds(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.name, rel.trim_start_matches('/'))
        }
    }

    /// The directory holding the vdev file; tests may put their own scratch files here.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Err(e) = destroy_pool(&self.name) {
            eprintln!("harness: cannot destroy test pool {}: {e}", self.name);
            // Keep the vdev file: deleting it under a live pool would only hide the leak.
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("harness: cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// Whether a zfs or zpool error says the zfs-fuse daemon is not there to answer.
fn daemon_is_down(error: &str) -> bool {
    error.contains("zfs-fuse daemon is running")
        || error.contains("failed to initialize ZFS library")
}

/// Starts the zfs-fuse daemon again after it died (zfs-fuse 0.7 aborts now and then under
/// load; seen in CI). Without this, one crash fails every later test of the run; with it,
/// only the tests that were running then fail, and `scripts/test` runs their files once
/// more. Serialised across test processes; the script is idempotent, so the second
/// caller only sees the daemon up. Says so on stderr, so the crash is never hidden.
/// Returns whether the daemon answers now. Not for a fake `zfs` (`$ZFSYNC_ZPOOL` set).
fn restart_daemon(error: &str) -> bool {
    if std::env::var_os("ZFSYNC_ZPOOL").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    let _lock = crate::zfs_cmd::MountLock::acquire();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/setup-zfs-fuse");
    eprintln!(
        "harness: the zfs-fuse daemon does not answer ({error}); starting it again with {}",
        script.display()
    );
    match std::process::Command::new(&script)
        .stdin(std::process::Stdio::null())
        .status()
    {
        Ok(status) if status.success() => true,
        Ok(status) => {
            eprintln!("harness: {} failed: {status}", script.display());
            false
        }
        Err(e) => {
            eprintln!("harness: cannot run {}: {e}", script.display());
            false
        }
    }
}

/// `zpool destroy -f NAME`, retried while zfs-fuse says "busy" (it does for a moment
/// after the last access); -f: a test may leave datasets mounted or a clone behind. For
/// `Pool`'s drop and pools a test makes itself (a mirror).
pub fn destroy_pool(name: &str) -> Result<String, String> {
    let mut last = Ok(String::new());
    for _ in 0..50 {
        last = zpool_try(&["destroy", "-f", name]);
        match &last {
            Err(e) if e.contains("busy") => thread::sleep(Duration::from_millis(100)),
            _ => break,
        }
    }
    last
}

/// Destroys harness pools left behind by test processes that no longer exist (a killed
/// or aborted run), then their temp dirs: zfs-fuse keeps pools across daemon restarts,
/// and the leftovers would pile up on a reused machine. Runs once per test process.
/// Anything whose pid is alive belongs to a concurrent test run and is left alone.
fn clean_stale_pools() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let dead = |pid: &str| match pid.parse::<u32>() {
            Ok(pid) => pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists(),
            Err(_) => false,
        };
        // The first zpool create reports the real problem if zpool does not work.
        let pools = zpool_try(&["list", "-H", "-o", "name"]).unwrap_or_default();
        for name in pools.lines() {
            // zft_<tag>_<pid>_<n>
            let fields: Vec<&str> = name.split('_').collect();
            if fields.len() != 4 || fields[0] != POOL_PREFIX || !dead(fields[2]) {
                continue;
            }
            match zpool_try(&["destroy", "-f", name]) {
                Ok(_) => eprintln!("harness: destroyed stale test pool {name}"),
                Err(e) => eprintln!("harness: cannot destroy stale test pool {name}: {e}"),
            }
        }
        // Temp dirs are <tag>-<pid>-<n>. One that is still a mountpoint (its pool could
        // not be destroyed) is kept: removing it would delete files inside a pool.
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let Ok(entries) = fs::read_dir(TEST_ROOT) else {
            return;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                continue;
            };
            let fields: Vec<&str> = name.rsplitn(3, '-').collect();
            if fields.len() != 3 || !dead(fields[1]) {
                continue;
            }
            let path = entry.path();
            let path_s = path.to_string_lossy();
            let mounted = mounts.lines().any(|l| {
                l.split(' ')
                    .nth(1)
                    .is_some_and(|mp| mp == path_s || mp.starts_with(&format!("{path_s}/")))
            });
            if !mounted {
                let _ = fs::remove_dir_all(&path);
            }
        }
    });
}
