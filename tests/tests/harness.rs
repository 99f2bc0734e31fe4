//! Tests of the test harness itself, against real zfs-fuse pools: if these fail, no other
//! integration test's verdict can be trusted.
//!
//! Each expectation is derived independently of the helper under test: file contents from
//! what the test wrote, GUIDs from one `zfs get` per snapshot, replication from a plain
//! `zfs send | zfs recv` pipe.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zfsync_tests::*;

fn guid_of(snap: &str) -> u64 {
    zfs(&["get", "-Hp", "-o", "value", "guid", snap])
        .trim()
        .parse()
        .expect("guid is a number")
}

/// `zfs send ARGS | zfs recv TARGET`, with both exit statuses checked.
fn send_recv(send_args: &[&str], target: &str) {
    let mut send = Command::new(zfs_bin())
        .arg("send")
        .args(send_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn zfs send");
    let recv = Command::new(zfs_bin())
        .args(["recv", target])
        .stdin(send.stdout.take().unwrap())
        .output()
        .expect("run zfs recv");
    let sent = send.wait_with_output().expect("wait zfs send");
    assert!(
        sent.status.success(),
        "zfs send {send_args:?}: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(
        recv.status.success(),
        "zfs recv {target}: {}",
        String::from_utf8_lossy(&recv.stderr)
    );
}

fn expected(files: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .map(|(p, d)| (p.to_string(), d.to_vec()))
        .collect()
}

#[test]
fn random_bytes_is_deterministic_and_seeded() {
    let a = random_bytes(1000, 0);
    assert_eq!(a.len(), 1000);
    assert_eq!(a, random_bytes(1000, 0));
    assert_ne!(a, random_bytes(1000, 1));
    // A prefix is stable, so tests can grow a file by regenerating it longer.
    assert_eq!(&random_bytes(1003, 7)[..997], &random_bytes(997, 7)[..]);
    // Not degenerate: every byte value shows up in 64 KiB.
    let mut seen = [false; 256];
    random_bytes(1 << 16, 42)
        .iter()
        .for_each(|&b| seen[b as usize] = true);
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn snapshots_files_and_guids_survive_send_recv() {
    let src = Pool::new("hsrc");
    let dst = Pool::unmounted("hdst");
    let data = src.ds("data");
    create(&data);
    create(&src.ds("data/child"));

    let big = random_bytes(1 << 20, 1);
    write_file(&data, "a.txt", b"hello\n");
    write_file(&data, "dir/sub/b.bin", &big);
    write_file(&data, "empty", b"");
    write_file(&src.ds("data/child"), "c.txt", b"child's file");
    snapshot(&format!("{data}@old"));
    write_file(&data, "a.txt", b"changed\n");
    std::fs::remove_file(mountpoint(&data).join("empty")).unwrap();
    snapshot(&format!("{data}@new"));

    let s1 = expected(&[
        ("a.txt", b"hello\n"),
        ("dir/sub/b.bin", &big),
        ("empty", b""),
    ]);
    let s2 = expected(&[("a.txt", b"changed\n"), ("dir/sub/b.bin", &big)]);
    // The child's files live in its own dataset: the parent's snapshot must not show them.
    assert_eq!(files_of(&format!("{data}@old")), s1);
    assert_eq!(files_of(&format!("{data}@new")), s2);

    let want_guids = vec![
        ("old".to_string(), guid_of(&format!("{data}@old"))),
        ("new".to_string(), guid_of(&format!("{data}@new"))),
    ];
    assert_eq!(snapshot_guids(&data), want_guids);
    // The child has no snapshots, and -d 1 must not have leaked them into the parent's list.
    snapshot(&format!("{}@only-child", src.ds("data/child")));
    assert_eq!(snapshot_guids(&src.ds("data/child")).len(), 1);
    assert_eq!(snapshot_guids(&data), want_guids);

    // files_of leaves nothing behind: no clone dataset, the snapshots untouched.
    assert_eq!(
        list_datasets(&src.name),
        vec![src.name.clone(), data.clone(), src.ds("data/child")]
    );
    assert!(exists(&format!("{data}@old")));
    assert!(!exists(&format!("{data}@nope")));

    // Replicate with plain zfs: full, then incremental, into the unmounted pool.
    let copy = dst.ds("copy");
    send_recv(&[&format!("{data}@old")], &copy);
    send_recv(
        &["-i", &format!("{data}@old"), &format!("{data}@new")],
        &copy,
    );
    assert_eq!(
        snapshot_guids(&copy),
        want_guids,
        "GUIDs are preserved by send/recv"
    );
    assert_eq!(
        zfs(&["get", "-H", "-o", "value", "mountpoint", &copy]).trim(),
        "none"
    );
    // files_of reads a snapshot of a dataset with mountpoint=none.
    assert_eq!(files_of(&format!("{copy}@old")), s1);
    assert_eq!(files_of(&format!("{copy}@new")), s2);
    assert_eq!(
        list_datasets(&dst.name),
        vec![dst.name.clone(), copy.clone()]
    );
}

#[test]
fn pool_drop_destroys_pool_and_file() {
    let pool = Pool::unmounted("hdrop");
    let (name, file, dir) = (
        pool.name.clone(),
        pool.file.clone(),
        pool.dir().to_path_buf(),
    );
    assert!(name.starts_with("zft_hdrop_"), "{name}");
    assert!(pool.mountroot.is_none());
    assert!(file.is_file());
    create(&pool.ds("x"));
    drop(pool);
    assert!(
        zpool_try(&["list", &name]).is_err(),
        "pool {name} still exists"
    );
    assert!(
        !file.exists() && !dir.exists(),
        "{} left behind",
        dir.display()
    );
}

#[test]
fn mounted_pool_is_under_its_temp_dir() {
    let pool = Pool::with_size("hmnt", 128 << 20);
    let root = pool.mountroot.clone().expect("Pool::with_size mounts");
    assert!(root.starts_with(TEST_ROOT));
    create(&pool.ds("a/b"));
    assert_eq!(mountpoint(&pool.ds("a/b")), root.join("a/b"));
    write_file(&pool.ds("a/b"), "f", b"x");
    assert_eq!(std::fs::read(root.join("a/b/f")).unwrap(), b"x");
}

/// A stand-in receiver: the harness's process handling is tested without zfsync-recv.
fn fake_program(dir: &Path, name: &str, script: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn receiver_guard_reads_address_logs_and_stops() {
    let dir = temp_dir("hfake");
    // Checks it got the documented arguments, then behaves like a receiver: one line,
    // logging on stderr, running until SIGTERM.
    let prog = fake_program(
        &dir,
        "recv",
        r#"[ "$1 $2 $3 $4" = "-l 127.0.0.1:0 -v pool/target" ] || { echo "bad args: $*" >&2; exit 2; }
echo "listening on 127.0.0.1:4242"
echo "log line on stderr" >&2
exec sleep 1000"#,
    );
    let mut r = Receiver::spawn(&prog, "pool/target", &["-v"]);
    assert_eq!(r.addr(), "127.0.0.1:4242");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !r.log().contains("log line on stderr") {
        assert!(
            Instant::now() < deadline,
            "stderr not logged: {:?}",
            r.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    let status = r.stop();
    assert!(t.elapsed() < Duration::from_secs(5), "SIGTERM was not sent");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15)
    );
    drop(r);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn receiver_guard_reports_a_receiver_that_exits_early() {
    let dir = temp_dir("hfake");
    let prog = fake_program(&dir, "recv", "echo 'cannot bind: nope' >&2; exit 2");
    let Err(err) = std::panic::catch_unwind(|| Receiver::spawn(&prog, "pool/t", &[])) else {
        panic!("Receiver::spawn must panic when the receiver exits before listening");
    };
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("cannot bind: nope") && msg.contains("exit 2"),
        "{msg}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn run_with_timeout_collects_output_and_status() {
    let out = run_with_timeout(
        Path::new("/bin/sh"),
        &["-c", "echo out; echo err >&2; exit 3"],
        Duration::from_secs(30),
    );
    assert_eq!(
        (out.status, out.stdout.as_str(), out.stderr.as_str()),
        (3, "out\n", "err\n")
    );
    let out = run_with_timeout(
        Path::new("/bin/sh"),
        &["-c", "kill -9 $$"],
        Duration::from_secs(30),
    );
    assert_eq!(out.status, 128 + 9);
}

#[test]
fn run_with_timeout_kills_and_panics_on_timeout() {
    let t = Instant::now();
    let Err(err) = std::panic::catch_unwind(|| {
        run_with_timeout(
            Path::new("/bin/sh"),
            &["-c", "echo started; exec sleep 60"],
            Duration::from_millis(500),
        )
    }) else {
        panic!("run_with_timeout must panic on timeout");
    };
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("still running") && msg.contains("started"),
        "{msg}"
    );
    assert!(t.elapsed() < Duration::from_secs(10));
}
