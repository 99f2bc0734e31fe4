//! Integration tests of the command line as a user meets it in the first hour: addresses
//! (a bad port is a usage error said at once, the default port, IPv6 literals).

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use zfsync_tests::*;

/// A usage error is said before anything is done: no zfs, no network.
const QUICK: Duration = Duration::from_secs(10);

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

fn run_quick(program: &Path, args: &[&str]) -> SendOutput {
    let start = Instant::now();
    let out = run_with_timeout(program, args, QUICK);
    assert!(
        start.elapsed() < Duration::from_secs(5),
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
        out.assert_status(1);
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
    let pool = Pool::unmounted("cliv6");
    let (src, target) = (pool.ds("data"), pool.ds("backup"));
    create(&src);
    snapshot(&format!("{src}@s1"));
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
