//! Reading what a pool holds, without changing it: names, snapshot GUIDs, files.
//!
//! Owns: `exists`, `property`, `list_datasets`, the snapshot listings (`snapshot_guids` for one
//! dataset, `tree_snapshots` for a tree, compared by name and GUID) and `files_of`, which
//! reads a snapshot through a read-only clone it destroys again. Must not: mount, modify
//! or roll back the datasets it reads, or leave a clone behind (`CloneGuard`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::scratch::{next_id, temp_dir};
use crate::zfs_cmd::{zfs, zfs_retry_busy, zfs_try};

/// A property of a dataset as (value, source): `zfs get -H -o value,source`, the source
/// being `local`, `inherited from X`, `default`, `received` or `-`.
pub fn property(ds: &str, prop: &str) -> (String, String) {
    let out = zfs(&["get", "-H", "-o", "value,source", prop, ds]);
    let (value, source) = out
        .trim_end()
        .split_once('\t')
        .unwrap_or_else(|| panic!("zfs get {prop} {ds}: unexpected output {out:?}"));
    (value.to_string(), source.to_string())
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
