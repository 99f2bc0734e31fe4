//! Integration tests of the command line as a user meets it in the first hour: addresses
//! (a bad port is a usage error said at once, the default port, IPv6 literals) and
//! signals (SIGHUP reopens the `-o` log file for logrotate; a stop is logged).

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zfsync_tests::*;

const SIGHUP: i32 = 1;
const SIGTERM: i32 = 15;

/// A usage error is said before anything is done: no zfs, no network.
const QUICK: Duration = Duration::from_secs(20);

/// `zfsync-recv --zfs ZFS -l LISTEN EXTRA TARGET`, through the harness. The harness puts
/// `-l 127.0.0.1:0` first; a wrapper script drops it and execs the receiver, so the pid
/// is the receiver's own.
fn start_listening_on(listen: &str, target: &str, extra: &[&str]) -> Receiver {
    let wrapper = temp_dir("clilisten").join("zfsync-recv");
    let script = format!(
        "#!/bin/sh\nshift 2\nexec '{}' -l '{listen}' \"$@\"\n",
        receiver_bin().display()
    );
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(&wrapper)
        .unwrap_or_else(|e| panic!("create {}: {e}", wrapper.display()));
    std::io::Write::write_all(&mut f, script.as_bytes()).expect("write wrapper");
    drop(f);
    let zfs = zfs_bin();
    let mut args = vec!["--zfs", zfs.as_str()];
    args.extend_from_slice(extra);
    Receiver::spawn(&wrapper, target, &args)
}

/// A pool (nothing in it mounted) with `data@s1`: the source, and `backup`, a TARGET
/// for a receiver, as (pool, source, target).
fn source_with_a_snapshot(tag: &str) -> (Pool, String, String) {
    let pool = Pool::unmounted(tag);
    let (src, target) = (pool.ds("data"), pool.ds("backup"));
    create(&src);
    snapshot(&format!("{src}@s1"));
    (pool, src, target)
}

fn run_quick(program: &Path, args: &[&str]) -> SendOutput {
    let start = Instant::now();
    let out = run_with_timeout(program, args, QUICK);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{args:?}: took {:?}",
        start.elapsed()
    );
    out
}

// The first hour: a port out of range is a usage error (exit 2, at once), not a
// connection the sender retries. `--zfs` names no program: had anything run zfs or
// connected, the error would be another.
#[test]
fn a_bad_address_is_a_usage_error() {
    let cases: &[(&Path, &[&str], &str)] = &[
        (
            &sender_bin(),
            &["tank/data", "127.0.0.1:99999"],
            "zfsync-send: HOST[:PORT]: port 99999 is out of range 1-65535\nTry 'zfsync-send --help'.\n",
        ),
        (
            &sender_bin(),
            &["tank/data", "[::1]:65536"],
            "zfsync-send: HOST[:PORT]: port 65536 is out of range 1-65535\nTry 'zfsync-send --help'.\n",
        ),
        (
            &sender_bin(),
            &["tank/data", "::1"],
            "zfsync-send: HOST[:PORT]: an IPv6 address goes in brackets: [ADDRESS] or [ADDRESS]:PORT, e.g. [::1]:7611\nTry 'zfsync-send --help'.\n",
        ),
        (
            &receiver_bin(),
            &["-l", "0.0.0.0:99999", "tank/backup"],
            "zfsync-recv: --listen: port 99999 is out of range 0-65535\nTry 'zfsync-recv --help'.\n",
        ),
        (
            &receiver_bin(),
            &["-l", "[::1]:x", "tank/backup"],
            "zfsync-recv: --listen: port \"x\" is not a number\nTry 'zfsync-recv --help'.\n",
        ),
    ];
    for (program, args, want) in cases {
        let mut all = vec!["--zfs", "/nonexistent/zfs"];
        all.extend_from_slice(args);
        let out = run_quick(program, &all);
        out.assert_status(2);
        assert_eq!(out.stderr, *want, "{all:?}");
        assert_eq!(out.stdout, "", "{all:?}");
    }
}

// issue 15 item 3: a dataset typo is the user's to fix, like a bad option: exit 2 with one
// clean line, not exit 1 with zfs's command line (once logged, once printed).
#[test]
fn a_dataset_that_does_not_exist_is_a_usage_error() {
    let (_pool, src, target) = source_with_a_snapshot("clityp");
    let zfs = zfs_bin();
    let recv = Receiver::start(&target, &["--zfs", &zfs]);
    let typo = format!("{src}s");
    let out = run_quick(&sender_bin(), &["--zfs", &zfs, &typo, &recv.addr()]);
    out.assert_status(2);
    assert_eq!(
        out.stderr,
        format!("zfsync-send: cannot use {typo}: dataset does not exist\n")
    );
    assert_eq!(out.stdout, "");
}

// The first hour: `-l ADDR` without a port listens on the default port, as the sender
// connects to it for a HOST without one.
#[test]
fn listen_without_a_port_takes_the_default_port() {
    let pool = Pool::unmounted("clidefport");
    let target = pool.ds("backup");
    // Whether the port is free decides which of the two tells the port: the listening
    // line, or the error naming it.
    let free = TcpListener::bind("127.0.0.1:7611").is_ok();
    if free {
        let recv = start_listening_on("127.0.0.1", &target, &[]);
        assert_eq!(recv.addr(), "127.0.0.1:7611");
    } else {
        let zfs = zfs_bin();
        let out = run_with_timeout(
            &receiver_bin(),
            &["--zfs", &zfs, "-l", "127.0.0.1", &target],
            QUICK,
        );
        out.assert_status(2);
        assert!(
            out.stderr.contains("cannot listen on 127.0.0.1:7611"),
            "{}",
            out.stderr
        );
    }
}

// The first hour: IPv6 literals in brackets, on both sides.
#[test]
fn ipv6_literals_work_on_both_sides() {
    let (_pool, src, target) = source_with_a_snapshot("cliv6");
    let recv = start_listening_on("[::1]:0", &target, &[]);
    let addr = recv.addr();
    assert!(addr.starts_with("[::1]:"), "{addr}");
    let zfs = zfs_bin();
    let out = run_with_timeout(&sender_bin(), &["--zfs", &zfs, &src, &addr], SEND_TIMEOUT);
    out.assert_ok();
    assert_eq!(
        snapshot_guids(&target),
        snapshot_guids(&src),
        "{}",
        out.stdout
    );
}

/// Waits up to 30 s for `path` to contain `needle`; its contents then.
fn wait_for_line(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {} within 30s:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether process `pid` runs (exists and is no zombie).
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// `-o FILE` of a test: `log` in a fresh temp dir, and `log.1` beside it for the rename.
fn log_paths(tag: &str) -> (PathBuf, PathBuf) {
    let dir = temp_dir(tag);
    (dir.join("log"), dir.join("log.1"))
}

// The first hour: logrotate renames the receiver's log and sends SIGHUP. The receiver
// lives on, new lines go to a new file at the old path, none to the renamed one; SIGTERM
// is logged, and still stops it cleanly.
#[test]
fn receiver_reopens_its_log_on_sighup_and_logs_its_stop() {
    let (_pool, src, target) = source_with_a_snapshot("clihup");
    let (log, rotated) = log_paths("clihup");
    let log_s = log.to_str().expect("temp path is UTF-8");
    let zfs = zfs_bin();
    let mut recv = Receiver::start(&target, &["--zfs", &zfs, "-v", "-o", log_s]);
    wait_for_line(&log, "listening addr=");

    fs::rename(&log, &rotated).expect("rename the log");
    signal(recv.pid(), SIGHUP);
    let reopened = wait_for_line(&log, "log file reopened signal=SIGHUP");
    assert!(alive(recv.pid()), "SIGHUP ended the receiver:\n{reopened}");

    let out = run_with_timeout(
        &sender_bin(),
        &["--zfs", &zfs, &src, &recv.addr()],
        SEND_TIMEOUT,
    );
    out.assert_ok();
    let new = wait_for_line(&log, "session end peer=");
    let old = fs::read_to_string(&rotated).expect("read the rotated log");
    assert!(old.contains("listening addr="), "{old}");
    assert!(
        !old.contains("session"),
        "a line went to the rotated log:\n{old}"
    );

    let status = recv.stop();
    assert_eq!(status.code(), Some(0), "{status:?}");
    let new = fs::read_to_string(&log).unwrap_or(new);
    let stopping = new.find("stopping on signal=SIGTERM");
    let stopped = new.rfind("] stopped");
    assert!(
        stopping.is_some() && stopping < stopped,
        "want the signal logged, then the stop:\n{new}"
    );
}

/// A sender killed on drop (a test that fails half-way leaves no process behind).
struct Sender(Child);

impl Drop for Sender {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// The first hour: the sender's -o log is reopened on SIGHUP too; SIGTERM still ends it
// at once, as unhandled (killed by the signal), but not without a line in the log.
#[test]
fn sender_reopens_its_log_on_sighup_and_logs_sigterm() {
    let (_pool, src, _) = source_with_a_snapshot("clisend");
    // A receiver that never answers: the sender waits for its greeting.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("address").to_string();
    let (log, rotated) = log_paths("clisend");
    let zfs = zfs_bin();
    let mut sender = Sender(
        Command::new(sender_bin())
            .args(["--zfs", &zfs, "--connect-timeout", "600", "-v", "-o"])
            .arg(&log)
            .args([&src, &addr])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run zfsync-send"),
    );
    let pid = sender.0.id();
    wait_for_line(&log, "zfs flavor=");

    fs::rename(&log, &rotated).expect("rename the log");
    signal(pid, SIGHUP);
    wait_for_line(&log, "log file reopened signal=SIGHUP");
    assert!(alive(pid), "SIGHUP ended the sender");

    signal(pid, SIGTERM);
    let status = sender.0.wait().expect("wait for zfsync-send");
    assert_eq!(status.signal(), Some(SIGTERM), "{status:?}");
    let new = wait_for_line(&log, "stopping on signal=SIGTERM");
    assert!(new.contains("WARN"), "{new}");
    let old = fs::read_to_string(&rotated).expect("read the rotated log");
    assert!(
        !old.contains("signal="),
        "a line went to the rotated log:\n{old}"
    );
}

// issue 14 item 5: two services must not own one TARGET. The second is refused with the
// first's pid; the lock dies with its process, however it dies, so a restart after
// kill -9 starts at once.
#[test]
fn a_second_receiver_on_one_target_is_refused() {
    let (_pool, _src, target) = source_with_a_snapshot("cliowner");
    let zfs = zfs_bin();
    let first = Receiver::start(&target, &["--zfs", &zfs]);
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let second = run_quick(&receiver_bin(), &["--zfs", &zfs, "-l", &listen, &target]);
    second.assert_status(2);
    assert!(
        second.stderr.contains(&format!(
            "another zfsync-recv (pid {}) already serves this target",
            first.pid()
        )),
        "{}",
        second.stderr
    );

    // Another target is not held by it.
    let other = Receiver::start(&format!("{target}2"), &["--zfs", &zfs]);
    drop(other);

    signal(first.pid(), SIGKILL);
    drop(first);
    let again = Receiver::start(&target, &["--zfs", &zfs]);
    drop(again);
}
