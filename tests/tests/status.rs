//! Knowing what happened, against real zfs-fuse pools: what `zfsync-send --state-dir`
//! records, as `zfsync history` and `zfsync status --json` show it (a refused dataset, a
//! sender killed mid-stream, the next run closing what it left), and the monitoring checks
//! (`zfsync check replication|snapshots|health|capacity`) with their exit codes as
//! `ZFSYNC_NOW` moves, on a damaged pool and on a nearly full one; the nightly report
//! (`zfsync report --html`, to stdout and through a fake sendmail), and retiring a dataset
//! no longer sent (`zfsync forget`).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};
use zfsync_tests::*;

/// 2026-12-02T00:00:00Z.
const DEC2: u64 = 1_796_169_600;

const LIMIT: Duration = Duration::from_secs(120);

use zfsync_name_at as name_at;

/// `zfsync ARGS` at `now`.
fn zfsync(now: u64, args: &[&str]) -> SendOutput {
    run_at(now, &admin_bin(), args, LIMIT)
}

/// `zfsync-send --state-dir DIR --zfs ZFS EXTRA ROOT ADDR` at `now`.
fn send_at(now: u64, s: &Setup, dir: &Path, extra: &[&str]) -> SendOutput {
    let zfs = zfs_bin();
    let addr = s.recv.addr();
    let dir = dir.display().to_string();
    let mut args = vec!["--state-dir", dir.as_str(), "--zfs", zfs.as_str()];
    args.extend(extra);
    args.extend([s.root.as_str(), addr.as_str()]);
    run_at(now, &sender_bin(), &args, LIMIT)
}

/// The objects of a JSON array printed one object per line (as `zfsync history
/// --format json` and `zfsync status --json` print it), each as its fields' raw values:
/// strings unquoted and unescaped, `null` as `null`.
fn json_lines(text: &str) -> Vec<BTreeMap<String, String>> {
    text.lines()
        .map(|l| l.trim_end_matches(','))
        .filter(|l| l.starts_with('{'))
        .map(json_object)
        .collect()
}

/// A flat JSON object's fields (no nested objects or arrays).
fn json_object(line: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut chars = line.trim().trim_start_matches('{').chars().peekable();
    let string = |chars: &mut std::iter::Peekable<std::str::Chars>| {
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some(c) => s.push(c),
                    None => break,
                },
                c => s.push(c),
            }
        }
        s
    };
    loop {
        match chars.next() {
            Some('"') => {}
            Some(',') | Some(' ') => continue,
            _ => break,
        }
        let key = string(&mut chars);
        assert_eq!(chars.next(), Some(':'), "{line}");
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            string(&mut chars)
        } else {
            let mut v = String::new();
            while let Some(&c) = chars.peek() {
                if c == ',' || c == '}' {
                    break;
                }
                v.push(c);
                chars.next();
            }
            v
        };
        fields.insert(key, value);
    }
    fields
}

/// The GUID of snapshot `snap` (`DS@NAME`), as zfs reports it.
fn guid(snap: &str) -> String {
    zfs(&["get", "-Hp", "-o", "value", "guid", snap])
        .trim()
        .to_string()
}

/// `zfsync-send -v -t 1` at `now` in the background, so a test can kill it mid-stream.
fn bg_send(now: u64, s: &Setup, state: &Path) -> BgSender {
    let (zfs, addr) = (zfs_bin(), s.recv.addr());
    let now = now.to_string();
    let state = state.display().to_string();
    let args = [
        "-v",
        "-t",
        "1",
        "--state-dir",
        &state,
        "--zfs",
        &zfs,
        &s.root,
        &addr,
    ];
    BgSender::start(&args, &[("ZFSYNC_NOW", &now)])
}

/// The attempts `zfsync history --format json --limit 0` shows, oldest first.
fn history(dir: &Path) -> Vec<BTreeMap<String, String>> {
    let dir = dir.display().to_string();
    let out = zfsync(
        DEC2,
        &[
            "history",
            "--state-dir",
            &dir,
            "--format",
            "json",
            "--limit",
            "0",
        ],
    );
    out.assert_ok();
    let mut all = json_lines(&out.stdout);
    all.reverse();
    all
}

/// `zfsync status --json` at `now`, by dataset.
fn status(now: u64, dir: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let dir = dir.display().to_string();
    let out = zfsync(now, &["status", "--state-dir", &dir, "--json"]);
    out.assert_ok();
    json_lines(&out.stdout)
        .into_iter()
        .map(|o| (o["dataset"].clone(), o))
        .collect()
}

/// What each attempt was, in a few words: dataset, kind, outcome, to and its GUID.
fn summary(a: &BTreeMap<String, String>) -> (String, String, String, String, String) {
    (
        a["dataset"].clone(),
        a["kind"].clone(),
        a["outcome"].clone(),
        a["to"].clone(),
        a["to_guid"].clone(),
    )
}

#[test]
fn history_and_status_show_each_run_a_refusal_and_a_killed_sender() {
    let s = Setup::bare("hist", &[]);
    let state = temp_dir("state");
    let (data, kid, big) = (s.src_ds(""), s.src_ds("kid"), s.src_ds("big"));
    create(&kid);
    create(&big);
    write_file(&data, "a.txt", b"alpha");
    write_file(&kid, "k.bin", &random_bytes(64 << 10, 1));
    write_file(&big, "b.bin", &random_bytes(1 << 20, 2));
    let t0 = DEC2;
    let s0 = name_at(t0);
    snapshot_tree(&data, &s0);

    // Run 1: everything new, sent in full.
    send_at(t0 + 60, &s, &state, &[]).assert_ok();
    let h = history(&state);
    let mut got: Vec<_> = h.iter().map(summary).collect();
    got.sort();
    let full = |ds: &str| {
        let snap = format!("{ds}@{s0}");
        (
            ds.to_string(),
            "full".into(),
            "done".into(),
            s0.clone(),
            guid(&snap),
        )
    };
    assert_eq!(got, [full(&data), full(&big), full(&kid)]);
    assert!(h.iter().all(|a| a["started"] == "2026-12-02T00:01:00Z"
        && a["role"] == "send"
        && a["peer"] == s.recv.addr()
        && a["job"] == s.recv.addr()));

    // A state directory that cannot be written costs one warning, not the run.
    let out = send_at(t0 + 90, &s, Path::new("/proc/zfsync-no-such-dir"), &[]);
    out.assert_ok();
    assert_eq!(
        out.stderr.matches("history not recorded").count(),
        1,
        "{}",
        out.stderr
    );
    assert_eq!(history(&state).len(), 3);

    // Run 2: the replica of kid has a snapshot of its own: refused, the others sent.
    snapshot(&format!("{}@local", s.dst_ds("kid")));
    let t1 = t0 + 3600;
    let s1 = name_at(t1);
    snapshot_tree(&data, &s1);
    let out = send_at(t1 + 60, &s, &state, &[]);
    out.assert_status(1);
    let h = history(&state);
    let run2: Vec<_> = h[3..].iter().map(summary).collect();
    let incremental = |ds: &str| {
        let snap = format!("{ds}@{s1}");
        (
            ds.to_string(),
            "incremental".into(),
            "done".into(),
            s1.clone(),
            guid(&snap),
        )
    };
    let refused = (
        kid.clone(),
        "null".into(),
        "refused".into(),
        s1.clone(),
        guid(&format!("{kid}@{s1}")),
    );
    let mut run2_sorted = run2.clone();
    run2_sorted.sort();
    assert_eq!(
        run2_sorted,
        [incremental(&data), incremental(&big), refused]
    );
    let kid_try = h.iter().rev().find(|a| a["dataset"] == kid).unwrap();
    assert!(kid_try["error"].contains("local"), "{kid_try:?}");
    assert_eq!(
        (kid_try["from"].as_str(), kid_try["bytes"].as_str()),
        ("null", "0")
    );

    let st = status(t1 + 120, &state);
    assert_eq!(st.len(), 3, "{st:?}");
    let k = &st[&kid];
    assert_eq!(
        (k["state"].as_str(), k["backlog"].as_str()),
        ("failed", "1"),
        "{k:?}"
    );
    assert_eq!(k["base"], s0);
    assert_eq!(k["base_guid"], guid(&format!("{kid}@{s0}")));
    assert_eq!(k["source_newest"], s1);
    // The replica's newest is s0, an hour behind the source's s1.
    assert_eq!(k["lag_seconds"], "3600");
    assert!(k["last_error"].contains("local"), "{k:?}");
    for ds in [&data, &big] {
        let d = &st[ds];
        assert_eq!(
            (
                d["state"].as_str(),
                d["lag_seconds"].as_str(),
                d["backlog"].as_str()
            ),
            ("ok", "0", "0"),
            "{d:?}"
        );
        assert_eq!(d["base_guid"], guid(&format!("{ds}@{s1}")));
        assert_eq!(d["last_success"], "2026-12-02T01:01:00Z");
        assert_eq!(d["since_success_seconds"], "60");
    }

    // Run 3: killed while big's larger stream goes (one worker: data first, then big).
    write_file(&big, "c.bin", &random_bytes(160 << 20, 3));
    let t2 = t1 + 3600;
    let s2 = name_at(t2);
    snapshot_tree(&data, &s2);
    let mut bg = bg_send(t2 + 60, &s, &state);
    let needle = format!("send start dataset={big} ");
    assert!(bg.wait_log(&needle, LIMIT), "{}", bg.stderr());
    assert!(bg.kill(), "the sender finished before the kill");
    let st = status(t2 + 120, &state);
    assert_eq!(st[&big]["state"], "interrupted", "{:?}", st[&big]);
    assert_eq!(st[&big]["source_newest"], s2);
    assert_eq!(st[&data]["state"], "ok");
    assert_eq!(st[&data]["base"], s2);
    let h = history(&state);
    let killed = h.iter().rev().find(|a| a["dataset"] == big).unwrap();
    assert_eq!(
        (killed["outcome"].as_str(), killed["ended"].as_str()),
        ("in-flight", "null"),
        "{killed:?}"
    );
    let killed_id = killed["id"].clone();

    // Run 4: closes what the killed run left, then sends big (once the receiver's zfs
    // recv of the cut stream has ended).
    let deadline = Instant::now() + LIMIT;
    while !child_pids(s.recv.pid()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the receiver's zfs recv does not end"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let out = send_at(t2 + 600, &s, &state, &[]);
    out.assert_status(1); // kid is still diverged
    let h = history(&state);
    let closed = h.iter().find(|a| a["id"] == killed_id).unwrap();
    assert_eq!(closed["outcome"], "failed", "{closed:?}");
    assert!(closed["error"].starts_with("interrupted"), "{closed:?}");
    let last_big = h.iter().rev().find(|a| a["dataset"] == big).unwrap();
    assert_eq!(
        (last_big["outcome"].as_str(), last_big["to_guid"].clone()),
        ("done", guid(&format!("{big}@{s2}")))
    );
    let st = status(t2 + 660, &state);
    assert_eq!(st[&big]["state"], "ok");
    assert_eq!(st[&big]["backlog"], "0");
    // Refused in runs 2 and 4; run 3 was killed before it came to kid.
    assert_eq!(st[&kid]["backlog"], "2");

    // The table says the same for a person.
    let dir = state.display().to_string();
    let table = zfsync(t2 + 660, &["status", "--state-dir", &dir]);
    table.assert_ok();
    let kid_line = table
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{kid} ")))
        .unwrap_or_else(|| panic!("{}", table.stdout));
    assert!(
        kid_line.contains(" failed ") && kid_line.contains(&s0),
        "{kid_line}"
    );
    println!("{}", table.stdout);
    let _ = fs::remove_dir_all(&state);
}

#[test]
fn check_replication_goes_ok_warning_critical_and_unknown_without_a_history() {
    let s = Setup::bare("chkrep", &[]);
    let state = temp_dir("state");
    write_file(&s.root, "a.txt", b"alpha");
    snapshot(&format!("{}@{}", s.root, name_at(DEC2)));
    send_at(DEC2, &s, &state, &[]).assert_ok();
    let dir = state.display().to_string();
    let check = |now: u64, dir: &str| {
        zfsync(
            now,
            &[
                "check",
                "replication",
                "--state-dir",
                dir,
                "--warning",
                "3600",
                "--critical",
                "7200",
            ],
        )
    };
    for (after, code, word) in [(60, 0, "OK"), (3601, 1, "WARNING"), (7201, 2, "CRITICAL")] {
        let out = check(DEC2 + after, &dir);
        out.assert_status(code);
        let first = out.stdout.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("ZFSYNC REPLICATION {word} - ")),
            "{}",
            out.stdout
        );
        assert!(
            first.contains(&format!("since_success'={after}s;3600;7200")),
            "{first}"
        );
        if code > 0 {
            assert!(
                out.stdout
                    .lines()
                    .nth(1)
                    .is_some_and(|l| l.contains(&s.root)),
                "{}",
                out.stdout
            );
        }
        println!("{}", out.stdout);
    }

    // A history of version 1, as the zfsync before forget left it: the check upgrades it
    // and judges it, instead of UNKNOWN until the next send has upgraded it.
    let version = |conn: &rusqlite::Connection| -> i64 {
        conn.query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap()
    };
    let conn = rusqlite::Connection::open(state.join("history.sqlite")).unwrap();
    // Every table the steps after 1 added goes (their indexes with them).
    conn.execute_batch(
        "DROP TABLE retired; DROP TABLE listed; DROP TABLE orphans_destroyed; \
         DROP TABLE listings; PRAGMA user_version = 1",
    )
    .unwrap();
    assert_eq!(version(&conn), 1);
    let out = check(DEC2 + 60, &dir);
    out.assert_status(0);
    assert!(
        out.stdout.starts_with("ZFSYNC REPLICATION OK - "),
        "{}",
        out.stdout
    );
    assert_eq!(version(&conn), zfsync_history::schema_version());
    drop(conn);

    // A garbage file where the database should be, and no database at all: UNKNOWN.
    let garbage = temp_dir("garbage");
    fs::write(garbage.join("history.sqlite"), random_bytes(8192, 9)).unwrap();
    let out = check(DEC2, &garbage.display().to_string());
    out.assert_status(3);
    assert!(
        out.stdout.starts_with("ZFSYNC REPLICATION UNKNOWN - "),
        "{}",
        out.stdout
    );
    println!("{}", out.stdout);
    let missing = garbage.join("nothing-here");
    let out = check(DEC2, &missing.display().to_string());
    out.assert_status(3);
    assert!(out.stdout.contains("no history database"), "{}", out.stdout);
    println!("{}", out.stdout);
    // A usage error is UNKNOWN too: 2 would read as CRITICAL.
    zfsync(DEC2, &["check", "replication", "--warning", "later"]).assert_status(3);
    let _ = fs::remove_dir_all(&state);
    let _ = fs::remove_dir_all(&garbage);
}

#[test]
fn check_snapshots_by_the_plan_and_a_snapshot_from_the_future() {
    let pool = Pool::new("chksnap");
    let (data, _kid) = data_and_kid(&pool);
    snapshot_tree(&data, &name_at(DEC2));
    let zfs = zfs_bin();
    let check = |now: u64| {
        zfsync(
            now,
            &[
                "check",
                "snapshots",
                "--keep",
                "hourly=24,daily=7",
                "--zfs",
                &zfs,
                &data,
            ],
        )
    };
    // hourly: warning after 1.5 h, critical after 3 h.
    for (after, code) in [(600, 0), (5401, 1), (10_801, 2)] {
        let out = check(DEC2 + after);
        out.assert_status(code);
        println!("{}", out.stdout);
    }
    // The clock went back an hour: the snapshot is dated in the future.
    let out = check(DEC2 - 3600);
    out.assert_status(1);
    assert!(out.stdout.contains("in the future"), "{}", out.stdout);
    // A dataset that cannot be listed is UNKNOWN.
    let out = check_missing(&pool, &zfs);
    out.assert_status(3);
}

fn check_missing(pool: &Pool, zfs: &str) -> SendOutput {
    let gone = pool.ds("nothing");
    zfsync(
        DEC2,
        &[
            "check",
            "snapshots",
            "--keep",
            "hourly=1",
            "--zfs",
            zfs,
            &gone,
        ],
    )
}

/// A throw-away pool mirrored on two sparse files, destroyed on drop (after `zpool
/// clear`: zfs-fuse can crash destroying a pool it still counts errors in).
struct Mirror {
    name: String,
    dir: PathBuf,
}

impl Mirror {
    fn new(tag: &str) -> Mirror {
        let dir = temp_dir(tag);
        let name = format!("zft_{tag}_{}_0", std::process::id());
        let files: Vec<String> = ["a.img", "b.img"]
            .iter()
            .map(|f| {
                let path = dir.join(f);
                fs::File::create(&path).unwrap().set_len(128 << 20).unwrap();
                path.display().to_string()
            })
            .collect();
        let mnt = dir.join("mnt").display().to_string();
        zpool(&["create", "-m", &mnt, &name, "mirror", &files[0], &files[1]]);
        Mirror { name, dir }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = zpool_try(&["clear", &self.name]);
        match destroy_pool(&self.name) {
            Ok(_) => {
                let _ = fs::remove_dir_all(&self.dir);
            }
            Err(e) => eprintln!("cannot destroy {}: {e}", self.name),
        }
    }
}

#[test]
fn check_health_reports_a_mirror_whose_vdev_file_was_damaged() {
    let m = Mirror::new("chkhlth");
    let zpool_bin = zpool_bin();
    let check = || zfsync(DEC2, &["check", "health", "--zpool", &zpool_bin, &m.name]);
    let out = check();
    out.assert_ok();
    println!("{}", out.stdout);
    write_file(&m.name, "data.bin", &random_bytes(40 << 20, 4));
    // Overwrite 60 MiB of one side, past its labels, and let a scrub find it.
    let damage = random_bytes(60 << 20, 5);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(m.dir.join("b.img"))
            .unwrap();
        f.seek(SeekFrom::Start(8 << 20)).unwrap();
        f.write_all(&damage).unwrap();
        f.sync_all().unwrap();
    }
    zpool(&["scrub", &m.name]);
    let deadline = Instant::now() + LIMIT;
    while !zpool(&["status", &m.name]).contains("scrub completed") {
        assert!(Instant::now() < deadline, "{}", zpool(&["status", &m.name]));
        thread::sleep(Duration::from_millis(200));
    }
    let out = check();
    assert!(
        out.status == 1 || out.status == 2,
        "not WARNING or CRITICAL:\n{}",
        out.stdout
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("ZFSYNC HEALTH "), "{}", out.stdout);
    // Each problem line names the pool and the device with its checksum errors.
    assert!(
        lines[1..]
            .iter()
            .any(|l| l.contains(&m.name) && l.contains("b.img") && l.contains("checksum")),
        "{}",
        out.stdout
    );
    println!("{}", out.stdout);
    // Another pool, by name, is not this one's business; a missing one is critical.
    let out = zfsync(
        DEC2,
        &["check", "health", "--zpool", &zpool_bin, "zft_no_such_pool"],
    );
    out.assert_status(2);
}

#[test]
fn check_capacity_of_a_small_pool_filled_past_80_percent() {
    // zfs-fuse refuses writes to a 256 MiB pool at about 85%, to a 128 MiB one at 75%.
    let pool = Pool::with_size("chkcap", 256 << 20);
    let zpool_bin = zpool_bin();
    let capacity = || -> u32 {
        zpool(&["list", "-H", "-o", "capacity", &pool.name])
            .trim()
            .trim_end_matches('%')
            .parse()
            .unwrap()
    };
    let check = |extra: &[&str]| {
        let mut args = vec!["check", "capacity", "--zpool", zpool_bin.as_str()];
        args.extend(extra);
        args.push(&pool.name);
        zfsync(DEC2, &args)
    };
    check(&[]).assert_ok();
    let mut n = 0;
    while capacity() <= 80 {
        assert!(n < 70, "the pool does not fill: {}%", capacity());
        write_file(&pool.name, &format!("f{n}.bin"), &random_bytes(4 << 20, n));
        n += 1;
    }
    let percent = capacity();
    let out = check(&[]);
    out.assert_status(if percent > 90 { 2 } else { 1 });
    assert!(
        out.stdout
            .contains(&format!("{}: {percent}% full", pool.name)),
        "{}",
        out.stdout
    );
    println!("{}", out.stdout);
    let out = check(&["--format", "prom"]);
    assert!(
        out.stdout.contains(&format!(
            "zfsync_pool_capacity_percent{{pool=\"{}\"}} {percent}\n",
            pool.name
        )),
        "{}",
        out.stdout
    );
    println!("{}", out.stdout);
    check(&["--warning", "98", "--critical", "99"]).assert_status(if percent > 98 { 1 } else { 0 });
}

/// The rows of the report's table `class` (`transfers` or `summary`), each as its dataset
/// and result cells, in the report's order.
fn report_rows(page: &str, class: &str) -> Vec<(String, String)> {
    let start = page
        .find(&format!("<table class=\"{class}\">"))
        .unwrap_or_else(|| panic!("no {class} table in\n{page}"));
    let table = &page[start..start + page[start..].find("</table>").expect("table end")];
    let cell = |row: &str, class: &str| {
        let open = format!("<td class=\"{class}\">");
        let at = row
            .find(&open)
            .unwrap_or_else(|| panic!("no {class} in {row}"))
            + open.len();
        row[at..at + row[at..].find("</td>").expect("cell end")].to_string()
    };
    table
        .split("<tr")
        .filter(|row| row.contains("<td"))
        .map(|row| (cell(row, "dataset"), cell(row, "result")))
        .collect()
}

/// A sendmail for the tests: `script` with `$OUT` set to `out`.
fn fake_sendmail(dir: &Path, script: &str, out: &Path) -> PathBuf {
    let path = dir.join("sendmail");
    let text = format!("#!/bin/sh\nOUT='{}'\n{script}\n", out.display());
    fs::write(&path, text).unwrap();
    std::process::Command::new("chmod")
        .args(["755", path.to_str().unwrap()])
        .status()
        .unwrap();
    path
}

// issue 17: the nightly report lists what the history holds, failures first, escaped, and
// goes out through sendmail -t.
#[test]
fn report_lists_the_window_failures_first_and_mails_it() {
    use zfsync_history::{AttemptEnd, AttemptStart, Outcome, Role, Store};
    let s = Setup::bare("report", &[]);
    let state = temp_dir("state");
    let (data, kid) = (s.src_ds(""), s.src_ds("kid"));
    create(&kid);
    write_file(&data, "a.txt", b"alpha");
    write_file(&kid, "k.bin", &random_bytes(64 << 10, 1));
    let t0 = DEC2;
    snapshot_tree(&data, &name_at(t0));
    send_at(t0 + 60, &s, &state, &[]).assert_ok();
    // Run 2: kid's replica has a snapshot of its own: refused; data goes on.
    snapshot(&format!("{}@local", s.dst_ds("kid")));
    let t1 = t0 + 3600;
    snapshot_tree(&data, &name_at(t1));
    send_at(t1 + 60, &s, &state, &[]).assert_status(1);
    // What a hostile peer could put in a receiver's history: markup in a name and an error;
    // the oldest try of all, so that only the report's order puts it first.
    let hostile = "tank/<script>alert(1)</script>&x";
    Store::open(&state)
        .unwrap()
        .record_attempt(
            &AttemptStart {
                run: None,
                role: Role::Recv,
                job: "bk".into(),
                peer: "10.0.0.9".into(),
                dataset: hostile.into(),
                kind: None,
                from: None,
                to: None,
                raw: false,
                compressed: false,
                attempt: 1,
                started: (t0 + 30) as i64,
            },
            &AttemptEnd {
                ended: (t0 + 31) as i64,
                outcome: Outcome::Failed,
                bytes: 0,
                seconds: 1.0,
                error: Some("<script>steal()</script> & more".into()),
            },
        )
        .unwrap();
    let dir = state.display().to_string();
    let now = t1 + 120;

    let out = zfsync(now, &["report", "--html", "--state-dir", &dir]);
    out.assert_ok();
    let page = &out.stdout;
    let rows = report_rows(page, "transfers");
    let escaped = "tank/&lt;script&gt;alert(1)&lt;/script&gt;&amp;x";
    // Exactly the history's tries, failures first.
    let mut want: Vec<(String, String)> = history(&state)
        .iter()
        .map(|a| match a["dataset"] == hostile {
            true => (escaped.to_string(), a["outcome"].clone()),
            false => (a["dataset"].clone(), a["outcome"].clone()),
        })
        .collect();
    assert_eq!(want.len(), 5);
    let mut got = rows.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{page}");
    let failures = ["failed", "refused"];
    let first_ok = rows
        .iter()
        .position(|r| !failures.contains(&r.1.as_str()))
        .unwrap();
    assert_eq!(first_ok, 2, "failures first: {rows:?}");
    assert!(
        rows[..2].contains(&(kid.clone(), "refused".into())),
        "{rows:?}"
    );
    assert!(page.contains("5 transfers: 3 done, 2 failed"), "{page}");
    assert!(
        page.contains("&lt;script&gt;steal()&lt;/script&gt; &amp; more"),
        "{page}"
    );
    assert!(!page.contains("<script"), "{page}");
    assert_eq!(report_rows(page, "summary").len(), 3);
    // A window that starts after run 1 leaves its tries (and the hostile one) out.
    let since = name_at(t1 + 30).trim_start_matches("zfsync_").to_string();
    let later = zfsync(
        now,
        &["report", "--html", "--since", &since, "--state-dir", &dir],
    );
    later.assert_ok();
    assert_eq!(
        report_rows(&later.stdout, "transfers").len(),
        2,
        "{}",
        later.stdout
    );

    // By mail: the whole message goes to sendmail -t, nothing to stdout.
    let mail_dir = temp_dir("mail");
    let message = mail_dir.join("message");
    let sendmail = fake_sendmail(
        &mail_dir,
        "[ \"$1\" = -t ] || exit 64\ncat > \"$OUT\"",
        &message,
    );
    let mail_with = |sendmail: &Path| {
        let sendmail = sendmail.display().to_string();
        let args = [
            "report",
            "--html",
            "--state-dir",
            &dir,
            "--mail",
            "ops@example.org",
        ];
        zfsync(now, &[&args[..], &["--sendmail", &sendmail]].concat())
    };
    let mail = mail_with(&sendmail);
    mail.assert_ok();
    assert_eq!(mail.stdout, "");
    let text = fs::read_to_string(&message).unwrap();
    let (headers, body) = text
        .split_once("\n\n")
        .expect("headers, a blank line, the body");
    let headers: Vec<&str> = headers.lines().collect();
    assert!(headers.contains(&"To: ops@example.org"), "{headers:?}");
    assert!(headers.contains(&"MIME-Version: 1.0"), "{headers:?}");
    assert!(
        headers.contains(&"Content-Type: text/html; charset=utf-8"),
        "{headers:?}"
    );
    let subject = headers.iter().find(|h| h.starts_with("Subject: ")).unwrap();
    assert!(
        subject.starts_with("Subject: FAILED zfsync report on "),
        "{subject}"
    );
    assert!(
        subject.ends_with(": 5 transfers: 3 done, 2 failed"),
        "{subject}"
    );
    assert_eq!(body, page.as_str());
    let from_heading = &body[body.find("<h1>").unwrap_or(0)..];
    println!("{}\n\n{from_heading}", headers.join("\n"));

    // A sendmail that fails: exit 1, with its words.
    let broken = fake_sendmail(
        &mail_dir,
        "cat >/dev/null\necho 'queue full' >&2\nexit 75",
        &message,
    );
    let failed = mail_with(&broken);
    failed.assert_status(1);
    assert!(
        failed.stderr.contains("the report was not mailed: ")
            && failed.stderr.contains("exit 75: queue full"),
        "{}",
        failed.stderr
    );
    println!("{}", failed.stderr);
    let _ = fs::remove_dir_all(&state);
    let _ = fs::remove_dir_all(&mail_dir);
}

// issue 17: a dataset dropped from the job kept check replication CRITICAL for ever;
// forgetting it retires it until it is sent again.
#[test]
fn forget_retires_a_dataset_no_longer_sent_until_it_is_sent_again() {
    let s = Setup::bare("forget", &[]);
    let state = temp_dir("state");
    let (data, old) = (s.src_ds(""), s.src_ds("old"));
    create(&old);
    write_file(&data, "a.txt", b"alpha");
    write_file(&old, "o.txt", b"old");
    let t0 = DEC2;
    snapshot_tree(&data, &name_at(t0));
    send_at(t0 + 60, &s, &state, &[]).assert_ok();
    // From now on the job leaves old out.
    let t1 = t0 + 7200;
    snapshot_tree(&data, &name_at(t1));
    send_at(t1 + 60, &s, &state, &["--exclude", "old"]).assert_ok();
    let dir = state.display().to_string();
    let check = |now: u64| {
        zfsync(
            now,
            &[
                "check",
                "replication",
                "--state-dir",
                &dir,
                "--warning",
                "3600",
                "--critical",
                "7200",
            ],
        )
    };
    let now = t1 + 120;
    let out = check(now);
    out.assert_status(2);
    println!("{}", out.stdout);
    assert!(
        out.stdout.lines().nth(1).is_some_and(|l| l.contains(&old)),
        "{}",
        out.stdout
    );

    // The plan first: nothing changes.
    let dry = zfsync(now, &["forget", "--dry-run", "--state-dir", &dir, &old]);
    dry.assert_ok();
    print!("{}", dry.stdout);
    assert_eq!(
        dry.stdout,
        format!(
            "would retire {old} to {} (send): last try 2026-12-02T00:01:00Z, ok\n",
            s.recv.addr()
        )
    );
    check(now).assert_status(2);
    // A name the history does not know: refused, nothing retired.
    let typo = zfsync(
        now,
        &["forget", "--state-dir", &dir, &old, &format!("{old}x")],
    );
    typo.assert_status(1);
    assert!(
        typo.stderr
            .contains(&format!("not in the history (or already retired): {old}x")),
        "{}",
        typo.stderr
    );
    check(now).assert_status(2);

    // A state directory without a history: an error, and no history made there.
    let empty = temp_dir("nohistory");
    let nothing = empty.display().to_string();
    zfsync(now, &["forget", "--state-dir", &nothing, &old]).assert_status(1);
    assert!(!empty.join("history.sqlite").exists());
    let _ = fs::remove_dir_all(&empty);

    let done = zfsync(now, &["forget", "--state-dir", &dir, &old]);
    done.assert_ok();
    assert!(
        done.stdout.starts_with(&format!("retired {old} to ")),
        "{}",
        done.stdout
    );
    let out = check(now);
    out.assert_status(0);
    assert!(
        out.stdout.starts_with("ZFSYNC REPLICATION OK - 1 dataset,"),
        "{}",
        out.stdout
    );
    println!("{}{}", done.stdout, out.stdout);
    let st = status(now, &state);
    assert!(!st.contains_key(&old), "{st:?}");
    // The history keeps its tries.
    assert_eq!(
        history(&state)
            .iter()
            .filter(|a| a["dataset"] == old)
            .count(),
        1
    );

    // Sent again: back in status and check, by itself.
    let t2 = t1 + 3600;
    snapshot_tree(&data, &name_at(t2));
    send_at(t2 + 60, &s, &state, &[]).assert_ok();
    let st = status(t2 + 120, &state);
    assert_eq!(st[&old]["state"], "ok", "{st:?}");
    let out = check(t2 + 120);
    out.assert_status(0);
    assert!(
        out.stdout
            .starts_with("ZFSYNC REPLICATION OK - 2 datasets,"),
        "{}",
        out.stdout
    );
    let _ = fs::remove_dir_all(&state);
}
