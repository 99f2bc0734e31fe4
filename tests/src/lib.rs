//! Integration-test harness: real zfsync binaries against real ZFS pools on file vdevs.
//!
//! Owns: finding the built binaries, running `zfs`/`zpool` for the tests, throw-away pools
//! (`Pool`), reading a snapshot's files without touching it (`files_of`), a receiver
//! process guard (`Receiver`) and a sender runner (`send`).
//!
//! Does not own: any zfsync logic. The harness drives the binaries from the outside as a
//! user would, so a test passing here means the shipped commands work; it never links the
//! sender or receiver libraries.
//!
//! Everything here panics on failure with the command, its exit status and its stderr:
//! these are test helpers, and a panic with the raw text is the most useful report. Only
//! the `Drop` impls never panic (a panic while unwinding aborts the whole test binary);
//! they report on stderr instead.
//!
//! Environment:
//! - `ZFSYNC_BIN_DIR`: where `zfsync-send` and `zfsync-recv` are (default: the
//!   workspace's `target/release`).
//! - `ZFSYNC_ZFS`, `ZFSYNC_ZPOOL`: the `zfs` and `zpool` commands (default: from PATH).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Once};
use std::thread;
use std::time::{Duration, Instant};

/// Root of every file the tests create. /var/tmp, not /tmp: a pool's vdev file is up to
/// a GiB of (sparse) data and /tmp is often a small tmpfs.
pub const TEST_ROOT: &str = "/var/tmp/zfsync-tests";

/// Default size of a pool's sparse vdev file. Sparse, so it costs only what is written.
pub const DEFAULT_POOL_SIZE: u64 = 1 << 30;

/// How long `Receiver::start` waits for the `listening on` line.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `send` lets the sender run before killing it.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(300);

/// Every name the harness makes (pools, temp dirs, clones) carries this process's pid
/// and a number from here, so tests in one binary and concurrent test binaries never
/// collide.
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn next_id() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------
// Binaries

/// Directory holding the release binaries: `$ZFSYNC_BIN_DIR`, or `target/release` of
/// this workspace.
pub fn bin_dir() -> PathBuf {
    match std::env::var_os("ZFSYNC_BIN_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests crate lives inside the workspace")
            .join("target")
            .join("release"),
    }
}

fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    if !path.is_file() {
        panic!(
            "{} not found: run cargo build --release first (or set ZFSYNC_BIN_DIR)",
            path.display()
        );
    }
    path
}

/// Path of the built `zfsync-send`; panics if it has not been built.
pub fn sender_bin() -> PathBuf {
    bin("zfsync-send")
}

/// Path of the built `zfsync-recv`; panics if it has not been built.
pub fn receiver_bin() -> PathBuf {
    bin("zfsync-recv")
}

// ---------------------------------------------------------------------------------------
// zfs and zpool

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
struct MountLock(#[allow(dead_code)] fs::File);

impl MountLock {
    fn acquire() -> MountLock {
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

/// `exit 3` or `killed by signal 9`, for messages.
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => format!("{status}"),
    }
}

/// Retries a zfs command that zfs-fuse intermittently refuses with "dataset is busy"
/// right after a filesystem was mounted or read (the FUSE layer still holds it for a
/// moment). Other errors are returned at once.
fn zfs_retry_busy(args: &[&str]) -> Result<String, String> {
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

// ---------------------------------------------------------------------------------------
// Temp dirs

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

// ---------------------------------------------------------------------------------------
// Pools

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
        if let Err(e) = zpool_try(&["create", "-m", &m, &name, file_s]) {
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
        // -f: a test may leave datasets mounted or a clone behind. zfs-fuse sometimes
        // says "busy" for a moment after the last access, so retry.
        let mut last = Ok(String::new());
        for _ in 0..50 {
            last = zpool_try(&["destroy", "-f", &self.name]);
            match &last {
                Err(e) if e.contains("busy") => thread::sleep(Duration::from_millis(100)),
                _ => break,
            }
        }
        if let Err(e) = last {
            eprintln!("harness: cannot destroy test pool {}: {e}", self.name);
            // Keep the vdev file: deleting it under a live pool would only hide the leak.
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("harness: cannot remove {}: {e}", self.dir.display());
        }
    }
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

// ---------------------------------------------------------------------------------------
// Dataset helpers

/// `zfs create -p DS`.
pub fn create(ds: &str) {
    zfs(&["create", "-p", ds]);
}

/// `zfs snapshot DS@SNAP`.
pub fn snapshot(snap: &str) {
    assert!(snap.contains('@'), "snapshot({snap:?}): want DATASET@SNAP");
    zfs(&["snapshot", snap]);
}

/// Whether a dataset, volume or snapshot of that name exists.
pub fn exists(name: &str) -> bool {
    zfs_try(&["list", "-H", "-o", "name", "-t", "all", name]).is_ok()
}

/// Names of the filesystems and volumes at and below `root`, in `zfs list` order
/// (parents before children).
pub fn list_datasets(root: &str) -> Vec<String> {
    zfs(&[
        "list",
        "-H",
        "-r",
        "-t",
        "filesystem,volume",
        "-o",
        "name",
        root,
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// The mountpoint of a mounted filesystem; panics if it has none or is not mounted.
pub fn mountpoint(ds: &str) -> PathBuf {
    let out = zfs(&["get", "-H", "-o", "value", "mountpoint,mounted", ds]);
    let mut lines = out.lines();
    let (mp, mounted) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    if !mp.starts_with('/') || mounted != "yes" {
        panic!("{ds} is not mounted (mountpoint={mp} mounted={mounted}); write files into a Pool::new pool");
    }
    PathBuf::from(mp)
}

/// Writes `bytes` to `relpath` inside the mounted filesystem `ds`, creating directories.
/// The file is fsynced, so a snapshot taken next surely holds it.
pub fn write_file(ds: &str, relpath: &str, bytes: &[u8]) {
    let path = mountpoint(ds).join(relpath.trim_start_matches('/'));
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    let mut f =
        fs::File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(bytes)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    f.sync_all()
        .unwrap_or_else(|e| panic!("fsync {}: {e}", path.display()));
}

/// `n` pseudo-random bytes from `seed` (xorshift64*): incompressible test data that is
/// the same on every run.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    // Mix the seed so that small seeds (0, 1, 2) give unrelated streams and 0 is valid
    // (xorshift's state must not be 0).
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    if x == 0 {
        x = 1;
    }
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(n);
    out
}

/// The snapshots of `ds` itself (not of its children), oldest first by createtxg, as
/// (name after '@', guid). Uses `zfs get -Hp` because zfs-fuse's `zfs list` abbreviates
/// GUIDs and has no `-p`.
pub fn snapshot_guids(ds: &str) -> Vec<(String, u64)> {
    let out = zfs(&[
        "get",
        "-Hp",
        "-r",
        "-d",
        "1",
        "-o",
        "name,property,value",
        "guid,createtxg",
        ds,
    ]);
    let prefix = format!("{ds}@");
    // snapshot name -> (guid, createtxg)
    let mut snaps: BTreeMap<String, (Option<u64>, Option<u64>)> = BTreeMap::new();
    for line in out.lines() {
        let mut f = line.split('\t');
        let (Some(name), Some(prop), Some(value)) = (f.next(), f.next(), f.next()) else {
            panic!("zfs get: unexpected line {line:?}");
        };
        let Some(snap) = name.strip_prefix(&prefix) else {
            continue;
        };
        let value: u64 = value
            .parse()
            .unwrap_or_else(|_| panic!("zfs get: {name} {prop}={value:?} is not a number"));
        let entry = snaps.entry(snap.to_string()).or_default();
        match prop {
            "guid" => entry.0 = Some(value),
            "createtxg" => entry.1 = Some(value),
            _ => panic!("zfs get: unexpected property in {line:?}"),
        }
    }
    let mut list: Vec<(u64, String, u64)> = snaps
        .into_iter()
        .map(|(snap, (guid, txg))| match (guid, txg) {
            (Some(guid), Some(txg)) => (txg, snap, guid),
            _ => panic!("zfs get: {ds}@{snap} lacks guid or createtxg:\n{out}"),
        })
        .collect();
    list.sort();
    list.into_iter()
        .map(|(_, snap, guid)| (snap, guid))
        .collect()
}

/// The regular files of a snapshot, by path relative to the filesystem's root ('/'
/// separated), with their contents.
///
/// The snapshot is cloned read-only to a private mountpoint (`<pool>/verify-<pid>-<n>`),
/// read, and the clone destroyed: this works whatever the snapshot's dataset's mountpoint
/// is (`none` on receivers), and it neither mounts nor modifies the dataset itself,
/// whereas `.zfs/snapshot` would need the dataset mounted.
pub fn files_of(snap: &str) -> BTreeMap<String, Vec<u8>> {
    let Some((ds, _)) = snap.split_once('@') else {
        panic!("files_of({snap:?}): want DATASET@SNAP");
    };
    let pool = ds.split('/').next().unwrap_or(ds);
    let mut clone = CloneGuard {
        name: format!("{pool}/verify-{}-{}", std::process::id(), next_id()),
        dir: temp_dir("verify"),
        created: false,
    };
    let dir_s = clone
        .dir
        .to_str()
        .expect("temp dir path is UTF-8")
        .to_string();
    zfs(&[
        "clone",
        "-o",
        &format!("mountpoint={dir_s}"),
        "-o",
        "readonly=on",
        snap,
        &clone.name,
    ]);
    clone.created = true;
    // zfs-fuse mounts the clone before `zfs clone` returns, but check: reading an empty
    // unmounted directory would silently "prove" the snapshot empty.
    let mounted = zfs(&["get", "-H", "-o", "value", "mounted", &clone.name]);
    assert_eq!(
        mounted.trim(),
        "yes",
        "clone {} of {snap} is not mounted",
        clone.name
    );
    let mut files = BTreeMap::new();
    walk(&clone.dir, &clone.dir, &mut files);
    drop(clone);
    files
}

fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
        let path = entry.path();
        // symlink_metadata: a symlink is neither followed nor counted as a file.
        let meta =
            fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        if meta.is_dir() {
            walk(root, &path, files);
        } else if meta.is_file() {
            let rel = path
                .strip_prefix(root)
                .expect("walk stays under its root")
                .to_str()
                .unwrap_or_else(|| panic!("non-UTF-8 file name {}", path.display()))
                .to_string();
            let data = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            files.insert(rel, data);
        }
    }
}

/// Destroys the verification clone of `files_of` even when reading it panicked.
struct CloneGuard {
    name: String,
    dir: PathBuf,
    created: bool,
}

impl Drop for CloneGuard {
    fn drop(&mut self) {
        if self.created {
            // Unmount first: on zfs-fuse `zfs destroy` of a just-read mounted clone often
            // fails "dataset is busy", while unmount-then-destroy goes through.
            if let Err(e) = zfs_retry_busy(&["unmount", &self.name]) {
                eprintln!("harness: {e}");
            }
            if let Err(e) = zfs_retry_busy(&["destroy", &self.name]) {
                eprintln!("harness: {e}");
                return; // Keep the directory: it may still be a mountpoint.
            }
        }
        if let Err(e) = fs::remove_dir(&self.dir) {
            eprintln!("harness: cannot remove {}: {e}", self.dir.display());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Receiver

/// A running `zfsync-recv`, stopped on drop (SIGTERM, then SIGKILL after 10 s).
pub struct Receiver {
    child: Child,
    addr: String,
    log: PathBuf,
    dir: PathBuf,
    status: Option<ExitStatus>,
}

impl Receiver {
    /// Starts `zfsync-recv -l 127.0.0.1:0 EXTRA... TARGET` and waits for its
    /// `listening on 127.0.0.1:PORT` line.
    pub fn start(target: &str, extra_args: &[&str]) -> Receiver {
        Receiver::spawn(&receiver_bin(), target, extra_args)
    }

    /// `start` with another program in place of `zfsync-recv`: for the harness's own
    /// tests, and for wrapping the receiver (strace, a fault injector).
    pub fn spawn(program: &Path, target: &str, extra_args: &[&str]) -> Receiver {
        let dir = temp_dir("recv");
        let log = dir.join("stderr.log");
        let log_file =
            fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let mut child = Command::new(program)
            .arg("-l")
            .arg("127.0.0.1:0")
            .args(extra_args)
            .arg(target)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));

        // The line is read on a thread so the wait can time out. The thread then keeps
        // draining stdout, so a receiver that prints more never blocks on a full pipe.
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let mut r = Receiver {
            child,
            addr: String::new(),
            log,
            dir,
            status: None,
        };
        let line = match rx.recv_timeout(LISTEN_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => r.fail(&format!("reading its stdout: {e}")),
            Err(mpsc::RecvTimeoutError::Timeout) => r.fail(&format!(
                "no 'listening on' line within {}s",
                LISTEN_TIMEOUT.as_secs()
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => r.fail("reader thread died"),
        };
        let addr = line
            .trim_end_matches(['\n', '\r'])
            .strip_prefix("listening on ")
            .map(str::to_string);
        match addr {
            Some(a) if a.parse::<std::net::SocketAddr>().is_ok() => r.addr = a,
            // EOF gives an empty line: the receiver exited before binding.
            _ => r.fail(&format!(
                "expected 'listening on ADDR:PORT' on stdout, got {line:?}"
            )),
        }
        r
    }

    /// Stops the receiver and panics with everything known about it.
    fn fail(&mut self, what: &str) -> ! {
        let status = self.stop();
        panic!(
            "receiver {:?}: {what} ({})\n--- receiver stderr ---\n{}",
            self.child.id(),
            describe_status(status),
            self.log()
        );
    }

    /// The address it listens on, `127.0.0.1:PORT`: the sender's HOST:PORT argument.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// Process id, e.g. to kill it uncleanly in a test.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the receiver has written to stderr so far.
    pub fn log(&self) -> String {
        match fs::read(&self.log) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => format!("<cannot read {}: {e}>", self.log.display()),
        }
    }

    /// Path of the stderr log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Sends SIGTERM, waits up to 10 s, then SIGKILLs; returns the exit status.
    /// Idempotent: later calls return the first status.
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let status = match self.child.try_wait() {
            Ok(Some(status)) => status,
            _ => {
                terminate(self.child.id());
                match wait_timeout(&mut self.child, Duration::from_secs(10)) {
                    Some(status) => status,
                    None => {
                        eprintln!(
                            "harness: receiver {} ignored SIGTERM for 10s; killing it",
                            self.child.id()
                        );
                        let _ = self.child.kill();
                        self.child
                            .wait()
                            .unwrap_or_else(|_| ExitStatus::from_raw(9))
                    }
                }
            }
        };
        self.status = Some(status);
        status
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            // libtest shows a failed test's captured output: put the receiver's side of
            // the story there, and keep the log for a closer look.
            eprintln!(
                "--- receiver stderr ({}) ---\n{}--- end receiver stderr ---",
                self.log.display(),
                self.log()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn terminate(pid: u32) {
    // kill(2) from the C library std already links: the harness needs no crate for one
    // call. SIGTERM is 15 on Linux.
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    const SIGTERM: i32 = 15;
    // SAFETY: kill has no memory effects; the pid is our own unreaped child, so it
    // cannot have been recycled for another process.
    unsafe {
        kill(pid as i32, SIGTERM);
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sender

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct SendOutput {
    /// Exit code; 128+N if killed by signal N.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl SendOutput {
    /// Panics, showing both outputs, unless the command exited 0.
    pub fn assert_ok(&self) -> &Self {
        self.assert_status(0)
    }

    /// Panics, showing both outputs, unless the command exited with `status`.
    pub fn assert_status(&self, status: i32) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected exit status\n--- stdout ---\n{}--- stderr ---\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `zfsync-send ARGS` to completion (killed, and the test failed, after 300 s).
pub fn send(args: &[&str]) -> SendOutput {
    run_with_timeout(&sender_bin(), args, SEND_TIMEOUT)
}

/// Runs `program ARGS` with stdin closed, collecting stdout and stderr; kills it and
/// panics (with what it printed) if it runs longer than `timeout`.
pub fn run_with_timeout<S: AsRef<OsStr>>(
    program: &Path,
    args: &[S],
    timeout: Duration,
) -> SendOutput {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    // One reader thread per pipe: a child that fills the pipe we are not reading would
    // block forever.
    let readers: Vec<_> = [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ]
    .into_iter()
    .map(|mut pipe| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
    .collect();
    let status = wait_timeout(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut outs = readers.into_iter().map(|h| h.join().unwrap_or_default());
    let (stdout, stderr) = (
        outs.next().unwrap_or_default(),
        outs.next().unwrap_or_default(),
    );
    let Some(status) = status else {
        panic!(
            "{} {}: still running after {}s, killed\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
            program.display(),
            args.iter().map(|a| a.as_ref().to_string_lossy()).collect::<Vec<_>>().join(" "),
            timeout.as_secs()
        );
    };
    let status = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => -1,
    };
    SendOutput {
        status,
        stdout,
        stderr,
    }
}

// ---------------------------------------------------------------------------------------
// Reading a sender's summary

/// One row of `zfsync-send`'s summary table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    /// `sent`, `up-to-date`, `no-snapshots`, `would-send`, `refused:REASON`, `failed`.
    pub outcome: String,
    pub bytes: u64,
    pub note: String,
}

impl SendOutput {
    /// The summary table on stdout, by source dataset name. Panics (showing the output)
    /// if there is no table: a test that reads rows expects one.
    pub fn rows(&self) -> BTreeMap<String, SummaryRow> {
        let mut lines = self.stdout.lines();
        if !lines.by_ref().any(|l| l.starts_with("DATASET ")) {
            panic!(
                "no summary table on stdout\n--- stdout ---\n{}--- stderr ---\n{}",
                self.stdout, self.stderr
            );
        }
        let mut rows = BTreeMap::new();
        for line in lines {
            // Rows end at the cleanup note or the closing line, neither of which starts
            // with a dataset name followed by a known outcome.
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(ds), Some(outcome), Some(bytes)) = (f.first(), f.get(1), f.get(2)) else {
                continue;
            };
            let known = ["sent", "up-to-date", "no-snapshots", "would-send", "failed"];
            if !(known.contains(outcome) || outcome.starts_with("refused:")) {
                continue;
            }
            let Ok(bytes) = bytes.parse() else { continue };
            rows.insert(
                ds.to_string(),
                SummaryRow {
                    outcome: outcome.to_string(),
                    bytes,
                    note: f.get(4..).map(|n| n.join(" ")).unwrap_or_default(),
                },
            );
        }
        rows
    }

    /// The outcome of dataset `ds` in the summary; panics (showing the output) if absent.
    pub fn outcome(&self, ds: &str) -> String {
        match self.rows().remove(ds) {
            Some(row) => row.outcome,
            None => panic!(
                "{ds} is not in the summary\n--- stdout ---\n{}--- stderr ---\n{}",
                self.stdout, self.stderr
            ),
        }
    }

    /// The closing `zfsync-send: N datasets, ...` line; panics if there is none.
    pub fn final_line(&self) -> &str {
        self.stdout
            .lines()
            .rev()
            .find(|l| l.starts_with("zfsync-send: "))
            .unwrap_or_else(|| {
                panic!(
                    "no closing zfsync-send line\n--- stdout ---\n{}--- stderr ---\n{}",
                    self.stdout, self.stderr
                )
            })
    }
}

// ---------------------------------------------------------------------------------------
// Whole trees

/// `zfs snapshot -r ROOT@NAME`.
pub fn snapshot_tree(root: &str, name: &str) {
    zfs(&["snapshot", "-r", &format!("{root}@{name}")]);
}

/// Every filesystem at and below `root`, by path relative to it ("" for `root` itself),
/// with its own snapshots oldest first as (name, guid): one `zfs get -r` for the tree.
/// Two replicas are equal by name and GUID exactly when these maps are equal.
pub fn tree_snapshots(root: &str) -> BTreeMap<String, Vec<(String, u64)>> {
    try_tree_snapshots(root).unwrap_or_else(|e| panic!("{e}"))
}

/// [`tree_snapshots`] that returns an error instead of panicking (a dataset may vanish
/// between two zfs commands while zfs-fuse tears down a broken receive).
pub fn try_tree_snapshots(root: &str) -> Result<BTreeMap<String, Vec<(String, u64)>>, String> {
    let out = zfs_try(&[
        "get",
        "-Hp",
        "-r",
        "-o",
        "name,property,value",
        "guid,createtxg",
        root,
    ])?;
    // rel -> snapshot -> (createtxg, guid)
    let mut tree: BTreeMap<String, BTreeMap<String, (u64, u64)>> = BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [name, prop, value] = f[..] else {
            return Err(format!("zfs get: unexpected line {line:?}"));
        };
        let value: u64 = value
            .parse()
            .map_err(|_| format!("zfs get: {name} {prop}={value:?} is not a number"))?;
        let (ds, snap) = match name.split_once('@') {
            Some((d, s)) => (d, Some(s)),
            None => (name, None),
        };
        let rel = if ds == root {
            String::new()
        } else {
            match ds.strip_prefix(&format!("{root}/")) {
                Some(r) => r.to_string(),
                None => return Err(format!("zfs get -r {root} listed {name}")),
            }
        };
        let snaps = tree.entry(rel).or_default();
        if let Some(snap) = snap {
            let e = snaps.entry(snap.to_string()).or_default();
            match prop {
                "createtxg" => e.0 = value,
                "guid" => e.1 = value,
                _ => return Err(format!("zfs get: unexpected property in {line:?}")),
            }
        }
    }
    Ok(tree
        .into_iter()
        .map(|(rel, snaps)| {
            let mut v: Vec<(u64, String, u64)> =
                snaps.into_iter().map(|(n, (txg, g))| (txg, n, g)).collect();
            v.sort();
            (rel, v.into_iter().map(|(_, n, g)| (n, g)).collect())
        })
        .collect())
}

/// Writes a file into a filesystem that is not mounted (a receiver's, mountpoint=none):
/// mounts it at a temp dir, writes, and sets `mountpoint=none` again. Children of `ds`
/// inherit the mountpoint for that moment, so prefer a leaf.
pub fn write_file_unmounted(ds: &str, relpath: &str, bytes: &[u8]) {
    let dir = temp_dir("mnt");
    let dir_s = dir.to_str().expect("temp dir path is UTF-8");
    zfs(&["set", &format!("mountpoint={dir_s}"), ds]);
    // zfs-fuse mounts on `zfs set mountpoint`; mount explicitly if it did not.
    if zfs(&["get", "-H", "-o", "value", "mounted", ds]).trim() != "yes" {
        zfs(&["mount", ds]);
    }
    write_file(ds, relpath, bytes);
    if let Err(e) = zfs_retry_busy(&["set", "mountpoint=none", ds]) {
        panic!("{e}");
    }
    let _ = fs::remove_dir(&dir);
}

// ---------------------------------------------------------------------------------------
// Scripts

/// Path of `scripts/NAME` in this workspace (e.g. `script("zfsyncron")`); panics if it
/// does not exist.
pub fn script(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate lives inside the workspace")
        .join("scripts")
        .join(name);
    if !path.is_file() {
        panic!("{} not found", path.display());
    }
    path
}

// ---------------------------------------------------------------------------------------
// Fault injection: signals, fixed ports, a cutting and recording TCP proxy

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

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released):
/// for a receiver that must come up on an address the sender already knows.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
    l.local_addr()
        .expect("bound listener has an address")
        .port()
}

impl Receiver {
    /// `start`, but listening on 127.0.0.1:`port` (see `free_port`), so that a receiver
    /// can be restarted, or started late, on an address a sender is already using.
    pub fn start_on(port: u16, target: &str, extra_args: &[&str]) -> Receiver {
        // `spawn` passes `-l 127.0.0.1:0` first; a wrapper swaps it for the fixed port and
        // execs the receiver, so the pid is the receiver's own.
        let dir = temp_dir("recvport");
        let wrapper = dir.join("zfsync-recv");
        let real = receiver_bin();
        let text = format!(
            "#!/bin/sh\nshift 2\nexec '{}' -l 127.0.0.1:{port} \"$@\"\n",
            real.to_str().expect("binary path is UTF-8")
        );
        fs::write(&wrapper, text).unwrap_or_else(|e| panic!("write {}: {e}", wrapper.display()));
        let mut perm = fs::metadata(&wrapper)
            .unwrap_or_else(|e| panic!("stat {}: {e}", wrapper.display()))
            .permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        fs::set_permissions(&wrapper, perm)
            .unwrap_or_else(|e| panic!("chmod {}: {e}", wrapper.display()));
        Receiver::spawn(&wrapper, target, extra_args)
    }
}

/// What a proxied connection carried, each direction as forwarded.
#[derive(Clone, Debug, Default)]
pub struct ProxyRecord {
    /// Client (sender) to upstream (receiver).
    pub to_upstream: Vec<u8>,
    /// Upstream to client.
    pub to_client: Vec<u8>,
}

struct ProxyShared {
    upstream: String,
    stop: std::sync::atomic::AtomicBool,
    /// Cut a connection once this many bytes went client -> upstream (u64::MAX: never).
    cut_after: AtomicU64,
    /// Stall a connection (forward nothing more, either way, but keep it open) once this
    /// many bytes went client -> upstream (u64::MAX: never).
    stall_after: AtomicU64,
    record: std::sync::atomic::AtomicBool,
    cuts: AtomicU64,
    /// Every accepted connection: its two sockets (to shut them on drop) and its record.
    conns: std::sync::Mutex<Vec<(Vec<std::net::TcpStream>, ProxyRecord)>>,
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` (a receiver), for fault tests. It
/// forwards both directions as they come. Once a number of bytes has gone upstream on a
/// connection it can cut it (shut and close both sockets: both peers see the connection
/// end or reset) or stall it (forward nothing more, either way, and keep both sockets
/// open: a network that silently drops everything, so only timeouts help). It can record
/// the bytes of each connection (to replay them). Stopped on drop.
pub struct Proxy {
    addr: String,
    shared: std::sync::Arc<ProxyShared>,
    accept: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (`HOST:PORT`) that neither cuts nor records.
    pub fn start(upstream: &str) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("proxy: bind: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("proxy: {e}"));
        let addr = listener.local_addr().expect("bound").to_string();
        let shared = std::sync::Arc::new(ProxyShared {
            upstream: upstream.to_string(),
            stop: std::sync::atomic::AtomicBool::new(false),
            cut_after: AtomicU64::new(u64::MAX),
            stall_after: AtomicU64::new(u64::MAX),
            record: std::sync::atomic::AtomicBool::new(false),
            cuts: AtomicU64::new(0),
            conns: std::sync::Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let accept = thread::spawn(move || proxy_accept(listener, s));
        Proxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// The proxy's address: the sender's HOST:PORT argument.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// Cuts each later connection once `bytes` have gone upstream on it (`None`: never).
    pub fn cut_after(&self, bytes: Option<u64>) {
        self.shared
            .cut_after
            .store(bytes.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Stalls each later connection once `bytes` have gone upstream on it (`None`: never).
    pub fn stall_after(&self, bytes: Option<u64>) {
        self.shared
            .stall_after
            .store(bytes.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Records the bytes of each later connection (`records`).
    pub fn record(&self, on: bool) {
        self.shared.record.store(on, Ordering::SeqCst);
    }

    /// How many connections were cut so far.
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// What each connection carried so far, in the order they were accepted (empty
    /// records unless `record(true)` was set when they were accepted).
    pub fn records(&self) -> Vec<ProxyRecord> {
        let conns = self.shared.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.iter().map(|(_, r)| r.clone()).collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for (socks, _) in self
            .shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            for s in socks {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn proxy_accept(listener: std::net::TcpListener, shared: std::sync::Arc<ProxyShared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => {
                eprintln!("proxy: accept: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let _ = client.set_nonblocking(false);
        let upstream = match std::net::TcpStream::connect(&shared.upstream) {
            Ok(u) => u,
            Err(e) => {
                // Like a network without a route: the client sees its connection close.
                eprintln!("proxy: connect {}: {e}", shared.upstream);
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (
            client.try_clone(),
            upstream.try_clone(),
            client.try_clone(),
            upstream.try_clone(),
        ) else {
            continue;
        };
        let index = {
            let mut conns = shared.conns.lock().unwrap_or_else(|p| p.into_inner());
            conns.push((vec![c3, u3], ProxyRecord::default()));
            conns.len() - 1
        };
        let record = shared.record.load(Ordering::SeqCst);
        let limits = PumpLimits {
            cut: shared.cut_after.load(Ordering::SeqCst),
            stall: shared.stall_after.load(Ordering::SeqCst),
            stalled: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        let (s, l) = (shared.clone(), limits.clone());
        thread::spawn(move || proxy_pump(client, upstream, l, record, true, index, s));
        let s = shared.clone();
        let l = PumpLimits {
            cut: u64::MAX,
            stall: u64::MAX,
            ..limits
        };
        thread::spawn(move || proxy_pump(u2, c2, l, record, false, index, s));
    }
}

/// When a connection's client -> upstream pump cuts or stalls it; the other pump follows
/// the shared `stalled` flag.
#[derive(Clone)]
struct PumpLimits {
    cut: u64,
    stall: u64,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Forwards `from` -> `to` until EOF, an error, or a limit: after `cut` bytes it shuts
/// both sockets and closes every handle on them; after `stall` bytes (or once the other
/// direction stalled) it forwards nothing more and holds the sockets open until the proxy
/// stops.
fn proxy_pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    limits: PumpLimits,
    record: bool,
    upstream_bound: bool,
    index: usize,
    shared: std::sync::Arc<ProxyShared>,
) {
    let mut buf = vec![0u8; 64 << 10];
    let mut forwarded: u64 = 0;
    let limit = limits.cut.min(limits.stall);
    loop {
        if limits.stalled.load(Ordering::SeqCst) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        if limits.stalled.load(Ordering::SeqCst) {
            break;
        }
        let n = (n as u64).min(limit - forwarded) as usize;
        if to.write_all(&buf[..n]).is_err() {
            let _ = from.shutdown(std::net::Shutdown::Both);
            return;
        }
        forwarded += n as u64;
        if record {
            let mut conns = shared.conns.lock().unwrap_or_else(|p| p.into_inner());
            let r = &mut conns[index].1;
            let v = if upstream_bound {
                &mut r.to_upstream
            } else {
                &mut r.to_client
            };
            v.extend_from_slice(&buf[..n]);
        }
        if forwarded >= limits.cut {
            shared.cuts.fetch_add(1, Ordering::SeqCst);
            let _ = from.shutdown(std::net::Shutdown::Both);
            let _ = to.shutdown(std::net::Shutdown::Both);
            // Close the proxy's other handles too, so that a peer still writing gets a
            // reset rather than a connection that silently takes no more.
            let mut conns = shared.conns.lock().unwrap_or_else(|p| p.into_inner());
            conns[index].0.clear();
            return;
        }
        if forwarded >= limits.stall {
            limits.stalled.store(true, Ordering::SeqCst);
            break;
        }
    }
    // Stalled: hold both sockets, read nothing, until the proxy stops.
    while !shared.stop.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(20));
    }
}
