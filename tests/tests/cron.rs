//! Tests of scripts/zfsyncron (issue 3), against real zfs-fuse pools, the real zfsync,
//! zfsync-send and zfsync-recv: snapshot names across calendar boundaries, the retention
//! plan built from -s -m -h -d, snapshots named by older versions, foreign snapshots, a
//! receiver that is down for many runs, two receivers, the lock, the prune's safety stop,
//! dry runs and exit codes.
//!
//! The clock is injected with ZFSYNC_NOW (once with its older name ZFSYNCRON_NOW).
//! Expected snapshot names come from GNU `date -u -d @SECONDS`, and what a plan keeps is
//! worked out by hand, not from zfsync's logic. Every run goes through `dash`, so the
//! script is also checked to be POSIX sh.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use zfsync_tests::*;

/// 2028-02-29T08:00:00Z: a leap day, on an hour boundary.
const T0: u64 = 1_835_424_000;
/// 2028-03-01T00:00:00Z, the midnight after T0.
const MIDNIGHT: u64 = 1_835_481_600;
const DAY: u64 = 86_400;

const CRON_TIMEOUT: Duration = Duration::from_secs(120);

/// A plan that keeps only the newest snapshot of each dataset, forced past the safety
/// stop (which refuses to destroy all but the newest).
const KEEP_NEWEST: [&str; 3] = ["--keep", "last=1", "--force"];

/// Runs of scripts/zfsyncron sharing one lock file in a private temp dir.
struct Cron {
    dir: PathBuf,
    lock: PathBuf,
}

impl Cron {
    fn new() -> Cron {
        let dir = temp_dir("cron");
        let lock = dir.join("zfsyncron.lock");
        Cron { dir, lock }
    }

    /// `env ZFSYNC_NOW=NOW dash scripts/zfsyncron -A ZFSYNC -S SENDER -Z ZFS -L LOCK
    /// ARGS...` (a later -S in ARGS wins).
    fn argv(&self, now: u64, args: &[&str]) -> Vec<String> {
        let mut v = vec![
            format!("ZFSYNC_NOW={now}"),
            "dash".to_string(),
            script("zfsyncron").display().to_string(),
            "-A".to_string(),
            admin_bin().display().to_string(),
            "-S".to_string(),
            sender_bin().display().to_string(),
            "-Z".to_string(),
            zfs_bin(),
            "-L".to_string(),
            self.lock.display().to_string(),
        ];
        v.extend(args.iter().map(|a| a.to_string()));
        v
    }

    fn run(&self, now: u64, args: &[&str]) -> SendOutput {
        self.run_timeout(now, args, CRON_TIMEOUT)
    }

    fn run_timeout(&self, now: u64, args: &[&str], timeout: Duration) -> SendOutput {
        run_with_timeout(Path::new("/usr/bin/env"), &self.argv(now, args), timeout)
    }

    /// Starts a run in the background; the caller waits for it.
    fn spawn(&self, now: u64, args: &[&str]) -> Child {
        Command::new("/usr/bin/env")
            .args(self.argv(now, args))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn zfsyncron")
    }

    /// An executable `sh` script in the temp dir, e.g. a fake zfsync-send.
    fn script(&self, name: &str, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
        path.display().to_string()
    }
}

impl Drop for Cron {
    fn drop(&mut self) {
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// `YYYY-MM-DDThh:mm:ssZ` of `secs`, from GNU date: independent of the script's own
/// arithmetic.
fn stamp(secs: u64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("run date");
    assert!(out.status.success(), "date -d @{secs} failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The snapshot name the script should give a run at `secs`.
fn cron_name(secs: u64) -> String {
    format!("zfsync_{}", stamp(secs))
}

/// The names of runs at `times`, in that order.
fn cron_names(times: &[u64]) -> Vec<String> {
    times.iter().map(|&t| cron_name(t)).collect()
}

/// Snapshot names (after '@') of `ds` itself, oldest first.
fn snaps(ds: &str) -> Vec<String> {
    snapshot_guids(ds).into_iter().map(|(n, _)| n).collect()
}

/// Snapshot names of `ds` that start with `zfsync_`, oldest first.
fn zfsync_snaps(ds: &str) -> Vec<String> {
    snaps(ds)
        .into_iter()
        .filter(|n| n.starts_with("zfsync_"))
        .collect()
}

/// Full names of the snapshots at and below `ds` on which `zfsync:base:ID` is set
/// locally, sorted.
fn marked(ds: &str, id: &str) -> Vec<String> {
    let out = zfs(&[
        "get",
        "-Hp",
        "-r",
        "-s",
        "local",
        "-o",
        "name,value",
        &format!("zfsync:base:{id}"),
        ds,
    ]);
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| l.split('\t').next())
        .filter(|n| n.contains('@'))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// `[DATA@SNAP, KID@SNAP]`, sorted like `marked` sorts.
fn in_both(data: &str, kid: &str, snap: &str) -> Vec<String> {
    let mut v = vec![format!("{data}@{snap}"), format!("{kid}@{snap}")];
    v.sort();
    v
}

/// A source pool with `data` and `data/kid`, each holding a file.
fn source(tag: &str) -> (Pool, String, String) {
    let pool = Pool::new(tag);
    let (data, kid) = data_and_kid(&pool);
    (pool, data, kid)
}

/// Panics unless the replica `dst` has exactly the snapshots (names and GUIDs) of `src`.
fn assert_replica(src: &str, dst: &str) {
    assert_eq!(
        snapshot_guids(dst),
        snapshot_guids(src),
        "{dst} is not a replica of {src}"
    );
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn wait_child(mut child: Child, timeout: Duration) -> SendOutput {
    use std::io::Read;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("background zfsyncron still running after {timeout:?}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    SendOutput {
        status: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

// ---------------------------------------------------------------------------------------

#[test]
fn names_follow_the_clock_across_calendar_boundaries() {
    let (_src, data, kid) = source("cls");
    let dst = Pool::unmounted("clsr");
    let recv = Receiver::start(&dst.ds("bk"), &[]);
    let addr = recv.addr();
    let cron = Cron::new();
    let keep = ["--keep", "last=99"];
    let runs = [
        T0,                  // the first zfsync snapshot
        T0 + 1,              // same minute
        T0 + 59,             // still the same minute
        T0 + 60,             // 08:01:00
        T0 + 3599,           // 08:59:59
        T0 + 3600,           // 09:00:00, one second later
        T0 + 3601,           // 09:00:01
        MIDNIGHT - 1,        // 2028-02-29T23:59:59Z
        MIDNIGHT,            // 2028-03-01T00:00:00Z, one second later
        MIDNIGHT + 40 * DAY, // after a long gap
    ];
    let mut expected = Vec::new();
    for now in runs {
        let mut args = keep.to_vec();
        args.extend([data.as_str(), &addr]);
        cron.run(now, &args).assert_ok();
        expected.push(cron_name(now));
        assert_eq!(zfsync_snaps(&data), expected, "after the run at {now}");
    }
    assert_eq!(expected[0], "zfsync_2028-02-29T08:00:00Z");
    assert_eq!(expected[7], "zfsync_2028-02-29T23:59:59Z");
    assert_eq!(expected[8], "zfsync_2028-03-01T00:00:00Z");
    // Recursive snapshots, and every one delivered.
    assert_eq!(zfsync_snaps(&kid), expected);
    assert_replica(&data, &dst.ds("bk"));
    assert_replica(&kid, &dst.ds("bk/kid"));

    // A second run in the same second, and a clock that went back: no snapshot, exit 1,
    // the sends still done.
    let last = runs[runs.len() - 1];
    for now in [last, T0] {
        write_file(&data, "b.txt", b"more");
        let mut args = keep.to_vec();
        args.extend([data.as_str(), &addr]);
        let out = cron.run(now, &args);
        out.assert_status(1);
        assert!(out.stderr.contains("not newer"), "{}", out.stderr);
        assert_eq!(zfsync_snaps(&data), expected);
        assert_replica(&data, &dst.ds("bk"));
    }

    // ZFSYNCRON_NOW, the clock's older name, still sets the time.
    let now = last + 60;
    let mut argv = cron.argv(now, &["--keep", "last=99", &data, &addr]);
    argv[0] = format!("ZFSYNCRON_NOW={now}");
    run_with_timeout(Path::new("/usr/bin/env"), &argv, CRON_TIMEOUT).assert_ok();
    assert_eq!(zfsync_snaps(&data).last(), Some(&cron_name(now)));
}

// The counts -s -m -h -d build the plan secondly=N,minutely=N,hourly=N,daily=N: each
// keeps the first snapshot of each of the N newest seconds, minutes, hours or days that
// hold one. Unlike the old classes (S, M, H and D snapshots counted apart), the first
// snapshot of a day also fills an hour, a minute and a second: here, runs in bursts, the
// old counts kept 9 snapshots at the end (older M and H ones among them), the plan 3.
#[test]
fn retention_follows_the_plan_the_counts_build() {
    let (_src, data, kid) = source("ret");
    let dst = Pool::unmounted("retr");
    let recv = Receiver::start(&dst.ds("bk"), &[]);
    let cron = Cron::new();
    let (m, d) = (MIDNIGHT, MIDNIGHT + DAY);
    // Each run, and what -s 2 -m 3 -h 2 -d 2 leaves after it, worked out by hand.
    let runs: [(u64, &[u64]); 15] = [
        (T0, &[T0]),
        (T0 + 1, &[T0, T0 + 1]),
        (T0 + 2, &[T0, T0 + 1, T0 + 2]),
        (T0 + 3, &[T0, T0 + 2, T0 + 3]),
        (T0 + 60, &[T0, T0 + 3, T0 + 60]),
        (T0 + 120, &[T0, T0 + 60, T0 + 120]),
        (T0 + 180, &[T0, T0 + 60, T0 + 120, T0 + 180]),
        (T0 + 240, &[T0, T0 + 120, T0 + 180, T0 + 240]),
        (T0 + 3600, &[T0, T0 + 180, T0 + 240, T0 + 3600]),
        (T0 + 3601, &[T0, T0 + 180, T0 + 240, T0 + 3600, T0 + 3601]),
        (T0 + 7200, &[T0, T0 + 240, T0 + 3600, T0 + 3601, T0 + 7200]),
        (T0 + 10800, &[T0, T0 + 3600, T0 + 7200, T0 + 10800]),
        (m, &[T0, T0 + 7200, T0 + 10800, m]),
        (d, &[T0 + 10800, m, d]),
        (d + 60, &[m, d, d + 60]),
    ];
    for (now, kept) in runs {
        let args = [
            "-s",
            "2",
            "-m",
            "3",
            "-h",
            "2",
            "-d",
            "2",
            &data,
            &recv.addr(),
        ];
        cron.run(now, &args).assert_ok();
        assert_eq!(
            zfsync_snaps(&data),
            cron_names(kept),
            "after the run at {now}"
        );
        assert_eq!(
            zfsync_snaps(&kid),
            cron_names(kept),
            "after the run at {now}"
        );
    }
    // Pruning is local: the replica keeps everything it received.
    assert_eq!(zfsync_snaps(&dst.ds("bk")).len(), runs.len());
}

// Upgrading: snapshots named by older versions (a class suffix) are zfsync's. They count
// as the newest for the time check, and the plan prunes them like any other.
#[test]
fn snapshots_named_by_older_versions_are_managed() {
    let (_src, data, kid) = source("old");
    let cron = Cron::new();
    let fast = cron.script("fast-send", "exit 0");
    let old = [
        format!("zfsync_{}_D", stamp(T0 - 2 * DAY)),
        format!("zfsync_{}_D", stamp(T0 - DAY)),
        format!("zfsync_{}_M", stamp(T0 - 60)),
    ];
    for name in &old {
        zfs(&["snapshot", "-r", &format!("{data}@{name}")]);
    }
    let args = ["-S", &fast, "--keep", "daily=1", &data, "127.0.0.1:9"];
    let out = cron.run(T0 - 60, &args);
    out.assert_status(1);
    assert!(out.stderr.contains("not newer"), "{}", out.stderr);
    assert_eq!(zfsync_snaps(&data), old);
    // daily=1 keeps the first of the newest day (the old _M of 07:59), the new snapshot is
    // the newest; the two older days go.
    cron.run(T0, &args).assert_ok();
    let want = vec![old[2].clone(), cron_name(T0)];
    assert_eq!(zfsync_snaps(&data), want);
    assert_eq!(zfsync_snaps(&kid), want);
}

#[test]
fn foreign_snapshots_are_never_touched() {
    let (_src, data, kid) = source("frn");
    let dst = Pool::unmounted("frnr");
    let recv = Receiver::start(&dst.ds("bk"), &[]);
    let addr = recv.addr();
    let cron = Cron::new();
    // Names close to the script's pattern but not matching it, and one that matches.
    let foreign = [
        "manual",
        "zfsync_2099-01-01T00:00:00Z_Q",
        "zfsync_2020-01-01T00:00:00Z_M_extra",
        "zfsync_2020-01-01T00:00:00Z_m",
        "Zfsync_2020-01-01T00:00:00Z_M",
        "zfsync_2020-01-01T000000Z_M",
        "zfsync_2020-01-01T00:00:00_M",
        "xzfsync_2020-01-01T00:00:00Z_D",
    ];
    for name in foreign {
        snapshot(&format!("{data}@{name}"));
    }
    let old = "zfsync_2020-01-01T00:00:00Z_M";
    zfs(&["snapshot", "-r", &format!("{data}@{old}")]);
    let foreign_data: Vec<(String, u64)> = snapshot_guids(&data)
        .into_iter()
        .filter(|(n, _)| n != old)
        .collect();

    // Keep only the newest: every other snapshot zfsync may touch goes.
    let mut args = KEEP_NEWEST.to_vec();
    args.extend([data.as_str(), &addr]);
    cron.run(T0, &args).assert_ok();
    // The 2099 and other look-alikes did not count as the newest: the snapshot was taken.
    let first = cron_name(T0);
    let now_data = snapshot_guids(&data);
    assert!(
        foreign_data.iter().all(|f| now_data.contains(f)),
        "a foreign snapshot was touched: before {foreign_data:?}, after {now_data:?}"
    );
    assert!(
        !exists(&format!("{data}@{old}")),
        "the old zfsync snapshot was not expired"
    );
    assert!(
        !exists(&format!("{kid}@{old}")),
        "the old zfsync snapshot was not expired"
    );
    assert_eq!(zfsync_snaps(&kid), vec![first.clone()]);

    cron.run(T0 + 60, &args).assert_ok();
    let second = cron_name(T0 + 60);
    let after: Vec<String> = snaps(&data);
    let mut want_names: Vec<String> = foreign_data.iter().map(|(n, _)| n.clone()).collect();
    want_names.push(second.clone());
    assert_eq!(after, want_names);
    assert_eq!(zfsync_snaps(&kid), vec![second]);
    let now_data = snapshot_guids(&data);
    assert!(foreign_data.iter().all(|f| now_data.contains(f)));
}

#[test]
fn receiver_down_keeps_its_base_and_resumes_incrementally() {
    let (_src, data, kid) = source("down");
    let (pa, pb) = (Pool::unmounted("downa"), Pool::unmounted("downb"));
    let ra = Receiver::start(&pa.ds("bk"), &[]);
    let mut rb = Receiver::start(&pb.ds("bk"), &[]);
    let cron = Cron::new();
    // A tiny plan: the last run, when b's old base goes too, destroys all but the newest,
    // which the safety stop refuses without --force.
    let keep = ["-s", "1", "-m", "1", "-h", "1", "-d", "1", "--force"];
    // Receivers named a and b: b comes back on another port under the same id.
    let run = |now: u64, b_addr: &str, extra: &[&str]| {
        let a = format!("{}=a", ra.addr());
        let b = format!("{b_addr}=b");
        let mut args = extra.to_vec();
        args.extend(keep);
        args.extend([data.as_str(), &a, &b, "--", "--retries", "0"]);
        cron.run(now, &args)
    };

    run(T0, &rb.addr(), &[]).assert_ok();
    let base = cron_name(T0);
    let base_guid = snapshot_guids(&pb.ds("bk"))[0].clone();
    assert_eq!(base_guid.0, base);
    assert_eq!(marked(&data, "b"), in_both(&data, &kid, &base));
    let b_addr = rb.addr();
    rb.stop();

    // Four days of runs with b down: far more than -d 1 covers.
    for k in 1..=4 {
        for now in [T0 + k * DAY, T0 + k * DAY + 60] {
            let out = run(now, &b_addr, &[]);
            out.assert_status(1);
            assert!(out.stderr.contains("id b) failed"), "{}", out.stderr);
            let have = zfsync_snaps(&data);
            assert!(
                have.contains(&base),
                "b's base was expired at {now}: {have:?}"
            );
            assert!(
                zfsync_snaps(&kid).contains(&base),
                "b's base was expired in {kid}"
            );
            assert_eq!(have.last(), Some(&cron_name(now)));
            // Retention still works for everything else: base + the day's first + newest.
            assert!(have.len() <= 3, "at {now}: {have:?}");
            // a is up and gets every snapshot (it keeps what the source expired).
            assert_eq!(
                snapshot_guids(&pa.ds("bk")).last(),
                snapshot_guids(&data).last()
            );
        }
    }
    let out = run(T0 + 4 * DAY + 120, &b_addr, &["-n", "-v"]);
    out.assert_ok();
    let kept = format!("PROTECT  {data}@{base}  (base of receiver b)");
    assert!(out.stdout.contains(&kept), "{}", out.stdout);

    // b is back (on a new port, same id): the next run is incremental from the base.
    let rb2 = Receiver::start(&pb.ds("bk"), &[]);
    let now = T0 + 5 * DAY;
    let out = run(now, &rb2.addr(), &["-v"]);
    out.assert_ok();
    assert!(
        out.stdout.contains(&format!("incremental @{base}")),
        "not incremental from the base:\n{}",
        out.stdout
    );
    let newest = cron_name(now);
    let replica = snapshot_guids(&pb.ds("bk"));
    assert_eq!(replica[0], base_guid, "b's replica lost its base");
    assert_eq!(replica.last(), snapshot_guids(&data).last());
    assert_eq!(replica.last().unwrap().0, newest);
    // Delivered, so the mark moved and the old base was pruned in the same run.
    assert_eq!(marked(&data, "b"), in_both(&data, &kid, &newest));
    assert!(!zfsync_snaps(&data).contains(&base));
    assert!(!zfsync_snaps(&kid).contains(&base));
}

#[test]
fn two_receivers_both_get_everything() {
    let (_src, data, kid) = source("two");
    let (pa, pb) = (Pool::unmounted("twoa"), Pool::unmounted("twob"));
    let ra = Receiver::start(&pa.ds("bk"), &[]);
    let rb = Receiver::start(&pb.ds("bk"), &[]);
    let cron = Cron::new();
    let log = cron.dir.join("run.log");
    let log_s = log.display().to_string();
    for (i, now) in [T0, T0 + 60, T0 + 120].into_iter().enumerate() {
        write_file(&data, "a.txt", format!("version {i}").as_bytes());
        // -j 1: one sender at a time; the ids derived from HOST:PORT.
        let out = cron.run(
            now,
            &[
                "-j",
                "1",
                "-t",
                "2",
                "-o",
                &log_s,
                &data,
                &ra.addr(),
                &rb.addr(),
            ],
        );
        out.assert_ok();
        assert_eq!(out.stdout, "", "a successful run should be silent");
        assert_eq!(out.stderr, "", "a successful run should be silent");
    }
    for (pool, r) in [(&pa, &ra), (&pb, &rb)] {
        assert_replica(&data, &pool.ds("bk"));
        assert_replica(&kid, &pool.ds("bk/kid"));
        let id = r.addr().replace(':', "-");
        let newest = cron_name(T0 + 120);
        assert_eq!(marked(&data, &id), in_both(&data, &kid, &newest));
    }
    assert_eq!(
        files_of(&format!("{}@{}", pb.ds("bk"), cron_name(T0 + 120)))["a.txt"],
        b"version 2"
    );
    let log_text = fs::read_to_string(&log).expect("read log");
    assert!(log_text.contains(&format!("snapshot {data}@{}", cron_name(T0 + 120))));
    assert!(log_text.contains("zfsync-send: 2 datasets"), "{log_text}");
}

#[test]
fn lock_contention_and_stale_locks() {
    let (_src, data, _kid) = source("lock");
    let cron = Cron::new();
    // A fake zfsync-send: the lock is about the script, not about sending.
    let slow = cron.script("slow-send", "while [ ! -e \"$0.go\" ]; do sleep 0.05; done");
    let fast = cron.script("fast-send", "exit 0");

    // A live holder: the second run exits 3 and changes nothing.
    let first = cron.spawn(T0, &["-S", &slow, &data, "127.0.0.1:9"]);
    let pid = first.id().to_string();
    wait_for("the first run's lock", Duration::from_secs(20), || {
        fs::read_to_string(&cron.lock).is_ok_and(|s| s.lines().next() == Some(&pid))
    });
    let out = cron.run_timeout(
        T0 + 60,
        &["-S", &fast, &data, "127.0.0.1:9"],
        Duration::from_secs(20),
    );
    out.assert_status(3);
    assert!(
        out.stderr
            .contains(&format!("another run (pid {pid}) holds the lock")),
        "{}",
        out.stderr
    );
    fs::write(format!("{slow}.go"), b"").unwrap();
    wait_child(first, Duration::from_secs(30)).assert_ok();
    assert_eq!(zfsync_snaps(&data), vec![cron_name(T0)]);
    assert!(!cron.lock.exists(), "the lock was not released");

    // Stale holders are taken over: a dead pid, a pid that now belongs to another
    // program, and garbage.
    let mut dead = Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    let mut other = Command::new("sleep").arg("30").spawn().unwrap();
    let holders = [
        dead.id().to_string(),
        other.id().to_string(),
        "garbage".to_string(),
    ];
    for (i, holder) in holders.iter().enumerate() {
        fs::write(&cron.lock, format!("{holder}\n")).unwrap();
        let now = T0 + 120 + 60 * i as u64;
        let out = cron.run(now, &["-S", &fast, &data, "127.0.0.1:9"]);
        out.assert_ok();
        assert!(
            out.stderr.contains(&format!(
                "took over the stale lock {} of pid '{holder}'",
                cron.lock.display()
            )),
            "{}",
            out.stderr
        );
        assert_eq!(zfsync_snaps(&data).last(), Some(&cron_name(now)));
        assert!(!cron.lock.exists(), "the lock was not released");
    }
    let _ = other.kill();
    let _ = other.wait();
}

// issue 14: kill -9 of the script leaves its senders running; the lock stays live while
// they do, and is taken over once they are gone.
#[test]
fn a_killed_runs_senders_keep_the_lock() {
    let (_src, data, _kid) = source("lockkill");
    let cron = Cron::new();
    let slow = cron.script("slow-send", "while [ ! -e \"$0.go\" ]; do sleep 0.05; done");
    let fast = cron.script("fast-send", "exit 0");

    let mut first = cron.spawn(T0, &["-S", &slow, &data, "127.0.0.1:9"]);
    let run_pid = first.id().to_string();
    let mut sender_pid = String::new();
    wait_for(
        "the sender's pid in the lock",
        Duration::from_secs(20),
        || {
            let text = fs::read_to_string(&cron.lock).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            if lines.len() == 2 && lines[0] == run_pid {
                sender_pid = lines[1].split(' ').next().unwrap().to_string();
                true
            } else {
                false
            }
        },
    );
    first.kill().unwrap(); // SIGKILL: no trap runs
    first.wait().unwrap();
    assert!(
        Path::new(&format!("/proc/{sender_pid}")).exists(),
        "the sender died with the script; this test needs it alive"
    );

    let out = cron.run_timeout(
        T0 + 60,
        &["-S", &fast, &data, "127.0.0.1:9"],
        Duration::from_secs(20),
    );
    out.assert_status(3);
    assert!(
        out.stderr.contains(&format!(
            "a zfsync-send (pid {sender_pid}) of a run that ended without it still runs and holds the lock"
        )),
        "{}",
        out.stderr
    );
    assert_eq!(zfsync_snaps(&data), vec![cron_name(T0)]);

    // The orphaned sender ends: the lock is stale and the next run takes it over.
    fs::write(format!("{slow}.go"), b"").unwrap();
    wait_for(
        "the orphaned sender to end",
        Duration::from_secs(20),
        || {
            !Path::new(&format!("/proc/{sender_pid}")).exists()
                || fs::read_to_string(format!("/proc/{sender_pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        },
    );
    let out = cron.run(T0 + 120, &["-S", &fast, &data, "127.0.0.1:9"]);
    out.assert_ok();
    assert!(
        out.stderr.contains(&format!(
            "took over the stale lock {} of pid '{run_pid}'",
            cron.lock.display()
        )),
        "{}",
        out.stderr
    );
    assert!(!cron.lock.exists(), "the lock was not released");
}

#[test]
fn dry_run_changes_nothing() {
    let (_src, data, kid) = source("dry");
    let dst = Pool::unmounted("dryr");
    let recv = Receiver::start(&dst.ds("bk"), &[]);
    let cron = Cron::new();
    for now in [T0, T0 + 60, T0 + 120] {
        cron.run(now, &[&data, &recv.addr()]).assert_ok();
    }
    write_file(&data, "a.txt", b"changed");
    let state = || {
        (
            snapshot_guids(&data),
            snapshot_guids(&kid),
            snapshot_guids(&dst.ds("bk")),
            marked(&data, &recv.addr().replace(':', "-")),
        )
    };
    let before = state();
    let new = cron_name(T0 + 180);
    let id = recv.addr().replace(':', "-");
    // -s 0 -m 1: the plan secondly=0,minutely=1,hourly=24,daily=30 keeps the newest
    // minute's first (T0 + 120, also the receiver's base) and the hour's and day's (T0).
    // The dry run plans with the snapshots there are now: not the one it would take.
    let plan = ["-n", "-s", "0", "-m", "1", &data, &recv.addr()];

    let out = cron.run(T0 + 180, &plan);
    out.assert_ok();
    assert_eq!(state(), before, "the dry run changed something");
    assert!(!cron.lock.exists());
    for line in [
        format!("would snapshot {data}@{new} (recursive)"),
        format!(
            "would run {} --mark {id} --zfs {} {data} {}",
            sender_bin().display(),
            zfs_bin(),
            recv.addr()
        ),
        format!("would destroy {data}@{}", cron_name(T0 + 60)),
        format!("would destroy {kid}@{}", cron_name(T0 + 60)),
    ] {
        assert!(
            out.stdout.contains(&line),
            "missing {line:?} in:\n{}",
            out.stdout
        );
    }
    assert_eq!(
        out.stdout.matches("would destroy").count(),
        2,
        "{}",
        out.stdout
    );

    // With -v, every snapshot's fate and why.
    let mut verbose = vec!["-v"];
    verbose.extend(plan);
    let out = cron.run(T0 + 180, &verbose);
    out.assert_ok();
    assert_eq!(state(), before, "the dry run changed something");
    for ds in [&data, &kid] {
        let mut want = vec![
            format!(
                "KEEP     {ds}@{}  hourly=24 (2028-02-29T08:00+00), daily=30 (2028-02-29)",
                cron_name(T0)
            ),
            format!("DESTROY  {ds}@{}", cron_name(T0 + 60)),
        ];
        want.push(format!(
            "PROTECT  {ds}@{}  (newest, base of receiver {id})",
            cron_name(T0 + 120)
        ));
        for line in want {
            assert!(
                out.stdout.contains(&line),
                "missing {line:?} in:\n{}",
                out.stdout
            );
        }
    }

    // The same plan, for real: the send moves the mark to the new snapshot, so the old
    // base (T0 + 120) goes as well.
    cron.run(T0 + 180, &plan[1..]).assert_ok();
    assert_eq!(zfsync_snaps(&data), vec![cron_name(T0), new.clone()]);
    assert_eq!(zfsync_snaps(&kid), vec![cron_name(T0), new]);
}

#[test]
fn failed_prune_exits_1_and_the_rest_is_done() {
    let (src, data, kid) = source("expf");
    let dst = Pool::unmounted("expfr");
    let recv = Receiver::start(&dst.ds("bk"), &[]);
    let cron = Cron::new();
    let args = ["-s", "0", "-m", "1", &data, &recv.addr()];
    cron.run(T0, &args).assert_ok();
    cron.run(T0 + 60, &args).assert_ok();
    // A clone makes the snapshot impossible to destroy.
    let m1 = cron_name(T0 + 60);
    let clone = src.ds("clone");
    zfs(&[
        "clone",
        "-o",
        "mountpoint=none",
        &format!("{data}@{m1}"),
        &clone,
    ]);
    let out = cron.run(T0 + 120, &args);
    out.assert_status(1);
    assert!(
        out.stderr.contains(&format!("zfs destroy {data}@{m1}")),
        "{}",
        out.stderr
    );
    assert!(exists(&format!("{data}@{m1}")));
    assert!(
        !exists(&format!("{kid}@{m1}")),
        "the other dataset was not pruned"
    );
    assert_replica(&data, &dst.ds("bk"));

    zfs(&["destroy", &clone]);
    cron.run(T0 + 180, &args).assert_ok();
    assert!(!exists(&format!("{data}@{m1}")));
}

// The safety stop: a plan that would destroy all of a dataset's zfsync snapshots but the
// newest (or more than half of them) destroys nothing there and exits 1; --force prunes.
#[test]
fn a_too_destructive_plan_stops_the_prune() {
    let (_src, data, kid) = source("stop");
    let cron = Cron::new();
    let fast = cron.script("fast-send", "exit 0");
    for now in [T0, T0 + 60, T0 + 120] {
        cron.run(now, &["-S", &fast, &data, "127.0.0.1:9"])
            .assert_ok();
    }
    let out = cron.run(
        T0 + 180,
        &["-S", &fast, "--keep", "last=1", &data, "127.0.0.1:9"],
    );
    out.assert_status(1);
    assert!(
        out.stderr.contains(&format!(
            "{data}: left as it is: would destroy all 4 zfsync snapshots but the newest"
        )),
        "{}",
        out.stderr
    );
    let all = cron_names(&[T0, T0 + 60, T0 + 120, T0 + 180]);
    assert_eq!(zfsync_snaps(&data), all);
    assert_eq!(zfsync_snaps(&kid), all);

    let args = [
        "-S",
        &fast,
        "--keep",
        "last=1",
        "--force",
        &data,
        "127.0.0.1:9",
    ];
    cron.run(T0 + 240, &args).assert_ok();
    assert_eq!(zfsync_snaps(&data), vec![cron_name(T0 + 240)]);
    assert_eq!(zfsync_snaps(&kid), vec![cron_name(T0 + 240)]);
}

#[test]
fn usage_and_configuration_errors_exit_2() {
    let (src, data, _kid) = source("use");
    let cron = Cron::new();
    let fast = cron.script("fast-send", "exit 0");
    let missing = src.ds("nope");
    for args in [
        vec!["-x", data.as_str(), "h:1"],
        vec!["--bogus", data.as_str(), "h:1"],
        vec!["-m", "many", data.as_str(), "h:1"],
        vec![
            "-s",
            "0",
            "-m",
            "0",
            "-h",
            "0",
            "-d",
            "0",
            data.as_str(),
            "h:1",
        ],
        vec!["--keep", "daily=7", "-d", "3", data.as_str(), "h:1"],
        vec!["--min-change", "lots", data.as_str(), "h:1"],
        vec!["--keep"],
        vec![data.as_str()],
        vec![data.as_str(), "h:1=Bad"],
        vec![data.as_str(), "h:1", "H:1"],
        vec!["-S", "/nonexistent/zfsync-send", data.as_str(), "h:1"],
        vec!["-A", "/nonexistent/zfsync", data.as_str(), "h:1"],
        vec!["-S", &fast, &missing, "h:1"],
    ] {
        let out = cron.run(T0, &args);
        assert_eq!(out.status, 2, "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
    assert_eq!(zfsync_snaps(&data), Vec::<String>::new());
    // A usage error of zfsync-send itself (a bad pass-through option) is one too.
    let out = cron.run(T0, &[&data, "127.0.0.1:9", "--", "--no-such-option"]);
    out.assert_status(2);
    assert!(out.stderr.contains("zfsync-send exit 2"), "{}", out.stderr);
    // So is a plan zfsync prune cannot read. The script does not parse plans: the run
    // snapshots and sends, and only the prune is refused.
    let out = cron.run(
        T0 + 60,
        &["-S", &fast, "--keep", "fortnightly=2", &data, "h:1"],
    );
    out.assert_status(2);
    assert!(
        out.stderr.contains("unknown retention rule"),
        "{}",
        out.stderr
    );
    assert_eq!(zfsync_snaps(&data), cron_names(&[T0, T0 + 60]));
}

// The newest zfsync snapshot is never destroyed, even when no rule keeps it and no
// receiver's mark protects it.
#[test]
fn the_newest_snapshot_is_always_kept() {
    let (_src, data, kid) = source("zero");
    let cron = Cron::new();
    // Nothing listens on port 9: every send fails, so no snapshot gets a mark. hourly=1
    // keeps the hour's first snapshot (T0) only.
    let mut args = vec!["--keep", "hourly=1", "--force"];
    args.extend([data.as_str(), "127.0.0.1:9", "--", "--retries", "0"]);
    cron.run(T0, &args).assert_status(1);
    assert_eq!(zfsync_snaps(&data), vec![cron_name(T0)]);
    cron.run(T0 + 60, &args).assert_status(1);
    assert_eq!(zfsync_snaps(&data), cron_names(&[T0, T0 + 60]));
    cron.run(T0 + 120, &args).assert_status(1);
    assert_eq!(zfsync_snaps(&data), cron_names(&[T0, T0 + 120]));
    assert_eq!(zfsync_snaps(&kid), cron_names(&[T0, T0 + 120]));
}

// A held snapshot (zfs hold: an admin's, another tool's, or a sender's --mark hold on
// OpenZFS) is kept whatever the plan says, and named as held with -v; the run succeeds.
// (`zfs destroy` refuses a held snapshot: trying would fail every run until someone
// released it.)
#[test]
fn held_snapshots_are_kept_and_the_run_succeeds() {
    let (_src, data, kid) = source("hold");
    let dst = Pool::unmounted("holdr");
    let recv = Receiver::start(&dst.ds("bk"), &[]);
    let cron = Cron::new();
    let addr = recv.addr();
    let mut args = vec!["-v"];
    args.extend(KEEP_NEWEST);
    args.extend([data.as_str(), &addr]);
    cron.run(T0, &args).assert_ok();
    let first = cron_name(T0);
    let held = format!("{kid}@{first}");
    zfs(&["hold", "admin", &held]);
    let out = cron.run(T0 + 60, &args);
    zfs(&["release", "admin", &held]);
    out.assert_ok();
    let second = cron_name(T0 + 60);
    assert_eq!(zfsync_snaps(&data), vec![second.clone()]);
    assert_eq!(zfsync_snaps(&kid), vec![first, second]);
    assert!(
        out.stdout.contains(&format!("PROTECT  {held}  (held)")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("destroyed {data}@{}", cron_name(T0))),
        "{}",
        out.stdout
    );
}
