//! Integration tests of what a run replicates (issue 14): datasets left out by
//! `--exclude` and the `zfsync:sync` property, and snapshots chosen by name. Each runs
//! the real binaries against real zfs-fuse pools and checks the receiver by GUID.

mod common;

use common::*;
use std::collections::BTreeSet;
use zfsync_tests::*;

/// Every snapshot GUID anywhere in `pool` (the replicas, the buffer, any placeholder).
fn guids_in(pool: &str) -> BTreeSet<u64> {
    tree_snapshots(pool)
        .into_values()
        .flatten()
        .map(|(_, guid)| guid)
        .collect()
}

/// The GUID of `ds@snap`.
fn guid_of(ds: &str, snap: &str) -> u64 {
    snapshot_guids(ds)
        .into_iter()
        .find(|(n, _)| n == snap)
        .unwrap_or_else(|| panic!("{ds}@{snap} does not exist"))
        .1
}

// issue 14 item 7: --exclude leaves out what a pattern matches and its subtree;
// zfsync:sync=off leaves out a dataset and what inherits it, a child setting it on again
// is sent; the dry run names each dataset left out and why.
#[test]
fn excluded_datasets_stay_on_the_source_and_the_dry_run_says_why() {
    let s = Setup::bare("excl", &[]);
    let sent = ["", "keep", "home", "tmp/back"];
    let left_out = ["scratch", "scratch/sub", "home/cache", "tmp", "tmp/x"];
    for rel in sent.iter().chain(&left_out) {
        create(&s.src_ds(rel));
    }
    zfs(&["set", "zfsync:sync=off", &s.src_ds("tmp")]);
    zfs(&["set", "zfsync:sync=on", &s.src_ds("tmp/back")]);
    snapshot_tree(&s.root, "s1");
    let exclude = ["--exclude", "scratch", "--exclude", "*/cache"];

    let dry = s.send(&[&["-n"][..], &exclude].concat());
    dry.assert_ok();
    let root = &s.root;
    for line in [
        format!("excluded: {root}/scratch (--exclude scratch)"),
        format!("excluded: {root}/scratch/sub (--exclude scratch matches {root}/scratch)"),
        format!("excluded: {root}/home/cache (--exclude */cache)"),
        format!("excluded: {root}/tmp (zfsync:sync=off)"),
        format!("excluded: {root}/tmp/x (zfsync:sync=off, inherited from {root}/tmp)"),
    ] {
        assert!(
            dry.stdout.lines().any(|l| l == line),
            "no line {line:?}\n--- stdout ---\n{}",
            dry.stdout
        );
    }
    // tmp is left out, but tmp/back needs a parent: it is offered without snapshots, for
    // a placeholder that holds none of tmp's data.
    let rows = dry.rows();
    let would: BTreeSet<&String> = rows.keys().collect();
    let want: Vec<String> = sent
        .iter()
        .chain(&["tmp"])
        .map(|rel| s.src_ds(rel))
        .collect();
    assert_eq!(would, want.iter().collect(), "{}", dry.stdout);
    assert_eq!(
        rows[&s.src_ds("tmp")].note,
        "would make a placeholder on the receiver",
        "{}",
        dry.stdout
    );
    assert!(!exists(&s.target), "a dry run created {}", s.target);

    let out = s.send(&exclude);
    out.assert_ok();
    for rel in sent {
        assert_eq!(out.outcome(&s.src_ds(rel)), "sent", "{rel:?}");
    }
    assert_final(&out, sent.len() + 1, sent.len(), 0);
    assert_eq!(out.outcome(&s.src_ds("tmp")), "no-snapshots");
    assert!(
        !out.stdout.contains("excluded:"),
        "only a dry run lists what is left out:\n{}",
        out.stdout
    );
    let on_receiver = guids_in(&s.dst.name);
    for rel in sent {
        let guid = guid_of(&s.src_ds(rel), "s1");
        assert!(on_receiver.contains(&guid), "{rel:?} did not arrive");
    }
    for rel in left_out {
        let guid = guid_of(&s.src_ds(rel), "s1");
        assert!(!on_receiver.contains(&guid), "{rel:?} arrived");
    }
    // Everything sent is in place, tmp/back below a placeholder without snapshots.
    assert_eq!(
        snapshot_guids(&s.dst_ds("tmp")),
        Vec::<(String, u64)>::new()
    );
    for rel in ["", "keep", "home", "tmp/back"] {
        assert_eq!(
            snapshot_guids(&s.dst_ds(rel)),
            snapshot_guids(&s.src_ds(rel)),
            "{rel:?}"
        );
    }
}

/// Writes a file named after `snap` into `ds` and takes `ds@snap`, so that every snapshot
/// holds something the one before it lacks.
fn change_and_snapshot(ds: &str, snap: &str) {
    write_file(
        ds,
        &format!("{snap}.txt"),
        format!("{ds}@{snap}\n").as_bytes(),
    );
    write_file(ds, "latest.bin", &random_bytes(32 << 10, snap.len() as u64));
    snapshot(&format!("{ds}@{snap}"));
}

/// The (name, GUID) of `ds`'s snapshots that `keep` keeps, oldest first.
fn kept_snapshots(ds: &str, keep: impl Fn(&str) -> bool) -> Vec<(String, u64)> {
    snapshot_guids(ds)
        .into_iter()
        .filter(|(name, _)| keep(name))
        .collect()
}

// issue 14 item 8: --include-snaps sends only the matching snapshots; a manual snapshot
// between two of them is stepped over (zfs send -i), so the receiver has exactly the
// matching ones, with the source's GUIDs and files, and the next run goes on from them.
#[test]
fn only_the_snapshots_that_match_are_sent_and_the_next_run_goes_on_from_them() {
    let s = Setup::bare("snapflt", &[]);
    let ds = s.root.clone();
    for snap in [
        "zfsync_1",
        "before-upgrade",
        "zfsync_2",
        "zfsync_3",
        "zfsync_4",
    ] {
        change_and_snapshot(&ds, snap);
    }
    let filter = ["--include-snaps", "zfsync_*"];
    let zfsync = |name: &str| name.starts_with("zfsync_");

    let out = s.send(&filter);
    out.assert_ok();
    assert_eq!(
        out.rows()[&ds].note,
        "full @zfsync_1, incremental @zfsync_1..@zfsync_2 (1 snapshot), \
         incremental @zfsync_2..@zfsync_4 (2 snapshots)",
        "{}",
        out.stdout
    );
    assert_eq!(snapshot_guids(&s.target), kept_snapshots(&ds, zfsync));
    for snap in ["zfsync_1", "zfsync_2", "zfsync_4"] {
        let want = files_of(&format!("{ds}@{snap}"));
        let got = files_of(&format!("{}@{snap}", s.target));
        assert_files_eq(&want, &got, snap);
    }

    // The next run: a manual snapshot after the base's next one costs an extra step.
    for snap in ["zfsync_5", "manual", "zfsync_6"] {
        change_and_snapshot(&ds, snap);
    }
    let out = s.send(&filter);
    out.assert_ok();
    assert_eq!(
        out.rows()[&ds].note,
        "incremental @zfsync_4..@zfsync_5 (1 snapshot), \
         incremental @zfsync_5..@zfsync_6 (1 snapshot)",
        "{}",
        out.stdout
    );
    assert_eq!(snapshot_guids(&s.target), kept_snapshots(&ds, zfsync));
    let want = files_of(&format!("{ds}@zfsync_6"));
    assert_files_eq(
        &want,
        &files_of(&format!("{}@zfsync_6", s.target)),
        "zfsync_6",
    );

    // Nothing new that is sent: up to date, whatever manual snapshots came since. The
    // same snapshots, chosen by what is left out this time.
    change_and_snapshot(&ds, "manual-2");
    let out = s.send(&["--exclude-snaps", "manual*", "--exclude-snaps", "before-*"]);
    out.assert_ok();
    assert_eq!(out.outcome(&ds), "up-to-date", "{}", out.stdout);
}

// issue 14 item 9: zfs-fuse's zfs recv has no -x and applies every property a stream
// carries (it mounts at a received mountpoint at once): --props is refused there, before
// anything is sent, with the reason. Without --props no property travels.
#[test]
fn props_are_refused_on_zfs_fuse_and_not_sent_without_the_option() {
    let s = Setup::bare("props", &[]);
    zfs(&["set", "compression=on", &s.root]);
    zfs(&["set", "zfsync:probe=kept", &s.root]);
    snapshot(&format!("{}@s1", s.root));

    let out = s.send(&["--props"]);
    out.assert_status(2);
    assert!(
        out.stderr.contains("--props is refused on this ZFS") && out.stderr.contains("no -x"),
        "{}",
        out.stderr
    );
    assert!(!exists(&s.target), "something was received");

    let out = s.send(&[]);
    out.assert_ok();
    assert_eq!(snapshot_guids(&s.target), snapshot_guids(&s.root));
    for prop in ["compression", "zfsync:probe"] {
        let source = zfs(&["get", "-H", "-o", "source", prop, &s.target]);
        assert!(
            !source.contains("received") && !source.contains("local"),
            "{prop} came with the stream: {source}"
        );
    }
}
