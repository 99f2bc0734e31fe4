//! Integration tests of what a backup host tells about itself: the receiver's history
//! (`--state-dir`), `/metrics`, `/status.json` and the status page (`--http`), after real
//! runs against real zfs-fuse pools: datasets received, one refused as diverged, one cut
//! by a sender killed mid-stream, and a stream whose head says raw. The history is read
//! with the zfsync-history crate, the
//! metrics with a strict parser of the Prometheus text format written here, and the page
//! in a real headless browser (Debian's chromium).

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zfsync_history::{Attempt, AttemptQuery, Kind, Outcome, Role, RunQuery, Store};
use zfsync_tests::*;

/// The snapshots of the tests, zfsync's names, and their times (unix seconds).
const S1: (&str, i64) = ("zfsync_2026-12-01T00:00:00Z", 1_796_083_200);
const S2: (&str, i64) = ("zfsync_2026-12-01T01:00:00Z", 1_796_086_800);
const S3: (&str, i64) = ("zfsync_2026-12-01T02:00:00Z", 1_796_090_400);
const S4: (&str, i64) = ("zfsync_2026-12-01T03:00:00Z", 1_796_094_000);

/// The receivers' clock (`ZFSYNC_NOW`): ten minutes after S4.
const NOW: i64 = S4.1 + 600;

// ---------------------------------------------------------------------------------------
// A receiver with a clock, a state directory and --http

/// A receiver on `target` with `ZFSYNC_NOW=now`, its history in `state`, its page on a
/// free port of 127.0.0.1. Returns it and the page's address.
fn start_observed(target: &str, state: &Path, now: i64, extra: &[&str]) -> (Receiver, String) {
    let dir = temp_dir("obsclock");
    let wrapper = dir.join("zfsync-recv");
    let text = format!(
        "#!/bin/sh\nZFSYNC_NOW={now} exec '{}' \"$@\"\n",
        receiver_bin().to_str().expect("UTF-8 path")
    );
    std::fs::write(&wrapper, text).expect("write the wrapper");
    let mut perm = std::fs::metadata(&wrapper).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&wrapper, perm).expect("chmod");
    let http = format!("127.0.0.1:{}", free_port());
    let zfs = zfs_bin();
    let state = state.to_str().expect("UTF-8 path");
    let mut args = vec!["--zfs", zfs.as_str(), "--state-dir", state, "--http", &http];
    args.extend_from_slice(extra);
    let recv = Receiver::spawn(&wrapper, target, &args);
    (recv, http)
}

/// GET (or another method) of `path` from `addr`: status and body.
fn http(addr: &str, method: &str, path: &str) -> (u16, String, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("connect {addr}: {e}"),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the answer");
    let raw = String::from_utf8(raw).expect("a UTF-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("headers end");
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line: {head}"));
    (status, head.to_string(), body.to_string())
}

fn get(addr: &str, path: &str) -> String {
    let (status, head, body) = http(addr, "GET", path);
    assert_eq!(status, 200, "GET {path}: {head}\n{body}");
    body
}

// ---------------------------------------------------------------------------------------
// A strict reader of the Prometheus text format (version 0.0.4)

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the text format strictly: every sample's family has `# HELP` and `# TYPE` lines
/// before it (in that order, once each, TYPE one of the known types), names and label
/// names are valid, label values are quoted with only `\\`, `\"` and `\n` escapes, values
/// are floats, and a family's samples are not split by another family's.
fn parse_metrics(text: &str) -> Vec<Sample> {
    let name_ok = |s: &str| {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
    };
    let label_ok = |s: &str| name_ok(s) && !s.contains(':') && !s.starts_with("__");
    let mut help: BTreeSet<String> = BTreeSet::new();
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    assert!(text.ends_with('\n'), "the exposition ends with a line feed");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').expect("HELP name text");
            assert!(name_ok(name), "{line}");
            assert!(help.insert(name.into()), "second HELP: {line}");
            assert!(!typed.contains_key(name), "HELP after TYPE: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name type");
            assert!(help.contains(name), "TYPE without HELP first: {line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(typed.insert(name.into(), kind.into()).is_none(), "{line}");
            if let Some(c) = current.replace(name.into()) {
                finished.insert(c);
            }
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (name, rest) = match line.find(['{', ' ']) {
            Some(at) => line.split_at(at),
            None => panic!("no value: {line}"),
        };
        assert!(name_ok(name), "{line}");
        assert_eq!(
            current.as_deref(),
            Some(name),
            "a sample outside its family's block: {line}"
        );
        assert!(!finished.contains(name), "{line}");
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end;
            loop {
                // name="value" pairs separated by commas, then '}'.
                let start = chars.peek().map(|c| c.0).expect("label");
                if body[start..].starts_with('}') {
                    end = Some(start);
                    break;
                }
                let eq = body[start..].find('=').expect("label=") + start;
                let lname = &body[start..eq];
                assert!(label_ok(lname), "label name {lname:?}: {line}");
                assert_eq!(&body[eq + 1..eq + 2], "\"", "{line}");
                let mut value = String::new();
                let mut i = eq + 2;
                let bytes: Vec<char> = body[i..].chars().collect();
                let mut k = 0;
                loop {
                    match bytes.get(k) {
                        Some('\\') => {
                            match bytes.get(k + 1) {
                                Some('\\') => value.push('\\'),
                                Some('"') => value.push('"'),
                                Some('n') => value.push('\n'),
                                other => panic!("bad escape {other:?}: {line}"),
                            }
                            k += 2;
                        }
                        Some('"') => break,
                        Some(c) => {
                            assert!(*c != '\n', "{line}");
                            value.push(*c);
                            k += 1;
                        }
                        None => panic!("unterminated label value: {line}"),
                    }
                }
                i += bytes[..=k].iter().map(|c| c.len_utf8()).sum::<usize>();
                assert!(labels.insert(lname.to_string(), value).is_none(), "{line}");
                while chars.peek().is_some_and(|c| c.0 < i) {
                    chars.next();
                }
                match chars.next() {
                    Some((_, ',')) => continue,
                    Some((at, '}')) => {
                        end = Some(at);
                        break;
                    }
                    other => panic!("after a label: {other:?}: {line}"),
                }
            }
            rest = &body[end.expect("}") + 1..];
        }
        let value = rest.strip_prefix(' ').expect("one space before the value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("value {v:?}: {line}")),
        };
        samples.push((name.to_string(), labels, value));
    }
    samples
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.2)
}

#[test]
fn the_metrics_parser_is_strict() {
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"\\n\",j=\"\"} 1.5e3\n";
    let s = parse_metrics(good);
    assert_eq!(s[0].1["k"], "v\"\n");
    assert_eq!(s[0].2, 1500.0);
    for bad in [
        "a 1\n",
        "# TYPE a counter\na 1\n",
        "# HELP a x\n# TYPE a counter\na{k=v} 1\n",
        "# HELP a x\n# TYPE a counter\na{k=\"\\x\"} 1\n",
        "# HELP a x\n# TYPE a counter\na one\n",
        "# HELP a x\n# TYPE a countr\na 1\n",
        "# HELP a x\n# TYPE a counter\n# HELP b x\n# TYPE b gauge\na 1\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse_metrics(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The history

fn attempts(state: &Path) -> Vec<Attempt> {
    let store = Store::open_read_only(state).expect("the receiver's history");
    let mut all = store
        .attempts(&AttemptQuery::default())
        .expect("read attempts");
    all.reverse(); // oldest first
    all
}

fn guid(ds: &str, snap: &str) -> u64 {
    snapshot_guids(ds)
        .into_iter()
        .find(|(n, _)| n == snap)
        .unwrap_or_else(|| panic!("{ds}@{snap} not found"))
        .1
}

/// An attempt as the checks compare it: dataset, kind, from and to GUIDs, outcome.
type Row = (
    String,
    Option<&'static str>,
    Option<u64>,
    Option<u64>,
    &'static str,
);

fn row(a: &Attempt) -> Row {
    (
        a.start.dataset.clone(),
        a.start.kind.map(Kind::as_str),
        a.start.from.as_ref().map(|s| s.guid),
        a.start.to.as_ref().map(|s| s.guid),
        a.end.as_ref().expect("finished").outcome.as_str(),
    )
}

/// The chromium binary; the test fails with what to install when there is none.
fn chromium() -> PathBuf {
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("no chromium: apt-get install chromium (scripts/test does)");
}

/// Runs headless chromium with `args` (killed after 90 s); its stdout.
fn run_chromium(args: &[&str]) -> String {
    let profile = temp_dir("chromium");
    let mut child: Child = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run chromium");
    let mut out = String::new();
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} still running after 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = reader.join().unwrap_or_default();
    let _ = std::fs::remove_dir_all(profile);
    out
}

// ---------------------------------------------------------------------------------------
// The tests

/// The dataset /status.json says is in flight, if one is.
fn in_flight(http_addr: &str) -> Option<String> {
    let body = get(http_addr, "/status.json");
    let at = body.find("\"in_flight\":{")?;
    let before = &body[..at];
    let name_at = before.rfind("{\"dataset\":\"").expect("the row's dataset") + 12;
    let name = &before[name_at..];
    Some(name[..name.find('"').expect("closing quote")].to_string())
}

/// Waits until /status.json shows the same stream in flight twice, half a second apart:
/// a stream that is stalled, not one that is about to finish. Returns its dataset.
fn wait_stalled(http_addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(first) = in_flight(http_addr) {
            std::thread::sleep(Duration::from_millis(500));
            if in_flight(http_addr).as_ref() == Some(&first) {
                return first;
            }
        }
        assert!(Instant::now() < deadline, "no stream stalled in flight");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// Receives, a refusal and a sender killed mid-stream: the history holds one row per
// attempt with the right outcome and the snapshots' real GUIDs; /metrics agrees with it,
// /status.json and the page (in a real browser) list every dataset with its lag, and the
// lag grows when the clock moves on.
#[test]
fn history_metrics_and_page_tell_what_happened() {
    let src = Pool::new("obss");
    let dst = Pool::unmounted("obsd");
    let root = src.ds("data");
    let target = dst.ds("backup");
    let state = temp_dir("obsstate");
    for rel in TREE {
        create(&join(&root, rel));
    }
    let (recv, mut web) = start_observed(&target, &state, NOW, &[]);
    let mut s = Setup {
        recv,
        root: root.clone(),
        target: target.clone(),
        src,
        dst,
    };
    let ds = |rel: &str| join(&root, rel);
    let dst_ds = |rel: &str| join(&target, rel);
    let n = TREE.len();

    // 1. The first run: each dataset is new (full @S1, then incremental to @S2).
    s.populate();
    snapshot_tree(&root, S1.0);
    s.change(1);
    snapshot_tree(&root, S2.0);
    s.send(&[]).assert_ok();
    // 2. A snapshot made on the backup host: b/y is refused as diverged, the rest gets S3.
    snapshot(&format!("{}@local", dst_ds("b/y")));
    s.change(2);
    snapshot_tree(&root, S3.0);
    s.send(&[]).assert_status(1);
    // 3. A sender killed in the middle of a stream: 2 MiB new in the root, the connection
    // stalled after 256 KiB, the sender killed, then the stalled connection shut.
    write_file(&ds(""), "big.bin", &random_bytes(2 << 20, 7));
    snapshot_tree(&root, S4.0);
    let proxy = Proxy::start(&s.recv.addr());
    proxy.stall_after(Some(256 << 10));
    let zfs = zfs_bin();
    let mut sender = Command::new(sender_bin())
        .args(["-t", "1", "--zfs", &zfs, &root, &proxy.addr()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run zfsync-send");
    let cut = wait_stalled(&web);
    signal(sender.id(), SIGKILL);
    let _ = sender.wait();
    drop(proxy);

    // The history, once the cut attempt is written.
    let deadline = Instant::now() + Duration::from_secs(30);
    let all = loop {
        let all = attempts(&state);
        if all.len() > 3 * n
            && all.iter().any(|a| {
                a.start.dataset == cut && a.end.as_ref().map(|e| e.outcome) == Some(Outcome::Failed)
            })
        {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "the cut attempt was not recorded: {all:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let rel_of = |d: &str| {
        d.strip_prefix(target.as_str())
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string()
    };
    let incremental = |rel: &str, from: (&str, i64), to: (&str, i64), outcome: Outcome| -> Row {
        let outcome = outcome.as_str();
        (
            dst_ds(rel),
            Some("incremental"),
            Some(guid(&ds(rel), from.0)),
            Some(guid(&ds(rel), to.0)),
            outcome,
        )
    };
    let mut want: Vec<Row> = Vec::new();
    for rel in TREE {
        want.push((
            dst_ds(rel),
            Some("full"),
            None,
            Some(guid(&ds(rel), S1.0)),
            "done",
        ));
        want.push(incremental(rel, S1, S2, Outcome::Done));
    }
    for rel in TREE {
        if *rel == "b/y" {
            want.push((
                dst_ds(rel),
                None,
                None,
                Some(guid(&ds(rel), S3.0)),
                "refused",
            ));
        } else {
            want.push(incremental(rel, S2, S3, Outcome::Done));
        }
    }
    // The killed run: the datasets answered before the stall, and the cut stream.
    let mut newest: BTreeMap<String, (&str, i64)> = TREE
        .iter()
        .map(|rel| (rel.to_string(), if *rel == "b/y" { S2 } else { S3 }))
        .collect();
    for a in &all[3 * n..] {
        let rel = rel_of(&a.start.dataset);
        want.push(if a.start.dataset == cut {
            incremental(&rel, S3, S4, Outcome::Failed)
        } else if rel == "b/y" {
            (
                dst_ds(&rel),
                None,
                None,
                Some(guid(&ds(&rel), S4.0)),
                "refused",
            )
        } else {
            newest.insert(rel.clone(), S4);
            incremental(&rel, S3, S4, Outcome::Done)
        });
    }
    let mut got: Vec<Row> = all.iter().map(row).collect();
    // The sender's workers offer in parallel: each run's attempts compare as a set.
    for (from, to) in [(0, 2 * n), (2 * n, 3 * n), (3 * n, got.len())] {
        got[from..to].sort();
        want[from..to].sort();
    }
    assert_eq!(got, want, "the history:\n{all:#?}");
    assert_eq!(
        all.iter()
            .filter(|a| a.end.as_ref().unwrap().outcome == Outcome::Failed)
            .count(),
        1
    );
    for a in &all {
        assert_eq!(a.start.role, Role::Recv);
        assert_eq!(a.start.job, target);
        assert_eq!(a.start.peer, "127.0.0.1");
        let e = a.end.as_ref().unwrap();
        assert_eq!((a.start.started, e.ended), (NOW, NOW));
        match e.outcome {
            Outcome::Done => assert!(e.bytes > 0 && e.error.is_none(), "{a:?}"),
            Outcome::Refused => {
                let text = e.error.as_deref().unwrap_or("");
                assert!(
                    text.starts_with("diverged: ") && text.contains("local"),
                    "{a:?}"
                );
            }
            Outcome::Failed => assert!(
                e.error.as_deref().unwrap_or("").starts_with("connection: "),
                "{a:?}"
            ),
            _ => panic!("unexpected {a:?}"),
        }
    }
    // One run per connection, each ended; their failures add up.
    let store = Store::open_read_only(&state).unwrap();
    let runs = store.runs(&RunQuery::default()).unwrap();
    assert!(runs.iter().all(|r| r.end.is_some()), "{runs:#?}");
    let run_ids: BTreeSet<_> = all
        .iter()
        .map(|a| a.start.run.expect("in a run").0)
        .collect();
    assert_eq!(run_ids.len(), runs.len(), "{runs:#?}");
    let failed = all
        .iter()
        .filter(|a| a.end.as_ref().unwrap().outcome.is_failure())
        .count();
    assert_eq!(
        runs.iter()
            .map(|r| r.end.as_ref().unwrap().failed as usize)
            .sum::<usize>(),
        failed
    );

    // /metrics agrees with the history.
    let text = get(&web, "/metrics");
    let samples = parse_metrics(&text);
    let done: Vec<&Attempt> = all
        .iter()
        .filter(|a| a.end.as_ref().unwrap().outcome == Outcome::Done)
        .collect();
    let bytes: u64 = done.iter().map(|a| a.end.as_ref().unwrap().bytes).sum();
    let refused = all
        .iter()
        .filter(|a| a.end.as_ref().unwrap().outcome == Outcome::Refused)
        .count();
    assert_eq!(
        value(&samples, "zfsync_received_bytes_total", &[]),
        Some(bytes as f64),
        "{text}"
    );
    assert_eq!(
        value(&samples, "zfsync_received_datasets_total", &[]),
        Some(done.len() as f64),
        "{text}"
    );
    for (reason, count) in [
        ("diverged", refused as f64),
        ("connection", 1.0),
        ("zfs_failed", 0.0),
    ] {
        assert_eq!(
            value(
                &samples,
                "zfsync_receive_failures_total",
                &[("reason", reason)]
            ),
            Some(count),
            "{reason}: {text}"
        );
    }
    assert_eq!(
        value(&samples, "zfsync_pruned_snapshots_total", &[]),
        Some(0.0)
    );
    assert_eq!(value(&samples, "zfsync_streams_in_flight", &[]), Some(0.0));
    assert_eq!(value(&samples, "zfsync_history_up", &[]), Some(1.0));
    assert_eq!(value(&samples, "zfsync_datasets", &[]), Some(n as f64));
    for rel in TREE {
        let d = dst_ds(rel);
        let l = [("dataset", d.as_str())];
        assert_eq!(
            value(&samples, "zfsync_dataset_lag_seconds", &l),
            Some((NOW - newest[*rel].1) as f64),
            "{d}: {text}"
        );
        assert_eq!(
            value(
                &samples,
                "zfsync_dataset_last_success_timestamp_seconds",
                &l
            ),
            Some(NOW as f64),
            "{d}"
        );
        let result = if *rel == "b/y" {
            "refused"
        } else if d == cut {
            "failed"
        } else {
            "done"
        };
        assert_eq!(
            value(
                &samples,
                "zfsync_dataset_last_result",
                &[("dataset", d.as_str()), ("result", result)]
            ),
            Some(1.0),
            "{d}: {text}"
        );
    }

    // /status.json lists them all; other paths and methods are refused.
    let json = get(&web, "/status.json");
    for rel in TREE {
        assert!(
            json.contains(&format!("{{\"dataset\":\"{}\",", dst_ds(rel))),
            "{json}"
        );
    }
    assert_eq!(http(&web, "GET", "/nothing").0, 404);
    assert_eq!(http(&web, "POST", "/metrics").0, 405);
    let (status, head, body) = http(&web, "HEAD", "/metrics");
    assert_eq!((status, body.as_str()), (200, ""), "{head}");

    // 4. The next run heals the cut dataset (b/y is still refused); then the page, in a
    // real browser: every dataset with its lag, one failing, two charts.
    s.send(&[]).assert_status(1);
    // b/y stays at S2, everything else has S4 now.
    let healed_lag = |rel: &str| if rel == "b/y" { NOW - S2.1 } else { NOW - S4.1 };
    let url = format!("http://{web}/");
    let dom = run_chromium(&["--dump-dom", &url]);
    assert!(dom.contains("1 failing"), "{dom}");
    assert_eq!(dom.matches("<svg ").count(), 2, "{dom}");
    for rel in TREE {
        let d = dst_ds(rel);
        let lag = healed_lag(rel);
        let cell =
            format!("<td class=\"dataset\">{d}</td><td class=\"num lag\" data-seconds=\"{lag}\">");
        assert!(dom.contains(&cell), "{cell} in:\n{dom}");
    }
    let shot = state.join("status-page.png");
    run_chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1200,900",
        &url,
    ]);
    let png = std::fs::read(&shot).expect("chromium wrote a screenshot");
    assert!(
        png.len() > 1000 && png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG"
    );
    if let Some(keep) = std::env::var_os("ZFSYNC_STATUS_PAGE_PNG") {
        std::fs::copy(&shot, keep).expect("keep the screenshot");
    }

    // 5. An hour later (the receiver restarted with its clock moved on), every lag has
    // grown by an hour; the counters start again from 0.
    s.recv.stop();
    let (r2, w2) = start_observed(&target, &state, NOW + 3600, &[]);
    s.recv = r2;
    web = w2;
    let text = get(&web, "/metrics");
    let later = parse_metrics(&text);
    for rel in TREE {
        let d = dst_ds(rel);
        let before = healed_lag(rel);
        assert_eq!(
            value(
                &later,
                "zfsync_dataset_lag_seconds",
                &[("dataset", d.as_str())]
            ),
            Some((before + 3600) as f64),
            "{d}: {text}"
        );
    }
    assert_eq!(value(&later, "zfsync_received_bytes_total", &[]), Some(0.0));
    drop(s);
    let _ = std::fs::remove_dir_all(&state);
}

// A state directory that cannot be created (a path under a regular file) costs one
// warning, never a receive; the metrics still serve this process's counters.
#[test]
fn an_unusable_state_dir_only_warns() {
    let file = temp_dir("obsbad").join("file");
    std::fs::write(&file, "").unwrap();
    let state = file.join("state");
    let src = Pool::new("obus");
    let dst = Pool::unmounted("obud");
    let root = src.ds("data");
    let target = dst.ds("backup");
    for rel in TREE {
        create(&join(&root, rel));
    }
    let (recv, web) = start_observed(&target, &state, NOW, &[]);
    snapshot_tree(&root, S1.0);
    snapshot_tree(&root, S2.0);
    send_tree(&root, &recv, &[]).assert_ok();
    assert_same_snapshots(&root, &target);
    let samples = parse_metrics(&get(&web, "/metrics"));
    assert_eq!(value(&samples, "zfsync_history_up", &[]), Some(0.0));
    assert_eq!(
        value(&samples, "zfsync_received_datasets_total", &[]),
        Some(2.0 * TREE.len() as f64)
    );
    let log = recv.log();
    let warnings = log.matches("history: cannot open the database").count();
    assert_eq!(warnings, 1, "{log}");
    let page = get(&web, "/");
    assert!(page.contains("The history cannot be read"), "{page}");
}

// issue 17: the receiver recorded raw and compressed false whatever the stream was. A
// sender's zfs (injected: zfs-fuse has no raw send) marks its stream raw in the
// DRR_BEGIN record's feature flags (zfs-fuse's recv refuses such a stream, which does
// not matter here): the receiver's row of that try says raw, not compressed.
#[test]
fn the_receiver_records_the_streams_flags() {
    let src = Pool::new("obfl");
    let dst = Pool::unmounted("obfld");
    let root = src.ds("data");
    let target = dst.ds("backup");
    create(&root);
    let state = temp_dir("obflstate");
    let (recv, _web) = start_observed(&target, &state, NOW, &[]);
    snapshot(&format!("{root}@{}", S1.0));
    // Byte 19 is the top byte of drr_versioninfo's low 32 bits (little-endian, as
    // zfs-fuse writes on x86): 0x04 there is feature bit 24, DMU_BACKUP_FEATURE_RAW.
    let dir = temp_dir("obflzfs");
    let zfs = dir.join("zfs");
    let real = Command::new("sh")
        .args(["-c", &format!("command -v {}", zfs_bin())])
        .output()
        .expect("sh");
    let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
    let script = format!(
        "#!/bin/sh\n# fault injector (tests/tests/observe.rs): send marks its stream raw\n\
         if [ \"$1\" = send ]; then\n\
         \x20 '{real}' \"$@\" | {{ dd bs=1 count=19 2>/dev/null; dd bs=1 count=1 of=/dev/null 2>/dev/null; printf '\\004'; cat; }}\n\
         \x20 exit 0\n\
         fi\n\
         exec '{real}' \"$@\"\n"
    );
    std::fs::write(&zfs, script).expect("write the fake zfs");
    let mut perm = std::fs::metadata(&zfs).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&zfs, perm).expect("chmod");
    let addr = recv.addr();
    let zfs = zfs.to_str().expect("UTF-8 path");
    let args = ["--retries", "0", "--zfs", zfs, &root, &addr];
    let out = run_with_timeout(&sender_bin(), &args, Duration::from_secs(120));
    let all = attempts(&state);
    assert_eq!(all.len(), 1, "{all:?}\n{}\n{}", out.stderr, recv.log());
    let a = &all[0];
    assert_eq!(a.start.kind, Some(Kind::Full));
    assert_eq!((a.start.raw, a.start.compressed), (true, false), "{a:?}");
    println!("{a:?}\n{}", out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
}
