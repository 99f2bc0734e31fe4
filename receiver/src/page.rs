//! The status page (`/` of `--http`): one HTML document a person reads at a glance, with
//! its two charts drawn here as inline SVG. No script, no style sheet or font from
//! elsewhere: the page works offline, behind any proxy, and under a Content-Security-
//! Policy that forbids everything but inline style.
//!
//! It owns the layout and the words; what is shown comes from a `View` (`status.rs`). Every
//! name from the history (datasets, snapshots, errors: some of them came over the network)
//! is HTML-escaped here, and at most [`MAX_ROWS`] datasets are listed.

use crate::status::{Charts, Row, View, CHART_DAYS};
use std::fmt::Write;
use zfsync_history::rfc3339;
use zfsync_text::html::escape;

/// Datasets listed on the page; the rest are counted ("and N more").
pub(crate) const MAX_ROWS: usize = 500;

/// Seconds as a person says them: `45s`, `12m 5s`, `3h 12m`, `4d 3h`.
pub(crate) fn duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

const STYLE: &str = "
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 75em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.1em; margin-top: 1.5em; }
.when { color: #666; margin-top: 0; }
.summary { font-size: 1.15em; }
.bad { color: #b00020; font-weight: bold; }
.note { color: #666; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.3em 0.6em; border-bottom: 1px solid #ddd;
         vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; white-space: nowrap; }
tr.failing td { background: #fde8ea; }
tr.failing td.result { color: #b00020; font-weight: bold; }
td.error { font-family: monospace; font-size: 0.9em; white-space: pre-wrap;
           word-break: break-word; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5em; }
figure { margin: 0; }
figure h2 { margin-bottom: 0.2em; }
figure .note { margin-top: 0; }
.ago { white-space: nowrap; }
svg { background: #fafafa; border: 1px solid #ddd; }
svg text { font-size: 11px; fill: #444; }
";

/// The whole page.
pub(crate) fn render(view: &View, charts: &Charts) -> String {
    let mut out = String::with_capacity(16 << 10);
    let target = escape(&view.target);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"refresh\" content=\"60\">\n\
         <title>zfsync-recv {target}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>zfsync-recv {target}</h1>\n<p class=\"when\">as of {}</p>\n",
        rfc3339(view.now)
    );
    summary(&mut out, view);
    table(&mut out, view);
    // Side by side, so a 1200-pixel window shows the table and both charts.
    out.push_str("<div class=\"charts\">\n<figure>\n");
    let _ = writeln!(out, "<h2>Lag over the last {CHART_DAYS} days</h2>");
    match &charts.lag {
        Some((dataset, points)) if points.len() >= 2 => {
            let _ = writeln!(
                out,
                "<p class=\"note\">of the dataset with the largest lag, {}</p>",
                escape(dataset)
            );
            lag_chart(&mut out, points, view.now);
        }
        _ => out.push_str("<p class=\"note\">no successful receive to draw yet</p>\n"),
    }
    out.push_str("</figure>\n<figure>\n");
    let _ = writeln!(
        out,
        "<h2>Bytes received per day (UTC)</h2>\n<p class=\"note\">the last {CHART_DAYS} days, \
         all datasets</p>"
    );
    bytes_chart(&mut out, charts, view.now);
    out.push_str("</figure>\n</div>\n");
    let _ = writeln!(
        out,
        "<p class=\"note\">This process: {} received in {} streams since it started; \
         <a href=\"/metrics\">/metrics</a>, <a href=\"/status.json\">/status.json</a>.</p>\n\
         </body>\n</html>",
        bytes(view.bytes),
        view.datasets
    );
    out
}

fn summary(out: &mut String, view: &View) {
    let failing = view.failing();
    let failing_text = if failing > 0 {
        format!("<span class=\"bad\">{failing} failing</span>")
    } else {
        "0 failing".to_owned()
    };
    let worst = match view.worst() {
        Some(r) => format!(
            "worst lag {} ({})",
            duration(r.lag.unwrap_or(0)),
            escape(&r.dataset)
        ),
        None => "no lag known yet".to_owned(),
    };
    let _ = writeln!(
        out,
        "<p class=\"summary\">{} datasets, {failing_text}, {worst}, {} in flight</p>",
        view.rows.len(),
        view.in_flight.len()
    );
    if let Some(e) = &view.history_error {
        let _ = writeln!(
            out,
            "<p class=\"bad\">The history cannot be read: {}</p>",
            escape(e)
        );
    }
}

fn table(out: &mut String, view: &View) {
    out.push_str(
        "<table>\n<tr><th>Dataset</th><th>Lag</th><th>Last result</th><th>Last success</th>\
         <th>Newest snapshot</th><th>Last error</th></tr>\n",
    );
    for r in view.rows.iter().take(MAX_ROWS) {
        row(out, r, view.now);
    }
    out.push_str("</table>\n");
    if view.rows.len() > MAX_ROWS {
        let _ = writeln!(
            out,
            "<p class=\"note\">and {} more (see /status.json)</p>",
            view.rows.len() - MAX_ROWS
        );
    }
}

fn row(out: &mut String, r: &Row, now: i64) {
    let class = if r.failing { " class=\"failing\"" } else { "" };
    let lag = match r.lag {
        Some(l) => format!(
            "<td class=\"num lag\" data-seconds=\"{l}\">{}</td>",
            duration(l)
        ),
        None => "<td class=\"num lag\">-</td>".to_owned(),
    };
    let mut result = escape(r.result);
    if r.failures_since_success > 1 {
        let _ = write!(result, " ({} times)", r.failures_since_success);
    }
    if let Some(f) = &r.in_flight {
        let _ = write!(
            result,
            "<br><span class=\"note\">{} stream from {} for {}</span>",
            f.kind.as_str(),
            escape(&f.peer),
            duration(now - f.since)
        );
    }
    let success = match r.last_success {
        Some(t) => format!(
            "<span class=\"ago\">{} ago</span><br><span class=\"note\">{}</span>",
            duration(now - t),
            rfc3339(t)
        ),
        None => "never".to_owned(),
    };
    let newest = r
        .newest
        .as_ref()
        .map_or_else(|| "-".to_owned(), |s| escape(&s.name));
    let error = if r.failing {
        r.last_error.as_deref().map_or_else(String::new, escape)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "<tr{class}><td class=\"dataset\">{}</td>{lag}<td class=\"result\">{result}</td>\
         <td>{success}</td><td>{newest}</td><td class=\"error\">{error}</td></tr>",
        escape(&r.dataset)
    );
}

const W: f64 = 540.0;
const H: f64 = 200.0;
/// Room for the axis labels: left, right, top, bottom.
const PAD: (f64, f64, f64, f64) = (70.0, 15.0, 15.0, 30.0);

fn svg_open(out: &mut String, title: &str) {
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">",
        escape(title)
    );
    let (l, r, t, b) = PAD;
    let _ = writeln!(
        out,
        "<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/>\
         <line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{}\" stroke=\"#888\"/>",
        H - b,
        W - r,
        H - b,
        H - b
    );
}

/// A y-axis label at the top (the maximum) and 0 at the bottom.
fn y_labels(out: &mut String, top: &str) {
    let (l, _, t, b) = PAD;
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>",
        l - 6.0,
        t + 4.0,
        escape(top),
        l - 6.0,
        H - b
    );
}

/// Labels under the x axis at its start and end.
fn x_labels(out: &mut String, first: &str, last: &str) {
    let (l, r, _, _) = PAD;
    let _ = writeln!(
        out,
        "<text x=\"{l}\" y=\"{}\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        H - 10.0,
        escape(first),
        W - r,
        H - 10.0,
        escape(last)
    );
}

/// The date part of an RFC 3339 time.
fn date(t: i64) -> String {
    rfc3339(t)[..10].to_owned()
}

fn lag_chart(out: &mut String, points: &[(i64, i64)], now: i64) {
    let (l, r, t, b) = PAD;
    let t0 = points.first().map_or(now, |p| p.0);
    let span = (now - t0).max(1) as f64;
    let max = points.iter().map(|p| p.1).max().unwrap_or(0).max(1) as f64;
    svg_open(out, "lag over time");
    let xy: Vec<String> = points
        .iter()
        .map(|&(x, y)| {
            let px = l + (x - t0) as f64 / span * (W - l - r);
            let py = H - b - y as f64 / max * (H - t - b);
            format!("{px:.1},{py:.1}")
        })
        .collect();
    let _ = writeln!(
        out,
        "<polyline fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"2\" points=\"{}\"/>",
        xy.join(" ")
    );
    y_labels(out, &duration(max as i64));
    x_labels(out, &rfc3339(t0), &format!("{} (now)", rfc3339(now)));
    out.push_str("</svg>\n");
}

fn bytes_chart(out: &mut String, charts: &Charts, now: i64) {
    let (l, r, t, b) = PAD;
    let today = now.div_euclid(86_400);
    let first = today - (CHART_DAYS - 1);
    let max = charts
        .per_day
        .iter()
        .map(|d| d.bytes)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    svg_open(out, "bytes received per day");
    let slot = (W - l - r) / CHART_DAYS as f64;
    for d in &charts.per_day {
        if d.day < first || d.day > today {
            continue;
        }
        let height = d.bytes as f64 / max * (H - t - b);
        let x = l + (d.day - first) as f64 * slot + 1.0;
        let _ = writeln!(
            out,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\" \
             fill=\"#3a8f5c\"><title>{}: {} in {} streams</title></rect>",
            H - b - height,
            (slot - 2.0).max(1.0),
            date(d.day * 86_400),
            bytes(d.bytes),
            d.streams
        );
    }
    y_labels(out, &bytes(max as u64));
    x_labels(out, &date(first * 86_400), &date(today * 86_400));
    out.push_str("</svg>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use zfsync_history::DayTotal;

    #[test]
    fn names_are_escaped() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn durations_and_sizes_read_as_a_person_says_them() {
        for (secs, want) in [
            (-5, "0s"),
            (45, "45s"),
            (725, "12m 5s"),
            (11_520, "3h 12m"),
            (356_400, "4d 3h"),
        ] {
            assert_eq!(duration(secs), want);
        }
        for (n, want) in [(512, "512 B"), (1536, "1.5 KiB"), (3 << 30, "3.0 GiB")] {
            assert_eq!(bytes(n), want);
        }
    }

    #[test]
    fn the_page_shows_every_dataset_failures_first_and_escaped() {
        let view = crate::http::tests::view();
        let charts = Charts {
            per_day: vec![DayTotal {
                day: view.now / 86_400,
                bytes: 4096,
                streams: 2,
            }],
            lag: Some((
                "tank/b/we\"ird\\name".into(),
                vec![(view.now - 100, 0), (view.now, 100)],
            )),
        };
        let page = render(&view, &charts);
        assert!(page.contains("<title>zfsync-recv tank/b</title>"));
        assert!(page.contains("3 datasets, <span class=\"bad\">1 failing</span>, worst lag 1m 0s"));
        let weird = page
            .find("tank/b/we&quot;ird\\name</td>")
            .expect("escaped name");
        let plain = page.find(">tank/b</td>").expect("a plain name");
        assert!(weird < plain, "failures first");
        assert!(page.contains("diverged: has &quot;local&quot;\nsnapshots"));
        assert!(page.contains("data-seconds=\"30\">30s</td>"));
        assert_eq!(page.matches("<svg ").count(), 2);
        assert!(page.contains("<polyline"));
        assert!(page.contains("<rect "));
        assert!(!page.contains("<script"));
    }

    #[test]
    fn a_long_list_is_cut_and_counted() {
        let mut view = crate::http::tests::view();
        let model = view.rows[1].clone();
        view.rows = (0..MAX_ROWS + 7)
            .map(|i| Row {
                dataset: format!("tank/b/d{i}"),
                ..model.clone()
            })
            .collect();
        let charts = Charts {
            per_day: Vec::new(),
            lag: None,
        };
        let page = render(&view, &charts);
        assert_eq!(page.matches("<td class=\"dataset\">").count(), MAX_ROWS);
        assert!(page.contains("and 7 more"));
        assert!(page.contains("no successful receive to draw yet"));
    }
}
