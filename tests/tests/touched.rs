//! Integration tests of replicas that people touch (issue 14 item 4): a replica that is
//! mounted and only read must stay a replica. Replicas are read-only, zfs-fuse (which
//! mounts what it receives) is refused a TARGET that would be mounted, and one dataset
//! changed by hand is recovered by a one-time permission its admin sets on it.

mod common;

use common::*;
use std::time::Duration;
use zfsync_tests::*;

/// Sends, and panics unless the run fails with the source's `rel` refused as diverged.
fn refused_again(s: &Setup, rel: &str) -> SendOutput {
    let out = s.send(&[]);
    out.assert_status(1);
    let outcome = out.outcome(&s.src_ds(rel));
    assert_eq!(outcome, "refused (diverged)", "{rel:?}: {}", out.stdout);
    out
}

/// Mounts `ds` at a temp dir, reads every file in it, and unmounts it again: what a user
/// restoring one file does.
fn mount_and_read(ds: &str) -> usize {
    let dir = temp_dir("browse");
    let dir_s = dir.to_str().expect("temp dir path is UTF-8");
    zfs(&["set", &format!("mountpoint={dir_s}"), ds]);
    if property(ds, "mounted").0 != "yes" {
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
    assert_eq!(
        property(&s.target, "readonly"),
        ("on".into(), "local".into())
    );
    for rel in ["a", "a/x/deep", "b/y"] {
        let (value, source) = property(&s.dst_ds(rel), "readonly");
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
    assert_eq!(
        property(&s.target, "readonly"),
        ("on".into(), "local".into())
    );
    assert_eq!(property(&s.dst_ds("kid"), "readonly").0, "on");
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
        assert_eq!(
            out.status, 2,
            "{how}: not a configuration error\n{}",
            out.stdout
        );
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

// issue 14 item 4: one dataset changed by hand on the backup host (readonly turned off,
// mounted, written to) and another given a snapshot of its own are refused; their admin
// allows each one rollback with `zfsync:rollback=once`, without opening rollbacks for
// every dataset; the next run rolls them back and receives, the summary says what was
// destroyed, the permission is gone, and the next change by hand is refused again.
#[test]
fn a_replica_changed_by_hand_is_recovered_by_a_one_time_permission() {
    let s = initial_sync("once");
    let written = s.dst_ds("b/y");
    let snapped = s.dst_ds("a/x/deep");
    write_file_unmounted(&written, "local.txt", b"written on the backup host\n");
    snapshot(&format!("{snapped}@mine"));
    s.change(3);
    snapshot_tree(&s.root, "s4");

    let out = s.send(&[]);
    out.assert_status(1);
    let rows = out.rows();
    for ds in [&written, &snapped] {
        let row = &rows[&ds.replace(&s.target, &s.root)];
        assert_eq!(row.outcome, "refused (diverged)", "{ds}: {}", out.stdout);
        let remedy = format!("zfs set zfsync:rollback=once {ds}");
        assert!(row.note.contains(&remedy), "{ds}: {}", out.stdout);
    }
    assert_final(&out, TREE.len(), TREE.len() - 2, 2);

    // A permission set on a parent is not one for its children.
    zfs(&["set", "zfsync:rollback=once", &s.dst_ds("b")]);
    let _ = refused_again(&s, "b/y");
    zfs(&["inherit", "zfsync:rollback", &s.dst_ds("b")]);

    for ds in [&written, &snapped] {
        zfs(&["set", "zfsync:rollback=once", ds]);
    }
    let out = s.send(&[]);
    out.assert_ok();
    let rows = out.rows();
    let note = |ds: &str| rows[&ds.replace(&s.target, &s.root)].note.clone();
    assert!(
        note(&written).starts_with(
            "rolled back to @s3 (no snapshot destroyed; zfsync:rollback=once), incremental @s3..@s4"
        ),
        "{}",
        out.stdout
    );
    assert!(
        note(&snapped).starts_with("rolled back to @s3 (destroying @mine; zfsync:rollback=once)"),
        "{}",
        out.stdout
    );
    for ds in [&written, &snapped] {
        assert_eq!(
            property(ds, "zfsync:rollback").0,
            "-",
            "{ds}: the permission is left"
        );
    }
    assert_same_snapshots(&s.root, &s.target);
    assert_same_files(&s.root, &s.target, "s4");
    assert!(
        s.recv.log().contains("cleared zfsync:rollback=once"),
        "{}",
        s.recv.log()
    );

    // Used up: the next change by hand is refused again.
    write_file_unmounted(&written, "again.txt", b"and again\n");
    s.change(4);
    snapshot_tree(&s.root, "s5");
    let out = refused_again(&s, "b/y");
    assert_final(&out, TREE.len(), TREE.len() - 1, 1);
}
