//! What a check found, and the three ways of saying it: monitoring-plugin text
//! (`ZFSYNC REPLICATION WARNING - summary | perfdata`, then one line per problem), JSON,
//! and a node_exporter textfile (Prometheus text format).
//!
//! Owns the statuses (OK, WARNING, CRITICAL, UNKNOWN: exit 0, 1, 2, 3), how the worst of
//! several is chosen, and every output byte. Must not gather or judge anything: the
//! checks fill in [`Verdict`]s.

use super::Thresholds;
use std::fmt::Write;
use zfsync_history::format::json_string;

/// A check's result, as monitoring plugins have it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Status {
    /// The exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }

    /// How bad: OK < WARNING < UNKNOWN < CRITICAL. A check that could not look is worse
    /// than a warning (nobody knows what it would have found), a critical finding worse
    /// than not knowing.
    fn rank(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Unknown => 2,
            Status::Critical => 3,
        }
    }

    /// The worse of the two.
    pub fn max(self, other: Status) -> Status {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// The status of `value` against `warning` and `critical` (above either, not at it).
    pub fn of(value: i64, warning: i64, critical: i64) -> Status {
        if value > critical {
            Status::Critical
        } else if value > warning {
            Status::Warning
        } else {
            Status::Ok
        }
    }
}

/// One thing found wrong: a line of output naming the dataset or pool and the numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub status: Status,
    pub text: String,
}

/// A kind of number a check reports: its Prometheus name and help.
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    /// The unit of monitoring-plugin perfdata: `s`, `%` or none.
    pub unit: &'static str,
}

/// One number a check reports, with what it is about and the thresholds it was judged by.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub family: &'static Family,
    /// What the number is about (dataset, peer, pool...), in this order in every format.
    pub labels: Vec<(&'static str, String)>,
    pub value: i64,
    pub warning: Option<i64>,
    pub critical: Option<i64>,
}

impl Metric {
    /// `value` about `labels`, judged by `limits` if it was.
    pub fn new(
        family: &'static Family,
        labels: &[(&'static str, String)],
        value: i64,
        limits: Option<Thresholds>,
    ) -> Metric {
        Metric {
            family,
            labels: labels.to_vec(),
            value,
            warning: limits.map(|t| t.warning),
            critical: limits.map(|t| t.critical),
        }
    }

    /// Its perfdata label: the label values and the family's name without `zfsync_`,
    /// the check's word and the unit (`tank/a 10.0.0.2:7611 send since_success`).
    fn perf_label(&self) -> String {
        let name = self.family.name;
        let what = name
            .splitn(3, '_')
            .nth(2)
            .unwrap_or(name)
            .trim_end_matches("_seconds")
            .trim_end_matches("_percent");
        let mut parts: Vec<&str> = self.labels.iter().map(|(_, v)| v.as_str()).collect();
        parts.push(what);
        parts.join(" ")
    }
}

/// What one check found.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// `snapshots`, `replication`, `health`, `capacity`, `all`.
    pub check: &'static str,
    pub status: Status,
    /// The first line's text after the status.
    pub summary: String,
    pub problems: Vec<Problem>,
    pub metrics: Vec<Metric>,
    /// The checks `all` ran, each kept whole.
    pub parts: Vec<Verdict>,
}

impl Verdict {
    pub fn new(check: &'static str) -> Verdict {
        Verdict {
            check,
            status: Status::Ok,
            summary: String::new(),
            problems: Vec::new(),
            metrics: Vec::new(),
            parts: Vec::new(),
        }
    }

    /// A check that could not run: UNKNOWN, and why.
    pub fn unknown(check: &'static str, why: impl Into<String>) -> Verdict {
        Verdict {
            status: Status::Unknown,
            summary: why.into(),
            ..Verdict::new(check)
        }
    }

    /// Adds a problem; the verdict becomes at least as bad.
    pub fn problem(&mut self, status: Status, text: impl Into<String>) {
        self.status = self.status.max(status);
        self.problems.push(Problem {
            status,
            text: text.into(),
        });
    }

    /// The summary when something is wrong: the count by status of the `total` things
    /// (`thing`s) checked, and the worst problem.
    pub fn summarise_problems(&mut self, total: usize, thing: &str) {
        let with = |s: Status| self.problems.iter().filter(|p| p.status == s).count();
        let counts: Vec<String> = [Status::Critical, Status::Unknown, Status::Warning]
            .into_iter()
            .filter(|s| with(*s) > 0)
            .map(|s| format!("{} {}", with(s), s.word().to_lowercase()))
            .collect();
        let worst = self
            .problems
            .iter()
            .find(|p| p.status == self.status)
            .map(|p| p.text.as_str())
            .unwrap_or_default();
        let of = count(total, thing);
        self.summary = format!("{} of {of}: {worst}", counts.join(", "));
    }

    /// `all`: the worst of `parts`, each kept.
    pub fn all(parts: Vec<Verdict>) -> Verdict {
        let status = parts
            .iter()
            .fold(Status::Ok, |worst, p| worst.max(p.status));
        let summary = parts
            .iter()
            .map(|p| format!("{} {}", p.check, p.status.word()))
            .collect::<Vec<_>>()
            .join(", ");
        Verdict {
            status,
            summary,
            parts,
            ..Verdict::new("all")
        }
    }

    fn every_metric(&self) -> Vec<&Metric> {
        let mut all: Vec<&Metric> = self.metrics.iter().collect();
        for p in &self.parts {
            all.extend(p.every_metric());
        }
        all
    }

    /// Monitoring-plugin text: `ZFSYNC CHECK STATUS - summary | perfdata`, then each
    /// problem on a line of its own (`all`: each check's, after the check's name).
    pub fn nagios(&self) -> String {
        let mut out = format!(
            "ZFSYNC {} {} - {}",
            self.check.to_uppercase(),
            self.status.word(),
            one_line(&self.summary)
        );
        let perf: Vec<String> = self.every_metric().iter().map(|m| perfdata(m)).collect();
        if !perf.is_empty() {
            out.push_str(" | ");
            out.push_str(&perf.join(" "));
        }
        out.push('\n');
        fn lines(out: &mut String, v: &Verdict, prefix: &str) {
            for p in &v.problems {
                let _ = writeln!(out, "{prefix}{}: {}", p.status.word(), one_line(&p.text));
            }
        }
        lines(&mut out, self, "");
        for part in &self.parts {
            if part.problems.is_empty() && part.status != Status::Ok {
                // A part that could not run has its reason as its summary.
                let _ = writeln!(
                    out,
                    "{} {}: {}",
                    part.check,
                    part.status.word(),
                    one_line(&part.summary)
                );
            }
            lines(&mut out, part, &format!("{} ", part.check));
        }
        out
    }

    /// One JSON object: check, status, exit code, summary, problems, metrics, and for
    /// `all` the checks it ran.
    pub fn json(&self) -> String {
        let mut out = String::new();
        self.json_into(&mut out);
        out.push('\n');
        out
    }

    fn json_into(&self, out: &mut String) {
        out.push_str("{\"check\":");
        json_string(self.check, out);
        out.push_str(",\"status\":");
        json_string(self.status.word(), out);
        let _ = write!(out, ",\"exit\":{},\"summary\":", self.status.code());
        json_string(&self.summary, out);
        out.push_str(",\"problems\":[");
        for (i, p) in self.problems.iter().enumerate() {
            out.push_str(if i == 0 {
                "{\"status\":"
            } else {
                ",{\"status\":"
            });
            json_string(p.status.word(), out);
            out.push_str(",\"text\":");
            json_string(&p.text, out);
            out.push('}');
        }
        out.push_str("],\"metrics\":[");
        for (i, m) in self.metrics.iter().enumerate() {
            out.push_str(if i == 0 { "{\"name\":" } else { ",{\"name\":" });
            json_string(m.family.name, out);
            out.push_str(",\"labels\":{");
            for (j, (k, v)) in m.labels.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                json_string(k, out);
                out.push(':');
                json_string(v, out);
            }
            let opt = |v: Option<i64>| v.map_or("null".to_string(), |n| n.to_string());
            let _ = write!(
                out,
                "}},\"value\":{},\"warning\":{},\"critical\":{}}}",
                m.value,
                opt(m.warning),
                opt(m.critical)
            );
        }
        out.push(']');
        if !self.parts.is_empty() {
            out.push_str(",\"checks\":[");
            for (i, p) in self.parts.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                p.json_into(out);
            }
            out.push(']');
        }
        out.push('}');
    }

    /// A node_exporter textfile: `zfsync_check_status{check="..."}` for the check (and
    /// each of `all`'s), then every number, each family with its HELP and TYPE once.
    pub fn prom(&self) -> String {
        let mut out = String::from(
            "# HELP zfsync_check_status Result of a zfsync check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.\n\
             # TYPE zfsync_check_status gauge\n",
        );
        let _ = writeln!(
            out,
            "zfsync_check_status{{check=\"{}\"}} {}",
            self.check,
            self.status.code()
        );
        for p in &self.parts {
            let _ = writeln!(
                out,
                "zfsync_check_status{{check=\"{}\"}} {}",
                p.check,
                p.status.code()
            );
        }
        let metrics = self.every_metric();
        let mut families: Vec<&Family> = Vec::new();
        for m in &metrics {
            if !families.contains(&m.family) {
                families.push(m.family);
            }
        }
        for f in families {
            let _ = writeln!(out, "# HELP {} {}\n# TYPE {} gauge", f.name, f.help, f.name);
            for m in metrics.iter().filter(|m| m.family == f) {
                let labels: Vec<String> = m
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", prom_escape(v)))
                    .collect();
                let _ = writeln!(out, "{}{{{}}} {}", f.name, labels.join(","), m.value);
            }
        }
        out
    }
}

/// `'label'=VALUE[UNIT][;WARN;CRIT[;0;100]]`, the label quoted (a `'` in it doubled);
/// thresholds only where the number was judged, the range only for percentages.
fn perfdata(m: &Metric) -> String {
    let opt = |v: Option<i64>| v.map_or(String::new(), |n| n.to_string());
    let mut s = format!(
        "'{}'={}{}",
        m.perf_label().replace('\'', "''").replace('=', "_"),
        m.value,
        m.family.unit
    );
    if m.warning.is_some() || m.critical.is_some() || m.family.unit == "%" {
        s.push_str(&format!(";{};{}", opt(m.warning), opt(m.critical)));
    }
    if m.family.unit == "%" {
        s.push_str(";0;100");
    }
    s
}

/// `1 pool`, `2 pools`.
pub fn count(n: usize, thing: &str) -> String {
    match n {
        1 => format!("1 {thing}"),
        n => format!("{n} {thing}s"),
    }
}

/// A label value in the Prometheus text format: `\`, `"` and newlines escaped.
fn prom_escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Text as one line: zfs's stderr and a pool's status may span several.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    static LAG: Family = Family {
        name: "zfsync_replication_lag_seconds",
        help: "How far the replica is behind.",
        unit: "s",
    };
    static CAP: Family = Family {
        name: "zfsync_pool_capacity_percent",
        help: "Pool capacity.",
        unit: "%",
    };

    fn metric(family: &'static Family, labels: &[(&'static str, &str)], value: i64) -> Metric {
        Metric {
            family,
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            value,
            warning: Some(10),
            critical: Some(20),
        }
    }

    fn verdict() -> Verdict {
        let mut v = Verdict::new("replication");
        v.metrics
            .push(metric(&LAG, &[("dataset", "tank/a"), ("peer", "b:1")], 5));
        v.metrics.push(metric(
            &LAG,
            &[("dataset", "tank/it's"), ("peer", "b:1")],
            25,
        ));
        v.problem(Status::Critical, "tank/it's to b:1: lag 25s");
        v.summarise_problems(2, "dataset");
        v
    }

    #[test]
    fn statuses_exit_and_order() {
        use Status::*;
        assert_eq!(
            [Ok, Warning, Critical, Unknown].map(Status::code),
            [0, 1, 2, 3]
        );
        assert_eq!(Ok.max(Warning), Warning);
        assert_eq!(Warning.max(Unknown), Unknown);
        assert_eq!(Critical.max(Unknown), Critical);
        assert_eq!(Unknown.max(Ok), Unknown);
        for (value, want) in [(10, Ok), (11, Warning), (20, Warning), (21, Critical)] {
            assert_eq!(Status::of(value, 10, 20), want, "{value}");
        }
    }

    #[test]
    fn nagios_text_has_the_summary_perfdata_and_a_line_per_problem() {
        assert_eq!(
            verdict().nagios(),
            "ZFSYNC REPLICATION CRITICAL - 1 critical of 2 datasets: tank/it's to b:1: lag 25s \
             | 'tank/a b:1 lag'=5s;10;20 'tank/it''s b:1 lag'=25s;10;20\n\
             CRITICAL: tank/it's to b:1: lag 25s\n"
        );
    }

    #[test]
    fn all_keeps_each_checks_lines_and_takes_the_worst() {
        let mut health = Verdict::new("health");
        health.summary = "1 pool ONLINE".into();
        health.metrics.push(metric(&CAP, &[("pool", "tank")], 50));
        let broken = Verdict::unknown("capacity", "zpool: not found");
        let all = Verdict::all(vec![verdict(), health, broken]);
        assert_eq!(all.status, Status::Critical);
        let text = all.nagios();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with(
                "ZFSYNC ALL CRITICAL - replication CRITICAL, health OK, capacity UNKNOWN | "
            ),
            "{text}"
        );
        assert!(
            lines[0].ends_with("'tank capacity'=50%;10;20;0;100"),
            "{text}"
        );
        assert_eq!(
            &lines[1..],
            [
                "replication CRITICAL: tank/it's to b:1: lag 25s",
                "capacity UNKNOWN: zpool: not found"
            ]
        );
    }

    #[test]
    fn prometheus_textfile() {
        let all = Verdict::all(vec![verdict()]);
        assert_eq!(
            all.prom(),
            "# HELP zfsync_check_status Result of a zfsync check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.\n\
             # TYPE zfsync_check_status gauge\n\
             zfsync_check_status{check=\"all\"} 2\n\
             zfsync_check_status{check=\"replication\"} 2\n\
             # HELP zfsync_replication_lag_seconds How far the replica is behind.\n\
             # TYPE zfsync_replication_lag_seconds gauge\n\
             zfsync_replication_lag_seconds{dataset=\"tank/a\",peer=\"b:1\"} 5\n\
             zfsync_replication_lag_seconds{dataset=\"tank/it's\",peer=\"b:1\"} 25\n"
        );
        assert_eq!(prom_escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn json_object() {
        let mut v = Verdict::unknown("health", "zpool \"x\" failed");
        v.metrics.push(metric(&CAP, &[("pool", "tank")], 50));
        assert_eq!(
            v.json(),
            "{\"check\":\"health\",\"status\":\"UNKNOWN\",\"exit\":3,\
             \"summary\":\"zpool \\\"x\\\" failed\",\"problems\":[],\"metrics\":[\
             {\"name\":\"zfsync_pool_capacity_percent\",\"labels\":{\"pool\":\"tank\"},\
             \"value\":50,\"warning\":10,\"critical\":20}]}\n"
        );
    }
}
