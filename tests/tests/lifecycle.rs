//! Snapshot lifecycle on both sides, against real zfs-fuse pools: `zfsync snapshot`
//! (`--min-change`), `zfsync prune` (what a plan keeps, what is protected, the dry run and
//! `--explain`, the safety stop), and days of cron runs with a receiver that prunes by its
//! own plan (`zfsync-recv --keep`), across a month end and, in Europe/Berlin
//! (`--tz`), across the night its clocks go back.
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

/// A receiver pruning by `args` (`--keep PLAN`, maybe `--tz ZONE`), its clock far in the
/// future (2100): the simulated days are all in its past, so its bound on times from names
/// (not after now) leaves them be.
fn pruning_receiver(target: &str, args: &[&str]) -> Receiver {
    Receiver::start_at(4_102_444_800, target, args)
}

/// Every snapshot the source tree `data` has had, by dataset (relative) and name: its GUID.
type Guids = BTreeMap<String, BTreeMap<String, u64>>;

/// Adds the snapshots `data`'s tree has now to `guids`; panics if a name comes back with
/// another GUID.
fn record_guids(data: &str, guids: &mut Guids) {
    for (rel, snaps) in tree_snapshots(data) {
        let known = guids.entry(rel).or_default();
        for (name, guid) in snaps {
            assert_eq!(*known.entry(name.clone()).or_insert(guid), guid, "{name}");
        }
    }
}

/// Panics unless each dataset of the source tree `data` has the snapshots `source_keeps`,
/// each of `replica` (a root and one child) `receiver_keeps`, and the replica's are the
/// source's by GUID (`guids`, all the source had). The receiver prunes after answering:
/// its last prune may still run, so this waits up to 20 s for it.
fn assert_both_keep(
    data: &str,
    source_keeps: &[String],
    replica: &str,
    receiver_keeps: &[String],
    guids: &Guids,
) {
    for (rel, snaps) in tree_snapshots(data) {
        let have: Vec<String> = snaps.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(have, source_keeps, "source {rel:?}");
    }
    let want = [receiver_keeps.to_vec(), receiver_keeps.to_vec()];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let have: Vec<Vec<String>> = tree_snapshots(replica)
            .values()
            .map(|s| s.iter().map(|(n, _)| n.clone()).collect())
            .collect();
        if have == want || Instant::now() > deadline {
            assert_eq!(have, want, "the replica {replica}");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (rel, snaps) in tree_snapshots(replica) {
        for (name, guid) in snaps {
            let known = guids[&rel].get(&name);
            assert_eq!(known, Some(&guid), "replica {rel:?} {name}");
        }
    }
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
    let mut receiver = Some(pruning_receiver(&target, &["--keep", receiver_plan]));
    let mut addr = receiver.as_ref().unwrap().addr();
    // Every snapshot the source ever had, by name: the replica's must be these.
    let mut guids = Guids::new();
    let started = Instant::now();
    for k in 0..40u64 {
        if k == 16 {
            receiver.take().unwrap().stop();
        }
        if k == 32 {
            receiver = Some(pruning_receiver(&target, &["--keep", receiver_plan]));
            addr = receiver.as_ref().unwrap().addr();
        }
        write_file(&kid, "k.bin", &random_bytes(8192, k));
        let recv = format!("{addr}=bk");
        let args = ["--keep", source_plan, &data, &recv, "--", "--retries", "0"];
        let out = cron(&lock, at(k), &args);
        record_guids(&data, &mut guids);
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
    assert_both_keep(&data, &source_keeps, &replica, &receiver_keeps, &guids);
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

/// 2027-10-01T00:00:00Z and 2027-11-01T00:00:00Z.
const OCT1: u64 = 1_822_348_800;
const NOV1: u64 = 1_825_027_200;

/// `DAY`.10.2027 or `DAY`.11.2027 at `HOUR`:00 UTC.
fn oct(day: u64, hour: u64) -> u64 {
    OCT1 + (day - 1) * DAY + hour * HOUR
}
fn nov(day: u64, hour: u64) -> u64 {
    NOV1 + (day - 1) * DAY + hour * HOUR
}

/// issue 16: cron runs across a daylight-saving change and a month end at once, both
/// sides pruning by plans in Europe/Berlin. On Sunday 2027-10-31, the last day of the
/// month, Berlin's clocks go back at 01:00 UTC from 03:00 CEST (UTC+2) to 02:00 CET
/// (UTC+1): that day is 25 hours long, and 02:00-03:00 comes twice. A Berlin day starts
/// at 22:00 UTC the day before until then, at 23:00 UTC after, so November starts on
/// October 31 at 23:00 UTC.
///
/// Runs every 2 hours at even UTC hours from October 28 20:00 to November 1 04:00, and
/// two more: October 31 01:00 (02:00 CET, the second 02:00 of the night) and 23:00
/// (00:00 CET, the first run of November in Berlin). The expected snapshots below are
/// written out by these rules: a daily or monthly rule keeps the first run of each of its
/// newest Berlin days or months, and an hourly rule the newest runs, one an hour (each
/// run here is in an hour of its own, the two 02:00 runs too, being an hour apart).
/// The zone's rules need no zoneinfo on the host: the binaries carry jiff's copy of the
/// time zone database, used where /usr/share/zoneinfo lacks the zone.
#[test]
fn cron_runs_across_a_daylight_saving_change_prune_by_the_local_calendar() {
    let (_src, data, kid) = source("dst");
    let dst = Pool::unmounted("dstr");
    let target = dst.ds("bk");
    let lock = temp_dir("dstlock").join("lock");
    let mut runs: Vec<u64> = (0..=40).map(|i| oct(28, 20) + 2 * HOUR * i).collect();
    runs.extend([oct(31, 1), oct(31, 23)]);
    runs.sort();
    assert_eq!(runs.last(), Some(&nov(1, 4)));
    let zone = ["--tz", "Europe/Berlin"];
    let source_plan = "hourly=2,daily=3";
    let receiver_plan = "hourly=16,daily=5,monthly=2";
    let receiver = pruning_receiver(&target, &["--keep", receiver_plan, zone[0], zone[1]]);
    let recv = format!("{}=bk", receiver.addr());
    let mut guids = Guids::new();
    let started = Instant::now();
    for (k, &now) in runs.iter().enumerate() {
        write_file(&kid, "k.bin", &random_bytes(8192, k as u64));
        let mut args = vec!["--keep", source_plan];
        args.extend(zone);
        args.extend([data.as_str(), &recv, "--", "--retries", "0"]);
        cron(&lock, now, &args).assert_ok();
        record_guids(&data, &mut guids);
    }
    let names = |times: &[u64]| -> Vec<String> { times.iter().map(|&t| name_at(t)).collect() };

    // The source, hourly=2: November 1 02:00 and 04:00 UTC; daily=3: the first runs of
    // Berlin's November 1 (October 31 23:00 UTC), October 31 (October 30 22:00 UTC, 00:00
    // CEST) and October 30 (October 29 22:00 UTC).
    let source_keeps = names(&[oct(29, 22), oct(30, 22), oct(31, 23), nov(1, 2), nov(1, 4)]);
    // The receiver, daily=5: the first runs of Berlin's November 1 and October 31, 30, 29
    // and 28 (October 31 23:00, 30 22:00, 29 22:00, 28 22:00 and 28 20:00 UTC);
    // monthly=2: those of October (28 20:00) and November (31 23:00); hourly=16: the 16
    // newest runs, back to October 31 01:00 UTC, 02:00 CET. The run at 00:00 UTC, 02:00
    // CEST, is the 17th newest: the repeated hour is two hourly buckets.
    let mut receiver_keeps = names(&[oct(28, 20), oct(28, 22), oct(29, 22), oct(30, 22)]);
    receiver_keeps.extend(names(&[oct(31, 1)]));
    receiver_keeps.extend(names(&(1..=11).map(|h| oct(31, 2 * h)).collect::<Vec<_>>()));
    receiver_keeps.extend(names(&[oct(31, 23), nov(1, 0), nov(1, 2), nov(1, 4)]));
    assert_eq!(receiver_keeps.len(), 20);

    assert_both_keep(&data, &source_keeps, &target, &receiver_keeps, &guids);
    eprintln!(
        "{} runs in {:.1}s",
        runs.len(),
        started.elapsed().as_secs_f64()
    );

    // In UTC the same plan keeps other days' first runs: it would destroy October 29
    // 22:00 UTC, the first run of Berlin's October 30 but not of a UTC day.
    let dry = zfsync(nov(1, 4), &["prune", "-n", "--keep", source_plan, &data]);
    dry.assert_ok();
    let would = format!("would destroy {data}@{}", name_at(oct(29, 22)));
    assert!(dry.stdout.lines().any(|l| l == would), "{}", dry.stdout);
}
