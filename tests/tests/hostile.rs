//! Issue 5, hostile input: a real `zfsync-recv` on real zfs-fuse pools, spoken to by peers
//! that are not a well-behaved `zfsync-send`: garbage, endless or oversized frames, silent
//! peers, floods of connections, hand-made offers of hostile dataset paths, hostile or
//! oversize dataset lists (issue 16), a wrong
//! protocol version, streams cut or broken midway, and peers without the key.
//!
//! Each test checks three things: the peer gets a clear answer or a closed connection
//! within the receiver's timeout, nothing is created or changed on the receiving pool, and
//! the receiver keeps serving (a real `zfsync-send` or a fresh greeting succeeds after).
//!
//! The hostile frames are made with the protocol crate itself, so a test says exactly
//! which message it sends; only the deliberately malformed bytes are written by hand.

use std::io::{BufReader, BufWriter, ErrorKind, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zfsync_protocol::{
    DatasetKind, Error as ProtoError, FrameReader, FrameWriter, Message, Outcome, Plan, Reason,
    SnapshotInfo, MAX_CONTROL, MAX_DATA, VERSION,
};
use zfsync_tests::*;

mod common;

/// The receiver's `--timeout` in these tests: short, so silent peers are dropped quickly.
const RECV_TIMEOUT: &str = "2";
/// How long a test waits for the receiver to answer or close, well above RECV_TIMEOUT.
const PATIENCE: Duration = Duration::from_secs(20);
/// How long a real `zfsync-send` may take here.
const SEND_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// A hand-driven peer

/// One TCP connection to the receiver, speaking frames by hand.
struct Peer {
    reader: FrameReader<BufReader<TcpStream>>,
    writer: FrameWriter<BufWriter<TcpStream>>,
    raw: TcpStream,
}

/// How a connection ended, as seen by the peer.
#[derive(Debug)]
enum Closed {
    /// Clean end of stream.
    Eof,
    /// Reset by the receiver (it closed with our bytes still unread).
    Reset,
}

impl Peer {
    fn connect(addr: &str) -> Peer {
        let raw = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        raw.set_read_timeout(Some(PATIENCE)).unwrap();
        raw.set_write_timeout(Some(PATIENCE)).unwrap();
        raw.set_nodelay(true).unwrap();
        Peer {
            reader: FrameReader::new(BufReader::new(raw.try_clone().unwrap())),
            writer: FrameWriter::new(BufWriter::new(raw.try_clone().unwrap())),
            raw,
        }
    }

    /// Connects and greets as protocol version `VERSION`, without a key, and announces a
    /// root without snapshots (what a root's offer here never contradicts); panics unless
    /// welcomed.
    fn greeted(addr: &str) -> Peer {
        Peer::greeted_with_root(addr, &[])
    }

    /// Connects and greets a receiver with keys as `client` with `secret`, and announces
    /// a root without snapshots; panics unless welcomed.
    fn keyed(addr: &str, client: &str, secret: &str) -> Peer {
        let r = common::RawPeer::greet(addr, client, secret, "");
        let raw = r.writer.get_ref().get_ref().try_clone().unwrap();
        raw.set_read_timeout(Some(PATIENCE)).unwrap();
        raw.set_write_timeout(Some(PATIENCE)).unwrap();
        let mut p = Peer {
            reader: r.reader,
            writer: r.writer,
            raw,
        };
        p.send(&Message::Root { guids: Vec::new() });
        p
    }

    /// `greeted`, announcing a root with snapshots `guids`.
    fn greeted_with_root(addr: &str, guids: &[u64]) -> Peer {
        let mut p = Peer::connect(addr);
        match p.hello(VERSION, "") {
            Message::Welcome { version, .. } => assert_eq!(version, VERSION),
            other => panic!("expected welcome, got {other:?}"),
        }
        p.send(&Message::Root {
            guids: guids.to_vec(),
        });
        p
    }

    fn hello(&mut self, version: u16, dest: &str) -> Message {
        self.send(&Message::Hello {
            version,
            agent: "hostile-test".into(),
            dest: dest.into(),
            client: String::new(),
        });
        self.recv()
    }

    fn send(&mut self, msg: &Message) {
        self.writer
            .send(msg)
            .unwrap_or_else(|e| panic!("sending {}: {e}", msg.name()));
    }

    fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.raw.write_all(bytes)
    }

    /// The next message; panics on a closed connection or a timeout.
    fn recv(&mut self) -> Message {
        match self.reader.read_message() {
            Ok(Some(m)) => m,
            Ok(None) => panic!("receiver closed the connection instead of answering"),
            Err(e) => panic!("no answer from the receiver: {e}"),
        }
    }

    /// Offers `path` with `snaps` (name, guid) and returns the reply.
    fn offer(&mut self, path: &str, snaps: &[(&str, u64)], dry_run: bool) -> Message {
        self.offer_as(path, DatasetKind::Filesystem, snaps, dry_run)
    }

    /// [`Peer::offer`] of a dataset of `kind`.
    fn offer_as(
        &mut self,
        path: &str,
        kind: DatasetKind,
        snaps: &[(&str, u64)],
        dry_run: bool,
    ) -> Message {
        self.send_offer_as(path, kind, snaps, dry_run);
        self.recv()
    }

    /// Offers `path` with `snaps` (name, guid), without waiting for an answer.
    fn send_offer(&mut self, path: &str, snaps: &[(&str, u64)], dry_run: bool) {
        self.send_offer_as(path, DatasetKind::Filesystem, snaps, dry_run)
    }

    /// [`Peer::send_offer`] of a dataset of `kind`.
    fn send_offer_as(
        &mut self,
        path: &str,
        kind: DatasetKind,
        snaps: &[(&str, u64)],
        dry_run: bool,
    ) {
        self.writer
            .write_message(&Message::Offer {
                path: path.into(),
                kind,
                count: snaps.len() as u32,
                dry_run,
            })
            .unwrap();
        for (i, (name, guid)) in snaps.iter().enumerate() {
            self.writer
                .write_message(&Message::Snap(SnapshotInfo {
                    name: name.to_string(),
                    guid: *guid,
                    createtxg: 10 + i as u64,
                }))
                .unwrap();
        }
        self.writer.flush().unwrap();
    }

    /// Reads until the receiver closes the connection; returns what it said before, how
    /// it closed, and when. Panics if it is still open after `PATIENCE`.
    fn until_closed(&mut self) -> (Vec<Message>, Closed, Duration) {
        let start = Instant::now();
        let mut said = Vec::new();
        loop {
            match self.reader.read_message() {
                Ok(Some(m)) => said.push(m),
                Ok(None) => return (said, Closed::Eof, start.elapsed()),
                Err(ProtoError::Io(e)) if is_reset(&e) => {
                    return (said, Closed::Reset, start.elapsed())
                }
                Err(e) if e.is_timeout() => panic!(
                    "receiver still holds the connection after {:?} (said {said:?})",
                    start.elapsed()
                ),
                // Bytes that are not a frame: whatever it is, the receiver did not speak
                // our protocol back. Fail with what arrived.
                Err(e) => panic!("receiver answered with a broken frame: {e} (said {said:?})"),
            }
        }
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

fn error_reason(msg: &Message) -> Option<Reason> {
    match msg {
        Message::Error { reason, .. } => Some(*reason),
        _ => None,
    }
}

/// Panics unless the receiver says only Error(`reason`) and closes the connection.
fn assert_closed_with(p: &mut Peer, reason: Reason, what: &str) {
    let (said, _, _) = p.until_closed();
    assert_eq!(
        said.iter().map(error_reason).collect::<Vec<_>>(),
        vec![Some(reason)],
        "{what}: {said:?}"
    );
}

fn refusal(msg: Message) -> (Reason, String) {
    match msg {
        Message::Reply(Plan::Refused { reason, text }) => (reason, text),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Pools, receiver, real sends

/// A receiving pool with a running receiver on TARGET `<dst>/backup` (not yet existing).
/// Field order is drop order: the receiver stops before its pool is destroyed.
struct Site {
    recv: Receiver,
    target: String,
    dst: Pool,
}

impl Site {
    fn new(tag: &str, extra: &[&str]) -> Site {
        let dst = Pool::unmounted(tag);
        let target = dst.ds("backup");
        let zfs = zfs_bin();
        let mut args = vec!["--zfs", zfs.as_str(), "--timeout", RECV_TIMEOUT];
        args.extend_from_slice(extra);
        let recv = Receiver::start(&target, &args);
        Site { recv, target, dst }
    }

    fn addr(&self) -> String {
        self.recv.addr()
    }

    /// Every dataset, volume and snapshot in the receiving pool, with its GUID: what
    /// "nothing changed" is checked against.
    fn contents(&self) -> Vec<String> {
        zfs(&[
            "get",
            "-Hp",
            "-r",
            "-o",
            "name,value",
            "guid",
            &self.dst.name,
        ])
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// Panics unless the receiver process is still running.
    fn assert_alive(&mut self) {
        let pid = self.recv.pid();
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "receiver exited\n{}",
            self.recv.log()
        );
    }
}

/// A source pool with `<src>/data` and `<src>/data/child`, both with snapshot `s1`.
///
/// The pool is not mounted and the datasets hold no files: every check here is about the
/// protocol and the receiver's pool, not file contents (tests/replicate.rs covers those),
/// and staying clear of zfs-fuse's FUSE layer keeps these tests fast and independent of
/// mounts.
struct Source {
    root: String,
    _pool: Pool,
}

impl Source {
    fn new(tag: &str) -> Source {
        let pool = Pool::unmounted(tag);
        let root = pool.ds("data");
        create(&root);
        create(&format!("{root}/child"));
        snapshot_tree(&root, "s1");
        Source { root, _pool: pool }
    }

    /// One `zfsync-send` worker, generous timeout: the receiver's short timeout must not
    /// catch a well-behaved sender between its frames.
    fn send_to(&self, site: &Site) -> SendOutput {
        self.send_to_with(site, &[])
    }

    /// `send_to` with `extra` arguments before the root.
    fn send_to_with(&self, site: &Site, extra: &[&str]) -> SendOutput {
        let zfs = zfs_bin();
        let addr = site.addr();
        let mut args = vec!["-t", "1", "--timeout", "30", "--zfs", &zfs];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[&self.root, &addr]);
        run_with_timeout(&sender_bin(), &args, SEND_LIMIT)
    }

    /// Sends and checks that the receiver has every snapshot, by name and GUID.
    fn send_and_verify(&self, site: &Site) {
        let out = self.send_to(site);
        out.assert_ok();
        assert_eq!(
            tree_snapshots(&self.root),
            tree_snapshots(&site.target),
            "snapshots differ after a real send (left source, right receiver)\n{}",
            out.stdout
        );
    }
}

fn guid(snap: &str) -> u64 {
    zfs(&["get", "-Hp", "-o", "value", "guid", snap])
        .trim()
        .parse()
        .expect("guid is a number")
}

/// The bytes of `zfs send ARGS`.
fn zfs_send_bytes(args: &[&str]) -> Vec<u8> {
    let out = Command::new(zfs_bin())
        .arg("send")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run zfs send");
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "zfs send {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Waits (up to PATIENCE) until `check` holds; the receiver cleans up after a broken
/// stream in its own time.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "still not true after {PATIENCE:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn garbage_is_refused_and_the_receiver_keeps_serving() {
    let mut site = Site::new("hgarb", &[]);
    let before = site.contents();
    let garbage: &[(&str, &[u8])] = &[
        ("an HTTP request", b"GET / HTTP/1.1\r\nHost: backup\r\n\r\n"),
        ("an SSH banner", b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"),
        // The start of a TLS ClientHello.
        (
            "a TLS hello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ),
        // A known kind with a short, broken payload: a Hello without the magic.
        ("a hello without magic", b"\x01\x00\x00\x00\x08NOTZFSYN"),
        // A well-formed frame that is not a greeting.
        (
            "an offer before hello",
            b"\x10\x00\x00\x00\x08\x00\x01a\x00\x00\x00\x00\x01",
        ),
        ("zero bytes", &[0u8; 64]),
    ];
    for (what, bytes) in garbage {
        let mut p = Peer::connect(&site.addr());
        p.write_raw(bytes).unwrap();
        let (said, _how, took) = p.until_closed();
        // The receiver may explain (an Error frame of reason Protocol) or just close, but
        // says nothing else and does not wait for more.
        assert!(
            said.iter()
                .all(|m| error_reason(m) == Some(Reason::Protocol)),
            "{what}: receiver said {said:?}"
        );
        assert!(
            took < Duration::from_secs(5),
            "{what}: closed after {took:?}"
        );
    }
    // Still serving: a proper greeting is welcomed.
    let mut p = Peer::greeted(&site.addr());
    p.send(&Message::Bye);
    site.assert_alive();
    assert_eq!(
        site.contents(),
        before,
        "garbage changed the receiving pool"
    );
}

#[test]
fn oversized_frames_are_refused_without_being_read() {
    let mut site = Site::new("hbig", &[]);
    // Each starts with a header the receiver must refuse at once; then we keep writing.
    // The receiver must close without reading what follows: our writes fail long before
    // we have pushed 256 MiB (the kernel's socket buffers hold a few MiB at most).
    let mut over_control = vec![0x01];
    over_control.extend_from_slice(&(MAX_CONTROL as u32 + 1).to_be_bytes());
    let mut huge_data = vec![0x20];
    huge_data.extend_from_slice(&(MAX_DATA as u32 + 1).to_be_bytes());
    let mut four_gib = vec![0x11];
    four_gib.extend_from_slice(&u32::MAX.to_be_bytes());
    let cases: &[(&str, Vec<u8>, bool)] = &[
        ("a hello announcing 64 KiB + 1", over_control, false),
        (
            "a data frame announcing 1 MiB + 1 after the greeting",
            huge_data,
            true,
        ),
        (
            "a snap frame announcing 4 GiB after the greeting",
            four_gib,
            true,
        ),
        // No header at all: an endless line of text.
        ("an endless line", b"AAAAAAAA".to_vec(), false),
    ];
    let budget: usize = 256 << 20;
    for (what, header, greet) in cases {
        let mut p = if *greet {
            Peer::greeted(&site.addr())
        } else {
            Peer::connect(&site.addr())
        };
        let fill = if header[0] == b'A' { b'A' } else { 0x61 };
        let chunk = vec![fill; 64 << 10];
        let start = Instant::now();
        let mut written = 0usize;
        let mut result = p.write_raw(header);
        while result.is_ok() && written < budget {
            result = p.write_raw(&chunk);
            if result.is_ok() {
                written += chunk.len();
            }
        }
        let err = match result {
            Err(e) => e,
            Ok(()) => panic!("{what}: the receiver took {written} bytes without closing"),
        };
        assert!(
            is_reset(&err),
            "{what}: writing failed with {err} ({:?}) after {written} bytes, want a reset",
            err.kind()
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what}: took {:?} to be refused",
            start.elapsed()
        );
        assert!(
            written < 64 << 20,
            "{what}: the receiver swallowed {written} bytes before closing"
        );
    }
    let mut p = Peer::greeted(&site.addr());
    p.send(&Message::Bye);
    site.assert_alive();
}

#[test]
fn silent_peers_are_dropped_while_a_real_send_completes() {
    let src = Source::new("hsils");
    let mut site = Site::new("hsild", &[]);
    let addr = site.addr();
    // Four ways of saying nothing: not a byte; half a header; half a frame (it announces
    // 64 KiB, sends 10 bytes); greeted, then offered a dataset with 3 snapshots but sent
    // only one.
    let silent: Vec<std::thread::JoinHandle<(String, Duration)>> = (0..4)
        .map(|how| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut p = if how == 3 {
                    Peer::greeted(&addr)
                } else {
                    Peer::connect(&addr)
                };
                match how {
                    0 => {}
                    1 => p.write_raw(&[0x01, 0x00]).unwrap(),
                    2 => {
                        p.write_raw(&[0x01, 0x00, 0x01, 0x00, 0x00]).unwrap();
                        p.write_raw(b"ZFSYNC\x00\x01ab").unwrap();
                    }
                    _ => {
                        p.writer
                            .write_message(&Message::Offer {
                                path: "child".into(),
                                kind: DatasetKind::Filesystem,
                                count: 3,
                                dry_run: true,
                            })
                            .unwrap();
                        p.send(&Message::Snap(SnapshotInfo {
                            name: "s1".into(),
                            guid: 1,
                            createtxg: 1,
                        }));
                    }
                }
                let (said, _, took) = p.until_closed();
                // Nothing to say to a silent peer but, at most, why it is dropped.
                assert!(
                    said.iter().all(|m| matches!(m, Message::Error { .. })),
                    "silent peer {how}: receiver said {said:?}"
                );
                (format!("silent peer {how}"), took)
            })
        })
        .collect();
    // Meanwhile a real sender replicates the whole tree.
    let started = Instant::now();
    src.send_and_verify(&site);
    let send_took = started.elapsed();
    for h in silent {
        let (who, took) = h.join().expect("silent peer thread");
        // Dropped after the 2 s timeout: not before (a read timeout, not a hasty guess),
        // and not much after.
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
            "{who} was dropped after {took:?} (--timeout {RECV_TIMEOUT})"
        );
    }
    site.assert_alive();
    eprintln!("real send took {send_took:?} beside four silent peers");
}

#[test]
fn connections_over_the_limit_get_busy_and_a_real_send_works_after() {
    let src = Source::new("hfloods");
    let mut site = Site::new("hfloodd", &["-j", "2"]);
    let addr = site.addr();
    // Two sessions take both slots (greeted, so both are surely counted).
    let mut holders = vec![Peer::greeted(&addr), Peer::greeted(&addr)];
    // A flood beyond the limit: each is told "busy" and closed, without being read.
    let flood: Vec<Peer> = (0..12).map(|_| Peer::connect(&addr)).collect();
    for (i, mut p) in flood.into_iter().enumerate() {
        let (said, _, _) = p.until_closed();
        assert_eq!(
            said.iter().map(error_reason).collect::<Vec<_>>(),
            vec![Some(Reason::Busy)],
            "flood connection {i}: {said:?}"
        );
        assert!(Reason::Busy.is_retryable());
    }
    // The holders' sessions were not disturbed by the flood.
    for h in holders.iter_mut() {
        h.send(&Message::KeepAlive);
        match h.offer("", &[("s1", 1)], true) {
            Message::Reply(Plan::Full { buffered: false }) => {}
            other => panic!("holder: {other:?}"),
        }
    }
    for mut h in holders {
        h.send(&Message::Bye);
    }
    // Once they are gone, a real send gets through. The slots free up when the sessions
    // have ended, so wait until a greeting is welcomed again.
    eventually("the receiver accepts a session again", || {
        let mut p = Peer::connect(&addr);
        p.send(&Message::Hello {
            version: VERSION,
            agent: "probe".into(),
            dest: String::new(),
            client: String::new(),
        });
        let ok = matches!(p.reader.read_message(), Ok(Some(Message::Welcome { .. })));
        if ok {
            p.send(&Message::Bye);
        }
        ok
    });
    // Give the probe's session a moment to end before the sender opens its two
    // connections (its worker, then the cleanup request).
    std::thread::sleep(Duration::from_millis(500));
    src.send_and_verify(&site);
    site.assert_alive();
}

#[test]
fn hostile_dataset_paths_are_refused_and_create_nothing() {
    let mut site = Site::new("hpath", &[]);
    let before = site.contents();
    let target = site.target.clone();
    let buffer_hex = format!("../{}_zfsync_buffer/61", target.rsplit('/').next().unwrap());
    let long_component = "a".repeat(300);
    // Valid as a relative path (<= 255 bytes) but too long once joined under TARGET.
    let long_joined = "b".repeat(255 - 10);
    let paths: Vec<String> = vec![
        "..".into(),
        "../x".into(),
        "a/../../x".into(),
        "a/./b".into(),
        ".".into(),
        "/x".into(),
        "/".into(),
        "a//b".into(),
        "a/".into(),
        "a@b".into(),
        "a@".into(),
        "a#b".into(),
        "a%b".into(),
        "%recv".into(),
        "a\nb".into(),
        "a\0b".into(),
        "\x1b[31mred".into(),
        "a\tb".into(),
        "caf\u{e9}".into(),
        "a;rm -rf /".into(),
        "$(reboot)".into(),
        "`id`".into(),
        "a|b".into(),
        "x/../..".into(),
        long_component.clone(),
        format!("ok/{long_component}"),
        long_joined,
        // Aimed at the buffer beside TARGET, where children wait for their parents.
        buffer_hex,
        format!("../../{}", site.dst.name),
    ];
    let mut p = Peer::greeted(&site.addr());
    for path in &paths {
        // Without snapshots too: a placeholder parent is never made outside TARGET.
        for (snaps, dry_run) in [
            (&[("s1", 1)][..], false),
            (&[("s1", 1)], true),
            (&[], false),
        ] {
            let reply = p.offer(path, snaps, dry_run);
            let (reason, text) = refusal(reply);
            assert_eq!(
                reason,
                Reason::InvalidPath,
                "path {path:?} snapshots={snaps:?} dry_run={dry_run}: {text}"
            );
            assert!(!reason.is_retryable());
        }
    }
    // A valid path whose buffered name would exceed ZFS's 255 bytes: refused as "parent
    // missing" (retryable: it fits once the parent exists), not cut to another name.
    let long_child = format!("p/{}", "c".repeat(120));
    for snaps in [&[("s1", 1)][..], &[]] {
        let (reason, text) = refusal(p.offer(&long_child, snaps, false));
        assert_eq!(reason, Reason::ParentMissing, "{snaps:?}: {text}");
    }
    // Hostile snapshot names, offered for TARGET itself (which may be created).
    for name in [
        "", "..", ".", "a/b", "a@b", "a#b", "a%b", "x\n", "\0", "s;id",
    ] {
        let reply = p.offer("", &[("ok", 1), (name, 2)], false);
        let (reason, text) = refusal(reply);
        assert_eq!(reason, Reason::InvalidPath, "snapshot {name:?}: {text}");
    }
    let long_snap = "s".repeat(300);
    let (reason, _) = refusal(p.offer("", &[(long_snap.as_str(), 1)], false));
    assert_eq!(reason, Reason::InvalidPath);
    // The session survived all of that: a valid dry-run offer gets a real plan.
    match p.offer("", &[("s1", 1)], true) {
        Message::Reply(Plan::Full { buffered: false }) => {}
        other => panic!("valid offer after the hostile ones: {other:?}"),
    }
    p.send(&Message::Bye);
    site.assert_alive();
    assert_eq!(
        site.contents(),
        before,
        "hostile offers changed the receiving pool"
    );
    assert!(!exists(&target));
}

#[test]
fn a_refused_offer_below_a_missing_parent_creates_nothing() {
    // A valid path whose parent is missing would land in the buffer; when the offer is
    // refused anyway (a bad snapshot name, a volume without snapshots), nothing may be
    // created for it, not even the buffer dataset.
    let mut site = Site::new("hbuf", &[]);
    let before = site.contents();
    let mut p = Peer::greeted(&site.addr());
    let (reason, text) = refusal(p.offer("a/b", &[("s1", 1), ("../x", 2)], false));
    assert_eq!(reason, Reason::InvalidPath, "{text}");
    let (reason, text) = refusal(p.offer_as("a/c", DatasetKind::Volume, &[], false));
    assert_eq!(reason, Reason::Protocol, "{text}");
    assert_eq!(
        site.contents(),
        before,
        "a refused offer changed the receiving pool"
    );
    // An accepted one does create the buffer, before its stream starts.
    let buffer = format!("{}_zfsync_buffer", site.target);
    match p.offer("a/d", &[("s1", 1)], false) {
        Message::Reply(Plan::Full { buffered: true }) => {}
        other => panic!("valid offer below a missing parent: {other:?}"),
    }
    assert!(exists(&buffer), "no buffer {buffer} for an accepted offer");
    p.send(&Message::Abort {
        text: "changed my mind".into(),
    });
    assert!(matches!(
        p.recv(),
        Message::Result(Outcome::Failed {
            reason: Reason::StreamFailed,
            ..
        })
    ));
    // A parent without snapshots below a missing parent: a placeholder, in the buffer
    // under its hex name (issue 14 item 2), and nothing else.
    match p.offer("a/e", &[], false) {
        Message::Reply(Plan::Placeholder {
            made: true,
            buffered: true,
        }) => {}
        other => panic!("parent without snapshots below a missing parent: {other:?}"),
    }
    let copy = format!("{buffer}/612f65");
    let mark = zfs(&[
        "get",
        "-H",
        "-s",
        "local",
        "-o",
        "value",
        "zfsync:placeholder",
        &copy,
    ]);
    assert_eq!(mark.trim(), "on", "{copy}");
    p.send(&Message::Bye);
    site.assert_alive();
}

#[test]
fn hostile_destinations_in_the_greeting_are_refused() {
    let mut site = Site::new("hdest", &[]);
    let before = site.contents();
    for dest in ["..", "../x", "/x", "a@b", "a#b", "a%b", "a\nb", "a//b"] {
        let mut p = Peer::connect(&site.addr());
        let reply = p.hello(VERSION, dest);
        assert_eq!(
            error_reason(&reply),
            Some(Reason::InvalidPath),
            "dest {dest:?}: {reply:?}"
        );
        let (said, _, _) = p.until_closed();
        assert!(said.is_empty(), "dest {dest:?}: then {said:?}");
    }
    site.assert_alive();
    assert_eq!(site.contents(), before);
}

#[test]
fn a_wrong_protocol_version_gets_version_mismatch() {
    let mut site = Site::new("hvers", &[]);
    // The version before this one too: its senders do not offer parents without snapshots.
    for version in [0, VERSION - 1, VERSION + 1, u16::MAX] {
        let mut p = Peer::connect(&site.addr());
        match p.hello(version, "") {
            Message::Error {
                reason: Reason::VersionMismatch,
                text,
            } => {
                // Both numbers are named, so the operator knows which side to upgrade.
                assert!(
                    text.contains(&VERSION.to_string()) && text.contains(&version.to_string()),
                    "{text}"
                );
            }
            other => panic!("version {version}: {other:?}"),
        }
        let (said, _, _) = p.until_closed();
        assert!(said.is_empty(), "version {version}: then {said:?}");
        assert!(!Reason::VersionMismatch.is_retryable());
    }
    let mut p = Peer::greeted(&site.addr());
    p.send(&Message::Bye);
    site.assert_alive();
}

#[test]
fn a_hello_of_a_future_layout_still_gets_version_mismatch() {
    // What a sender of the next version might say: the frozen start ("ZFSYNC", version),
    // then fields this version does not know.
    let mut site = Site::new("hfut", &[]);
    let mut payload = b"ZFSYNC".to_vec();
    payload.extend_from_slice(&(VERSION + 1).to_be_bytes());
    payload.extend_from_slice(b"\x00\x0azfsync 2.0");
    payload.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0]);
    let mut frame = vec![0x01];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    let mut p = Peer::connect(&site.addr());
    p.write_raw(&frame).unwrap();
    let (said, _, _) = p.until_closed();
    assert_eq!(
        said.iter().map(error_reason).collect::<Vec<_>>(),
        vec![Some(Reason::VersionMismatch)],
        "{said:?}"
    );
    site.assert_alive();
}

// issue 14: no child is received under a root the receiver refuses, whatever a sender
// offers first or claims: children are judged by what the session announced for its
// root, and the root's own offer must hold all of that.
#[test]
fn no_child_lands_under_a_refused_root_whatever_the_sender_offers_first_or_claims() {
    let mut site = Site::new("hroot", &[]);
    create(&site.target);
    let theirs_snap = format!("{}@theirs", site.target);
    snapshot(&theirs_snap);
    let theirs = guid(&theirs_snap);
    let before = site.contents();
    let addr = site.addr();

    // Children first, and the root never: refused by what was announced for the root.
    let mut p = Peer::greeted_with_root(&addr, &[7]);
    for (path, dry_run) in [("child", true), ("child", false), ("child/grand", false)] {
        let (reason, text) = refusal(p.offer(path, &[("s1", 8)], dry_run));
        assert_eq!(reason, Reason::NoCommonSnapshot, "{path}: {text}");
        assert!(
            text.contains("the sent root is refused: "),
            "{path}: {text}"
        );
        assert!(text.contains("theirs"), "{path}: {text}");
    }
    // The root itself, on another connection, is refused for the same reason.
    let mut q = Peer::greeted_with_root(&addr, &[7]);
    let (reason, text) = refusal(q.offer("", &[("s1", 7)], false));
    assert_eq!(reason, Reason::NoCommonSnapshot, "{text}");
    q.send(&Message::Bye);
    p.send(&Message::Bye);

    // No offer before the root's announcement, and one announcement a connection.
    for announced in [0, 2] {
        let mut p = Peer::connect(&addr);
        assert!(matches!(p.hello(VERSION, ""), Message::Welcome { .. }));
        for _ in 0..announced {
            p.send(&Message::Root { guids: vec![7] });
        }
        p.send_offer("child", &[("s1", 8)], true);
        let what = format!("an offer after {announced} root announcements");
        assert_closed_with(&mut p, Reason::Protocol, &what);
    }

    // Claiming the replica's snapshot for the root passes its children (a dry run shows
    // it), but then the root's own offer must claim it too: one that does not ends the
    // session, so one claim cannot pass the children while another refuses the root.
    let mut p = Peer::greeted_with_root(&addr, &[theirs]);
    match p.offer("child", &[("s1", 8)], true) {
        Message::Reply(Plan::Full { buffered: false }) => {}
        other => panic!("child under the claimed root: {other:?}"),
    }
    p.send_offer("", &[("s1", 7)], false);
    assert_closed_with(
        &mut p,
        Reason::Protocol,
        "a root's offer against its announcement",
    );

    site.assert_alive();
    assert_eq!(site.contents(), before, "a refused root grew children");
}

/// Offers TARGET itself with snapshot `snap` and expects a full stream to be wanted.
fn start_full(addr: &str, snap: &str) -> Peer {
    let mut p = Peer::greeted(addr);
    match p.offer("", &[("s1", guid(snap))], false) {
        Message::Reply(Plan::Full { buffered: false }) => p,
        other => panic!("expected a full plan, got {other:?}"),
    }
}

fn send_data(p: &mut Peer, bytes: &[u8]) {
    for chunk in bytes.chunks(1024) {
        p.writer.write_data(chunk).unwrap();
    }
    p.writer.flush().unwrap();
}

#[test]
fn a_stream_cut_midway_leaves_nothing_and_a_real_send_succeeds_after() {
    let src = Source::new("hcuts");
    let mut site = Site::new("hcutd", &[]);
    let snap = format!("{}@s1", src.root);
    let stream = zfs_send_bytes(&[&snap]);
    assert!(stream.len() > 4096, "stream of {} bytes", stream.len());

    // A full stream for the new TARGET, cut after half: the connection just closes.
    let mut p = start_full(&site.addr(), &snap);
    send_data(&mut p, &stream[..stream.len() / 2]);
    let at = site.recv.log().len();
    drop(p);
    // Only once the session has seen the cut is "no TARGET" worth anything: before, its
    // zfs recv may not have made it yet.
    eventually("the receiver saw the cut", || {
        site.recv.log()[at..].contains("closed inside a stream")
    });
    eventually("the cut receive is gone", || {
        !exists(&site.target) && !site.contents().iter().any(|l| l.contains('%'))
    });
    // The dataset's lock was released with the session: the same dataset can be offered.
    let mut p = Peer::greeted(&site.addr());
    match p.offer("", &[("s1", guid(&snap))], true) {
        Message::Reply(Plan::Full { buffered: false }) => {}
        other => panic!("after the cut: {other:?}"),
    }
    p.send(&Message::Bye);

    // A real send now gets everything there.
    src.send_and_verify(&site);

    // An incremental stream cut midway leaves the replica as it was.
    zfs(&["set", "zfsync:test=changed", &src.root]);
    snapshot_tree(&src.root, "s2");
    let before = site.contents();
    let inc = zfs_send_bytes(&["-i", &snap, &format!("{}@s2", src.root)]);
    let mut p = Peer::greeted(&site.addr());
    let offered = [
        ("s1", guid(&snap)),
        ("s2", guid(&format!("{}@s2", src.root))),
    ];
    match p.offer("", &offered, false) {
        Message::Reply(Plan::Incremental { from_name, .. }) => assert_eq!(from_name, "s1"),
        other => panic!("expected an incremental plan, got {other:?}"),
    }
    send_data(&mut p, &inc[..inc.len() / 2]);
    let at = site.recv.log().len();
    drop(p);
    // Once the receiver has noticed and killed its zfs recv, compare.
    eventually("the receiver saw the cut", || {
        site.recv.log()[at..].contains("closed inside a stream")
    });
    eventually("the replica is as it was before the cut stream", || {
        site.contents() == before
    });
    src.send_and_verify(&site);
    site.assert_alive();
}

#[test]
fn a_broken_stream_is_refused_and_leaves_nothing() {
    let src = Source::new("hbrks");
    let mut site = Site::new("hbrkd", &[]);
    let snap = format!("{}@s1", src.root);
    let stream = zfs_send_bytes(&[&snap]);
    let half = &stream[..stream.len() / 2];

    // The end announces more bytes than were sent.
    let mut p = start_full(&site.addr(), &snap);
    send_data(&mut p, half);
    p.send(&Message::End {
        bytes: stream.len() as u64,
    });
    match p.recv() {
        Message::Result(Outcome::Failed { reason, text }) => {
            assert_eq!(reason, Reason::StreamFailed, "{text}");
            assert!(text.contains("mismatch"), "{text}");
        }
        other => panic!("length mismatch: {other:?}"),
    }
    // The session goes on after a failed stream.
    p.send(&Message::Bye);
    eventually("nothing left of the mismatched stream", || {
        !exists(&site.target)
    });

    // The sender gives up midway (its zfs send failed).
    let mut p = start_full(&site.addr(), &snap);
    send_data(&mut p, half);
    p.send(&Message::Abort {
        text: "zfs send died".into(),
    });
    match p.recv() {
        Message::Result(Outcome::Failed { reason, text }) => {
            assert_eq!(reason, Reason::StreamFailed, "{text}");
            assert!(text.contains("zfs send died"), "{text}");
        }
        other => panic!("abort: {other:?}"),
    }
    p.send(&Message::Bye);
    eventually("nothing left of the aborted stream", || {
        !exists(&site.target)
    });

    // Garbage instead of a stream: zfs recv refuses it; the receiver says so (possibly
    // before the stream has ended) and reads on to the end.
    let mut p = start_full(&site.addr(), &snap);
    send_data(&mut p, &random_bytes(300 << 10, 9));
    p.send(&Message::End { bytes: 300 << 10 });
    match p.recv() {
        Message::Result(Outcome::Failed { reason, .. }) => {
            assert!(
                matches!(reason, Reason::ZfsFailed | Reason::StreamFailed),
                "{reason:?}"
            )
        }
        other => panic!("garbage stream: {other:?}"),
    }
    p.send(&Message::Bye);
    eventually("nothing left of the garbage stream", || {
        !exists(&site.target)
    });

    // Another message in the middle of the stream: a protocol violation, the connection
    // ends, and the half-received dataset with it.
    let mut p = start_full(&site.addr(), &snap);
    send_data(&mut p, half);
    p.send(&Message::Offer {
        path: "x".into(),
        kind: DatasetKind::Filesystem,
        count: 0,
        dry_run: false,
    });
    let (said, _, _) = p.until_closed();
    assert_eq!(
        said.iter().map(error_reason).collect::<Vec<_>>(),
        vec![Some(Reason::Protocol)],
        "{said:?}"
    );
    eventually("nothing left of the violated stream", || {
        !exists(&site.target)
    });

    src.send_and_verify(&site);
    site.assert_alive();
}

#[test]
fn without_the_key_nothing_gets_past_the_greeting() {
    let site_dir = temp_dir("hkey");
    let keys = site_dir.join("keys");
    std::fs::write(&keys, "alice 0123456789abcdef-alice-secret\n").unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let keys_s = keys.to_str().unwrap().to_string();
    let mut site = Site::new("hkey", &["--key-file", &keys_s]);
    let before = site.contents();
    let addr = site.addr();
    let hello = |client: &str| Message::Hello {
        version: VERSION,
        agent: "hostile-test".into(),
        dest: String::new(),
        client: client.into(),
    };
    for client in ["alice", "mallory", ""] {
        // A wrong proof: refused with Denied, whether the name exists or not.
        let mut p = Peer::connect(&addr);
        p.send(&hello(client));
        let nonce = match p.recv() {
            Message::Challenge { nonce } => nonce,
            other => panic!("client {client:?}: expected a challenge, got {other:?}"),
        };
        p.send(&Message::Proof {
            nonce: nonce.clone(), // a replayed server nonce, and a made-up MAC
            mac: vec![0; 32],
        });
        assert_eq!(
            error_reason(&p.recv()),
            Some(Reason::Denied),
            "client {client:?}"
        );
        let (said, _, _) = p.until_closed();
        assert!(said.is_empty(), "{said:?}");

        // Skipping the proof: an offer right after the challenge is a violation.
        let mut p = Peer::connect(&addr);
        p.send(&hello(client));
        assert!(matches!(p.recv(), Message::Challenge { .. }));
        p.send(&Message::Offer {
            path: String::new(),
            kind: DatasetKind::Filesystem,
            count: 0,
            dry_run: true,
        });
        let (said, _, _) = p.until_closed();
        assert!(
            said.iter()
                .all(|m| error_reason(m) == Some(Reason::Protocol)),
            "client {client:?}: {said:?}"
        );

        // Saying nothing after the challenge: dropped after the timeout.
        let mut p = Peer::connect(&addr);
        p.send(&hello(client));
        assert!(matches!(p.recv(), Message::Challenge { .. }));
        let (_, _, took) = p.until_closed();
        assert!(took < Duration::from_secs(8), "{took:?}");
    }
    site.assert_alive();
    assert_eq!(site.contents(), before);
    drop(site);
    let _ = std::fs::remove_dir_all(site_dir);
}

/// Offers TARGET a full stream of `snap`, sends `stream` as it (its first `split` bytes one
/// to a `Data` frame) with its End, and returns the Result; the session then ends.
fn full_stream(addr: &str, snap: &str, stream: &[u8], split: usize) -> Outcome {
    let mut p = start_full(addr, snap);
    for byte in &stream[..split] {
        p.writer.write_data(std::slice::from_ref(byte)).unwrap();
    }
    send_data(&mut p, &stream[split..]);
    p.send(&Message::End {
        bytes: stream.len() as u64,
    });
    let outcome = match p.recv() {
        Message::Result(outcome) => outcome,
        other => panic!("expected a result, got {other:?}"),
    };
    p.send(&Message::Bye);
    outcome
}

// A stream with properties (`zfs send -p`, a compound stream) on a ZFS whose `zfs recv`
// has no `-x` (zfs-fuse): they would be set on the replica, a mountpoint over a path of
// the receiving host included. The receiver looks at the stream's head and refuses it
// before `zfs recv` sees a byte, however the head is cut into frames. (`zfs send -I`
// streams are compound too, without properties: the real sends here and in every other
// test send those.)
#[test]
fn a_stream_with_properties_is_refused_where_zfs_recv_cannot_keep_them_out() {
    let src = Source::new("hprops");
    let mut site = Site::new("hpropd", &[]);
    let snap = format!("{}@s1", src.root);
    zfs(&["set", "zfsync:test=from-the-stream", &src.root]);
    for (flag, split) in [("-p", 0), ("-R", 30)] {
        let with_props = zfs_send_bytes(&[flag, &snap]);
        match full_stream(&site.addr(), &snap, &with_props, split) {
            Outcome::Failed { reason, text } => {
                assert_eq!(reason, Reason::Denied, "{text}");
                assert!(text.contains("the stream carries properties"), "{text}");
            }
            other => panic!("zfs send {flag}, head in {split} frames: {other:?}"),
        }
        assert!(!exists(&site.target), "received all the same");
    }
    let log = site.recv.log();
    assert!(log.contains(" reason=denied error="), "{log}");

    // A plain stream whose head comes a byte a frame goes in whole.
    let plain = zfs_send_bytes(&[&snap]);
    match full_stream(&site.addr(), &snap, &plain, 30) {
        Outcome::Done { newest, .. } => assert_eq!(newest, "s1"),
        other => panic!("a plain stream, head in 30 frames: {other:?}"),
    }
    let props = zfs(&["get", "-H", "-o", "value", "zfsync:test", &site.target]);
    assert_eq!(props.trim(), "-", "the replica got the source's property");
    src.send_and_verify(&site);
    site.assert_alive();
}

// issue 16: a sender's dataset list cannot make the receiver destroy anything by itself:
// hostile paths, an oversize list and a second list end the connection, and an empty list
// with --orphans-after destroys nothing before the duration has passed.
#[test]
fn hostile_dataset_lists_are_refused_and_destroy_nothing() {
    // --orphans-after needs keys.
    let dir = temp_dir("hlistkeys");
    let secret = "alice-secret-0123456789";
    let keys = dir.join("keys");
    std::fs::write(&keys, format!("alice {secret}\n")).unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let keys = keys.to_str().unwrap();
    let mut site = Site::new("hlist", &["--orphans-after", "1d", "--key-file", keys]);
    let src = Source::new("hlists");
    let out = src.send_to_with(&site, &["--key-file", keys]);
    out.assert_ok();
    let before = site.contents();
    let addr = site.addr();
    let greeted = |addr: &str| Peer::keyed(addr, "alice", secret);

    let listed = |paths: &[&str], last: bool| Message::Listed {
        paths: paths.iter().map(|p| p.to_string()).collect(),
        last,
    };
    let long = "a".repeat(300);
    for path in [
        "",
        "..",
        "a/../x",
        "/x",
        "a@b",
        "a#b",
        "a//b",
        long.as_str(),
    ] {
        let mut p = greeted(&addr);
        p.send(&listed(&["child", path], true));
        assert_closed_with(&mut p, Reason::Protocol, &format!("path {path:?}"));
    }
    let mut p = greeted(&addr);
    p.send(&listed(&["child"], true));
    p.send(&listed(&["child"], true));
    assert_closed_with(&mut p, Reason::Protocol, "a second list");

    // More paths than MAX_LISTED, in frames that each fit: refused once over the limit.
    let mut p = greeted(&addr);
    let paths: Vec<String> = (0..=zfsync_protocol::MAX_LISTED)
        .map(|i| format!("d{i}"))
        .collect();
    let mut sent = Vec::new();
    for frame in zfsync_protocol::listed_frames(&paths[1..]).unwrap() {
        if let Message::Listed { paths, .. } = frame {
            sent.push(Message::Listed { paths, last: false });
        }
    }
    sent.push(listed(&["d0"], true));
    for frame in sent {
        // The receiver may close while frames are still on their way.
        if p.writer.send(&frame).is_err() {
            break;
        }
    }
    assert_closed_with(&mut p, Reason::Protocol, "an oversize list");

    // An empty list, as a sender whose source lost everything would send: noted, and
    // nothing destroyed now (the duration counts from here).
    let mut p = greeted(&addr);
    p.send(&listed(&[], true));
    p.send(&Message::Cleanup);
    match p.recv() {
        Message::CleanupDone { failed: 0, .. } => {}
        other => panic!("expected cleanup-done, got {other:?}"),
    }
    p.send(&Message::Bye);
    site.assert_alive();
    assert_eq!(site.contents(), before, "a dataset list changed the pool");
    let log = site.recv.log();
    assert!(!log.contains("orphan destroyed"), "{log}");
}
