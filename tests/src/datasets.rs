//! Making and changing datasets, snapshots and files for a test.
//!
//! Owns: `create`, `snapshot`, `snapshot_tree`, zfsync's snapshot names written out by GNU
//! date (`zfsync_name_at`, never by zfsync's code), writing files into a mounted filesystem
//! (`write_file`) or into one that is not (`write_file_unmounted`), reproducible test
//! data (`random_bytes`), and the small tree many tests start from (`data_and_kid`).
//! Must not: read back what a pool holds (`inspect` does, without touching the
//! datasets), or create or destroy pools.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use crate::inspect::property;
use crate::pool::Pool;
use crate::scratch::temp_dir;
use crate::zfs_cmd::{zfs, zfs_retry_busy};

/// `zfs create -p DS`.
pub fn create(ds: &str) {
    zfs(&["create", "-p", ds]);
}

/// `POOL/data` and `POOL/data/kid`, each holding a file: the smallest tree with a child.
/// Returns their names.
pub fn data_and_kid(pool: &Pool) -> (String, String) {
    let data = pool.ds("data");
    let kid = pool.ds("data/kid");
    create(&kid);
    write_file(&data, "a.txt", b"alpha");
    write_file(&kid, "k.bin", &random_bytes(4096, 1));
    (data, kid)
}

/// `zfsync_YYYY-MM-DDThh:mm:ssZ` of `secs` (unix seconds), from GNU date: the name
/// `zfsync snapshot` gives a snapshot taken then, worked out apart from zfsync's code.
pub fn zfsync_name_at(secs: u64) -> String {
    let out = std::process::Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{secs}"),
            "+zfsync_%Y-%m-%dT%H:%M:%SZ",
        ])
        .output()
        .expect("run date");
    assert!(out.status.success(), "date -d @{secs} failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `zfs snapshot DS@SNAP`.
pub fn snapshot(snap: &str) {
    assert!(snap.contains('@'), "snapshot({snap:?}): want DATASET@SNAP");
    zfs(&["snapshot", snap]);
}

/// `zfs snapshot -r ROOT@NAME`.
pub fn snapshot_tree(root: &str, name: &str) {
    zfs(&["snapshot", "-r", &format!("{root}@{name}")]);
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

/// Writes a file into a filesystem that is not mounted (a receiver's, mountpoint=none):
/// mounts it at a temp dir, writes, and sets `mountpoint=none` again. Children of `ds`
/// inherit the mountpoint for that moment, so prefer a leaf. A replica is read-only: as
/// an admin who means to write would, this turns `readonly` off for the write and puts
/// it back as it was (setting a property changes no data).
pub fn write_file_unmounted(ds: &str, relpath: &str, bytes: &[u8]) {
    let dir = temp_dir("mnt");
    let dir_s = dir.to_str().expect("temp dir path is UTF-8");
    let (readonly, source) = property(ds, "readonly");
    if readonly == "on" {
        zfs(&["set", "readonly=off", ds]);
    }
    zfs(&["set", &format!("mountpoint={dir_s}"), ds]);
    // zfs-fuse mounts on `zfs set mountpoint`; mount explicitly if it did not.
    if zfs(&["get", "-H", "-o", "value", "mounted", ds]).trim() != "yes" {
        zfs(&["mount", ds]);
    }
    write_file(ds, relpath, bytes);
    if let Err(e) = zfs_retry_busy(&["set", "mountpoint=none", ds]) {
        panic!("{e}");
    }
    match source.as_str() {
        "local" => zfs(&["set", &format!("readonly={readonly}"), ds]),
        _ => zfs(&["inherit", "readonly", ds]),
    };
    let _ = fs::remove_dir(&dir);
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
