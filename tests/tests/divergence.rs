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
    assert_eq!(row.outcome, "refused (diverged)", "{}", out.stdout);
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
    assert_eq!(row.outcome, "refused (diverged)", "{}", out.stdout);
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
            "refused (no common snapshot)",
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
    assert_eq!(row.outcome, "refused (not a replica)", "{}", out.stdout);
    assert!(row.note.contains("no snapshots"), "{}", out.stdout);
    // The receiver's log says it in the same words as the summary.
    let log = s.recv.log();
    assert!(
        log.contains("offer refused ") && log.contains(" reason=\"not a replica\" "),
        "{log}"
    );
    // Its children are refused too: nothing grows inside a dataset that was refused.
    for (ds, row) in out.rows() {
        assert_eq!(
            row.outcome, "refused (not a replica)",
            "{ds}: {}",
            out.stdout
        );
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
    let (s, diverged, out) = refused_for_a_snapshot_made_on_the_receiver("noop", "noop");
    let before = snapshot_guids(&diverged);
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

/// The standard tree sent; then snapshot `snap` made on the receiver's b/y (no changes),
/// the source changed and snapshotted (s4), the receiver restarted (its next listing is
/// taken afresh, with `snap`), and the tree sent again. Checks that b/y was refused as
/// diverged for `snap`; returns the set-up, b/y's replica and the run's output.
fn refused_for_a_snapshot_made_on_the_receiver(
    tag: &str,
    snap: &str,
) -> (Setup, String, SendOutput) {
    let mut s = initial_sync(tag);
    let diverged = s.dst_ds("b/y");
    snapshot(&format!("{diverged}@{snap}"));
    s.change(3);
    snapshot_tree(&s.root, "s4");
    s.restart_receiver(&[]);
    let out = s.send(&[]);
    out.assert_status(1);
    let row = &out.rows()[&s.src_ds("b/y")];
    assert_eq!(row.outcome, "refused (diverged)", "{}", out.stdout);
    let why = format!("after the common snapshot s3 that the source does not have: {snap};");
    assert!(row.note.contains(&why), "{}", out.stdout);
    (s, diverged, out)
}

/// Panics unless every dataset of `out` below the sent root `root` was refused with
/// `reason`, saying that the root was.
fn assert_children_refused_with_the_root(out: &SendOutput, root: &str, reason: &str) {
    let rows = out.rows();
    let children: Vec<_> = rows.iter().filter(|(ds, _)| *ds != root).collect();
    assert!(!children.is_empty(), "{}", out.stdout);
    for (ds, row) in children {
        assert_eq!(
            row.outcome,
            format!("refused ({reason})"),
            "{ds}: {}",
            out.stdout
        );
        assert!(
            row.note.contains("the sent root is refused: "),
            "{ds}: {}",
            out.stdout
        );
    }
}

// issue 14: a TARGET with snapshots that share no GUID with the sent root is not its
// replica: the root is refused, and no child of it is received into it (nor buffered),
// however the sender's workers order their offers.
#[test]
fn target_sharing_no_snapshot_with_the_root_gets_no_children() {
    let s = Setup::new("nocomroot");
    snapshot_tree(&s.root, "s1");
    create(&s.target);
    write_file_unmounted(&s.target, "unrelated.txt", b"not from the source\n");
    snapshot(&format!("{}@s1", s.target));
    let before = state_of(&s.target);

    let out = s.send(&[]);
    out.assert_status(1);
    let row = &out.rows()[&s.root];
    assert_eq!(
        row.outcome, "refused (no common snapshot)",
        "{}",
        out.stdout
    );
    assert_children_refused_with_the_root(&out, &s.root, "no common snapshot");
    assert_final(&out, TREE.len(), 0, TREE.len());
    assert_eq!(
        list_datasets(&s.target),
        vec![s.target.clone()],
        "children landed in the refused target"
    );
    assert!(
        !exists(&s.buffer()),
        "children were buffered for the refused target"
    );
    assert_eq!(state_of(&s.target), before);
}

// issue 14: a subtree sent by mistake to the receiver of the whole tree lands on TARGET,
// the whole tree's replica, which shares no snapshot with it: refused, and its children
// do not appear at TARGET's top.
#[test]
fn a_subtree_sent_to_the_whole_trees_receiver_is_refused_with_its_children() {
    let s = initial_sync("subtree");
    let before = tree_snapshots(&s.target);
    let sub = s.src_ds("a");
    let out = send_tree(&sub, &s.recv, &[]);
    out.assert_status(1);
    let row = &out.rows()[&sub];
    assert_eq!(
        row.outcome, "refused (no common snapshot)",
        "{}",
        out.stdout
    );
    assert_children_refused_with_the_root(&out, &sub, "no common snapshot");
    assert_eq!(tree_snapshots(&s.target), before, "the replica changed");
    assert!(buffered_copies(&s.buffer()).is_empty());
}

// issue 14: a refusal is checked against a fresh look at the dataset. The receiver plans
// from a listing of the tree up to 10 s old; a receiver-side snapshot destroyed by hand
// right after the run it made diverge must not refuse the run that follows at once.
#[test]
fn a_divergence_undone_by_hand_right_after_a_run_is_not_refused_again() {
    // Before every listing the receiver takes in this test.
    let started = std::time::Instant::now();
    let (s, diverged, _) = refused_for_a_snapshot_made_on_the_receiver("stale", "local");
    zfs(&["destroy", &format!("{diverged}@local")]);
    let out = s.send(&[]);
    out.assert_ok();
    let row = &out.rows()[&s.src_ds("b/y")];
    assert_eq!(row.outcome, "sent", "{}", out.stdout);
    assert!(row.note.contains("incremental @s3..@s4"), "{}", out.stdout);
    assert_same_snapshots(&s.root, &s.target);
    // The listing still showed @local (the run came within its 10 s): the fresh look
    // changed the answer. Without this line the test would not have tested that. On a
    // machine so loaded that the whole test took longer than the listing's 10 s, the
    // run may have listed afresh: then the line proves nothing either way.
    let fresh = s.recv.log().contains("fresh look changed the answer");
    let took = started.elapsed();
    println!("figures: divergence undone by hand, test took {took:?}");
    if took < std::time::Duration::from_secs(9) {
        assert!(fresh, "{}", s.recv.log());
    } else if !fresh {
        eprintln!(
            "the test took {took:?}, longer than a listing serves: its fresh look not checked"
        );
    }
}

// issue 14: checking refusals afresh costs the offers that are not refused nothing: a
// run with nothing new, on a receiver just started, looks up no dataset of the tree on
// its own (the one recursive listing serves every offer).
#[test]
fn a_run_without_refusals_looks_up_no_dataset_on_its_own() {
    let mut s = initial_sync("cheap");
    s.restart_receiver(&["-vv"]);
    // Past the receiver's start (its own look at the buffer).
    std::thread::sleep(std::time::Duration::from_millis(500));
    let at = s.recv.log().len();
    let out = s.send(&[]);
    out.assert_ok();
    for (ds, row) in out.rows() {
        assert_eq!(row.outcome, "up-to-date", "{ds}: {}", out.stdout);
    }
    let log = s.recv.log();
    let commands: Vec<&str> = log[at..]
        .lines()
        .filter(|l| l.contains("zfs start cmd="))
        .collect();
    assert!(
        commands.iter().any(|l| l.contains(" -r ")),
        "no listing logged:\n{}",
        &log[at..]
    );
    let below = format!("{}/", s.target);
    let lookups: Vec<&&str> = commands
        .iter()
        .filter(|l| l.contains(&below) || !l.contains(" -r ") && l.contains(&s.target))
        .filter(|l| !l.contains(&s.buffer()))
        .collect();
    assert!(
        lookups.is_empty(),
        "lookups beside the listing: {lookups:#?}"
    );
}
