//! Issue 5, authentication and access: `--key-file` on both binaries, challenge-response
//! (the key never crosses the wire, a replayed exchange is denied), per-client subtrees,
//! key files that others can read, and the warning of a receiver that listens on a
//! public address without a key. Real binaries on real zfs-fuse pools.
//!
//! Each test prints a `figures:` line (run with `--nocapture`), quoted in
//! docs/RELIABILITY.md. Hand-made hostile greetings are in `hostile.rs`.

mod common;

use common::*;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;
use zfsync_tests::*;

const ALICE: &str = "alice-secret-0123456789";
const BOB: &str = "bob-secret-9876543210xyz";

/// Writes a key file with `text` and `mode` into `dir`.
fn key_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    path
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// A source pool with `<src>/data` (2 MiB, snapshot s1), a receiving pool, and a receiver
/// on TARGET `<dst>/backup` with the key file `recv_keys` (mode 600), if any.
/// Field order is drop order.
struct Site {
    recv: Receiver,
    root: String,
    target: String,
    dir: PathBuf,
    _src: Pool,
    dst: Pool,
}

impl Site {
    fn new(tag: &str, recv_keys: Option<&str>) -> Site {
        let src = Pool::new(&format!("{tag}s"));
        let dst = Pool::unmounted(&format!("{tag}d"));
        let root = src.ds("data");
        create(&root);
        write_file(&root, "f.bin", &random_bytes(2 << 20, 1));
        snapshot(&format!("{root}@s1"));
        let dir = src.dir().to_path_buf();
        let target = dst.ds("backup");
        let recv = match recv_keys {
            Some(text) => {
                let keys = key_file(&dir, "recv.keys", text, 0o600);
                start_receiver(&target, &["--key-file", s(&keys)])
            }
            None => start_receiver(&target, &[]),
        };
        Site {
            recv,
            root,
            target,
            dir,
            _src: src,
            dst,
        }
    }

    /// A sender key file (mode 600) with one line.
    fn sender_key(&self, name: &str, line: &str) -> PathBuf {
        key_file(&self.dir, name, &format!("{line}\n"), 0o600)
    }

    fn send(&self, extra: &[&str]) -> SendOutput {
        send_tree(&self.root, &self.recv, extra)
    }

    /// Panics unless nothing was received: the receiving pool holds only its root.
    fn assert_nothing_received(&self) {
        assert_eq!(
            list_datasets(&self.dst.name),
            vec![self.dst.name.clone()],
            "something arrived"
        );
    }
}

// issue 5: a key file that others can read is refused at startup, by both binaries, with
// a usage error that says how to fix it.
#[test]
fn key_files_readable_by_others_are_refused_at_startup() {
    let dst = Pool::unmounted("kmode");
    let dir = dst.dir().to_path_buf();
    let target = dst.ds("backup");
    let mut tried = 0;
    for mode in [0o640, 0o604, 0o644] {
        let keys = key_file(
            &dir,
            &format!("k{mode:o}"),
            &format!("alice {ALICE}\n"),
            mode,
        );
        let out = run_with_timeout(
            &receiver_bin(),
            &["-l", "127.0.0.1:0", "--key-file", s(&keys), &target],
            Duration::from_secs(20),
        );
        out.assert_status(2);
        assert!(
            out.stderr.contains("chmod 600"),
            "mode {mode:o}: {}",
            out.stderr
        );
        let out = send(&["--key-file", s(&keys), "pool/data", "127.0.0.1:9"]);
        out.assert_status(2);
        assert!(
            out.stderr.contains("chmod 600"),
            "mode {mode:o}: {}",
            out.stderr
        );
        tried += 2;
    }
    println!("figures: auth key-file modes refused={tried}");
}

// issue 5: the right key gets in and the data arrives; neither the key nor anything
// derived from it alone crosses the wire (checked on the recorded traffic).
#[test]
fn the_right_key_gets_in_and_the_key_never_crosses_the_wire() {
    let site = Site::new("kok", Some(&format!("alice {ALICE}\n")));
    let key = site.sender_key("alice.key", &format!("alice {ALICE}"));
    let proxy = Proxy::start(&site.recv.addr());
    proxy.record(true);
    let out = send_tree_to(&site.root, &proxy.addr(), &["--key-file", s(&key)]);
    out.assert_ok();
    assert_same_snapshots(&site.root, &site.target);
    assert_same_files(&site.root, &site.target, "s1");
    let records = proxy.records();
    assert!(!records.is_empty());
    for (i, r) in records.iter().enumerate() {
        for (dir, bytes) in [("to receiver", &r.to_upstream), ("to sender", &r.to_client)] {
            assert!(
                !contains(bytes, ALICE.as_bytes()),
                "connection {i}: the key went {dir}"
            );
        }
    }
    println!(
        "figures: auth right-key connections={} key_on_wire=0",
        records.len()
    );
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// `zfsync-send EXTRA --zfs ZFS ROOT ADDR` (60 s at most).
fn send_tree_to(root: &str, addr: &str, extra: &[&str]) -> SendOutput {
    let zfs = zfs_bin();
    let mut args: Vec<&str> = extra.to_vec();
    args.extend_from_slice(&["--zfs", &zfs, root, addr]);
    run_with_timeout(&sender_bin(), &args, SEND_LIMIT)
}

// issue 5: a wrong key, an unknown client name, or no key at all: exit 1 with a clear
// note, not retried, and nothing is received. issue 15 item 4: the note says it in words
// ("denied: authentication failed"), not the receiver's reason code.
#[test]
fn a_wrong_key_an_unknown_client_or_no_key_gets_nothing_in() {
    let site = Site::new("kbad", Some(&format!("alice {ALICE}\n")));
    let wrong = site.sender_key("wrong.key", "alice wrong-secret-0123456789");
    let unknown = site.sender_key("mallory.key", &format!("mallory {ALICE}"));
    let cases: [(&str, Vec<&str>, &str); 3] = [
        (
            "wrong key",
            vec!["--key-file", s(&wrong)],
            "denied: authentication failed",
        ),
        (
            "unknown client",
            vec!["--key-file", s(&unknown)],
            "denied: authentication failed",
        ),
        ("no key", vec![], "requires a key"),
    ];
    for (what, args, text) in &cases {
        let mut args = args.clone();
        args.extend_from_slice(&["-v", "--retries", "3"]);
        let out = site.send(&args);
        out.assert_status(1);
        let row = &out.rows()[&site.root];
        assert_eq!(row.outcome, "failed", "{what}: {}", out.stdout);
        assert!(row.note.contains(text), "{what}: {}", out.stdout);
        if *what == "no key" {
            assert!(row.note.contains("--key-file"), "{what}: {}", out.stdout);
        }
        assert!(
            !out.stderr.contains("retry dataset="),
            "{what}: retried\n{}",
            out.stderr
        );
        site.assert_nothing_received();
    }
    let denied = site
        .recv
        .log()
        .matches("authentication failed peer=")
        .count();
    assert!(denied >= 2, "{}", site.recv.log());
    println!("figures: auth refused_senders={} received=0", cases.len());
}

// issue 5: a sender with a key does not send to a receiver that asks for none: such a
// receiver cannot prove the key, so it may be an impostor.
#[test]
fn a_sender_with_a_key_refuses_an_unauthenticated_receiver() {
    let site = Site::new("knor", None);
    let key = site.sender_key("alice.key", &format!("alice {ALICE}"));
    let out = site.send(&["--key-file", s(&key)]);
    out.assert_status(1);
    let row = &out.rows()[&site.root];
    assert!(
        row.note.contains("unauthenticated receiver"),
        "{}",
        out.stdout
    );
    site.assert_nothing_received();
    println!("figures: auth unauthenticated_receiver refused=1");
}

/// The frames of a recorded byte stream: (kind, whole frame bytes).
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 5 {
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        if bytes.len() < 5 + len {
            break;
        }
        out.push((bytes[0], bytes[..5 + len].to_vec()));
        bytes = &bytes[5 + len..];
    }
    out
}

/// Reads one frame (kind, payload); `None` at EOF or on an error.
fn read_frame(conn: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    conn.read_exact(&mut head).ok()?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut payload = vec![0u8; len];
    conn.read_exact(&mut payload).ok()?;
    Some((head[0], payload))
}

const HELLO: u8 = 0x01;
const CHALLENGE: u8 = 0x03;
const PROOF: u8 = 0x04;
const ERROR: u8 = 0x7f;

// issue 5: the bytes of a successful exchange, captured and replayed verbatim on a new
// connection, are denied (the receiver's challenge is new each time), and nothing is
// received: not even after the target the exchange created was destroyed.
#[test]
fn a_replayed_exchange_is_denied() {
    let site = Site::new("krep", Some(&format!("alice {ALICE}\n")));
    let key = site.sender_key("alice.key", &format!("alice {ALICE}"));
    let proxy = Proxy::start(&site.recv.addr());
    proxy.record(true);
    let out = send_tree_to(
        &site.root,
        &proxy.addr(),
        &["-t", "1", "--key-file", s(&key)],
    );
    out.assert_ok();
    assert_same_snapshots(&site.root, &site.target);
    // The first connection carried the dataset (the second, the cleanup request).
    let rec = proxy.records().remove(0);
    let sent = frames(&rec.to_upstream);
    let got = frames(&rec.to_client);
    assert_eq!(sent[0].0, HELLO);
    assert_eq!(sent[1].0, PROOF);
    assert_eq!(got[0].0, CHALLENGE);
    assert!(
        rec.to_upstream.len() > 2 << 20,
        "the stream was not recorded"
    );
    drop(proxy);
    // Undo the capture's effect, so that a replay that got in would show.
    zfs(&["destroy", "-r", &site.target]);
    site.assert_nothing_received();

    // Replay 1, step by step: the challenge differs from the captured one, and the
    // captured proof is denied.
    let mut conn = TcpStream::connect(site.recv.addr()).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    conn.write_all(&sent[0].1).expect("write hello");
    let (kind, nonce) = read_frame(&mut conn).expect("a challenge");
    assert_eq!(kind, CHALLENGE);
    assert_ne!(
        nonce,
        got[0].1[5..].to_vec(),
        "the receiver reused its nonce"
    );
    conn.write_all(&sent[1].1).expect("write proof");
    let mut answers = Vec::new();
    while let Some(f) = read_frame(&mut conn) {
        answers.push(f);
    }
    assert!(
        answers
            .iter()
            .any(|(k, p)| *k == ERROR && contains(p, b"authentication failed")),
        "want Denied (authentication failed), got {answers:?}"
    );
    // Whatever it said: the rest of the capture (offer, stream) goes after it.
    let _ = conn.write_all(&rec.to_upstream[sent[0].1.len() + sent[1].1.len()..]);
    drop(conn);

    // Replay 2: the whole capture at once, verbatim.
    let mut conn = TcpStream::connect(site.recv.addr()).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ = conn.write_all(&rec.to_upstream);
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    drop(conn);

    thread::sleep(Duration::from_millis(500));
    site.assert_nothing_received();
    let denied = site
        .recv
        .log()
        .matches("authentication failed peer=")
        .count();
    assert_eq!(denied, 2, "{}", site.recv.log());
    println!(
        "figures: auth replays=2 denied={denied} captured_bytes={} received=0",
        rec.to_upstream.len()
    );
}

// issue 5: per-client confinement: bob's key maps to TARGET/clients/bob, so whatever he
// names lands below it; `..` is a usage error; alice's datasets are untouched.
#[test]
fn a_client_is_confined_to_its_subtree() {
    let keys = format!("alice {ALICE} clients/alice\nbob {BOB} clients/bob\n");
    let site = Site::new("kconf", Some(&keys));
    for sub in ["clients/alice", "clients/bob"] {
        create(&format!("{}/{sub}", site.target));
    }
    let alice = site.sender_key("alice.key", &format!("alice {ALICE}"));
    let bob = site.sender_key("bob.key", &format!("bob {BOB}"));
    let alice_tree = format!("{}/clients/alice", site.target);

    // Alice's data, at clients/alice/a.
    site.send(&["--key-file", s(&alice), "-d", "a"]).assert_ok();
    assert_eq!(
        snapshot_guids(&format!("{alice_tree}/a")),
        snapshot_guids(&site.root)
    );
    let alice_before = tree_snapshots(&alice_tree);

    // Bob's, at clients/bob/x.
    site.send(&["--key-file", s(&bob), "-d", "x"]).assert_ok();
    assert_eq!(
        snapshot_guids(&format!("{}/clients/bob/x", site.target)),
        snapshot_guids(&site.root)
    );

    // Bob tries to climb out: refused before anything is sent.
    let mut attempts = 0;
    for dest in ["../alice", "../../clients/alice/a", "x/../../alice"] {
        let out = site.send(&["--key-file", s(&bob), "-d", dest]);
        out.assert_status(2);
        assert!(out.stderr.contains("--dest"), "{dest}: {}", out.stderr);
        attempts += 1;
    }
    // Bob names alice's path: it is his own clients/bob/clients/alice/a, whose parent
    // does not exist, so the sent root is refused.
    let out = site.send(&[
        "--key-file",
        s(&bob),
        "-d",
        "clients/alice/a",
        "--retries",
        "0",
    ]);
    out.assert_status(1);
    attempts += 1;
    // Bob claims to be alice with his own secret: denied.
    let fake = site.sender_key("fake.key", &format!("alice {BOB}"));
    let out = site.send(&["--key-file", s(&fake), "-d", "a"]);
    out.assert_status(1);
    attempts += 1;

    assert_eq!(
        tree_snapshots(&alice_tree),
        alice_before,
        "alice's data changed"
    );
    // Everything bob has is below clients/bob.
    for ds in list_datasets(&site.dst.name) {
        assert!(
            ds == site.dst.name
                || ds == site.target
                || ds == format!("{}/clients", site.target)
                || ds.starts_with(&format!("{}/clients/alice", site.target))
                || ds.starts_with(&format!("{}/clients/bob", site.target)),
            "dataset outside the clients' subtrees: {ds}"
        );
    }
    assert_eq!(
        list_datasets(&alice_tree),
        vec![alice_tree.clone(), format!("{alice_tree}/a")]
    );
    println!("figures: auth confinement escape_attempts={attempts} escaped=0");
}

// issue 5: a receiver that listens on a non-loopback address without a key warns, on
// stderr, naming --key-file; one on loopback, or with a key, does not.
#[test]
fn a_public_receiver_without_a_key_warns() {
    let dst = Pool::unmounted("kwarn");
    let target = dst.ds("backup");
    let keys = key_file(dst.dir(), "keys", &format!("alice {ALICE}\n"), 0o600);
    let cases: [(&str, Vec<&str>, bool); 3] = [
        ("0.0.0.0:0", vec![], true),
        ("127.0.0.1:0", vec![], false),
        ("0.0.0.0:0", vec!["--key-file", s(&keys)], false),
    ];
    for (listen, extra, warns) in &cases {
        let stderr = startup_stderr(listen, extra, &target);
        let warned = stderr.contains("warning") && stderr.contains("--key-file");
        assert_eq!(warned, *warns, "-l {listen} {extra:?}: stderr:\n{stderr}");
    }
    println!("figures: auth listen-warning cases={}", cases.len());
}

/// Starts `zfsync-recv -l LISTEN EXTRA TARGET`, waits for its `listening on` line, stops
/// it (SIGTERM) and returns what it wrote on stderr up to then.
fn startup_stderr(listen: &str, extra: &[&str], target: &str) -> String {
    let zfs = zfs_bin();
    let mut child = Command::new(receiver_bin())
        .args(["-l", listen, "--zfs", &zfs])
        .args(extra)
        .arg(target)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run zfsync-recv");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let mut stderr = child.stderr.take().expect("piped");
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    signal(child.id(), 15);
    let _ = child.wait();
    let stderr = err.join().unwrap_or_default();
    assert!(
        line.starts_with("listening on "),
        "-l {listen}: no listening line ({line:?}); stderr:\n{stderr}"
    );
    stderr
}

// issue 15 item 7: `zfsync-recv --gen-key NAME` makes a key: the line for the receiver's
// key file and the sender's (the same line), with a random secret of 64 hex digits, and
// exit 0. Those lines get a real sender in. A secret shorter than 16 characters is a
// usage error of either binary, naming the file and the line.
#[test]
fn a_generated_key_gets_a_real_sender_in_and_short_secrets_are_refused() {
    let gen = || {
        let out = run_with_timeout(
            &receiver_bin(),
            &["--gen-key", "fileserver"],
            Duration::from_secs(20),
        );
        out.assert_ok();
        let lines: Vec<String> = out
            .stdout
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        assert_eq!(lines.len(), 2, "{}", out.stdout);
        assert_eq!(lines[0], lines[1], "{}", out.stdout);
        let secret = lines[0].strip_prefix("fileserver ").expect("NAME SECRET");
        assert_eq!(secret.len(), 64, "{secret}");
        assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()), "{secret}");
        (lines[0].clone(), lines[1].clone())
    };
    let (recv_line, send_line) = gen();
    assert_ne!(gen().0, recv_line, "two keys with one secret");
    let site = Site::new("kgen", Some(&format!("{recv_line}\n")));
    let key = site.sender_key("gen.key", &send_line);
    let out = site.send(&["--key-file", s(&key)]);
    out.assert_ok();
    assert_eq!(snapshot_guids(&site.target), snapshot_guids(&site.root));

    let short = key_file(&site.dir, "short.key", "bob 0123456789abcde\n", 0o600);
    let want = format!(
        "key file {}: line 1: secret shorter than 16 characters (make one with zfsync-recv --gen-key NAME)",
        s(&short)
    );
    let refused = [
        run_with_timeout(
            &receiver_bin(),
            &["-l", "127.0.0.1:0", "--key-file", s(&short), &site.target],
            Duration::from_secs(20),
        ),
        send(&["--key-file", s(&short), "pool/data", "127.0.0.1:9"]),
    ];
    for out in refused {
        out.assert_status(2);
        assert!(out.stderr.contains(&want), "{}", out.stderr);
    }
    println!("figures: auth generated key=accepted short secrets refused=2");
}
