//! Integration tests of the core replication (issue 2): the real `zfsync-send` and
//! `zfsync-recv` against real zfs-fuse pools, checked as a user would check a backup:
//! every snapshot on the receiver with the source's name and GUID, the same files in
//! them, the exit status and the summary.
//!
//! Refusals (the receiver protecting what it has) are in `divergence.rs`.

mod common;

use common::*;
use std::time::{Duration, Instant};
use zfsync_tests::*;

// issue 2: full send of a tree (children, grandchildren) with several snapshots.
#[test]
fn full_send_of_a_tree_arrives_with_the_same_guids_and_files() {
    let s = Setup::new("full");
    let first = s.populate();
    snapshot_tree(&s.root, "s1");
    s.change(1);
    snapshot_tree(&s.root, "s2");
    s.change(2);
    snapshot_tree(&s.root, "s3");

    let out = s.send(&[]);
    out.assert_ok();
    let rows = out.rows();
    assert_eq!(rows.len(), TREE.len(), "{}", out.stdout);
    for rel in TREE {
        let row = &rows[&s.src_ds(rel)];
        assert_eq!(row.outcome, "sent", "{rel:?}: {}", out.stdout);
        // A new dataset: its oldest snapshot in full, then the rest incrementally.
        assert!(
            row.note.contains("full @s1") && row.note.contains("incremental @s1..@s3"),
            "{rel:?}: {}",
            out.stdout
        );
        assert!(row.bytes > 0, "{rel:?}: {}", out.stdout);
    }
    assert_final(&out, TREE.len(), TREE.len(), 0);

    assert_same_snapshots(&s.root, &s.target);
    let got = tree_snapshots(&s.target);
    assert_eq!(got.len(), TREE.len());
    assert!(got.values().all(|snaps| snaps.len() == 3), "{got:?}");
    assert_same_files(&s.root, &s.target, "s3");
    // Independently of the source's view: what the test wrote before s1 is there.
    for rel in ["", "a/x/deep"] {
        let got = files_of(&format!("{}@s1", s.dst_ds(rel)));
        assert_files_eq(&first[rel], &got, &format!("{rel:?}@s1"));
    }
    // Nothing was left in the buffer.
    assert_eq!(buffered_copies(&s.buffer()), Vec::<String>::new());
}

// issue 2: an incremental run sends every intermediate snapshot (-I), not just the newest.
#[test]
fn incremental_send_brings_every_intermediate_snapshot() {
    let s = initial_sync("incr");
    for gen in 3..6 {
        s.change(gen);
        snapshot_tree(&s.root, &format!("s{}", gen + 1));
    }
    let before = tree_snapshots(&s.target);

    let out = s.send(&[]);
    out.assert_ok();
    for rel in TREE {
        let row = &out.rows()[&s.src_ds(rel)];
        assert_eq!(row.outcome, "sent", "{rel:?}: {}", out.stdout);
        assert!(
            row.note.contains("incremental @s3..@s6 (3 snapshots)"),
            "{rel:?}: {}",
            out.stdout
        );
        assert!(!row.note.contains("full"), "{rel:?}: {}", out.stdout);
    }
    assert_final(&out, TREE.len(), TREE.len(), 0);

    assert_same_snapshots(&s.root, &s.target);
    let after = tree_snapshots(&s.target);
    for rel in TREE {
        let names: Vec<&str> = after[*rel].iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["s1", "s2", "s3", "s4", "s5", "s6"], "{rel:?}");
        // The snapshots that were there are the same ones, not re-received copies.
        assert_eq!(after[*rel][..3], before[*rel][..], "{rel:?}");
    }
    for snap in ["s4", "s5", "s6"] {
        assert_same_files(&s.root, &s.target, snap);
    }
}

// issue 2: nothing new is not an error and is quick; a dataset without snapshots is
// reported, not sent, and never hangs.
#[test]
fn nothing_to_send_exits_at_once_and_snapshotless_datasets_are_skipped() {
    let s = initial_sync("noop");
    // Created after the snapshots: it has none.
    create(&s.src_ds("b/fresh"));
    let before = tree_snapshots(&s.target);

    let t = Instant::now();
    let out = s.send(&[]);
    let took = t.elapsed();
    out.assert_ok();
    // Seconds, not the minutes of a run that sent: a bound loose enough for a loaded
    // machine, tight enough to catch a run that waits for something.
    assert!(took < Duration::from_secs(15), "re-run took {took:?}");
    let rows = out.rows();
    assert_eq!(rows.len(), TREE.len() + 1, "{}", out.stdout);
    for rel in TREE {
        let row = &rows[&s.src_ds(rel)];
        assert_eq!(row.outcome, "up-to-date", "{rel:?}: {}", out.stdout);
        assert_eq!(row.bytes, 0, "{rel:?}: {}", out.stdout);
        assert!(row.note.contains("@s3"), "{rel:?}: {}", out.stdout);
    }
    assert_eq!(rows[&s.src_ds("b/fresh")].outcome, "no-snapshots");
    assert_final(&out, TREE.len() + 1, 0, 0);
    assert_eq!(tree_snapshots(&s.target), before);
    assert!(!exists(&s.dst_ds("b/fresh")));

    // A tree in which nothing has a snapshot at all: nothing to ask the receiver.
    let lonely = s.src.ds("lonely");
    create(&format!("{lonely}/child"));
    let t = Instant::now();
    let out = send_tree(&lonely, &s.recv, &["-d", "lonely"]);
    let took = t.elapsed();
    out.assert_ok();
    assert!(
        took < Duration::from_secs(15),
        "snapshotless run took {took:?}"
    );
    let rows = out.rows();
    assert_eq!(rows.len(), 2, "{}", out.stdout);
    assert!(
        rows.values().all(|r| r.outcome == "no-snapshots"),
        "{}",
        out.stdout
    );
    assert_final(&out, 2, 0, 0);
    assert!(!exists(&s.dst_ds("lonely")));
    assert_eq!(tree_snapshots(&s.target), before);
}

/// Datasets of the deep tree: 3 children, 9 grandchildren, 18 great-grandchildren.
fn deep_tree() -> Vec<String> {
    let mut all = vec![String::new()];
    for c in ["c0", "c1", "c2"] {
        all.push(c.to_string());
        for g in ["g0", "g1", "g2"] {
            all.push(format!("{c}/{g}"));
            for l in ["l0", "l1"] {
                all.push(format!("{c}/{g}/{l}"));
            }
        }
    }
    all
}

// issue 6 (found by bench/run): while the root's own full stream was still arriving, its
// half-received dataset (no snapshot yet) made the children offered meanwhile look like
// children of a non-replica, and they were refused for good; they must wait in the buffer.
// The race needs a receiver listing taken mid-receive, which the catalog (listed at the
// greeting) now makes rare: this guards the scenario, it does not reproduce it every time.
#[test]
fn children_offered_while_their_root_is_still_arriving_are_not_refused() {
    let s = Setup::bare("rootbusy", &[]);
    // A root big enough that its receive is still running while 8 workers offer children.
    write_file(&s.root, "big.bin", &random_bytes(24 << 20, 7));
    let kids: Vec<String> = (0..24).map(|i| format!("k{i:02}")).collect();
    for k in &kids {
        create(&s.src_ds(k));
    }
    snapshot_tree(&s.root, "s1");

    let out = s.send(&["-t", "8"]);
    let rows = out.rows();
    assert!(
        rows.values().all(|r| r.outcome == "sent"),
        "{}\n--- receiver log ---\n{}",
        out.stdout,
        s.recv.log()
    );
    out.assert_ok();
    assert_same_snapshots(&s.root, &s.target);
    assert_eq!(tree_snapshots(&s.target).len(), kids.len() + 1);
    assert_eq!(buffered_copies(&s.buffer()), Vec::<String>::new());
}

// issue 2: many workers on a new deep tree: children are offered before their parents
// have arrived, wait in the buffer, and the cleanup puts them in place.
#[test]
fn new_deep_tree_with_eight_workers_goes_through_the_buffer_into_place() {
    // Children of a parent being received go to the buffer at once, rather than wait for
    // it (the default waits up to 2 s, which these small parents never need).
    let s = Setup::bare("deep", &["--parent-wait", "0"]);
    let tree = deep_tree();
    assert_eq!(tree.len(), 31);
    for (i, rel) in tree.iter().enumerate() {
        let ds = s.src_ds(rel);
        if !rel.is_empty() {
            create(&ds);
        }
        // Parents hold more data than leaves, so their receives take longer and their
        // children are offered meanwhile.
        let size = match rel.matches('/').count() {
            _ if rel.is_empty() => 3 << 20,
            0 => 1 << 20,
            1 => 256 << 10,
            _ => 16 << 10,
        };
        write_file(&ds, "f.bin", &random_bytes(size, i as u64));
    }
    snapshot_tree(&s.root, "s1");
    for rel in tree.iter().filter(|r| r.matches('/').count() == 2) {
        write_file(&s.src_ds(rel), "g.txt", rel.as_bytes());
    }
    snapshot_tree(&s.root, "s2");

    let out = s.send(&["-t", "8"]);
    out.assert_ok();
    let rows = out.rows();
    assert_eq!(rows.len(), tree.len(), "{}", out.stdout);
    assert!(rows.values().all(|r| r.outcome == "sent"), "{}", out.stdout);
    assert_final(&out, tree.len(), tree.len(), 0);
    let buffered = rows
        .values()
        .filter(|r| r.note.contains("buffered"))
        .count();
    let log = s.recv.log();
    assert!(
        buffered > 0 && log.contains("cleanup placed"),
        "no dataset went through the buffer ({buffered} noted as buffered)\n{}\n--- receiver log ---\n{log}",
        out.stdout
    );
    assert_same_snapshots(&s.root, &s.target);
    assert_eq!(tree_snapshots(&s.target).len(), 31);
    assert_eq!(buffered_copies(&s.buffer()), Vec::<String>::new());
    for rel in ["", "c1/g2", "c2/g0/l1"] {
        let a = files_of(&format!("{}@s2", s.src_ds(rel)));
        let b = files_of(&format!("{}@s2", s.dst_ds(rel)));
        assert_files_eq(&a, &b, &format!("{rel:?}@s2"));
    }
}

/// A small tree of its own in a pool of its own: root, a child and a grandchild, with
/// files and two snapshots.
fn client_tree(tag: &str, seed: u64) -> (Pool, String) {
    let pool = Pool::new(tag);
    let root = pool.ds("home");
    for (i, rel) in ["", "u", "u/docs"].iter().enumerate() {
        let ds = join(&root, rel);
        create(&ds);
        write_file(&ds, "f.bin", &random_bytes(200 << 10, seed * 10 + i as u64));
    }
    snapshot_tree(&root, "a");
    write_file(&root, "later.txt", b"later");
    snapshot_tree(&root, "b");
    (pool, root)
}

// issue 2: several senders at once to one receiver, each to its own place, and two
// senders of the same tree to the same place.
#[test]
fn concurrent_senders_to_one_receiver_all_arrive() {
    let dst = Pool::unmounted("multid");
    let target = dst.ds("backup");
    // The senders' roots land below TARGET, whose parent must exist for them.
    create(&target);
    let recv = start_receiver(&target, &[]);
    let clients: Vec<(Pool, String)> = (0..3)
        .map(|i| client_tree(&format!("multi{i}"), i))
        .collect();

    // Three trees, three destinations, at once.
    let outs: Vec<SendOutput> = std::thread::scope(|scope| {
        let handles: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, (_, root))| {
                let recv = &recv;
                scope.spawn(move || send_tree(root, recv, &["-d", &format!("client{i}")]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, out) in outs.iter().enumerate() {
        out.assert_ok();
        assert_final(out, 3, 3, 0);
        let dest = join(&target, &format!("client{i}"));
        assert_same_snapshots(&clients[i].1, &dest);
        assert_same_files(&clients[i].1, &dest, "b");
    }

    // The same tree from two senders at once into one place: the per-dataset lock makes
    // one wait for the other, which then finds it up to date (or sends what is left).
    let root = &clients[0].1;
    let outs: Vec<SendOutput> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let recv = &recv;
                scope.spawn(move || send_tree(root, recv, &["-d", "shared"]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in &outs {
        out.assert_ok();
        assert!(
            out.rows()
                .values()
                .all(|r| r.outcome == "sent" || r.outcome == "up-to-date"),
            "{}",
            out.stdout
        );
    }
    let dest = join(&target, "shared");
    assert_same_snapshots(root, &dest);
    assert_same_files(root, &dest, "b");
    assert_eq!(
        buffered_copies(&format!("{target}_zfsync_buffer")),
        Vec::<String>::new()
    );
    // Each tree is where it was sent, and nothing else is under TARGET.
    let mut want: Vec<String> = vec![target.clone()];
    for d in ["client0", "client1", "client2", "shared"] {
        for rel in ["", "u", "u/docs"] {
            want.push(join(&join(&target, d), rel));
        }
    }
    let mut got = list_datasets(&target);
    got.sort();
    want.sort();
    assert_eq!(got, want);
    drop(recv);
}

// issue 2: a destination path that would leave the receiver's root is a usage error,
// refused before any connection.
#[test]
fn dest_path_escaping_the_target_is_a_usage_error() {
    // Nothing listens on port 1: a sender that tried to connect would fail differently.
    for dest in ["../x", "a/../../x", "a/./b", "a@b", "a#b", "a//b"] {
        let out = run_with_timeout(
            &sender_bin(),
            &["-d", dest, "tank/data", "127.0.0.1:1"],
            Duration::from_secs(10),
        );
        out.assert_status(2);
        assert!(out.stderr.contains("--dest"), "-d {dest:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "-d {dest:?}: {}", out.stdout);
    }
}

// issue 2: snapshots are matched by GUID: renamed on the source, the base is still found.
#[test]
fn renamed_source_snapshot_is_still_the_incremental_base() {
    let s = initial_sync("rename");
    let before = tree_snapshots(&s.target);
    // Rename the common base in every dataset, and an older one in the root.
    zfs(&[
        "rename",
        "-r",
        &format!("{}@s3", s.root),
        &format!("{}@renamed", s.root),
    ]);
    zfs(&[
        "rename",
        &format!("{}@s1", s.root),
        &format!("{}@first", s.root),
    ]);
    s.change(3);
    snapshot_tree(&s.root, "s4");

    let out = s.send(&[]);
    out.assert_ok();
    for rel in TREE {
        let row = &out.rows()[&s.src_ds(rel)];
        assert_eq!(row.outcome, "sent", "{rel:?}: {}", out.stdout);
        assert!(
            row.note.contains("incremental @renamed..@s4 (1 snapshot"),
            "{rel:?}: {}",
            out.stdout
        );
    }
    let src = tree_snapshots(&s.root);
    let dst = tree_snapshots(&s.target);
    for rel in TREE {
        // Same snapshots by GUID; the receiver keeps the names it received them under.
        let guids = |v: &Vec<(String, u64)>| v.iter().map(|(_, g)| *g).collect::<Vec<_>>();
        assert_eq!(guids(&src[*rel]), guids(&dst[*rel]), "{rel:?}");
        let names: Vec<&str> = dst[*rel].iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["s1", "s2", "s3", "s4"], "{rel:?}");
        assert_eq!(dst[*rel][..3], before[*rel][..], "{rel:?}");
    }
    assert_same_files(&s.root, &s.target, "s4");
}

// issue 2: --dry-run asks the receiver and reports, but changes nothing.
#[test]
fn dry_run_reports_what_would_be_sent_and_sends_nothing() {
    // Against an empty receiver: everything would be new.
    let s = Setup::new("dry");
    s.populate();
    snapshot_tree(&s.root, "s1");
    s.change(1);
    snapshot_tree(&s.root, "s2");
    let out = s.send(&["-n"]);
    out.assert_ok();
    for rel in TREE {
        let row = &out.rows()[&s.src_ds(rel)];
        assert_eq!(row.outcome, "would-send", "{rel:?}: {}", out.stdout);
        assert!(row.note.contains("full @s1"), "{rel:?}: {}", out.stdout);
        assert_eq!(row.bytes, 0, "{rel:?}: {}", out.stdout);
    }
    assert_final(&out, TREE.len(), 0, 0);
    assert!(!exists(&s.target), "dry run created {}", s.target);
    assert!(!exists(&s.buffer()), "dry run created {}", s.buffer());

    // After a real sync: one new snapshot and one new dataset.
    s.send(&[]).assert_ok();
    s.change(2);
    snapshot_tree(&s.root, "s3");
    create(&s.src_ds("a/new"));
    write_file(&s.src_ds("a/new"), "n.txt", b"new");
    snapshot(&format!("{}@n1", s.src_ds("a/new")));
    let before = tree_snapshots(&s.target);

    let out = s.send(&["--dry-run"]);
    out.assert_ok();
    for rel in TREE {
        let row = &out.rows()[&s.src_ds(rel)];
        assert_eq!(row.outcome, "would-send", "{rel:?}: {}", out.stdout);
        assert!(
            row.note.contains("incremental @s2..@s3 (1 snapshot"),
            "{rel:?}: {}",
            out.stdout
        );
    }
    let row = &out.rows()[&s.src_ds("a/new")];
    assert_eq!(row.outcome, "would-send", "{}", out.stdout);
    assert!(row.note.contains("full @n1"), "{}", out.stdout);
    assert_final(&out, TREE.len() + 1, 0, 0);
    assert_eq!(tree_snapshots(&s.target), before);
    assert!(!exists(&s.dst_ds("a/new")));
}

// issue 6: more workers than the receiver takes connections (`-t` above its `-j`): the
// workers it turns away hand their datasets back and the others send them all.
#[test]
fn more_workers_than_the_receiver_takes_connections_still_send_everything() {
    let s = Setup::bare("fewconn", &["-j", "2"]);
    let rels = ["", "a", "b", "c", "a/x", "b/y", "c/z"];
    for (i, rel) in rels.iter().enumerate() {
        let ds = s.src_ds(rel);
        if !rel.is_empty() {
            create(&ds);
        }
        write_file(&ds, "f.bin", &random_bytes(64 << 10, 700 + i as u64));
    }
    snapshot_tree(&s.root, "s1");

    let out = s.send(&["-t", "8", "--retries", "0"]);
    out.assert_ok();
    let rows = out.rows();
    assert_eq!(rows.len(), rels.len(), "{}", out.stdout);
    assert!(rows.values().all(|r| r.outcome == "sent"), "{}", out.stdout);
    assert!(
        s.recv.log().contains("connections already"),
        "the receiver turned no connection away: the test did not test anything\n{}",
        s.recv.log()
    );
    assert_same_snapshots(&s.root, &s.target);
    for rel in ["", "b", "c/z"] {
        let a = files_of(&format!("{}@s1", s.src_ds(rel)));
        let b = files_of(&format!("{}@s1", s.dst_ds(rel)));
        assert_files_eq(&a, &b, &format!("{rel:?}@s1"));
    }
}

// issue 5: a buffered copy whose receive never finished (no snapshot: what a receive cut
// in the middle can leave behind for a moment) is not renamed into place by a cleanup,
// where it would stand as a dataset that is no replica; it stays in the buffer, and the
// cleanup says why. Issue 14 item 2: a run that ends with a copy of its tree waiting in
// the buffer is not done: it exits 1; a sender of another tree is not failed by it.
#[test]
fn cleanup_leaves_an_unfinished_buffered_copy_in_the_buffer() {
    let mut s = initial_sync("unfin");
    // What an interrupted receive of a new child "a/new" could leave in the buffer.
    let buffer = s.buffer();
    if !exists(&buffer) {
        zfs(&[
            "create",
            "-o",
            "mountpoint=none",
            "-o",
            "canmount=off",
            &buffer,
        ]);
    }
    let copy = format!("{buffer}/{}", hex_of("a/new"));
    zfs(&["create", "-o", "mountpoint=none", &copy]);
    // A receiver starting up cleans its buffer: the copy's parent is there, but the copy
    // has nothing in it yet.
    s.restart_receiver(&[]);
    let out = s.send(&[]);
    out.assert_status(1);
    assert!(
        out.stdout.contains("1 waiting") && out.stdout.contains("has not finished"),
        "{}",
        out.stdout
    );
    assert!(
        out.final_line()
            .ends_with(", 1 waiting in the receiver's buffer (see above)"),
        "{}",
        out.stdout
    );
    assert_final(&out, TREE.len(), 0, 0);
    assert!(
        !exists(&s.dst_ds("a/new")),
        "the unfinished copy was placed"
    );
    assert_eq!(buffered_copies(&buffer), vec![copy]);
    // The replica itself is untouched.
    assert_same_snapshots(&s.root, &s.target);
    // Another tree, landing elsewhere under TARGET: none of its copies waits.
    let other = s.src.ds("other");
    create(&other);
    snapshot(&format!("{other}@o1"));
    let out = send_tree(&other, &s.recv, &["-d", "other"]);
    out.assert_ok();
    assert!(!out.stdout.contains("waiting"), "{}", out.stdout);
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

// issue 15 item 6: log values that can hold spaces are quoted, so a key=value log stays
// one value per key: a dataset named with a space (ZFS allows it) is logged as
// `dataset="pool/data/My Documents"` by both sides, and quoted in the sender's summary
// table so that its first column stays one field.
#[test]
fn a_dataset_name_with_a_space_is_quoted_in_the_logs() {
    let s = Setup::bare("space", &[]);
    let docs = s.src_ds("My Documents");
    create(&docs);
    write_file(&docs, "letter.txt", b"dear sir\n");
    snapshot_tree(&s.root, "s1");
    let out = s.send(&["-v"]);
    out.assert_ok();
    assert_same_snapshots(&s.root, &s.target);
    // In the summary table the name is one (quoted) field, read back whole.
    let rows = out.rows();
    assert_eq!(
        rows.get(&docs).map(|r| r.outcome.as_str()),
        Some("sent"),
        "{}",
        out.stdout
    );
    assert_eq!(rows.len(), 2, "{}", out.stdout);
    // The child may go before its parent is in place (the stream's text then says it is
    // buffered): the quoted dataset is what is checked.
    let sent = format!("send start dataset=\"{docs}\" stream=\"full @s1");
    assert!(out.stderr.contains(&sent), "{sent}\n{}", out.stderr);
    // Received in place, or into the buffer and then placed: the name is quoted either way.
    let received = format!("\"{}\"", s.dst_ds("My Documents"));
    let log = s.recv.log();
    assert!(
        log.lines().any(
            |l| (l.contains("recv done peer=") || l.contains("cleanup placed from="))
                && l.contains(&received)
        ),
        "{received}\n{log}"
    );
}
