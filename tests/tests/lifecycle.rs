//! Snapshot lifecycle on both sides, against real zfs-fuse pools: `zfsync snapshot`
//! (`--min-change`), `zfsync prune` (what a plan keeps, what is protected, the dry run and
//! `--explain`, the safety stop), and days of cron runs with a receiver that prunes by its
//! own plan (`zfsync-recv --keep`).
//!
//! The clock is `ZFSYNC_NOW`. What a plan keeps is written out by hand for each case,
//! never computed with the retention crate.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use zfsync_tests::*;

/// 2026-12-01T00:00:00Z.
const DEC1: u64 = 1_796_083_200;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

const TIMEOUT: Duration = Duration::from_secs(120);

use zfsync_name_at as name_at;

/// `env ZFSYNC_NOW=NOW zfsync ARGS... --zfs ZFS`.
fn zfsync(now: u64, args: &[&str]) -> SendOutput {
    let zfs = zfs_bin();
    let mut argv: Vec<&str> = args.to_vec();
    argv.extend(["--zfs", &zfs]);
    run_at(now, &admin_bin(), &argv, TIMEOUT)
}

/// Snapshot names of `ds` itself, oldest first.
fn snaps(ds: &str) -> Vec<String> {
    snapshot_guids(ds).into_iter().map(|(n, _)| n).collect()
}

/// The lines of `text` that start with `prefix`, without it.
fn lines_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .collect()
}

/// A source pool with `data` and `data/kid`, each holding a file.
fn source(tag: &str) -> (Pool, String, String) {
    let pool = Pool::new(tag);
    let (data, kid) = data_and_kid(&pool);
    (pool, data, kid)
}

/// Recursive zfsync snapshots of `ds` every 6 hours for 3 days from December 1: 12 of
/// them, at these offsets from DEC1.
fn six_hourly(ds: &str) -> Vec<u64> {
    let times: Vec<u64> = (0..12).map(|i| DEC1 + 6 * HOUR * i).collect();
    for &t in &times {
        zfs(&["snapshot", "-r", &format!("{ds}@{}", name_at(t))]);
    }
    times
}

#[test]
fn prune_keeps_what_the_plan_says_and_never_a_protected_snapshot() {
    let (_src, data, kid) = source("prune");
    let t = six_hourly(&data);
    // A receiver's base on data, a hold on kid, a manual snapshot on data.
    let marked = format!("{data}@{}", name_at(t[1]));
    zfs(&["set", "zfsync:base:bk1=1796090000", &marked]);
    let held = format!("{kid}@{}", name_at(t[0]));
    zfs(&["hold", "admin", &held]);
    zfs(&["snapshot", &format!("{data}@before-upgrade")]);
    let now = DEC1 + 3 * DAY;
    // hourly=3 keeps Dec 3 06:00, 12:00, 18:00; daily=2 keeps Dec 2 00:00 and Dec 3
    // 00:00. Each dataset keeps one more by its protection, so neither destroys more than
    // half of its 12: no --force needed.
    let plan = ["prune", "--keep", "hourly=3,daily=2", &data];

    let mut explain = plan.to_vec();
    explain.extend(["-n", "--explain"]);
    let dry = zfsync(now, &explain);
    dry.assert_ok();
    for line in [
        format!("PROTECT  {data}@before-upgrade               (not zfsync's)"),
        format!("PROTECT  {marked}  (base of receiver bk1)"),
        format!("PROTECT  {held}  (held)"),
        format!("PROTECT  {data}@{}  (newest)", name_at(t[11])),
        format!("KEEP     {data}@{}  daily=2 (2026-12-02)", name_at(t[4])),
        format!(
            "KEEP     {kid}@{}  hourly=3 (2026-12-03T06:00+00)",
            name_at(t[9])
        ),
    ] {
        assert!(
            dry.stdout.lines().any(|l| l == line),
            "no {line:?} in\n{}",
            dry.stdout
        );
    }
    let mut would: Vec<String> = lines_after(&dry.stdout, "DESTROY  ")
        .iter()
        .map(|s| s.to_string())
        .collect();
    would.sort();
    let mut dry_only = plan.to_vec();
    dry_only.push("--dry-run");
    let out = zfsync(now, &dry_only);
    out.assert_ok();
    let mut listed: Vec<&str> = lines_after(&out.stdout, "would destroy ");
    listed.sort();
    assert_eq!(listed, would, "--dry-run and --dry-run --explain disagree");
    assert_eq!(
        tree_snapshots(&data)[""].len(),
        13,
        "a dry run destroyed something"
    );

    let real = zfsync(now, &plan);
    real.assert_ok();
    let mut destroyed: Vec<&str> = lines_after(&real.stdout, "destroyed ");
    destroyed.sort();
    assert_eq!(
        destroyed, would,
        "the real run did not do what the dry run said"
    );

    // What is left, by hand.
    let at = |idx: &[usize]| -> Vec<String> { idx.iter().map(|&i| name_at(t[i])).collect() };
    let mut want_data = at(&[1, 4, 8, 9, 10, 11]);
    want_data.push("before-upgrade".to_string()); // taken last
    assert_eq!(snaps(&data), want_data);
    assert_eq!(snaps(&kid), at(&[0, 4, 8, 9, 10, 11]));

    // Nothing more to do: a second run destroys nothing.
    let again = zfsync(now, &plan);
    again.assert_ok();
    assert_eq!(again.stdout, "");
    // Released, the held snapshot is the plan's again.
    zfs(&["release", "admin", &held]);
    let out = zfsync(now, &plan);
    out.assert_ok();
    assert_eq!(out.stdout, format!("destroyed {held}\n"));
}

#[test]
fn the_safety_stop_destroys_nothing_and_force_proceeds() {
    let (_src, data, kid) = source("safe");
    let t = six_hourly(&data);
    let now = DEC1 + 3 * DAY;
    let before = tree_snapshots(&data);
    // last=1 destroys all but the newest of each dataset.
    let out = zfsync(now, &["prune", "--keep", "last=1", &data]);
    out.assert_status(1);
    for ds in [&data, &kid] {
        let why = format!(
            "zfsync prune: {ds}: left as it is: would destroy all 12 zfsync snapshots but \
             the newest (11 of 12); --force prunes it anyway"
        );
        assert!(out.stderr.contains(&why), "{}", out.stderr);
    }
    assert_eq!(tree_snapshots(&data), before);
    // More than half is enough to stop.
    zfsync(now, &["prune", "--keep", "last=5", &data]).assert_status(1);
    assert_eq!(tree_snapshots(&data), before);

    zfsync(now, &["prune", "--force", "--keep", "last=1", &data]).assert_ok();
    assert_eq!(snaps(&data), [name_at(t[11])]);
    assert_eq!(snaps(&kid), [name_at(t[11])]);
}

#[test]
fn prune_usage_errors_exit_2() {
    let (src, data, _kid) = source("pusage");
    six_hourly(&data);
    let before = tree_snapshots(&data);
    let missing = src.ds("nope");
    for args in [
        vec!["prune", &data],
        vec!["prune", "--keep", "hourly=0,daily=0", &data],
        vec!["prune", "--keep", "weekdaily=3", &data],
        vec![
            "prune",
            "--keep",
            "daily=7",
            "--tz",
            "Atlantis/Capital",
            &data,
        ],
        vec!["prune", "--keep", "daily=7", &missing],
        vec!["snapshot", &missing],
        vec!["bogus", &data],
    ] {
        let out = zfsync(DEC1 + 3 * DAY, &args);
        assert_eq!(out.status, 2, "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
    assert_eq!(tree_snapshots(&data), before);
}

#[test]
fn snapshot_min_change_skips_quiet_datasets_but_never_the_root() {
    let pool = Pool::new("minch");
    let data = pool.ds("data");
    let (quiet, busy) = (pool.ds("data/quiet"), pool.ds("data/busy"));
    create(&quiet);
    create(&busy);
    write_file(&quiet, "q.bin", &random_bytes(65536, 2));
    let t0 = DEC1;
    zfsync(t0, &["snapshot", &data]).assert_ok();
    let first = name_at(t0);
    for ds in [&data, &quiet, &busy] {
        assert_eq!(snaps(ds), vec![first.clone()], "{ds}");
    }

    write_file(&busy, "b.bin", &random_bytes(256 << 10, 3));
    let t1 = t0 + HOUR;
    let dry = zfsync(t1, &["snapshot", "-n", "--min-change", "64K", &data]);
    dry.assert_ok();
    assert!(dry.stdout.starts_with("would snapshot "), "{}", dry.stdout);
    assert_eq!(
        snaps(&busy),
        vec![first.clone()],
        "the dry run took a snapshot"
    );

    let out = zfsync(t1, &["snapshot", "--min-change", "64K", &data]);
    out.assert_ok();
    let second = name_at(t1);
    assert!(
        out.stdout.contains(&format!("skip {quiet}: ")),
        "{}",
        out.stdout
    );
    assert_eq!(snaps(&data), [first.clone(), second.clone()], "the root");
    assert_eq!(
        snaps(&busy),
        [first.clone(), second.clone()],
        "the changed child"
    );
    assert_eq!(snaps(&quiet), vec![first.clone()], "the unchanged child");

    // Nothing changed anywhere: the root still gets one, so every run shows.
    let t2 = t1 + HOUR;
    zfsync(t2, &["snapshot", "--min-change", "64K", &data]).assert_ok();
    assert_eq!(snaps(&data).last(), Some(&name_at(t2)));
    assert_eq!(snaps(&busy).last(), Some(&second));
    assert_eq!(snaps(&quiet).last(), Some(&first));

    // Without --min-change, everything; and a time not newer is refused.
    let t3 = t2 + HOUR;
    zfsync(t3, &["snapshot", &data]).assert_ok();
    for ds in [&data, &quiet, &busy] {
        assert_eq!(snaps(ds).last(), Some(&name_at(t3)), "{ds}");
    }
    let before = tree_snapshots(&data);
    let out = zfsync(t3, &["snapshot", &data]);
    out.assert_status(1);
    assert!(
        out.stderr.contains("is not newer than the newest snapshot"),
        "{}",
        out.stderr
    );
    assert_eq!(tree_snapshots(&data), before);
}

/// A receiver pruning by `plan`, its clock far in the future (2100): the simulated days
/// are all in its past, so its bound on times from names (not after now) leaves them be.
fn pruning_receiver(target: &str, plan: &str) -> Receiver {
    Receiver::start_at(4_102_444_800, target, &["--keep", plan])
}

/// `env ZFSYNC_NOW=NOW dash scripts/zfsyncron -v -A ZFSYNC -S SENDER -Z ZFS -L LOCK ARGS`.
fn cron(lock: &Path, now: u64, args: &[&str]) -> SendOutput {
    let (admin, sender, script) = (admin_bin(), sender_bin(), script("zfsyncron"));
    let (zfs, lock) = (zfs_bin(), lock.display().to_string());
    let now = format!("ZFSYNC_NOW={now}");
    let mut argv: Vec<&str> = vec![&now, "dash"];
    let paths = [&script, &admin, &sender].map(|p| p.display().to_string());
    argv.extend([paths[0].as_str(), "-v", "-A", &paths[1], "-S", &paths[2]]);
    argv.extend(["-Z", &zfs, "-L", &lock]);
    argv.extend(args);
    run_with_timeout(Path::new("/usr/bin/env"), &argv, TIMEOUT)
}

/// Days of cron runs, every 6 simulated hours for 10 days across a month end, with a
/// receiver that prunes by its own plan and is down for 4 days in the middle: longer than
/// the source keeps any snapshot but its base.
#[test]
fn days_of_cron_runs_keep_both_sides_to_their_plans() {
    let (_src, data, kid) = source("days");
    let dst = Pool::unmounted("daysr");
    let target = dst.ds("bk");
    let lock = temp_dir("dayslock").join("lock");
    // 2028-01-28T00:00:00Z; run k at START + 6 h * k: days 0-3 (Jan 28-31) with the
    // receiver up, days 4-7 (Feb 1-4) with it down, days 8-9 (Feb 5-6) up again.
    const START: u64 = 1_832_630_400;
    let at = |k: u64| START + 6 * HOUR * k;
    let source_plan = "hourly=2,daily=3";
    let receiver_plan = "hourly=3,daily=4,monthly=2";
    let mut receiver = Some(pruning_receiver(&target, receiver_plan));
    let mut addr = receiver.as_ref().unwrap().addr();
    // Every snapshot the source ever had, by name: the replica's must be these.
    let mut guids: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let started = Instant::now();
    for k in 0..40u64 {
        if k == 16 {
            receiver.take().unwrap().stop();
        }
        if k == 32 {
            receiver = Some(pruning_receiver(&target, receiver_plan));
            addr = receiver.as_ref().unwrap().addr();
        }
        write_file(&kid, "k.bin", &random_bytes(8192, k));
        let recv = format!("{addr}=bk");
        let args = ["--keep", source_plan, &data, &recv, "--", "--retries", "0"];
        let out = cron(&lock, at(k), &args);
        for (rel, snaps) in tree_snapshots(&data) {
            let known = guids.entry(rel).or_default();
            for (name, guid) in snaps {
                assert_eq!(*known.entry(name.clone()).or_insert(guid), guid, "{name}");
            }
        }
        if (16..32).contains(&k) {
            // Down: the send fails, the base stays (marked on the source).
            out.assert_status(1);
            for ds in [&data, &kid] {
                assert!(snaps(ds).contains(&name_at(at(15))), "base gone at run {k}");
            }
            continue;
        }
        out.assert_ok();
        if k == 0 {
            continue;
        }
        // Every run after the first is incremental, from what the receiver had: after
        // the days down, from the base kept for it.
        let from = if k == 32 { at(15) } else { at(k - 1) };
        let rows = out.rows();
        for ds in [&data, &kid] {
            let note = &rows[ds.as_str()].note;
            let want = format!("incremental @{}..@{}", name_at(from), name_at(at(k)));
            assert!(
                note.starts_with(&want),
                "run {k}, {ds}: {note:?}, not {want:?}"
            );
        }
    }

    // The source: hourly=2 keeps Feb 6 12:00 and 18:00, daily=3 Feb 4, 5 and 6.
    let source_keeps: Vec<String> = [28, 32, 36, 38, 39].map(|k| name_at(at(k))).to_vec();
    // The receiver, from all it received (Jan 28-31, then what the source still had on
    // Feb 5: Feb 2, 3 and 4 00:00, Feb 4 12:00 and 18:00): hourly=3 keeps Feb 6 06:00,
    // 12:00 and 18:00, daily=4 Feb 3-6, monthly=2 the first of January and of February.
    let receiver_keeps: Vec<String> = [0, 20, 24, 28, 32, 36, 37, 38, 39]
        .map(|k| name_at(at(k)))
        .to_vec();
    let replica = target.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // The receiver prunes after answering: its last prune may still run.
        let have = tree_snapshots(&replica);
        let names: Vec<Vec<String>> = have
            .values()
            .map(|s| s.iter().map(|(n, _)| n.clone()).collect())
            .collect();
        if names == [receiver_keeps.clone(), receiver_keeps.clone()] || Instant::now() > deadline {
            assert_eq!(names, [receiver_keeps.clone(), receiver_keeps.clone()]);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (rel, snaps) in tree_snapshots(&data) {
        let names: Vec<String> = snaps.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names, source_keeps, "source {rel:?}");
    }
    // The replica's snapshots are the source's, by GUID.
    for (rel, snaps) in tree_snapshots(&replica) {
        for (name, guid) in snaps {
            assert_eq!(
                guids[&rel].get(&name),
                Some(&guid),
                "replica {rel:?} {name}"
            );
        }
    }
    // The newest on both sides is the same snapshot.
    assert_eq!(
        tree_snapshots(&replica)[""].last(),
        tree_snapshots(&data)[""].last()
    );
    eprintln!("40 runs in {:.1}s", started.elapsed().as_secs_f64());
    assert!(
        receiver.unwrap().log().contains("reason=rule-miss"),
        "the receiver logged no prune"
    );
}
