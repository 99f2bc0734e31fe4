//! Integration tests of replicas that people touch (issue 14 item 4): a replica that is
//! mounted and only read must stay a replica. Replicas are read-only, zfs-fuse (which
//! mounts what it receives) is refused a TARGET that would be mounted, and one dataset
//! changed by hand is recovered by a one-time permission its admin sets on it.

mod common;

use common::*;
use std::time::Duration;
use zfsync_tests::*;

/// `zfs get -H -o value,source PROP DS` as (value, source).
fn prop(ds: &str, prop: &str) -> (String, String) {
    let out = zfs(&["get", "-H", "-o", "value,source", prop, ds]);
    let (value, source) = out
        .trim_end()
        .split_once('\t')
        .unwrap_or_else(|| panic!("zfs get {prop} {ds}: {out:?}"));
    (value.to_string(), source.to_string())
}

/// Mounts `ds` at a temp dir, reads every file in it, and unmounts it again: what a user
/// restoring one file does.
fn mount_and_read(ds: &str) -> usize {
    let dir = temp_dir("browse");
    let dir_s = dir.to_str().expect("temp dir path is UTF-8");
    zfs(&["set", &format!("mountpoint={dir_s}"), ds]);
    if prop(ds, "mounted").0 != "yes" {
        zfs(&["mount", ds]);
    }
    let mut read = 0;
    for entry in std::fs::read_dir(&dir)
        .expect("read the mounted replica")
        .flatten()
    {
        if entry.path().is_file() {
            read += std::fs::read(entry.path()).expect("read a file").len();
        }
    }
    let mut tries = 0;
    while let Err(e) = zfs_try(&["set", "mountpoint=none", ds]) {
        tries += 1;
        assert!(e.contains("busy") && tries < 50, "{e}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir(&dir);
    read
}

// issue 14 item 4: the first full receive makes TARGET read-only, everything below
// inherits it, and a replica mounted to read a file from it still takes the next
// incremental.
#[test]
fn a_replica_is_read_only_and_reading_it_breaks_nothing() {
    let s = initial_sync("ronly");
    assert_eq!(prop(&s.target, "readonly"), ("on".into(), "local".into()));
    for rel in ["a", "a/x/deep", "b/y"] {
        let (value, source) = prop(&s.dst_ds(rel), "readonly");
        assert_eq!(value, "on", "{rel:?}");
        assert!(source.starts_with("inherited"), "{rel:?}: {source}");
    }
    let read = mount_and_read(&s.dst_ds("b/y"));
    assert!(read > 0, "nothing was read: the test proves nothing");

    s.change(3);
    snapshot_tree(&s.root, "s4");
    let out = s.send(&[]);
    out.assert_ok();
    assert_eq!(out.outcome(&s.src_ds("b/y")), "sent", "{}", out.stdout);
    assert_same_snapshots(&s.root, &s.target);
}

// issue 14 item 4: a TARGET the receiver makes as a placeholder (the source's root has no
// snapshots) is read-only too.
#[test]
fn a_placeholder_target_is_read_only() {
    let s = Setup::bare("rophold", &[]);
    create(&s.src_ds("kid"));
    snapshot(&format!("{}@s1", s.src_ds("kid")));
    s.send(&[]).assert_ok();
    assert_eq!(prop(&s.target, "readonly"), ("on".into(), "local".into()));
    assert_eq!(prop(&s.dst_ds("kid"), "readonly").0, "on");
}

// issue 14 item 4: zfs-fuse mounts what it receives (it has no `zfs recv -u`): a
// receiver whose TARGET would be mounted does not start, and says how to fix it;
// `canmount=off` on the parent is no fix (TARGET still inherits its mountpoint).
#[test]
fn a_target_that_would_be_mounted_is_refused_at_start() {
    if zfs_try(&["version"]).is_ok() {
        println!("skipped: this ZFS receives without mounting (zfs recv -u)");
        return;
    }
    let pool = Pool::new("mntpar");
    let parent = pool.ds("hosts");
    create(&parent);
    let target = pool.ds("hosts/backup");
    let zfs_bin = zfs_bin();
    let start = |args: &[&str]| {
        let mut all = vec!["-l", "127.0.0.1:0", "--zfs", zfs_bin.as_str()];
        all.extend_from_slice(args);
        all.push(target.as_str());
        run_with_timeout(&receiver_bin(), &all, Duration::from_secs(30))
    };
    for how in ["mounted", "canmount=off"] {
        if how != "mounted" {
            zfs(&["set", how, &parent]);
        }
        let out = start(&[]);
        assert_ne!(out.status, 0, "{how}: the receiver started\n{}", out.stdout);
        assert!(
            !out.stdout.contains("listening on"),
            "{how}: {}",
            out.stdout
        );
        let remedy = format!("zfs set mountpoint=none {parent}");
        assert!(out.stderr.contains(&remedy), "{how}: {}", out.stderr);
        assert!(!exists(&target), "{how}: TARGET was made");
    }
    zfs(&["set", "mountpoint=none", &parent]);
    let recv = start_receiver(&target, &[]);
    assert!(recv.addr().starts_with("127.0.0.1:"));
}
