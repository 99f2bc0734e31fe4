//! Integration tests of the receiver's refusals (issue 2): a destination that has
//! snapshots or changes of its own, one that shares no snapshot with the source, and a
//! TARGET that is not a replica are refused, the refused dataset is left exactly as it
//! was, and the other datasets of the tree are still sent. Only a receiver started with
//! `--allow-rollback` destroys anything, and then only what it must.

mod common;

use common::*;
use std::collections::BTreeMap;
use zfsync_tests::*;

/// A receiver dataset's state that a refusal must leave alone: its snapshots by name and
/// GUID, and the files in its newest one.
type State = (Vec<(String, u64)>, BTreeMap<String, Vec<u8>>);

fn state_of(ds: &str) -> State {
    let snaps = snapshot_guids(ds);
    let (newest, _) = snaps.last().expect("dataset has snapshots");
    let files = files_of(&format!("{ds}@{newest}"));
    (snaps, files)
}

// issue 2: a snapshot made on the receiver is divergence: refused, nothing destroyed,
// the rest of the tree still sent; --allow-rollback then converges.
#[test]
fn receiver_side_snapshot_is_refused_without_loss_until_rollback_is_allowed() {
    let mut s = initial_sync("div");
    let diverged = s.dst_ds("b/y");
    write_file_unmounted(&diverged, "local.txt", b"made on the receiver\n");
    snapshot(&format!("{diverged}@local"));
    let (snaps_before, files_before) = state_of(&diverged);
    assert!(files_before.contains_key("local.txt"));
    assert_eq!(snaps_before.len(), 4);

    s.change(3);
    snapshot_tree(&s.root, "s4");
    let out = s.send(&[]);
    out.assert_status(1);
    let rows = out.rows();
    let row = &rows[&s.src_ds("b/y")];
    assert_eq!(row.outcome, "refused:Diverged", "{}", out.stdout);
    assert!(row.note.contains("local"), "{}", out.stdout);
    for rel in TREE.iter().filter(|r| **r != "b/y") {
        assert_eq!(
            rows[&s.src_ds(rel)].outcome,
            "sent",
            "{rel:?}: {}",
            out.stdout
        );
    }
    assert_final(&out, TREE.len(), TREE.len() - 1, 1);

    // Nothing destroyed, nothing rolled back, nothing received into it.
    assert_eq!(state_of(&diverged), (snaps_before.clone(), files_before));
    let mut src = tree_snapshots(&s.root);
    let mut dst = tree_snapshots(&s.target);
    assert_eq!(dst.remove("b/y"), Some(snaps_before));
    src.remove("b/y");
    assert_eq!(src, dst, "the other datasets got s4");

    // A receiver that may roll back destroys the local snapshot, and only that.
    s.restart_receiver(&["--allow-rollback"]);
    let out = s.send(&[]);
    out.assert_ok();
    let rows = out.rows();
    assert_eq!(rows[&s.src_ds("b/y")].outcome, "sent", "{}", out.stdout);
    assert!(
        rows[&s.src_ds("b/y")].note.contains("incremental @s3..@s4"),
        "{}",
        out.stdout
    );
    // issue 14 item 4: the summary names the rollback and what it destroyed.
    assert!(
        rows[&s.src_ds("b/y")]
            .note
            .starts_with("rolled back to @s3 (destroying @local; --allow-rollback)"),
        "{}",
        out.stdout
    );
    for rel in TREE.iter().filter(|r| **r != "b/y") {
        assert_eq!(rows[&s.src_ds(rel)].outcome, "up-to-date", "{}", out.stdout);
    }
    assert_same_snapshots(&s.root, &s.target);
    assert_same_files(&s.root, &s.target, "s4");
    assert!(s.recv.log().contains("rolling back"), "{}", s.recv.log());
}

// issue 2: changes made on the receiver without a snapshot are divergence too: the
// receive is refused and the changes stay until rolling back is allowed.
#[test]
fn receiver_side_changes_are_refused_without_loss_until_rollback_is_allowed() {
    let mut s = initial_sync("mod");
    let modified = s.dst_ds("a/x/deep");
    write_file_unmounted(&modified, "local.txt", b"changed on the receiver\n");
    let snaps_before = snapshot_guids(&modified);

    s.change(3);
    snapshot_tree(&s.root, "s4");
    let out = s.send(&[]);
    out.assert_status(1);
    let rows = out.rows();
    let row = &rows[&s.src_ds("a/x/deep")];
    assert_eq!(row.outcome, "refused:Diverged", "{}", out.stdout);
    assert!(row.note.contains("modified"), "{}", out.stdout);
    for rel in TREE.iter().filter(|r| **r != "a/x/deep") {
        assert_eq!(
            rows[&s.src_ds(rel)].outcome,
            "sent",
            "{rel:?}: {}",
            out.stdout
        );
    }
    assert_final(&out, TREE.len(), TREE.len() - 1, 1);
    assert_eq!(snapshot_guids(&modified), snaps_before);
    // The change is still there: a snapshot taken now holds it.
    snapshot(&format!("{modified}@check"));
    let files = files_of(&format!("{modified}@check"));
    assert_eq!(
        files.get("local.txt").map(Vec::as_slice),
        Some(&b"changed on the receiver\n"[..])
    );
    zfs(&["destroy", &format!("{modified}@check")]);
    // And it is still modified: set it back up as it was before the check.
    write_file_unmounted(&modified, "local2.txt", b"x");

    s.restart_receiver(&["--allow-rollback"]);
    let out = s.send(&[]);
    out.assert_ok();
    assert_eq!(out.outcome(&s.src_ds("a/x/deep")), "sent", "{}", out.stdout);
    let note = &out.rows()[&s.src_ds("a/x/deep")].note;
    assert!(
        note.starts_with("rolled back to @s3 (no snapshot destroyed; --allow-rollback)"),
        "{}",
        out.stdout
    );
    assert_same_snapshots(&s.root, &s.target);
    assert_same_files(&s.root, &s.target, "s4");
}

// issue 2: a dataset of the same name with snapshots of the same names but other GUIDs is
// not a replica of the source: refused, untouched, even with --allow-rollback.
#[test]
fn same_names_other_guids_is_no_common_snapshot_and_left_alone() {
    let mut s = initial_sync("nocom");
    let other = s.dst_ds("a/x");
    // Replace the replica of a/x (and its child) by an unrelated dataset whose snapshots
    // have the source's names.
    zfs(&["destroy", "-r", &other]);
    create(&other);
    write_file_unmounted(&other, "unrelated.txt", b"not from the source\n");
    for n in ["s1", "s2", "s3"] {
        snapshot(&format!("{other}@{n}"));
    }
    let before = state_of(&other);
    let names: Vec<&str> = before.0.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["s1", "s2", "s3"]);

    s.change(3);
    snapshot_tree(&s.root, "s4");
    for recv_args in [&[][..], &["--allow-rollback"][..]] {
        s.restart_receiver(recv_args);
        let out = s.send(&[]);
        out.assert_status(1);
        let rows = out.rows();
        assert_eq!(
            rows[&s.src_ds("a/x")].outcome,
            "refused:NoCommonSnapshot",
            "receiver {recv_args:?}: {}",
            out.stdout
        );
        assert_final(
            &out,
            TREE.len(),
            if recv_args.is_empty() {
                TREE.len() - 1
            } else {
                0
            },
            1,
        );
        assert_eq!(state_of(&other), before, "receiver {recv_args:?}");
    }
    // The others got s4; a/x/deep, whose parent was replaced, arrived anew below it.
    for rel in ["", "a", "b", "b/y", "a/x/deep"] {
        assert_eq!(
            snapshot_guids(&s.dst_ds(rel)),
            snapshot_guids(&s.src_ds(rel)),
            "{rel:?}"
        );
    }
}

// issue 2: an existing TARGET that was not made by a receive (no snapshots, user data)
// is refused and keeps its data.
#[test]
fn existing_target_that_is_not_a_replica_is_refused_and_keeps_its_files() {
    let s = Setup::new("notrep");
    s.populate();
    snapshot_tree(&s.root, "s1");
    create(&s.target);
    write_file_unmounted(&s.target, "precious.txt", b"user data\n");

    let out = s.send(&[]);
    out.assert_status(1);
    let row = &out.rows()[&s.root];
    assert_eq!(row.outcome, "refused:NotReplica", "{}", out.stdout);
    assert!(row.note.contains("no snapshots"), "{}", out.stdout);
    // Its children are refused too: nothing grows inside a dataset that was refused.
    for (ds, row) in out.rows() {
        assert_eq!(row.outcome, "refused:NotReplica", "{ds}: {}", out.stdout);
    }
    assert_eq!(
        list_datasets(&s.target),
        vec![s.target.clone()],
        "children landed in the refused target"
    );
    assert_eq!(snapshot_guids(&s.target), Vec::<(String, u64)>::new());
    // Check the file through a snapshot taken now.
    snapshot(&format!("{}@check", s.target));
    let files = files_of(&format!("{}@check", s.target));
    assert_eq!(
        files.get("precious.txt").map(Vec::as_slice),
        Some(&b"user data\n"[..]),
        "{files:?}"
    );
}

// A snapshot made on the receiver that holds no changes is divergence too, also for a
// receiver just started: zfs recv itself would take the incremental over it (and keep
// it), so only the receiver's look at the destination's snapshots refuses it.
#[test]
fn receiver_side_snapshot_without_changes_is_refused_after_a_restart() {
    let mut s = initial_sync("noop");
    let diverged = s.dst_ds("b/y");
    snapshot(&format!("{diverged}@noop"));
    let before = snapshot_guids(&diverged);
    s.change(3);
    snapshot_tree(&s.root, "s4");
    s.restart_receiver(&[]);
    let out = s.send(&[]);
    out.assert_status(1);
    let row = &out.rows()[&s.src_ds("b/y")];
    assert_eq!(row.outcome, "refused:Diverged", "{}", out.stdout);
    assert!(
        row.note
            .contains("after the common snapshot s3 that the source does not have: noop"),
        "{}",
        out.stdout
    );
    assert_final(&out, TREE.len(), TREE.len() - 1, 1);
    assert_eq!(snapshot_guids(&diverged), before);
    for rel in TREE.iter().filter(|r| **r != "b/y") {
        assert_eq!(
            snapshot_guids(&s.dst_ds(rel)),
            snapshot_guids(&s.src_ds(rel)),
            "{rel:?}"
        );
    }
}
