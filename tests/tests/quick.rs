//! Integration tests of the receiver's quick look: with no fresh listing (a receiver just
//! started, as for a cron run every few minutes), an offer is planned from the offered
//! snapshots looked up by name, and `zfs recv` checks the plan. Each test restarts the
//! receiver before the round it checks, so that the quick look is what plans it, and
//! reads the receiver's log to make sure of that.

mod common;

use common::*;
use zfsync_tests::*;

/// What the receiver's recursive listing of a tree looks like in its `-vv` log.
const LISTING: &str = "-r type,guid,createtxg";
/// What a quick look looks like there.
const QUICK_LOOK: &str = "get -Hp -o name,property,value guid";

// A round of small incrementals (and then one with nothing new) after a restart lists
// nothing on the receiver, and delivers the same snapshots and files.
#[test]
fn incremental_rounds_after_a_restart_list_nothing_on_the_receiver() {
    let mut s = initial_sync("qinc");
    s.restart_receiver(&["-vv"]);
    s.change(3);
    snapshot_tree(&s.root, "s4");
    let out = s.send(&[]);
    out.assert_ok();
    for rel in TREE {
        let row = &out.rows()[&s.src_ds(rel)];
        assert_eq!(row.outcome, "sent", "{rel:?}: {}", out.stdout);
        assert!(row.note.contains("incremental @s3..@s4"), "{}", out.stdout);
    }
    assert_same_snapshots(&s.root, &s.target);
    assert_same_files(&s.root, &s.target, "s4");

    let out = s.send(&[]);
    out.assert_ok();
    for rel in TREE {
        assert_eq!(out.outcome(&s.src_ds(rel)), "up-to-date", "{}", out.stdout);
    }
    let log = s.recv.log();
    assert!(log.contains(QUICK_LOOK), "no quick look:\n{log}");
    assert!(
        !log.contains(LISTING),
        "the receiver listed the tree:\n{log}"
    );
    assert_same_snapshots(&s.root, &s.target);
}

// A snapshot made on the receiver is not seen by a quick look (it asks only for the
// source's names); zfs recv refuses the stream, and the answer is the listing's: the
// same refusal naming the snapshot, with nothing changed.
#[test]
fn receiver_side_snapshot_behind_a_quick_look_is_refused_as_diverged_without_loss() {
    let mut s = initial_sync("qdiv");
    let diverged = s.dst_ds("b/y");
    write_file_unmounted(&diverged, "local.txt", b"made on the receiver\n");
    snapshot(&format!("{diverged}@local"));
    let before = snapshot_guids(&diverged);
    let files_before = files_of(&format!("{diverged}@local"));

    s.change(3);
    snapshot_tree(&s.root, "s4");
    s.restart_receiver(&["-vv"]);
    let out = s.send(&[]);
    out.assert_status(1);
    let rows = out.rows();
    let row = &rows[&s.src_ds("b/y")];
    assert_eq!(row.outcome, "refused:Diverged", "{}", out.stdout);
    assert!(
        row.note.contains(
            "has snapshots after the common snapshot s3 that the source does not have: local"
        ),
        "{}",
        out.stdout
    );
    assert_sent_all_but(&s, &out, "b/y");
    // It was a quick look's plan that zfs recv refused, not a listing's refusal.
    let log = s.recv.log();
    assert!(
        log.contains(&format!("recv {diverged}\"")),
        "no zfs recv into {diverged}:\n{log}"
    );
    assert_eq!(files_of(&format!("{diverged}@local")), files_before);
    assert_only_refused_kept(&s, "b/y", before);
}

// A snapshot renamed on the receiver hides the newest common snapshot from a quick look,
// which plans from an older one; zfs recv refuses that, the receiver asks the sender to
// offer again, and plans from its listing: from the renamed snapshot, matched by GUID.
#[test]
fn snapshot_renamed_on_the_receiver_is_planned_again_from_the_listing() {
    let mut s = initial_sync("qren");
    let renamed = s.dst_ds("a");
    zfs(&[
        "rename",
        &format!("{renamed}@s3"),
        &format!("{renamed}@kept"),
    ]);

    s.change(3);
    snapshot_tree(&s.root, "s4");
    s.restart_receiver(&["-vv"]);
    let out = s.send(&[]);
    out.assert_ok();
    let row = &out.rows()[&s.src_ds("a")];
    assert_eq!(row.outcome, "sent", "{}", out.stdout);
    assert!(row.note.contains("incremental @s3..@s4"), "{}", out.stdout);
    let log = s.recv.log();
    assert!(log.contains("quick plan proved wrong"), "{log}");
    // Every snapshot arrived once, with the source's GUIDs; only the renamed one keeps its
    // new name.
    let guids = |ds: &str| -> Vec<u64> { snapshot_guids(ds).into_iter().map(|(_, g)| g).collect() };
    assert_eq!(guids(&renamed), guids(&s.src_ds("a")));
    let names: Vec<String> = snapshot_guids(&renamed)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["s1", "s2", "kept", "s4"]);
    assert_files_eq(
        &files_of(&format!("{}@s4", s.src_ds("a"))),
        &files_of(&format!("{renamed}@s4")),
        "a@s4",
    );
    for rel in TREE.iter().filter(|r| **r != "a") {
        assert_eq!(
            snapshot_guids(&s.dst_ds(rel)),
            snapshot_guids(&s.src_ds(rel)),
            "{rel:?}"
        );
    }
}
