//! Attempts as text, for `zfsync history --format table|csv|json`.
//!
//! One list of fields per attempt (`FIELDS`, `cells`) feeds all three formats, so they
//! always show the same things under the same names. Times are RFC 3339 UTC. An attempt
//! still in flight has the outcome `in-flight` and no end, bytes or seconds.
//!
//! - table: aligned columns for a person, a chosen subset of the fields, one line per
//!   attempt (control characters in the error text become spaces);
//! - csv: every field, a header line, RFC 4180 quoting, lines ending in `\n`;
//! - json: an array of objects, one per line; GUIDs are strings, since a JSON reader may
//!   hold numbers as doubles and lose their low bits.
//!
//! This module writes nothing anywhere: it returns strings.

use crate::record::Attempt;
use crate::time::rfc3339;
use std::fmt::Write;

/// What an attempt whose end is not recorded yet shows as its outcome.
pub const IN_FLIGHT: &str = "in-flight";

/// An output format of `zfsync history`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Table, Format::Csv, Format::Json];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == s)
    }

    pub fn render(self, attempts: &[Attempt]) -> String {
        match self {
            Format::Table => table(attempts),
            Format::Csv => csv(attempts),
            Format::Json => json(attempts),
        }
    }
}

/// One field's value, typed so JSON can tell numbers from text and absent from empty.
#[derive(Clone, Debug, PartialEq)]
enum Cell {
    Null,
    Text(String),
    Int(i64),
    /// Seconds, shown with millisecond precision.
    Secs(f64),
    Bool(bool),
}

impl Cell {
    fn text(s: &str) -> Cell {
        Cell::Text(s.to_owned())
    }

    fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Cell) -> Cell {
        v.map_or(Cell::Null, f)
    }

    /// The value as CSV and the table show it (before quoting); `Null` is empty.
    fn plain(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Text(s) => s.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Secs(x) => format!("{x:.3}"),
            Cell::Bool(b) => b.to_string(),
        }
    }

    fn json(&self, out: &mut String) {
        match self {
            Cell::Null => out.push_str("null"),
            Cell::Text(s) => json_string(s, out),
            Cell::Int(n) => out.push_str(&n.to_string()),
            // JSON has no NaN or infinity.
            Cell::Secs(x) if !x.is_finite() => out.push_str("null"),
            Cell::Secs(x) => out.push_str(&format!("{x:.3}")),
            Cell::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }
}

/// The fields of an attempt, in output order: the CSV header and the JSON keys.
const FIELDS: [&str; 20] = [
    "id",
    "run",
    "started",
    "ended",
    "role",
    "peer",
    "job",
    "dataset",
    "kind",
    "from",
    "from_guid",
    "to",
    "to_guid",
    "raw",
    "compressed",
    "attempt",
    "outcome",
    "bytes",
    "seconds",
    "error",
];

/// An attempt's values, one for each of [`FIELDS`], in the same order.
fn cells(a: &Attempt) -> [Cell; FIELDS.len()] {
    let s = &a.start;
    let end = a.end.as_ref();
    let guid = |g: u64| Cell::Text(g.to_string());
    [
        Cell::Int(a.id.0),
        Cell::opt(s.run, |r| Cell::Int(r.0)),
        Cell::Text(rfc3339(s.started)),
        Cell::opt(end, |e| Cell::Text(rfc3339(e.ended))),
        Cell::text(s.role.as_str()),
        Cell::text(&s.peer),
        Cell::text(&s.job),
        Cell::text(&s.dataset),
        Cell::opt(s.kind, |k| Cell::text(k.as_str())),
        Cell::opt(s.from.as_ref(), |f| Cell::text(&f.name)),
        Cell::opt(s.from.as_ref(), |f| guid(f.guid)),
        Cell::opt(s.to.as_ref(), |t| Cell::text(&t.name)),
        Cell::opt(s.to.as_ref(), |t| guid(t.guid)),
        Cell::Bool(s.raw),
        Cell::Bool(s.compressed),
        Cell::Int(i64::from(s.attempt)),
        Cell::text(end.map_or(IN_FLIGHT, |e| e.outcome.as_str())),
        Cell::opt(end, |e| {
            Cell::Int(i64::try_from(e.bytes).unwrap_or(i64::MAX))
        }),
        Cell::opt(end, |e| Cell::Secs(e.seconds)),
        Cell::opt(end.and_then(|e| e.error.as_ref()), |t| Cell::text(t)),
    ]
}

/// The table's columns: header, field, right-aligned. ERROR last, so it is never padded.
const TABLE_COLUMNS: &[(&str, &str, bool)] = &[
    ("STARTED", "started", false),
    ("ROLE", "role", false),
    ("PEER", "peer", false),
    ("DATASET", "dataset", false),
    ("KIND", "kind", false),
    ("FROM", "from", false),
    ("TO", "to", false),
    ("BYTES", "bytes", true),
    ("SECS", "seconds", true),
    ("OUTCOME", "outcome", false),
    ("TRY", "attempt", true),
    ("ERROR", "error", false),
];

/// Attempts as an aligned table with a header line; an absent value shows as `-`.
pub fn table(attempts: &[Attempt]) -> String {
    let header: Vec<String> = TABLE_COLUMNS.iter().map(|c| c.0.to_owned()).collect();
    let mut rows = vec![header];
    for a in attempts {
        let cells = cells(a);
        let row = TABLE_COLUMNS
            .iter()
            .map(|(_, name, _)| {
                let i = FIELDS.iter().position(|f| f == name).expect("a field");
                match &cells[i] {
                    Cell::Null => "-".to_owned(),
                    // One line per attempt: zfs's stderr may span several.
                    cell => cell
                        .plain()
                        .chars()
                        .map(|c| if c.is_control() { ' ' } else { c })
                        .collect(),
                }
            })
            .collect();
        rows.push(row);
    }
    let widths: Vec<usize> = (0..TABLE_COLUMNS.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, (_, _, right))) in row.iter().zip(TABLE_COLUMNS).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i] - cell.chars().count();
            if *right {
                line.extend(std::iter::repeat(' ').take(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if i + 1 < row.len() {
                    line.extend(std::iter::repeat(' ').take(pad));
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Attempts as CSV: a header line with the field names, then one record per attempt.
pub fn csv(attempts: &[Attempt]) -> String {
    let mut out = String::new();
    csv_record(FIELDS.iter().map(|n| n.to_string()), &mut out);
    for a in attempts {
        csv_record(cells(a).iter().map(Cell::plain), &mut out);
    }
    out
}

fn csv_record(values: impl Iterator<Item = String>, out: &mut String) {
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(&v, out);
    }
    out.push('\n');
}

/// RFC 4180: a field holding a comma, a quote, CR or LF is quoted, its quotes doubled.
fn csv_field(v: &str, out: &mut String) {
    if v.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

/// Attempts as a JSON array of objects, one object per line.
pub fn json(attempts: &[Attempt]) -> String {
    let mut out = String::from("[");
    for (i, a) in attempts.iter().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        out.push('{');
        for (j, (name, cell)) in FIELDS.iter().zip(cells(a)).enumerate() {
            if j > 0 {
                out.push(',');
            }
            json_string(name, &mut out);
            out.push(':');
            cell.json(&mut out);
        }
        out.push('}');
    }
    out.push_str(if attempts.is_empty() { "]\n" } else { "\n]\n" });
    out
}

/// `s` as a JSON string (RFC 8259): quotes, backslashes and control characters escaped.
/// Public so every JSON zfsync writes escapes the same way.
pub fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{finished, in_flight};

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.as_str()), Some(f));
        }
        assert_eq!(Format::parse("yaml"), None);
    }

    #[test]
    fn csv_quotes_commas_quotes_and_newlines() {
        let cases = [
            ("plain", "plain"),
            ("a,b", "\"a,b\""),
            ("say \"no\"", "\"say \"\"no\"\"\""),
            ("line\nnext", "\"line\nnext\""),
            ("cr\rlf", "\"cr\rlf\""),
            ("", ""),
        ];
        for (value, want) in cases {
            let mut out = String::new();
            csv_field(value, &mut out);
            assert_eq!(out, want, "{value:?}");
        }
    }

    #[test]
    fn csv_has_a_header_and_one_record_per_attempt() {
        let mut a = finished(7, "tank/a,b", 100, "failed");
        a.end.as_mut().unwrap().error = Some("cannot receive:\n\"busy\"".into());
        let out = csv(&[a]);
        let mut lines = out.split_inclusive('\n');
        assert_eq!(
            lines.next().unwrap(),
            "id,run,started,ended,role,peer,job,dataset,kind,from,from_guid,to,to_guid,\
             raw,compressed,attempt,outcome,bytes,seconds,error\n"
        );
        assert_eq!(
            lines.collect::<String>(),
            "7,1,1970-01-01T00:01:40Z,1970-01-01T00:01:50Z,send,backup:9000,nightly,\
             \"tank/a,b\",incremental,s1,11,s2,22,false,true,1,failed,4096,1.500,\
             \"cannot receive:\n\"\"busy\"\"\"\n"
        );
    }

    #[test]
    fn json_escapes_quotes_backslashes_and_control_characters() {
        let cases = [
            ("plain", r#""plain""#),
            ("say \"no\"", r#""say \"no\"""#),
            ("a\\b", r#""a\\b""#),
            ("l1\nl2\r\t", r#""l1\nl2\r\t""#),
            ("\u{0}\u{1b}\u{1f}", r#""\u0000\u001b\u001f""#),
            ("é ✓", "\"é ✓\""),
        ];
        for (value, want) in cases {
            let mut out = String::new();
            json_string(value, &mut out);
            assert_eq!(out, want, "{value:?}");
        }
    }

    #[test]
    fn json_is_an_array_of_typed_objects() {
        let a = finished(7, "tank/a", 100, "done");
        let b = in_flight(8, "tank/b", 200);
        assert_eq!(json(&[]), "[]\n");
        assert_eq!(
            json(&[a, b]),
            "[\n\
             {\"id\":7,\"run\":1,\"started\":\"1970-01-01T00:01:40Z\",\
             \"ended\":\"1970-01-01T00:01:50Z\",\"role\":\"send\",\"peer\":\"backup:9000\",\
             \"job\":\"nightly\",\"dataset\":\"tank/a\",\"kind\":\"incremental\",\
             \"from\":\"s1\",\"from_guid\":\"11\",\"to\":\"s2\",\"to_guid\":\"22\",\
             \"raw\":false,\"compressed\":true,\"attempt\":1,\"outcome\":\"done\",\
             \"bytes\":4096,\"seconds\":1.500,\"error\":null},\n\
             {\"id\":8,\"run\":1,\"started\":\"1970-01-01T00:03:20Z\",\"ended\":null,\
             \"role\":\"send\",\"peer\":\"backup:9000\",\"job\":\"nightly\",\
             \"dataset\":\"tank/b\",\"kind\":\"incremental\",\"from\":\"s1\",\
             \"from_guid\":\"11\",\"to\":\"s2\",\"to_guid\":\"22\",\"raw\":false,\
             \"compressed\":true,\"attempt\":1,\"outcome\":\"in-flight\",\"bytes\":null,\
             \"seconds\":null,\"error\":null}\n\
             ]\n"
        );
    }

    #[test]
    fn json_has_no_nan() {
        let mut a = finished(1, "tank/a", 0, "done");
        a.end.as_mut().unwrap().seconds = f64::NAN;
        assert!(json(&[a]).contains("\"seconds\":null"));
    }

    #[test]
    fn table_aligns_columns_and_keeps_one_line_per_attempt() {
        let mut a = finished(1, "tank/a", 100, "failed");
        a.end.as_mut().unwrap().error = Some("cannot receive:\nbusy".into());
        a.end.as_mut().unwrap().bytes = 123_456;
        let b = in_flight(2, "tank/longer/name", 200);
        let want = "\
STARTED               ROLE  PEER         DATASET           KIND         FROM  TO   BYTES   SECS  OUTCOME    TRY  ERROR
1970-01-01T00:01:40Z  send  backup:9000  tank/a            incremental  s1    s2  123456  1.500  failed       1  cannot receive: busy
1970-01-01T00:03:20Z  send  backup:9000  tank/longer/name  incremental  s1    s2       -      -  in-flight    1  -
";
        assert_eq!(table(&[a, b]), want);
    }

    #[test]
    fn table_of_nothing_is_its_header() {
        assert_eq!(
            table(&[]),
            "STARTED  ROLE  PEER  DATASET  KIND  FROM  TO  BYTES  SECS  OUTCOME  TRY  ERROR\n"
        );
    }

    #[test]
    fn every_format_renders_through_format() {
        let a = [finished(1, "tank/a", 100, "done")];
        assert_eq!(Format::Table.render(&a), table(&a));
        assert_eq!(Format::Csv.render(&a), csv(&a));
        assert_eq!(Format::Json.render(&a), json(&a));
    }
}
