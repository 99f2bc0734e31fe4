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
    let rows = dry.rows();
    let would: BTreeSet<&String> = rows.keys().collect();
    let want: Vec<String> = sent.iter().map(|rel| s.src_ds(rel)).collect();
    assert_eq!(would, want.iter().collect(), "{}", dry.stdout);
    assert!(!exists(&s.target), "a dry run created {}", s.target);

    let out = s.send(&exclude);
    out.assert_ok();
    for rel in sent {
        assert_eq!(out.outcome(&s.src_ds(rel)), "sent", "{rel:?}");
    }
    assert_final(&out, sent.len(), sent.len(), 0);
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
    // The parents that were sent are in place; tmp/back's parent was left out, so it
    // waits for one (in the buffer, or below a placeholder that has none of tmp's data).
    for rel in ["", "keep", "home"] {
        assert_eq!(
            snapshot_guids(&s.dst_ds(rel)),
            snapshot_guids(&s.src_ds(rel)),
            "{rel:?}"
        );
    }
}
