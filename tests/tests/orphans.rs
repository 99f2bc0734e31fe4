//! Replicas of datasets destroyed on the source (issue 16), against real zfs-fuse pools:
//! kept by default; with the receiver's `--orphans-after DUR`, destroyed once every run of
//! the sender has lacked the dataset for DUR, counted from the first such run; a run that
//! excludes a dataset does not make it absent; `--dry-run-orphans` only says; a dataset
//! the sender never listed (made by hand below its base, or another sender's replicas
//! there) is never destroyed.
//!
//! The clock is `ZFSYNC_NOW`: each simulated day gets a receiver of its own, started at
//! that time, all of them sharing one state directory (the history counts absence). The
//! option needs keys: every sender here is client `alice`.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use zfsync_protocol::Message;
use zfsync_tests::*;

const ALICE: &str = "alice-secret-0123456789";

/// 2026-12-01T00:00:00Z.
const DEC1: u64 = 1_796_083_200;
const DAY: u64 = 86_400;

/// A source `data` with children `a` and `b` (each with a file), a receiver pool, and
/// the state directory every receiver of the test shares.
struct Orphans {
    root: String,
    target: String,
    state: String,
    /// The receiver's key file and alice's.
    recv_keys: String,
    send_key: String,
    src: Pool,
    _dst: Pool,
}

/// Writes `text` into a key file `name` (mode 600) in `dir`; returns its path.
fn key_file(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

impl Orphans {
    fn new(tag: &str) -> Orphans {
        let src = Pool::new(&format!("{tag}s"));
        let dst = Pool::unmounted(&format!("{tag}d"));
        let root = src.ds("data");
        for rel in ["a", "b"] {
            create(&join(&root, rel));
            write_file(&join(&root, rel), "f.txt", rel.as_bytes());
        }
        let state = temp_dir("orphanstate");
        let keys = temp_dir("orphankeys");
        let line = format!("alice {ALICE}\n");
        Orphans {
            target: dst.ds("backup"),
            root,
            state: state.display().to_string(),
            recv_keys: key_file(&keys, "recv.keys", &line),
            send_key: key_file(&keys, "alice.key", &line),
            src,
            _dst: dst,
        }
    }

    /// Snapshots the source tree as `snap`, then runs the sender with `send_args` to a
    /// receiver whose clock is at `now`, started with `recv_args`; returns the receiver's
    /// log. The receiver has stopped when this returns.
    fn run(&self, now: u64, snap: &str, recv_args: &[&str], send_args: &[&str]) -> String {
        self.run_senders(now, snap, recv_args, &[(&self.root, send_args)])
    }

    /// `run` with one sender per source root, one after another, to the same receiver.
    fn run_senders(
        &self,
        now: u64,
        snap: &str,
        recv_args: &[&str],
        senders: &[(&str, &[&str])],
    ) -> String {
        let mut recv = self.receiver(now, recv_args);
        for (root, send_args) in senders {
            snapshot_tree(root, snap);
            let mut args = vec!["--key-file", self.send_key.as_str()];
            args.extend_from_slice(send_args);
            send_tree(root, &recv, &args).assert_ok();
        }
        recv.stop();
        recv.log()
    }

    /// A receiver with the test's keys and state, its clock at `now`.
    fn receiver(&self, now: u64, recv_args: &[&str]) -> Receiver {
        let zfs = zfs_bin();
        let mut args = vec!["--zfs", zfs.as_str(), "--state-dir", &self.state];
        args.extend_from_slice(&["--key-file", &self.recv_keys]);
        args.extend_from_slice(recv_args);
        Receiver::start_at(now, &self.target, &args)
    }

    /// Hand-made sessions of alice to a receiver at `now` (with `recv_args`), one for each
    /// of `sessions`: announcing the root with `root` GUIDs (None: no announcement), then
    /// each list in turn (None: a Cleanup without a list before it), each followed by a
    /// Cleanup. Returns the receiver's log.
    fn hand_made(
        &self,
        now: u64,
        recv_args: &[&str],
        sessions: &[(Option<&[u64]>, &[Option<&[&str]>])],
    ) -> String {
        let mut recv = self.receiver(now, recv_args);
        for (root, lists) in sessions {
            let mut p = RawPeer::greet(&recv.addr(), "alice", ALICE, "");
            if let Some(guids) = root {
                p.send(&Message::Root {
                    guids: guids.to_vec(),
                });
            }
            for list in *lists {
                if let Some(paths) = list {
                    p.send(&Message::Listed {
                        paths: paths.iter().map(|p| p.to_string()).collect(),
                        last: true,
                    });
                }
                p.send(&Message::Cleanup);
                let done = p.recv();
                assert!(matches!(done, Message::CleanupDone { .. }), "{done:?}");
            }
            p.send(&Message::Bye);
        }
        recv.stop();
        recv.log()
    }

    /// The GUIDs of the source root's snapshots: what a real sender announces.
    fn root_guids(&self) -> Vec<u64> {
        snapshot_guids(&self.root)
            .into_iter()
            .map(|(_, g)| g)
            .collect()
    }

    fn replica(&self, rel: &str) -> String {
        join(&self.target, rel)
    }
}

/// `zfs destroy -r DS` on the source (zfs-fuse may call a dataset just written busy).
fn destroy(ds: &str) {
    zfs_retry_busy(&["destroy", "-r", ds]).unwrap_or_else(|e| panic!("{e}"));
}

/// The replica's snapshots (name and GUID) are the source's `want`.
fn assert_snapshots(replica: &str, want: &[(String, u64)]) {
    assert!(exists(replica), "{replica} is gone");
    assert_eq!(snapshot_guids(replica), want, "{replica}");
}

// issue 16: a replica whose source is gone goes only by the receiver's option, only after
// its duration, and a run that left a dataset out by a filter does not make it absent.
#[test]
fn a_replica_goes_once_its_source_has_been_gone_for_the_receivers_duration() {
    let o = Orphans::new("orph");
    let opt = ["--orphans-after", "2d"];
    o.run(DEC1, "s1", &opt, &[]);
    let b_snaps = snapshot_guids(&join(&o.root, "b"));
    assert_snapshots(&o.replica("b"), &b_snaps);

    destroy(&join(&o.root, "b"));
    // From a day later on, every run leaves `a` out: `b` is absent from then on, `a` is
    // not (a filter chooses what is sent, not what exists).
    let skip_a = ["--exclude", "a"];
    let log = o.run(DEC1 + DAY, "s2", &opt, &skip_a);
    assert!(!log.contains("orphan destroyed"), "{log}");
    assert_snapshots(&o.replica("b"), &b_snaps);

    // Two days after the first run that lacked it, not yet: 2d is not over, as the dry
    // run says.
    let mut dry = opt.to_vec();
    dry.push("--dry-run-orphans");
    let log = o.run(DEC1 + 2 * DAY + 3600, "s3", &dry, &skip_a);
    let waiting = format!(
        "orphan waiting dataset={} absent_for=\"1d 1h\" left=\"23h 0m\" lists=2",
        o.replica("b")
    );
    assert!(log.contains(&waiting), "{log}");
    assert!(!log.contains("orphan destroyed"), "{log}");
    assert!(!log.contains("orphan would be destroyed"), "{log}");
    assert_snapshots(&o.replica("b"), &b_snaps);

    // The dry run names what the real one then destroys, and destroys nothing.
    let log = o.run(DEC1 + 3 * DAY, "s4", &dry, &skip_a);
    let would = format!("orphan would be destroyed dataset={}", o.replica("b"));
    assert!(log.contains(&would), "{log}");
    assert_eq!(log.matches("orphan would be destroyed").count(), 1, "{log}");
    assert_snapshots(&o.replica("b"), &b_snaps);

    let log = o.run(DEC1 + 3 * DAY, "s5", &opt, &skip_a);
    let destroyed = format!("orphan destroyed dataset={}", o.replica("b"));
    assert!(log.contains(&destroyed), "{log}");
    assert_eq!(log.matches("orphan destroyed").count(), 1, "{log}");
    assert!(!exists(&o.replica("b")), "{log}");
    // `a`, left out for three days, is whole: s1, and the rest once it is sent again.
    let a_snaps = snapshot_guids(&join(&o.root, "a"));
    assert_snapshots(&o.replica("a"), &a_snaps[..1]);
    o.run(DEC1 + 3 * DAY, "s6", &opt, &[]);
    let a_snaps = snapshot_guids(&join(&o.root, "a"));
    assert_eq!(a_snaps.len(), 6);
    assert_snapshots(&o.replica("a"), &a_snaps);
    assert_snapshots(&o.target, &snapshot_guids(&o.root));
}

// issue 16: without --orphans-after, a replica whose source is gone is kept for ever.
#[test]
fn without_the_option_a_replica_of_a_destroyed_source_is_kept() {
    let o = Orphans::new("orphk");
    o.run(DEC1, "s1", &[], &[]);
    let b_snaps = snapshot_guids(&join(&o.root, "b"));
    destroy(&join(&o.root, "b"));
    o.run(DEC1 + DAY, "s2", &[], &[]);
    let log = o.run(DEC1 + 400 * DAY, "s3", &[], &[]);
    assert!(!log.contains("orphan destroyed"), "{log}");
    assert_snapshots(&o.replica("b"), &b_snaps);
    // Turned on later, the option counts from then, and only what a list has named since:
    // b's source was gone before, so its replica is never a candidate (docs/RETENTION.md).
    let opt = ["--orphans-after", "30d"];
    for (day, snap) in [(401, "s4"), (421, "s5"), (441, "s6")] {
        let log = o.run(DEC1 + day * DAY, snap, &opt, &[]);
        assert!(!log.contains("orphan destroyed"), "day {day}: {log}");
    }
    assert_snapshots(&o.replica("b"), &b_snaps);
    assert!(exists(&o.replica("a")));
}

// A sender speaks only for what it once listed: a dataset made by hand below its base,
// with snapshots of its own, is in none of its lists and stays, however long the option
// has been on; the replica of a destroyed source goes in the same run.
#[test]
fn a_dataset_made_by_hand_below_the_base_is_never_destroyed() {
    let o = Orphans::new("orphh");
    let opt = ["--orphans-after", "2d"];
    o.run(DEC1, "s1", &opt, &[]);
    let hand = o.replica("hand");
    zfs(&["create", &hand]);
    zfs(&["snapshot", &format!("{hand}@mine")]);
    let hand_snaps = snapshot_guids(&hand);
    destroy(&join(&o.root, "b"));
    o.run(DEC1 + DAY, "s2", &opt, &[]);

    // After a gap of more than the duration, absence counts again from this run.
    let log = o.run(DEC1 + 400 * DAY, "s3", &opt, &[]);
    assert!(log.contains("every absence counts again from now"), "{log}");
    assert!(!log.contains("orphan destroyed"), "{log}");
    let log = o.run(DEC1 + 401 * DAY, "s3b", &opt, &[]);
    assert!(!log.contains("orphan destroyed"), "{log}");
    let log = o.run(DEC1 + 402 * DAY, "s4", &opt, &[]);
    let destroyed = format!("orphan destroyed dataset={}", o.replica("b"));
    assert!(log.contains(&destroyed), "{log}");
    assert_eq!(log.matches("orphan destroyed").count(), 1, "{log}");
    assert_snapshots(&hand, &hand_snaps);
    assert!(exists(&o.replica("a")));

    // The dry run says why it stays.
    let mut dry = opt.to_vec();
    dry.push("--dry-run-orphans");
    let log = o.run(DEC1 + 403 * DAY, "s5", &dry, &[]);
    let kept = format!("orphan kept dataset={hand} reason=never-listed");
    assert!(log.contains(&kept), "{log}");
    assert!(!log.contains("orphan would be destroyed"), "{log}");
    assert_snapshots(&hand, &hand_snaps);
}

// Two senders whose bases nest: the second lands below the first's (--dest x). The first
// never listed x, so its runs never count it absent, even once the second has stopped
// sending; the second's own lists still let go of the replica of a dataset destroyed on
// its source.
#[test]
fn the_replicas_of_a_sender_nested_below_another_are_its_own() {
    let o = Orphans::new("orphn");
    let other = o.src.ds("other");
    for rel in ["", "c", "d"] {
        create(&join(&other, rel));
        write_file(&join(&other, rel), "f.txt", b"other");
    }
    let opt = ["--orphans-after", "2d"];
    let both: [(&str, &[&str]); 2] = [(&o.root, &[]), (&other, &["--dest", "x"])];
    o.run_senders(DEC1, "s1", &opt, &both);
    destroy(&join(&other, "c"));
    o.run_senders(DEC1 + DAY, "s2", &opt, &both);
    for (day, snap) in [(400, "s3"), (401, "s3b")] {
        let log = o.run_senders(DEC1 + day * DAY, snap, &opt, &both);
        assert!(!log.contains("orphan destroyed"), "day {day}: {log}");
    }
    let log = o.run_senders(DEC1 + 402 * DAY, "s3c", &opt, &both);
    let destroyed = format!("orphan destroyed dataset={}", o.replica("x/c"));
    assert!(log.contains(&destroyed), "{log}");
    assert_eq!(log.matches("orphan destroyed").count(), 1, "{log}");
    let (x_snaps, d_snaps) = (snapshot_guids(&other), snapshot_guids(&join(&other, "d")));
    assert_snapshots(&o.replica("x/d"), &d_snaps);

    // The second sender stops; the first goes on alone for far longer than the duration.
    for (day, snap) in [(403, "s4"), (404, "s5"), (800, "s6"), (801, "s7")] {
        let log = o.run(DEC1 + day * DAY, snap, &opt, &[]);
        assert!(!log.contains("orphan destroyed"), "day {day}: {log}");
    }
    assert_snapshots(&o.replica("x"), &x_snaps);
    assert_snapshots(&o.replica("x/d"), &d_snaps);
    assert!(exists(&o.replica("a")) && exists(&o.replica("b")));
}

// issue 16, review: a list counts only in a session that announced its root and whose
// root the receiver accepts as a replica of it; empty lists in other sessions destroy
// nothing, however long they go on.
#[test]
fn a_list_without_an_accepted_root_is_not_counted() {
    let o = Orphans::new("orphr");
    let opt = ["--orphans-after", "2d"];
    o.run(DEC1, "s1", &opt, &[]);
    let before = list_datasets(&o.target);
    let wrong: &[u64] = &[1, 2, 3];
    let empty: &[Option<&[&str]>] = &[Some(&[])];
    for day in 1..=6 {
        let log = o.hand_made(
            DEC1 + day * DAY,
            &opt,
            &[(None, empty), (Some(wrong), empty)],
        );
        assert!(!log.contains("orphan destroyed"), "day {day}: {log}");
        assert_eq!(log.matches("root is not accepted").count(), 2, "{log}");
    }
    assert_eq!(list_datasets(&o.target), before);
}

// issue 16, review: a list creates rows only for what its sender delivered: naming a
// dataset made by hand below the base, then leaving it out, never makes it absent.
#[test]
fn a_dataset_a_list_names_without_its_sender_delivering_it_is_never_absent() {
    let o = Orphans::new("orphd");
    let opt = ["--orphans-after", "2d"];
    o.run(DEC1, "s1", &opt, &[]);
    let hand = o.replica("hand");
    zfs(&["create", &hand]);
    zfs(&["snapshot", &format!("{hand}@mine")]);
    let guids = o.root_guids();
    let claims: &[Option<&[&str]>] = &[Some(&["a", "b", "hand"])];
    o.hand_made(DEC1 + DAY, &opt, &[(Some(&guids), claims)]);
    let honest: &[Option<&[&str]>] = &[Some(&["a", "b"])];
    for day in 2..=6 {
        let log = o.hand_made(DEC1 + day * DAY, &opt, &[(Some(&guids), honest)]);
        assert!(!log.contains("orphan destroyed"), "day {day}: {log}");
    }
    assert!(exists(&hand));
}

// issue 16, review: a second Cleanup on one connection, without a list of its own, counts
// no list: it must not count the first list's paths as gone.
#[test]
fn a_second_cleanup_without_a_list_counts_nothing() {
    let o = Orphans::new("orphc");
    let opt = ["--orphans-after", "2d"];
    o.run(DEC1, "s1", &opt, &[]);
    let guids = o.root_guids();
    let twice: &[Option<&[&str]>] = &[Some(&["a", "b"]), None];
    o.hand_made(DEC1 + DAY, &opt, &[(Some(&guids), twice)]);
    // Two empty lists: absent from day 2, for two lists; not yet 2d by day 3.5.
    let empty: &[Option<&[&str]>] = &[Some(&[])];
    o.hand_made(DEC1 + 2 * DAY, &opt, &[(Some(&guids), empty)]);
    let log = o.hand_made(DEC1 + 3 * DAY + DAY / 2, &opt, &[(Some(&guids), empty)]);
    assert!(!log.contains("orphan destroyed"), "{log}");
    assert!(exists(&o.replica("a")) && exists(&o.replica("b")));
}
