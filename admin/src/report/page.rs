//! The report as one self-contained HTML document: a heading (host, window, counts),
//! every transfer of the window with the failures first, then a summary per dataset.
//! Inline CSS only, no script and nothing fetched from elsewhere, so it reads the same in
//! a mail client that blocks remote content.
//!
//! Pure: attempts in, a string out. Every value from the history (dataset, peer, snapshot
//! names, errors: some came over the network) goes through [`escape`]; only this module's
//! own markup is written unescaped.

use std::collections::BTreeMap;
use std::fmt::Write;
use zfsync_history::{rfc3339, Attempt, Outcome};
use zfsync_text::html::escape;
use zfsync_text::size;

/// What the report is about: where it was made and the window it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heading {
    pub host: String,
    /// Unix seconds: the window's start and end (the time of the report).
    pub since: i64,
    pub now: i64,
}

/// How the window's transfers ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub done: usize,
    pub up_to_date: usize,
    /// Failed or refused.
    pub failed: usize,
    pub skipped: usize,
    pub in_flight: usize,
}

impl Counts {
    pub fn of<'a>(attempts: impl IntoIterator<Item = &'a Attempt>) -> Counts {
        let mut c = Counts::default();
        for a in attempts {
            c.total += 1;
            match a.end.as_ref().map(|e| e.outcome) {
                None => c.in_flight += 1,
                Some(Outcome::Done) => c.done += 1,
                Some(Outcome::UpToDate) => c.up_to_date += 1,
                Some(Outcome::Refused | Outcome::Failed) => c.failed += 1,
                Some(Outcome::Skipped) => c.skipped += 1,
            }
        }
        c
    }

    /// `12 transfers: 9 done, 1 up to date, 2 failed` (the kinds with none left out).
    pub fn words(&self) -> String {
        let s = if self.total == 1 { "" } else { "s" };
        let mut text = format!("{} transfer{s}", self.total);
        let parts: Vec<String> = [
            (self.done, "done"),
            (self.up_to_date, "up to date"),
            (self.failed, "failed"),
            (self.skipped, "skipped"),
            (self.in_flight, "in flight"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if !parts.is_empty() {
            text.push_str(": ");
            text.push_str(&parts.join(", "));
        }
        text
    }
}

const STYLE: &str = "\
body{font-family:sans-serif;font-size:14px;color:#222;margin:1em}
h1{font-size:20px;margin:0 0 .3em}
h2{font-size:16px;margin:1.2em 0 .4em}
p{margin:.2em 0}
table{border-collapse:collapse}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#eee}
td.n{text-align:right;white-space:nowrap}
td.error{white-space:pre-wrap;max-width:40em}
tr.failed td{background:#fdd}
.bad{color:#b00;font-weight:bold}
.good{color:#070;font-weight:bold}
";

/// Whether the attempt failed (failed or refused).
fn failed(a: &Attempt) -> bool {
    a.end.as_ref().is_some_and(|e| e.outcome.is_failure())
}

/// The result as the report says it.
fn result(a: &Attempt) -> &'static str {
    a.end
        .as_ref()
        .map_or(zfsync_history::format::IN_FLIGHT, |e| e.outcome.as_str())
}

/// The attempts in the report's order: the failures first, then the rest, each newest
/// first (the order the history gives them in).
pub fn ordered(attempts: &[Attempt]) -> Vec<&Attempt> {
    let mut out: Vec<&Attempt> = attempts.iter().filter(|a| failed(a)).collect();
    out.extend(attempts.iter().filter(|a| !failed(a)));
    out
}

/// The whole document.
pub fn render(heading: &Heading, attempts: &[Attempt]) -> String {
    let counts = Counts::of(attempts);
    let host = escape(&heading.host);
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>zfsync report {host}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
         <h1>zfsync report for {host}</h1>\n\
         <p>From {} to {}</p>\n<p class=\"{}\">{}</p>\n",
        rfc3339(heading.since),
        rfc3339(heading.now),
        if counts.failed > 0 { "bad" } else { "good" },
        escape(&counts.words()),
    );
    out.push_str("<h2>Transfers</h2>\n");
    if attempts.is_empty() {
        out.push_str("<p>Nothing was sent or received in this window.</p>\n");
    } else {
        transfers(&ordered(attempts), &mut out);
    }
    out.push_str("<h2>Per dataset</h2>\n");
    if attempts.is_empty() {
        out.push_str("<p>No dataset.</p>\n");
    } else {
        summary(attempts, &mut out);
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// One row per attempt.
fn transfers(attempts: &[&Attempt], out: &mut String) {
    out.push_str(
        "<table class=\"transfers\">\n<tr><th>Started</th><th>Dataset</th><th>Peer</th>\
         <th>Role</th><th>Kind</th><th>From</th><th>To</th><th>Bytes</th><th>Time</th>\
         <th>Result</th><th>Error</th></tr>\n",
    );
    for a in attempts {
        let s = &a.start;
        let end = a.end.as_ref();
        let dash = || "-".to_string();
        let _ = writeln!(
            out,
            "<tr{}><td>{}</td><td class=\"dataset\">{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"result\">{}</td><td class=\"error\">{}</td></tr>",
            if failed(a) { " class=\"failed\"" } else { "" },
            rfc3339(s.started),
            escape(&s.dataset),
            escape(&s.peer),
            s.role.as_str(),
            s.kind.map_or("-", |k| k.as_str()),
            s.from.as_ref().map_or_else(dash, |f| escape(&f.name)),
            s.to.as_ref().map_or_else(dash, |t| escape(&t.name)),
            end.map_or_else(dash, |e| size(e.bytes)),
            end.map_or_else(dash, |e| format!("{:.1}s", e.seconds)),
            result(a),
            end.and_then(|e| e.error.as_deref())
                .map_or_else(String::new, escape),
        );
    }
    out.push_str("</table>\n");
}

/// One dataset, peer and role's attempts over the window, newest first, and their sums.
#[derive(Default)]
struct Totals<'a> {
    attempts: Vec<&'a Attempt>,
    bytes: u64,
    seconds: f64,
}

/// One row per dataset, peer and role: the transfers, how they ended, bytes and time, and
/// the newest result; the failing ones first.
fn summary(attempts: &[Attempt], out: &mut String) {
    let mut by_key: BTreeMap<(&str, &str, &str), Totals> = BTreeMap::new();
    for a in attempts {
        let s = &a.start;
        let t = by_key
            .entry((s.dataset.as_str(), s.peer.as_str(), s.role.as_str()))
            .or_default();
        if let Some(e) = &a.end {
            t.bytes = t.bytes.saturating_add(e.bytes);
            t.seconds += e.seconds;
        }
        t.attempts.push(a);
    }
    // Newest first within a key, as the history gives them: the first is the last result.
    let mut rows: Vec<_> = by_key.into_iter().collect();
    rows.sort_by_key(|(_, t)| !failed(t.attempts[0]));
    out.push_str(
        "<table class=\"summary\">\n<tr><th>Dataset</th><th>Peer</th><th>Role</th>\
         <th>Transfers</th><th>Done</th><th>Failed</th><th>Bytes</th><th>Time</th>\
         <th>Last result</th></tr>\n",
    );
    for ((dataset, peer, role), t) in rows {
        let c = Counts::of(t.attempts.iter().copied());
        let last = t.attempts[0];
        let _ = writeln!(
            out,
            "<tr{}><td class=\"dataset\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{:.1}s</td><td class=\"result\">{}</td></tr>",
            if failed(last) {
                " class=\"failed\""
            } else {
                ""
            },
            escape(dataset),
            escape(peer),
            role,
            c.total,
            c.done + c.up_to_date,
            c.failed,
            size(t.bytes),
            t.seconds,
            result(last),
        );
    }
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use zfsync_history::{AttemptEnd, AttemptId, AttemptStart, Kind, Role, SnapshotRef};

    /// 2026-12-02T00:00:00Z.
    const DEC2: i64 = 1_796_169_600;

    fn attempt(id: i64, dataset: &str, outcome: Option<&str>, error: &str) -> Attempt {
        Attempt {
            id: AttemptId(id),
            start: AttemptStart {
                run: None,
                role: Role::Send,
                job: "bk1".into(),
                peer: "backup:7611".into(),
                dataset: dataset.into(),
                kind: Some(Kind::Incremental),
                from: Some(SnapshotRef {
                    name: "s1".into(),
                    guid: 1,
                }),
                to: Some(SnapshotRef {
                    name: "s2".into(),
                    guid: 2,
                }),
                raw: false,
                compressed: false,
                attempt: 1,
                started: DEC2 - id * 60,
            },
            end: outcome.map(|o| AttemptEnd {
                ended: DEC2 - id * 60 + 5,
                outcome: Outcome::parse(o).unwrap(),
                bytes: 1_500_000,
                seconds: 4.25,
                error: (!error.is_empty()).then(|| error.to_string()),
            }),
        }
    }

    fn heading() -> Heading {
        Heading {
            host: "src<1>".into(),
            since: DEC2 - 86_400,
            now: DEC2,
        }
    }

    #[test]
    fn counts_in_words() {
        let all = [
            attempt(1, "tank/a", Some("done"), ""),
            attempt(2, "tank/b", Some("failed"), "boom"),
            attempt(3, "tank/c", Some("refused"), "diverged"),
            attempt(4, "tank/d", None, ""),
        ];
        assert_eq!(
            Counts::of(&all).words(),
            "4 transfers: 1 done, 2 failed, 1 in flight"
        );
        assert_eq!(Counts::of(&[] as &[Attempt]).words(), "0 transfers");
    }

    #[test]
    fn failures_come_first_then_the_rest_newest_first() {
        let all = [
            attempt(1, "tank/a", Some("done"), ""),
            attempt(2, "tank/b", Some("failed"), "boom"),
            attempt(3, "tank/c", Some("up-to-date"), ""),
            attempt(4, "tank/d", Some("refused"), "diverged"),
        ];
        let ids: Vec<i64> = ordered(&all).iter().map(|a| a.id.0).collect();
        assert_eq!(ids, [2, 4, 1, 3]);
    }

    #[test]
    fn untrusted_text_is_escaped() {
        let all = [
            attempt(1, "tank/<script>alert(1)</script>", Some("done"), ""),
            attempt(
                2,
                "tank/a&b",
                Some("failed"),
                "cannot <b>receive</b> & \"x\"",
            ),
        ];
        let page = render(&heading(), &all);
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(page.contains("tank/&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("tank/a&amp;b"));
        assert!(page.contains("cannot &lt;b&gt;receive&lt;/b&gt; &amp; &quot;x&quot;"));
        assert!(page.contains("<title>zfsync report src&lt;1&gt;</title>"));
    }

    #[test]
    fn the_page_stands_alone() {
        let page = render(&heading(), &[attempt(1, "tank/a", Some("done"), "")]);
        for outside in ["<script", "<link", "src=", "href=", "@import", "url("] {
            assert!(!page.contains(outside), "{outside}");
        }
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("From 2026-12-01T00:00:00Z to 2026-12-02T00:00:00Z"));
        assert!(page.contains("<td class=\"n\">1.5 MB</td><td class=\"n\">4.2s</td>"));
    }

    #[test]
    fn the_summary_has_a_row_per_dataset_failing_first() {
        let all = [
            attempt(1, "tank/a", Some("done"), ""),
            attempt(2, "tank/a", Some("done"), ""),
            attempt(3, "tank/z", Some("failed"), "boom"),
        ];
        let page = render(&heading(), &all);
        let summary = &page[page.find("<table class=\"summary\">").unwrap()..];
        assert_eq!(summary.matches("<td class=\"dataset\">").count(), 2);
        let z = summary.find(">tank/z<").unwrap();
        let a = summary.find(">tank/a<").unwrap();
        assert!(z < a);
        assert!(summary.contains("<td class=\"n\">2</td><td class=\"n\">2</td><td class=\"n\">0</td><td class=\"n\">3.0 MB</td>"));
    }

    #[test]
    fn an_empty_window_says_so() {
        let page = render(&heading(), &[]);
        assert!(page.contains("Nothing was sent or received in this window."));
        assert!(page.contains("<p class=\"good\">0 transfers</p>"));
    }
}
