//! `zfsync status`: where each dataset's replica stands with each peer, from the history
//! alone (`replica.rs`), as an aligned table or JSON.
//!
//! Owns the command line of `status` and the two layouts. Must not run zfs, write to the
//! history, or judge what it shows (that is `zfsync check replication`'s).

use crate::context::help;
use crate::context::{self, now};
use crate::replica::{replicas, Replica};
use crate::Error;
use std::path::PathBuf;
use zfsync_cli::{parse_options, Exit, Output, Parsed, Program, UsageError};
use zfsync_history::format::json_string;
use zfsync_history::{rfc3339, SnapshotRef, Store};
use zfsync_text::quoted;

pub const USAGE: &str = concat!(
    "\
Usage: zfsync status [options]

Show where each dataset's replica stands with each peer, from the history that
zfsync-send records on a source and zfsync-recv on a backup host; no zfs command
is run. One line per dataset, peer and side (ROLE send or recv):
  STATE          the newest try: ok (sent or up to date), failed, in-flight,
                 interrupted (in flight, but its zfsync-send is gone), skipped
  LAST SUCCESS   when the last successful try ended, and how long ago
  LAG            how far the peer's newest snapshot (BASE) is behind the newest
                 the source had, by the times in zfsync's snapshot names
  BACKLOG        failed tries since the last success
  BASE           the snapshot the last success left on the peer: the next
                 incremental starts there
  ERROR          the last failure's error, while the dataset keeps failing

Options:
      --json               one JSON object per line of the table, with the
                           snapshots' GUIDs and the ages in seconds
",
    help!(options state_dir),
    help!(shown),
    "
Examples:
  zfsync status -v
      every dataset in the history of /var/lib/zfsync: on a source, each one
      sent to each receiver; on a backup host, each one received
  zfsync status --state-dir /srv/zfsync
      the history of a zfsync-send or zfsync-recv run with that --state-dir
  zfsync status --json
      the same for a script: lag_seconds, backlog, base_guid, last_error
"
);

pub static PROGRAM: Program = crate::program("zfsync status", USAGE);

/// A checked command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub json: bool,
    pub state_dir: PathBuf,
    /// Unix seconds.
    pub now: i64,
}

pub fn config(argv: &[String]) -> Result<Parsed<(Config, Output)>, UsageError> {
    let mut o = getopts::Options::new();
    o.optflag("", "json", "");
    context::state_dir_option(&mut o);
    parse_options(o, argv)?.try_map(|(m, output)| {
        context::options_only(&m, "status")?;
        let config = Config {
            json: m.opt_present("json"),
            state_dir: context::state_dir(&m),
            now: now()?.as_second(),
        };
        Ok((config, output))
    })
}

pub fn run(config: &Config, _output: &Output) -> Result<Exit, Error> {
    let store = Store::open_read_only(&config.state_dir)?;
    let all = replicas(&store, &config.state_dir, config.now)?;
    let text = match config.json {
        true => json(&all, config.now),
        false => table(&all),
    };
    crate::say!("{}", text.trim_end_matches('\n'));
    Ok(Exit::Done)
}

/// The replicas as an aligned table with a header line; `-` where there is no value.
/// Names with white space (`tank/My Documents`, which ZFS allows) are quoted as in the
/// logs and zfsync-send's summary, so that each stays one field of its line.
fn table(all: &[Replica]) -> String {
    let header = [
        "DATASET",
        "PEER",
        "ROLE",
        "STATE",
        "LAST SUCCESS",
        "LAG",
        "BACKLOG",
        "BASE",
        "ERROR",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in all {
        let dash = || "-".to_string();
        rows.push(vec![
            quoted(&r.dataset).to_string(),
            r.peer.clone(),
            r.role.as_str().to_string(),
            r.state.as_str().to_string(),
            r.last_success.map_or_else(dash, |t| {
                format!("{} ({} ago)", rfc3339(t), crate::age::show(r.since_success))
            }),
            r.lag.map_or_else(dash, crate::age::show),
            r.backlog.to_string(),
            r.base
                .as_ref()
                .map_or_else(dash, |b| quoted(&b.name).to_string()),
            r.last_error.as_deref().map_or_else(dash, one_line),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                line.extend(std::iter::repeat(' ').take(widths[i] - cell.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// An error as one line: zfs's stderr may span several.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The replicas as a JSON array of flat objects, one per line; GUIDs are strings (a
/// JSON reader may hold numbers as doubles), times RFC 3339, ages in seconds.
fn json(all: &[Replica], now: i64) -> String {
    let mut out = String::from("[");
    for (i, r) in all.iter().enumerate() {
        out.push_str(if i == 0 { "\n{" } else { ",\n{" });
        let mut fields = Fields(&mut out, 0);
        fields.text("dataset", Some(&r.dataset));
        fields.text("peer", Some(&r.peer));
        fields.text("role", Some(r.role.as_str()));
        fields.text("job", Some(&r.job));
        fields.text("state", Some(r.state.as_str()));
        fields.text("last_attempt", Some(&rfc3339(r.last_attempt)));
        fields.text("last_success", r.last_success.map(rfc3339).as_deref());
        fields.number("since_success_seconds", Some(r.since_success));
        fields.number("lag_seconds", r.lag);
        fields.number(
            "backlog",
            Some(i64::try_from(r.backlog).unwrap_or(i64::MAX)),
        );
        fields.snapshot("base", r.base.as_ref());
        fields.snapshot("source_newest", r.source_newest.as_ref());
        fields.text("last_error", r.last_error.as_deref());
        fields.text("now", Some(&rfc3339(now)));
        out.push('}');
    }
    out.push_str(if all.is_empty() { "]\n" } else { "\n]\n" });
    out
}

/// The fields of one JSON object being written, and how many so far.
struct Fields<'a>(&'a mut String, usize);

impl Fields<'_> {
    fn key(&mut self, name: &str) {
        if self.1 > 0 {
            self.0.push(',');
        }
        self.1 += 1;
        json_string(name, self.0);
        self.0.push(':');
    }

    fn text(&mut self, name: &str, value: Option<&str>) {
        self.key(name);
        match value {
            Some(v) => json_string(v, self.0),
            None => self.0.push_str("null"),
        }
    }

    fn number(&mut self, name: &str, value: Option<i64>) {
        self.key(name);
        match value {
            Some(v) => self.0.push_str(&v.to_string()),
            None => self.0.push_str("null"),
        }
    }

    /// `NAME` and `NAME_guid`.
    fn snapshot(&mut self, name: &str, value: Option<&SnapshotRef>) {
        self.text(name, value.map(|s| s.name.as_str()));
        let guid = value.map(|s| s.guid.to_string());
        self.text(&format!("{name}_guid"), guid.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::State;
    use zfsync_history::Role;

    fn replica(dataset: &str, state: State) -> Replica {
        Replica {
            dataset: dataset.into(),
            peer: "backup:7611".into(),
            role: Role::Send,
            job: "bk1".into(),
            state,
            last_attempt: 1_796_169_600,
            last_success: Some(1_796_169_660),
            since_success: 300,
            base: Some(SnapshotRef {
                name: "zfsync_2026-12-02T00:00:00Z".into(),
                guid: u64::MAX,
            }),
            source_newest: None,
            lag: Some(0),
            backlog: 0,
            last_error: None,
        }
    }

    #[test]
    fn the_table_is_aligned_and_says_dash_for_nothing() {
        let ok = replica("tank/a", State::Ok);
        let failing = Replica {
            dataset: "tank/longer".into(),
            state: State::Failed,
            last_success: None,
            lag: None,
            base: None,
            backlog: 3,
            last_error: Some("refused (diverged):\nat @s2".into()),
            ..replica("", State::Failed)
        };
        let want = "\
DATASET      PEER         ROLE  STATE   LAST SUCCESS                   LAG  BACKLOG  BASE                         ERROR
tank/a       backup:7611  send  ok      2026-12-02T00:01:00Z (5m ago)  0s   0        zfsync_2026-12-02T00:00:00Z  -
tank/longer  backup:7611  send  failed  -                              -    3        -                            refused (diverged): at @s2
";
        assert_eq!(table(&[ok, failing]), want);
    }

    #[test]
    fn a_name_with_white_space_is_one_quoted_field() {
        let spaced = Replica {
            base: Some(SnapshotRef {
                name: "before upgrade".into(),
                guid: 1,
            }),
            ..replica("tank/My Documents", State::Ok)
        };
        let want = "\
DATASET              PEER         ROLE  STATE  LAST SUCCESS                   LAG  BACKLOG  BASE                         ERROR
\"tank/My Documents\"  backup:7611  send  ok     2026-12-02T00:01:00Z (5m ago)  0s   0        \"before upgrade\"             -
tank/a               backup:7611  send  ok     2026-12-02T00:01:00Z (5m ago)  0s   0        zfsync_2026-12-02T00:00:00Z  -
";
        assert_eq!(table(&[spaced, replica("tank/a", State::Ok)]), want);
    }

    #[test]
    fn json_is_flat_with_guids_as_strings() {
        let r = replica("tank/a", State::InFlight);
        assert_eq!(json(&[], 0), "[]\n");
        assert_eq!(
            json(&[r], 1_796_169_960),
            "[\n{\"dataset\":\"tank/a\",\"peer\":\"backup:7611\",\"role\":\"send\",\
             \"job\":\"bk1\",\"state\":\"in-flight\",\"last_attempt\":\"2026-12-02T00:00:00Z\",\
             \"last_success\":\"2026-12-02T00:01:00Z\",\"since_success_seconds\":300,\
             \"lag_seconds\":0,\"backlog\":0,\"base\":\"zfsync_2026-12-02T00:00:00Z\",\
             \"base_guid\":\"18446744073709551615\",\"source_newest\":null,\
             \"source_newest_guid\":null,\"last_error\":null,\"now\":\"2026-12-02T00:06:00Z\"}\n]\n"
        );
    }

    #[test]
    fn command_lines() {
        let c = crate::tests::run_of(config, &["--json", "--state-dir", "/srv/z"]).unwrap();
        assert!(c.json);
        assert_eq!(c.state_dir, PathBuf::from("/srv/z"));
        assert!(crate::tests::run_of(config, &["tank"]).is_err());
    }

    #[test]
    fn help_ends_with_examples_that_parse() {
        crate::tests::examples_parse(&PROGRAM, config);
    }
}
