//! Integration tests of parents without snapshots (issue 14 item 2): people snapshot
//! dataset by dataset, so a source tree's root or middle datasets may have none while the
//! datasets below them do. The receiver makes placeholder parents for them (marked
//! `zfsync:placeholder=on`, never mounted), the datasets below land in place, and a
//! placeholder is replaced by a full stream once its source dataset has snapshots, its
//! children kept. Nothing else without snapshots is ever replaced.

mod common;

use common::*;
use zfsync_tests::*;

/// Panics unless `ds` is a placeholder as the receiver makes them: the mark set on it,
/// never mounted, no snapshots.
fn assert_placeholder(ds: &str) {
    assert_eq!(
        property(ds, "zfsync:placeholder"),
        ("on".into(), "local".into()),
        "{ds}"
    );
    assert_eq!(property(ds, "canmount").0, "off", "{ds}");
    assert_eq!(property(ds, "mountpoint").0, "none", "{ds}");
    assert_eq!(property(ds, "mounted").0, "no", "{ds}");
    assert_eq!(snapshot_guids(ds), Vec::<(String, u64)>::new(), "{ds}");
}

// issue 14 item 2: a root and a middle dataset without snapshots, leaves with some. The
// leaves land in place under placeholders (not parked in the buffer for parents that
// never come); a lone dataset without snapshots is not made; a placeholder is replaced,
// its children kept, once its source dataset has snapshots.
#[test]
fn parents_without_snapshots_become_placeholders_and_are_replaced_later() {
    let s = Setup::bare("phold", &[]);
    for rel in ["mid/leaf", "other", "lone"] {
        create(&s.src_ds(rel));
    }
    write_file(&s.src_ds("mid/leaf"), "leaf.txt", b"leaf\n");
    write_file(&s.src_ds("other"), "other.txt", b"other\n");
    for rel in ["mid/leaf", "other"] {
        snapshot(&format!("{}@s1", s.src_ds(rel)));
    }

    // A dry run says what it would do and makes nothing.
    let out = s.send(&["-n"]);
    out.assert_ok();
    let rows = out.rows();
    for rel in ["", "mid"] {
        let row = &rows[&s.src_ds(rel)];
        assert_eq!(row.outcome, "no-snapshots", "{rel:?}: {}", out.stdout);
        assert!(
            row.note.contains("would make a placeholder"),
            "{}",
            out.stdout
        );
    }
    assert!(!exists(&s.target), "a dry run made {}", s.target);

    let out = s.send(&[]);
    out.assert_ok();
    let rows = out.rows();
    for rel in ["", "mid"] {
        let row = &rows[&s.src_ds(rel)];
        assert_eq!(row.outcome, "no-snapshots", "{rel:?}: {}", out.stdout);
        // The offers travel on parallel connections: mid's can be answered before the
        // root's placeholder is made, and then its own is made in the buffer and placed by
        // the cleanup at the end of the run (checked below: nothing is left there).
        let notes: &[&str] = match rel {
            "" => &["placeholder made on the receiver"],
            _ => &[
                "placeholder made on the receiver",
                "placeholder made in the receiver's buffer (parent not there yet)",
            ],
        };
        assert!(
            notes.contains(&row.note.as_str()),
            "{rel:?}: {}",
            out.stdout
        );
        assert_placeholder(&s.dst_ds(rel));
    }
    for rel in ["mid/leaf", "other"] {
        assert_eq!(
            rows[&s.src_ds(rel)].outcome,
            "sent",
            "{rel:?}: {}",
            out.stdout
        );
        assert_eq!(
            snapshot_guids(&s.dst_ds(rel)),
            snapshot_guids(&s.src_ds(rel)),
            "{rel:?}"
        );
    }
    // Below a placeholder nothing is mounted either: the mountpoint is inherited `none`.
    assert_eq!(property(&s.dst_ds("mid/leaf"), "mounted").0, "no");
    assert_eq!(rows[&s.src_ds("lone")].outcome, "no-snapshots");
    assert_eq!(rows[&s.src_ds("lone")].note, "", "{}", out.stdout);
    assert!(
        !exists(&s.dst_ds("lone")),
        "a lone dataset without snapshots was made"
    );
    assert_eq!(buffered_copies(&s.buffer()), Vec::<String>::new());
    // The cleanup's line, when offers went through the buffer, says "0 waiting".
    let waiting = |l: &&str| l.contains("waiting") && !l.contains(" 0 waiting,");
    assert!(!out.stdout.lines().any(|l| waiting(&l)), "{}", out.stdout);

    // Again: the placeholders are there, nothing changes.
    let out = s.send(&[]);
    out.assert_ok();
    for rel in ["", "mid"] {
        let row = &out.rows()[&s.src_ds(rel)];
        assert_eq!(row.note, "exists on the receiver", "{}", out.stdout);
    }
    assert_eq!(out.outcome(&s.src_ds("mid/leaf")), "up-to-date");

    // The source's middle dataset, then its root, get snapshots: each placeholder is
    // replaced by a replica, and what is below it stays.
    let leaf_before = snapshot_guids(&s.dst_ds("mid/leaf"));
    for (rel, file) in [("mid", "mid.txt"), ("", "root.txt")] {
        write_file(&s.src_ds(rel), file, b"now with a snapshot\n");
        snapshot(&format!("{}@p1", s.src_ds(rel)));
        let out = s.send(&[]);
        out.assert_ok();
        let row = &out.rows()[&s.src_ds(rel)];
        assert_eq!(row.outcome, "sent", "{rel:?}: {}", out.stdout);
        assert!(row.note.contains("full @p1"), "{rel:?}: {}", out.stdout);
        let dst = s.dst_ds(rel);
        assert_eq!(
            snapshot_guids(&dst),
            snapshot_guids(&s.src_ds(rel)),
            "{rel:?}"
        );
        let files = files_of(&format!("{dst}@p1"));
        assert_eq!(
            files.get(file).map(Vec::as_slice),
            Some(&b"now with a snapshot\n"[..])
        );
        assert!(
            !property(&dst, "zfsync:placeholder").1.starts_with("local"),
            "{dst} is still marked a placeholder"
        );
        assert_eq!(snapshot_guids(&s.dst_ds("mid/leaf")), leaf_before);
        assert_eq!(
            snapshot_guids(&s.dst_ds("other")),
            snapshot_guids(&s.src_ds("other"))
        );
    }
    assert_eq!(property(&s.target, "mounted").0, "no");
    assert_eq!(buffered_copies(&s.buffer()), Vec::<String>::new());
}

// issue 14 item 2: only a dataset that carries the mark itself is ever replaced. One made
// by hand below a placeholder inherits the mark, and is no placeholder: a full stream
// over it is refused as before, and it keeps its files.
#[test]
fn a_dataset_without_the_mark_of_its_own_is_not_replaced() {
    let mut s = Setup::bare("phand", &[]);
    create(&s.src_ds("mid/leaf"));
    snapshot(&format!("{}@s1", s.src_ds("mid/leaf")));
    s.send(&[]).assert_ok();
    assert_placeholder(&s.dst_ds("mid"));

    // Made by hand on the receiver: inherits the mark from mid.
    let handmade = s.dst_ds("mid/hand");
    create(&handmade);
    write_file_unmounted(&handmade, "mine.txt", b"the admin's\n");
    assert_eq!(property(&handmade, "zfsync:placeholder").0, "on");
    create(&s.src_ds("mid/hand"));
    snapshot(&format!("{}@s1", s.src_ds("mid/hand")));

    // A receiver that has not listed the destination since the change by hand.
    s.restart_receiver(&[]);
    let out = s.send(&[]);
    out.assert_status(1);
    let row = &out.rows()[&s.src_ds("mid/hand")];
    assert_eq!(row.outcome, "refused (not a replica)", "{}", out.stdout);
    assert_eq!(snapshot_guids(&handmade), Vec::<(String, u64)>::new());
    snapshot(&format!("{handmade}@check"));
    let files = files_of(&format!("{handmade}@check"));
    assert_eq!(
        files.get("mine.txt").map(Vec::as_slice),
        Some(&b"the admin's\n"[..])
    );
}

// issue 14 item 2: a placeholder whose own parent is being received at the time waits in
// the buffer, like any new dataset, and is placed by the cleanup, parents first, with
// the dataset below it; nothing is left waiting.
#[test]
fn a_placeholder_under_a_parent_being_received_is_placed_by_the_cleanup() {
    let s = Setup::bare("phbuf", &["--parent-wait", "0"]);
    create(&s.src_ds("mid/leaf"));
    write_file(&s.root, "big.bin", &random_bytes(96 << 20, 41));
    write_file(&s.src_ds("mid/leaf"), "leaf.txt", b"leaf\n");
    snapshot(&format!("{}@s1", s.root));
    snapshot(&format!("{}@s1", s.src_ds("mid/leaf")));

    let out = s.send(&["-t", "3"]);
    out.assert_ok();
    let rows = out.rows();
    let mid = &rows[&s.src_ds("mid")];
    assert_eq!(mid.outcome, "no-snapshots", "{}", out.stdout);
    assert!(mid.note.contains("placeholder made"), "{}", out.stdout);
    assert_placeholder(&s.dst_ds("mid"));
    for rel in ["", "mid/leaf"] {
        assert_eq!(
            snapshot_guids(&s.dst_ds(rel)),
            snapshot_guids(&s.src_ds(rel)),
            "{rel:?}"
        );
    }
    assert_eq!(buffered_copies(&s.buffer()), Vec::<String>::new());
    println!(
        "figures: placeholder buffered={}",
        mid.note.contains("buffer")
    );
}
