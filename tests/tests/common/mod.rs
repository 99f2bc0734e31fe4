//! Shared set-up of the replication tests: a source pool with a small tree, a receiver
//! pool, a running `zfsync-recv`, and checks that compare the two sides.
//!
//! Each test binary includes this as `mod common;`; not every binary uses every helper.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;
use zfsync_tests::*;

/// The datasets of the standard tree, relative to its root: children and grandchildren,
/// and one great-grandchild.
pub const TREE: &[&str] = &["", "a", "a/x", "a/x/deep", "b", "b/y"];

/// How long a sender may run in these tests before it counts as hung.
pub const SEND_LIMIT: Duration = Duration::from_secs(60);

/// A source pool, a receiver pool and a receiver serving TARGET.
///
/// Field order is drop order: the receiver stops before the pools are destroyed.
pub struct Setup {
    pub recv: Receiver,
    /// The sent root in the source pool: `<src>/data`.
    pub root: String,
    /// The receiver's TARGET: `<dst>/backup` (created by the first receive).
    pub target: String,
    pub src: Pool,
    pub dst: Pool,
}

impl Setup {
    /// Pools, the standard tree's datasets (no files, no snapshots), and a receiver.
    pub fn new(tag: &str) -> Setup {
        let s = Setup::bare(tag, &[]);
        for rel in TREE {
            create(&s.src_ds(rel));
        }
        s
    }

    /// Pools and a receiver started with `recv_args`; the source root exists, nothing
    /// below it.
    pub fn bare(tag: &str, recv_args: &[&str]) -> Setup {
        let src = Pool::new(&format!("{tag}s"));
        let dst = Pool::unmounted(&format!("{tag}d"));
        let root = src.ds("data");
        let target = dst.ds("backup");
        create(&root);
        let recv = start_receiver(&target, recv_args);
        Setup {
            recv,
            root,
            target,
            src,
            dst,
        }
    }

    pub fn src_ds(&self, rel: &str) -> String {
        join(&self.root, rel)
    }

    pub fn dst_ds(&self, rel: &str) -> String {
        join(&self.target, rel)
    }

    /// The receiver's buffer dataset (the default, beside TARGET).
    pub fn buffer(&self) -> String {
        format!("{}_zfsync_buffer", self.target)
    }

    /// Writes the first generation of files into every dataset of the standard tree
    /// (about 3 MiB in all) and returns them by dataset.
    pub fn populate(&self) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
        let mut all = BTreeMap::new();
        for (i, rel) in TREE.iter().enumerate() {
            let mut files = BTreeMap::new();
            let big = if rel.is_empty() {
                1536 << 10
            } else {
                256 << 10
            };
            files.insert("data.bin".to_string(), random_bytes(big, 100 + i as u64));
            files.insert(
                "docs/name.txt".to_string(),
                format!("dataset {rel:?}\n").into_bytes(),
            );
            for (path, bytes) in &files {
                write_file(&self.src_ds(rel), path, bytes);
            }
            all.insert(rel.to_string(), files);
        }
        all
    }

    /// Changes generation `gen` of the files: every dataset gets a new file, half of them
    /// an overwritten one, and one loses a file.
    pub fn change(&self, gen: u64) {
        for (i, rel) in TREE.iter().enumerate() {
            let ds = self.src_ds(rel);
            write_file(
                &ds,
                &format!("gen/{gen}.bin"),
                &random_bytes(64 << 10, gen * 1000 + i as u64),
            );
            if (i as u64 + gen) % 2 == 0 {
                write_file(
                    &ds,
                    "docs/name.txt",
                    format!("{rel:?} gen {gen}\n").as_bytes(),
                );
            }
        }
        if gen == 2 {
            let p = mountpoint(&self.src_ds("a/x")).join("data.bin");
            if p.exists() {
                std::fs::remove_file(&p).unwrap_or_else(|e| panic!("rm {}: {e}", p.display()));
            }
        }
    }

    /// `zfsync-send EXTRA --zfs ZFS ROOT ADDR`, killed (and the test failed) after
    /// `SEND_LIMIT`.
    pub fn send(&self, extra: &[&str]) -> SendOutput {
        send_tree(&self.root, &self.recv, extra)
    }

    /// Stops the receiver and starts a new one on the same TARGET with `args`.
    pub fn restart_receiver(&mut self, args: &[&str]) {
        self.recv.stop();
        self.recv = start_receiver(&self.target, args);
    }
}

/// `zfsync-recv --zfs ZFS ARGS TARGET` on 127.0.0.1:0.
pub fn start_receiver(target: &str, args: &[&str]) -> Receiver {
    let zfs = zfs_bin();
    let mut all = vec!["--zfs", zfs.as_str()];
    all.extend_from_slice(args);
    Receiver::start(target, &all)
}

/// `zfsync-send EXTRA --zfs ZFS ROOT ADDR`, killed (and the test failed) after
/// `SEND_LIMIT`.
pub fn send_tree(root: &str, recv: &Receiver, extra: &[&str]) -> SendOutput {
    let zfs = zfs_bin();
    let addr = recv.addr();
    let mut args: Vec<&str> = extra.to_vec();
    args.extend_from_slice(&["--zfs", &zfs, root, &addr]);
    run_with_timeout(&sender_bin(), &args, SEND_LIMIT)
}

pub fn join(root: &str, rel: &str) -> String {
    if rel.is_empty() {
        root.to_string()
    } else {
        format!("{root}/{rel}")
    }
}

/// Panics unless both trees have the same datasets (by relative path) with the same
/// snapshots, by name and GUID, in the same order.
pub fn assert_same_snapshots(src_root: &str, dst_root: &str) {
    let (src, dst) = (tree_snapshots(src_root), tree_snapshots(dst_root));
    assert_eq!(
        src, dst,
        "snapshots differ: left is the source {src_root}, right the receiver {dst_root}"
    );
}

/// Panics unless every dataset of the source tree that has snapshot `snap` has the same
/// files in it on both sides.
pub fn assert_same_files(src_root: &str, dst_root: &str, snap: &str) {
    let mut checked = 0;
    for (rel, snaps) in tree_snapshots(src_root) {
        if !snaps.iter().any(|(n, _)| n == snap) {
            continue;
        }
        let a = files_of(&format!("{}@{snap}", join(src_root, &rel)));
        let b = files_of(&format!("{}@{snap}", join(dst_root, &rel)));
        assert_files_eq(&a, &b, &format!("{rel:?}@{snap}"));
        checked += 1;
    }
    assert!(checked > 0, "no dataset of {src_root} has @{snap}");
}

/// Like `assert_eq!` on two file maps, but names the differing paths instead of
/// printing megabytes of contents.
pub fn assert_files_eq(
    want: &BTreeMap<String, Vec<u8>>,
    got: &BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    let mut diffs = Vec::new();
    for (path, data) in want {
        match got.get(path) {
            None => diffs.push(format!("{path}: missing")),
            Some(d) if d != data => diffs.push(format!(
                "{path}: contents differ ({} bytes, want {})",
                d.len(),
                data.len()
            )),
            Some(_) => {}
        }
    }
    for path in got.keys().filter(|p| !want.contains_key(*p)) {
        diffs.push(format!("{path}: unexpected"));
    }
    assert!(diffs.is_empty(), "{what}: files differ: {diffs:?}");
}

/// The children of the buffer dataset (empty if it does not exist).
pub fn buffered_copies(buffer: &str) -> Vec<String> {
    if !exists(buffer) {
        return Vec::new();
    }
    list_datasets(buffer)
        .into_iter()
        .filter(|d| d != buffer)
        .collect()
}

/// Panics unless the closing line reports `datasets` datasets, `sent` sent, `failed`
/// failed.
pub fn assert_final(out: &SendOutput, datasets: usize, sent: usize, failed: usize) {
    let want = format!("zfsync-send: {datasets} datasets, {sent} sent, {failed} failed, ");
    assert!(
        out.final_line().starts_with(&want),
        "want {want:?}...\n--- stdout ---\n{}--- stderr ---\n{}",
        out.stdout,
        out.stderr
    );
}

/// The standard tree with three snapshots (s1..s3, files changing between them), sent in
/// full to an empty receiver; checks everything and returns the set-up.
pub fn initial_sync(tag: &str) -> Setup {
    let s = Setup::new(tag);
    s.populate();
    snapshot_tree(&s.root, "s1");
    s.change(1);
    snapshot_tree(&s.root, "s2");
    s.change(2);
    snapshot_tree(&s.root, "s3");
    let out = s.send(&[]);
    out.assert_ok();
    assert_same_snapshots(&s.root, &s.target);
    s
}

/// A connection that speaks the protocol frame by frame, as a hand-made sender: for the
/// tests of what the receiver makes of messages a real sender would not send.
pub struct RawPeer {
    pub reader: zfsync_protocol::FrameReader<std::io::BufReader<std::net::TcpStream>>,
    pub writer: zfsync_protocol::FrameWriter<std::io::BufWriter<std::net::TcpStream>>,
}

impl RawPeer {
    /// Connects to `addr` and greets a receiver as `client` with key `secret` (both ""
    /// for a receiver without keys), for destination `dest`; panics unless welcomed.
    pub fn greet(addr: &str, client: &str, secret: &str, dest: &str) -> RawPeer {
        use zfsync_protocol::{auth, Message, VERSION};
        let raw =
            std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut p = RawPeer {
            reader: zfsync_protocol::FrameReader::new(std::io::BufReader::new(
                raw.try_clone().unwrap(),
            )),
            writer: zfsync_protocol::FrameWriter::new(std::io::BufWriter::new(raw)),
        };
        p.send(&Message::Hello {
            version: VERSION,
            agent: "raw-test-peer".into(),
            dest: dest.into(),
            client: client.into(),
        });
        let mut answer = p.recv();
        if let Message::Challenge { nonce } = &answer {
            let mine = auth::nonce().unwrap().to_vec();
            let mac = auth::client_proof(secret.as_bytes(), nonce, &mine, client, dest);
            p.send(&Message::Proof { nonce: mine, mac });
            answer = p.recv();
        }
        assert!(
            matches!(answer, Message::Welcome { .. }),
            "expected welcome, got {answer:?}"
        );
        p
    }

    pub fn send(&mut self, msg: &zfsync_protocol::Message) {
        self.writer
            .send(msg)
            .unwrap_or_else(|e| panic!("sending {}: {e}", msg.name()));
    }

    /// The next message that is not a KeepAlive; panics at a close or an error.
    pub fn recv(&mut self) -> zfsync_protocol::Message {
        loop {
            match self.reader.read_message() {
                Ok(Some(zfsync_protocol::Message::KeepAlive)) => {}
                Ok(Some(m)) => return m,
                Ok(None) => panic!("receiver closed the connection instead of answering"),
                Err(e) => panic!("no answer from the receiver: {e}"),
            }
        }
    }
}
