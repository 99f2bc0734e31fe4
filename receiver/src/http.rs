//! `--http ADDR`: a small HTTP/1.1 server on threads of its own that shows what the
//! receiver did, for people and for monitoring:
//! - `/metrics`: Prometheus text exposition format 0.0.4;
//! - `/status.json`: every dataset with its lag, last success, last result and error, and
//!   whether a stream is in flight;
//! - `/`: the status page (`page.rs`).
//!
//! Only GET and HEAD (405 otherwise); any other path is 404. Each response is built from
//! one bounded read of the history (`status.rs`) and the live figures; nothing here
//! writes anything, nor can a request change what the receiver does. The server is
//! `tiny_http` (blocking, no async runtime) with [`THREADS`] threads taking requests;
//! they look at the stop flag between requests.

use crate::record::{failure_reason, FAILURE_REASONS};
use crate::status::{Row, View};
use crate::Shared;
use log::{debug, warn};
use std::fmt::Write;
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tiny_http::{Header, Method, Request, Response, Server};
use zfsync_history::format::json_string;

/// Threads answering requests: a slow client then does not hold up a scrape.
const THREADS: usize = 2;

/// At most this many datasets are listed in `/metrics` and `/status.json` (the page
/// shows fewer); the total is always given.
pub(crate) const MAX_LISTED: usize = 10_000;

/// Binds `--http ADDR` (at start-up, so a port in use is a clear error at once).
pub fn bind(addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// Serves requests on `listener` from threads of `scope` until the stop flag is raised.
pub(crate) fn spawn<'scope, 'env: 'scope>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    listener: TcpListener,
    shared: &'env Shared<'env>,
) -> std::io::Result<()> {
    let server =
        Server::from_listener(listener, None).map_err(|e| std::io::Error::other(e.to_string()))?;
    let server = std::sync::Arc::new(server);
    for _ in 0..THREADS {
        let server = server.clone();
        scope.spawn(move || {
            while !shared.stop.load(Ordering::SeqCst) {
                match server.recv_timeout(Duration::from_millis(200)) {
                    Ok(Some(request)) => answer(request, shared),
                    Ok(None) => {}
                    Err(e) => {
                        warn!("http: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        });
    }
    Ok(())
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("an ASCII header")
}

fn answer(request: Request, shared: &Shared) {
    let method = request.method().clone();
    let path = request.url().split('?').next().unwrap_or("").to_owned();
    let (status, content_type, body) = match method {
        Method::Get | Method::Head => route(&path, shared),
        _ => (
            405,
            "text/plain; charset=utf-8",
            "only GET and HEAD\n".into(),
        ),
    };
    debug!("http {method} {path:?} status={status}");
    let mut response = Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header("X-Content-Type-Options", "nosniff"))
        // The page is self-contained: no script, no outside resource.
        .with_header(header(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'",
        ));
    if status == 405 {
        response = response.with_header(header("Allow", "GET, HEAD"));
    }
    if let Err(e) = request.respond(response) {
        debug!("http: answering {path:?}: {e}");
    }
}

fn route(path: &str, shared: &Shared) -> (u16, &'static str, String) {
    let history = &shared.history;
    let now = crate::record::now();
    match path {
        "/metrics" => {
            let (view, _) = View::read(history, now);
            (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics(&view),
            )
        }
        "/status.json" => {
            let (view, _) = View::read(history, now);
            (200, "application/json", status_json(&view))
        }
        "/" => {
            let (view, store) = View::read(history, now);
            let charts = view.charts(history, store.as_ref());
            (
                200,
                "text/html; charset=utf-8",
                crate::page::render(&view, &charts),
            )
        }
        _ => (404, "text/plain; charset=utf-8", "not found\n".into()),
    }
}

/// A label value as the text format wants it: backslash, double quote and line feed
/// escaped.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A metric's HELP and TYPE lines, then its samples: (labels, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = if labels.is_empty() {
            writeln!(out, "{name} {value}")
        } else {
            writeln!(out, "{name}{{{labels}}} {value}")
        };
    }
}

/// `/metrics`. Counters are this process's (from 0 at start-up); the per-dataset gauges
/// come from the history, so they survive a restart.
pub(crate) fn metrics(view: &View) -> String {
    let mut out = String::new();
    let one = |v: u64| vec![(String::new(), v as f64)];
    family(
        &mut out,
        "zfsync_received_bytes_total",
        "counter",
        "Stream bytes of the receives that completed, since this zfsync-recv started \
         (counters start at 0 at start-up).",
        &one(view.bytes),
    );
    family(
        &mut out,
        "zfsync_received_datasets_total",
        "counter",
        "Receives (full, incremental or resumed streams) that completed, since this \
         zfsync-recv started.",
        &one(view.datasets),
    );
    let failures: Vec<(String, f64)> = FAILURE_REASONS
        .iter()
        .map(|r| {
            let reason = failure_reason(*r);
            let n = view.failures.get(reason).copied().unwrap_or(0);
            (format!("reason=\"{}\"", label(reason)), n as f64)
        })
        .collect();
    family(
        &mut out,
        "zfsync_receive_failures_total",
        "counter",
        "Offers refused and streams that failed, by reason, since this zfsync-recv started \
         (connection: the session broke).",
        &failures,
    );
    family(
        &mut out,
        "zfsync_pruned_snapshots_total",
        "counter",
        "Snapshots the receiver pruned, since this zfsync-recv started.",
        &one(view.pruned),
    );
    family(
        &mut out,
        "zfsync_streams_in_flight",
        "gauge",
        "Streams being received now.",
        &one(view.in_flight.len() as u64),
    );
    family(
        &mut out,
        "zfsync_history_up",
        "gauge",
        "1 if the history could be read for this scrape; the per-dataset metrics come from \
         it.",
        &one(u64::from(view.history_error.is_none())),
    );
    family(
        &mut out,
        "zfsync_datasets",
        "gauge",
        "Datasets in the history (the per-dataset metrics list at most 10000).",
        &one(view.rows.len() as u64),
    );
    let rows = &view.rows[..view.rows.len().min(MAX_LISTED)];
    let per = |f: &dyn Fn(&Row) -> Option<f64>| -> Vec<(String, f64)> {
        rows.iter()
            .filter_map(|r| Some((format!("dataset=\"{}\"", label(&r.dataset)), f(r)?)))
            .collect()
    };
    family(
        &mut out,
        "zfsync_dataset_last_success_timestamp_seconds",
        "gauge",
        "When the dataset's newest successful attempt (received or up to date) ended, in \
         unix seconds.",
        &per(&|r| r.last_success.map(|t| t as f64)),
    );
    family(
        &mut out,
        "zfsync_dataset_lag_seconds",
        "gauge",
        "Seconds since the creation of the newest snapshot the replica has (the time in \
         a zfsync_ name, else when it was received).",
        &per(&|r| r.lag.map(|t| t as f64)),
    );
    family(
        &mut out,
        "zfsync_dataset_failures_since_success",
        "gauge",
        "Failed or refused attempts of the dataset since its newest success.",
        &per(&|r| Some(r.failures_since_success as f64)),
    );
    let results: Vec<(String, f64)> = rows
        .iter()
        .map(|r| {
            (
                format!(
                    "dataset=\"{}\",result=\"{}\"",
                    label(&r.dataset),
                    label(r.result)
                ),
                1.0,
            )
        })
        .collect();
    family(
        &mut out,
        "zfsync_dataset_last_result",
        "gauge",
        "1 for the outcome of the dataset's newest attempt (done, up-to-date, refused, \
         failed, skipped, in-flight).",
        &results,
    );
    out
}

fn json_opt_int(v: Option<i64>) -> String {
    v.map_or_else(|| "null".into(), |v| v.to_string())
}

fn json_opt_str(v: Option<&str>, out: &mut String) {
    match v {
        Some(s) => json_string(s, out),
        None => out.push_str("null"),
    }
}

/// `/status.json`: one object; times are unix seconds, GUIDs strings.
pub(crate) fn status_json(view: &View) -> String {
    let mut out = String::from("{\"target\":");
    json_string(&view.target, &mut out);
    let _ = write!(out, ",\"now\":{},\"history_error\":", view.now);
    json_opt_str(view.history_error.as_deref(), &mut out);
    let _ = write!(
        out,
        ",\"datasets_total\":{},\"failing\":{},\"in_flight\":{},\"datasets\":[",
        view.rows.len(),
        view.failing(),
        view.in_flight.len()
    );
    for (i, r) in view.rows.iter().take(MAX_LISTED).enumerate() {
        out.push_str(if i == 0 { "\n{" } else { ",\n{" });
        out.push_str("\"dataset\":");
        json_string(&r.dataset, &mut out);
        let _ = write!(
            out,
            ",\"lag_seconds\":{},\"last_success\":{},\"last_result\":",
            json_opt_int(r.lag),
            json_opt_int(r.last_success)
        );
        json_string(r.result, &mut out);
        let _ = write!(out, ",\"failing\":{},\"last_error\":", r.failing);
        json_opt_str(r.last_error.as_deref(), &mut out);
        let _ = write!(
            out,
            ",\"failures_since_success\":{},\"newest\":",
            r.failures_since_success
        );
        match &r.newest {
            Some(s) => {
                out.push_str("{\"name\":");
                json_string(&s.name, &mut out);
                let _ = write!(out, ",\"guid\":\"{}\"}}", s.guid);
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"in_flight\":");
        match &r.in_flight {
            Some(f) => {
                let _ = write!(out, "{{\"kind\":\"{}\",\"peer\":", f.kind.as_str());
                json_string(&f.peer, &mut out);
                let _ = write!(out, ",\"since\":{}}}", f.since);
            }
            None => out.push_str("null"),
        }
        out.push('}');
    }
    out.push_str("\n]}\n");
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::InFlight;
    use zfsync_history::{Kind, SnapshotRef};

    /// A view of three datasets (one refused with an odd name, one fine, one first
    /// receive in flight), shared with the page's tests.
    pub(crate) fn view() -> View {
        let row = |dataset: &str, failing: bool, lag: Option<i64>| Row {
            dataset: dataset.into(),
            newest: lag.map(|_| SnapshotRef {
                name: "zfsync_2026-12-02T00:00:00Z".into(),
                guid: 18_446_744_073_709_551_615,
            }),
            lag,
            last_success: lag.map(|l| 1_796_169_600 + l),
            result: if failing { "refused" } else { "done" },
            failing,
            last_error: failing.then(|| "diverged: has \"local\"\nsnapshots".into()),
            failures_since_success: u64::from(failing),
            in_flight: None,
        };
        let mut rows = vec![
            row("tank/b/we\"ird\\name", true, Some(60)),
            row("tank/b", false, Some(30)),
        ];
        let flying = InFlight {
            dataset: "tank/b/new".into(),
            peer: "10.0.0.5".into(),
            kind: Kind::Full,
            since: 1_796_169_000,
        };
        let mut new = row("tank/b/new", false, None);
        new.result = "in-flight";
        new.in_flight = Some(flying.clone());
        rows.push(new);
        View {
            target: "tank/b".into(),
            now: 1_796_170_000,
            rows,
            history_error: None,
            bytes: 4096,
            datasets: 2,
            pruned: 0,
            failures: [("diverged", 1)].into_iter().collect(),
            in_flight: vec![flying],
        }
    }

    #[test]
    fn labels_are_escaped() {
        for (raw, want) in [
            ("plain/name", "plain/name"),
            ("a\"b", "a\\\"b"),
            ("a\\b", "a\\\\b"),
            ("a\nb", "a\\nb"),
        ] {
            assert_eq!(label(raw), want);
        }
    }

    #[test]
    fn metrics_have_help_and_type_before_their_samples() {
        let text = metrics(&view());
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{line}");
            }
        }
        for want in [
            "zfsync_received_bytes_total 4096\n",
            "zfsync_received_datasets_total 2\n",
            "zfsync_receive_failures_total{reason=\"diverged\"} 1\n",
            "zfsync_receive_failures_total{reason=\"connection\"} 0\n",
            "zfsync_pruned_snapshots_total 0\n",
            "zfsync_streams_in_flight 1\n",
            "zfsync_dataset_lag_seconds{dataset=\"tank/b/we\\\"ird\\\\name\"} 60\n",
            "zfsync_dataset_lag_seconds{dataset=\"tank/b\"} 30\n",
            "zfsync_dataset_last_result{dataset=\"tank/b/new\",result=\"in-flight\"} 1\n",
            "zfsync_datasets 3\n",
        ] {
            assert!(text.contains(want), "{want:?} in:\n{text}");
        }
        // No lag is known for a first receive in flight: no sample rather than a made-up one.
        assert!(!text.contains("zfsync_dataset_lag_seconds{dataset=\"tank/b/new\"}"));
    }

    #[test]
    fn status_json_lists_every_dataset() {
        let text = status_json(&view());
        for want in [
            "{\"target\":\"tank/b\",\"now\":1796170000,\"history_error\":null,\
             \"datasets_total\":3,\"failing\":1,\"in_flight\":1,\"datasets\":[",
            "{\"dataset\":\"tank/b/we\\\"ird\\\\name\",\"lag_seconds\":60,\
             \"last_success\":1796169660,\"last_result\":\"refused\",\"failing\":true,\
             \"last_error\":\"diverged: has \\\"local\\\"\\nsnapshots\",\
             \"failures_since_success\":1,\"newest\":{\"name\":\
             \"zfsync_2026-12-02T00:00:00Z\",\"guid\":\"18446744073709551615\"},\
             \"in_flight\":null}",
            "\"in_flight\":{\"kind\":\"full\",\"peer\":\"10.0.0.5\",\"since\":1796169000}}",
        ] {
            assert!(text.contains(want), "{want}\nin:\n{text}");
        }
    }
}
