//! Command line of `zfsync-send`: raw options ([`Args`]) become a checked [`Config`].

use crate::{Config, Pattern, SnapshotFilter};
use std::path::PathBuf;
use zfsync_cli::parse_options;
use zfsync_cli::values::{number, seconds, HostPort};
// The types this module's functions return.
pub use zfsync_cli::{Output, Parsed, UsageError};
use zfsync_zfs::{check_relative_path, Dataset};

pub const USAGE: &str = "\
Usage: zfsync-send [options] DATASET HOST[:PORT]

Replicate DATASET and every filesystem and volume below it to a zfsync-recv service.
Each dataset gets the snapshots the receiver lacks: a full stream for a new dataset, then
an incremental one (with all intermediate snapshots, or the ones --include-snaps and
--exclude-snaps keep) from the newest snapshot both sides share, matched by GUID. Nothing on the receiver is rolled back or destroyed by a send.
A dataset whose user property zfsync:sync is off (set there or inherited) is left out;
a child that sets it on again is sent.
HOST is a name or an address, an IPv6 address in brackets ([fd00::2]:7611); PORT
defaults to 7611.

Options:
  -t, --threads N       parallel sessions, one TCP connection each (default 8)
  -n, --dry-run         ask the receiver and show what would be sent, and what is
                        left out and why; send nothing
  -d, --dest PATH       where DATASET lands, relative to the receiver's target
                        (default: the target itself)
      --exclude PATTERN
                        leave out the datasets whose path below DATASET matches
                        PATTERN, and everything below them (repeatable):
                        * is any run of characters within a path component,
                        ** any run across components, ? one character;
                        e.g. scratch, */cache, vms/**
      --include-snaps GLOB
                        send only the snapshots whose name (after the @)
                        matches GLOB (repeatable; default: all), e.g. zfsync_*
      --exclude-snaps GLOB
                        do not send the snapshots whose name matches GLOB
                        (repeatable); a snapshot left out between two sent
                        ones is stepped over (zfs send -i), so the receiver
                        gets exactly the ones that match
      --timeout SECS    give up on a silent receiver after SECS seconds (default 60),
                        and kill a zfs command that runs 5 times as long
      --connect-timeout SECS
                        give up on a receiver that does not connect and answer the
                        zfsync greeting within SECS seconds (default 10); one that
                        never answered it is not tried again
      --deadline SECS   end the run after SECS seconds: start no more datasets,
                        abort the streams in flight, report what was not done and
                        exit 1 (default: no deadline)
      --retries N       retries of a dataset after a transient failure (default 3)
      --mark ID         after each dataset is delivered (or found up to date), set
                        the user property zfsync:base:ID on the snapshot now newest
                        on the receiver and clear it from older ones, so expiry
                        (scripts/zfsyncron) keeps every receiver's incremental base;
                        ID: 1-64 of a-z 0-9 . _ -
      --plain           send plain streams: no compressed (-c), large-block (-L)
                        or embedded (-e) records, which are used by default
                        where the ZFS supports them
      --no-raw          send encrypted datasets decrypted (keys must be loaded);
                        by default they are sent raw (-w) and stay encrypted
      --props           send each dataset's properties with it (zfs send -p):
                        compression, user properties and the like arrive on the
                        replica; mountpoint, canmount, readonly and sharing
                        stay the receiver's (zfs recv -x); refused on zfs-fuse,
                        whose zfs recv cannot keep them out
      --key-file FILE   authenticate with the first key in FILE (NAME SECRET per
                        line, mode 600) and require the receiver to prove it too
      --state-dir DIR   record the run and each dataset's tries in the history
                        in DIR (default: $ZFSYNC_STATE_DIR, else
                        /var/lib/zfsync), for zfsync status, history and check;
                        a failing DIR is a warning, never a failed run; nothing
                        is recorded with -n
      --zfs PATH        zfs binary (default: zfs)
  -o, --log-file FILE   write the log to FILE instead of stderr; SIGHUP reopens it
  -v, --verbose         more log output (-vv for debug)
  -q, --quiet           no summary table, only the final line and the errors
                        that make the exit status non-zero, once; no progress
                        bars (shown on a terminal: each stream's bytes, rate and
                        time left, '~' before an approximate size)
  -h, --help            show this help
  -V, --version         show the version

Exit status: 0 when every dataset is done (sent, up to date, or without snapshots),
1 when at least one dataset failed (the others were still tried), 2 on a usage or
configuration error (a bad option, a key file that cannot be used, a DATASET that does
not exist, --props where this ZFS cannot keep properties out).

Examples:
  zfsync-send -t 8 tank/data backuphost:7611
      send tank/data and every dataset below it, 8 at once
  zfsync-send -n -d hosts/fileserver tank/data backuphost
      show what would go to TARGET/hosts/fileserver on backuphost; send nothing
  zfsync-send -n --exclude scratch tank/data backuphost
      show what would be sent without tank/data/scratch and what is below it,
      and each dataset left out with the reason
  zfsync-send --key-file /etc/zfsync/key --mark backuphost tank/data backuphost
      authenticate, and mark what backuphost has so expiry keeps it
";

/// Options as given, before any check; the process's options are already an [`Output`].
#[derive(Debug, Default)]
pub struct Args {
    pub dataset: String,
    pub address: String,
    pub threads: Option<String>,
    pub dry_run: bool,
    pub dest: Option<String>,
    pub exclude: Vec<String>,
    pub include_snaps: Vec<String>,
    pub exclude_snaps: Vec<String>,
    pub timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub deadline: Option<String>,
    pub retries: Option<String>,
    pub mark: Option<String>,
    pub zfs: Option<String>,
    pub plain: bool,
    pub no_raw: bool,
    pub props: bool,
    pub key_file: Option<String>,
    pub state_dir: Option<String>,
    pub output: Output,
}

/// The command line as the job's [`Config`] and the process's [`Output`].
pub fn config(argv: &[String]) -> Result<Parsed<(Config, Output)>, UsageError> {
    parse(argv)?.try_map(Args::into_config)
}

pub fn parse(argv: &[String]) -> Result<Parsed<Args>, UsageError> {
    let mut o = getopts::Options::new();
    o.optopt("t", "threads", "", "N");
    o.optflag("n", "dry-run", "");
    o.optopt("d", "dest", "", "PATH");
    o.optmulti("", "exclude", "", "PATTERN");
    o.optmulti("", "include-snaps", "", "GLOB");
    o.optmulti("", "exclude-snaps", "", "GLOB");
    o.optopt("", "timeout", "", "SECS");
    o.optopt("", "connect-timeout", "", "SECS");
    o.optopt("", "deadline", "", "SECS");
    o.optopt("", "retries", "", "N");
    o.optopt("", "mark", "", "ID");
    o.optopt("", "zfs", "", "PATH");
    o.optflag("q", "quiet", "");
    o.optflag("", "plain", "");
    o.optflag("", "no-raw", "");
    o.optflag("", "props", "");
    o.optopt("", "key-file", "", "FILE");
    o.optopt("", "state-dir", "", "DIR");
    let (m, mut output) = match parse_options(o, argv)? {
        Parsed::Run(r) => r,
        Parsed::Special(s) => return Ok(Parsed::Special(s)),
    };
    output.quiet = m.opt_present("q");
    let (dataset, address) = match m.free.as_slice() {
        [d, a] => (d.clone(), a.clone()),
        _ => {
            return Err(format!(
                "expected DATASET and HOST[:PORT], got {} argument(s)",
                m.free.len()
            )
            .into())
        }
    };
    Ok(Parsed::Run(Args {
        dataset,
        address,
        threads: m.opt_str("t"),
        dry_run: m.opt_present("n"),
        dest: m.opt_str("d"),
        exclude: m.opt_strs("exclude"),
        include_snaps: m.opt_strs("include-snaps"),
        exclude_snaps: m.opt_strs("exclude-snaps"),
        timeout: m.opt_str("timeout"),
        connect_timeout: m.opt_str("connect-timeout"),
        deadline: m.opt_str("deadline"),
        retries: m.opt_str("retries"),
        mark: m.opt_str("mark"),
        zfs: m.opt_str("zfs"),
        plain: m.opt_present("plain"),
        no_raw: m.opt_present("no-raw"),
        props: m.opt_present("props"),
        key_file: m.opt_str("key-file"),
        state_dir: m.opt_str("state-dir"),
        output,
    }))
}

impl Args {
    pub fn into_config(self) -> Result<(Config, Output), UsageError> {
        let dataset = Dataset::new(&self.dataset).map_err(|e| format!("DATASET: {e}"))?;
        let dest = self.dest.unwrap_or_default();
        let dest = dest.trim_matches('/').to_string();
        check_relative_path(&dest).map_err(|e| format!("--dest: {e}"))?;
        let address = HostPort::parse(&self.address, zfsync_protocol::DEFAULT_PORT, 1)
            .map_err(|e| e.context("HOST[:PORT]"))?;
        let config = Config {
            dataset,
            address: address.to_string(),
            threads: number("--threads", self.threads.as_deref(), 8, 1..=u64::MAX)?.min(256)
                as usize,
            dry_run: self.dry_run,
            dest,
            exclude: patterns("--exclude", &self.exclude, Pattern::path)?,
            snapshots: SnapshotFilter {
                include: patterns("--include-snaps", &self.include_snaps, Pattern::snapshot)?,
                exclude: patterns("--exclude-snaps", &self.exclude_snaps, Pattern::snapshot)?,
            },
            timeout: seconds("--timeout", self.timeout.as_deref(), 60, 1..=u64::MAX)?,
            connect_timeout: seconds(
                "--connect-timeout",
                self.connect_timeout.as_deref(),
                10,
                1..=u64::MAX,
            )?,
            deadline: match &self.deadline {
                None => None,
                Some(d) => Some(seconds("--deadline", Some(d), 0, 1..=u64::MAX)?),
            },
            retries: number("--retries", self.retries.as_deref(), 3, 0..=u64::MAX)? as u32,
            mark: self.mark.map(check_mark).transpose()?,
            zfs: PathBuf::from(self.zfs.unwrap_or_else(|| "zfs".into())),
            plain: self.plain,
            no_raw: self.no_raw,
            props: self.props,
            key: match &self.key_file {
                None => None,
                Some(f) => zfsync_protocol::auth::read_key_file(std::path::Path::new(f))?
                    .into_iter()
                    .next(),
            },
            state_dir: Some(
                self.state_dir
                    .map(PathBuf::from)
                    .unwrap_or_else(zfsync_history::default_dir),
            ),
            quiet: self.output.quiet,
        };
        Ok((config, self.output))
    }
}

/// Each of `texts` as a pattern, or the usage error that names `option`.
fn patterns(
    option: &str,
    texts: &[String],
    parse: fn(&str) -> Result<Pattern, String>,
) -> Result<Vec<Pattern>, UsageError> {
    texts
        .iter()
        .map(|t| parse(t).map_err(|e| format!("{option}: {e}").into()))
        .collect()
}

/// A mark id becomes part of a user property name: keep it to what ZFS allows there.
fn check_mark(id: String) -> Result<String, UsageError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(id)
    } else {
        Err(format!("--mark wants 1-64 of a-z 0-9 . _ -, got {id:?}").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(args: &[&str]) -> Result<Config, UsageError> {
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match super::config(&argv)? {
            Parsed::Run((c, _)) => Ok(c),
            _ => Err("not a run".into()),
        }
    }

    #[test]
    fn defaults_and_port() {
        let c = config(&["tank/data", "backup"]).unwrap();
        assert_eq!(c.address, "backup:7611");
        assert_eq!(c.threads, 8);
        assert_eq!(c.dest, "");
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.deadline, None);
        let c = config(&["--connect-timeout", "3", "--deadline", "600", "t/d", "h"]).unwrap();
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.deadline, Some(Duration::from_secs(600)));
        assert_eq!(
            config(&["tank/data", "backup:9000"]).unwrap().address,
            "backup:9000"
        );
        assert_eq!(
            config(&["tank/data", "[::1]"]).unwrap().address,
            "[::1]:7611"
        );
        assert_eq!(
            config(&["tank/data", "[::1]:9000"]).unwrap().address,
            "[::1]:9000"
        );
    }

    #[test]
    fn a_port_out_of_range_is_a_usage_error() {
        assert_eq!(
            config(&["tank/data", "backup:99999"])
                .unwrap_err()
                .to_string(),
            "HOST[:PORT]: port 99999 is out of range 1-65535"
        );
        assert!(config(&["tank/data", "backup:0"]).is_err());
        assert!(config(&["tank/data", "::1"]).is_err());
    }

    #[test]
    fn usage_errors() {
        assert!(config(&["tank/data"]).is_err());
        assert!(config(&["tank/data@s", "h"]).is_err());
        assert!(config(&["-t", "0", "tank/data", "h"]).is_err());
        assert!(config(&["--connect-timeout", "0", "tank/data", "h"]).is_err());
        assert!(config(&["--deadline", "0", "tank/data", "h"]).is_err());
        assert!(config(&["-d", "../x", "tank/data", "h"]).is_err());
        assert!(config(&["--bogus", "tank/data", "h"]).is_err());
        assert!(config(&["--mark", "Host:1", "tank/data", "h"]).is_err());
        assert_eq!(
            config(&["--mark", "backup-7611", "tank/data", "h"])
                .unwrap()
                .mark
                .as_deref(),
            Some("backup-7611")
        );
    }

    #[test]
    fn the_history_goes_to_the_state_dir() {
        let dir = |args: &[&str]| config(args).unwrap().state_dir;
        assert_eq!(
            dir(&["tank/data", "h"]),
            Some(zfsync_history::default_dir())
        );
        assert_eq!(
            dir(&["--state-dir", "/srv/zfsync", "tank/data", "h"]),
            Some(PathBuf::from("/srv/zfsync"))
        );
    }

    #[test]
    fn exclude_patterns_are_checked_and_kept_in_order() {
        let c = config(&[
            "--exclude",
            "scratch",
            "--exclude",
            "*/cache",
            "tank/data",
            "h",
        ]);
        let got: Vec<String> = c.unwrap().exclude.iter().map(|p| p.to_string()).collect();
        assert_eq!(got, ["scratch", "*/cache"]);
        assert_eq!(
            config(&["--exclude", "/tank/data/x", "tank/data", "h"])
                .unwrap_err()
                .to_string(),
            "--exclude: \"/tank/data/x\": absolute path where a relative one is expected"
        );
    }

    #[test]
    fn snapshot_globs_are_names_without_the_at() {
        let c = config(&[
            "--include-snaps",
            "zfsync_*",
            "--exclude-snaps",
            "*_S",
            "tank/data",
            "h",
        ])
        .unwrap();
        assert!(c.snapshots.keeps("zfsync_2026-11-22_1200_H"));
        assert!(!c.snapshots.keeps("zfsync_2026-11-22_1200_S"));
        assert!(!c.snapshots.keeps("before-upgrade"));
        let e = config(&["--include-snaps", "@zfsync_*", "tank/data", "h"]).unwrap_err();
        assert!(
            e.to_string().starts_with("--include-snaps: \"@zfsync_*\""),
            "{e}"
        );
        assert!(config(&["--exclude-snaps", "a/b", "tank/data", "h"]).is_err());
    }

    #[test]
    fn help_ends_with_examples_that_parse() {
        let examples = zfsync_cli::examples(USAGE, "zfsync-send").unwrap();
        assert_eq!(examples.len(), 4);
        for argv in examples {
            match parse(&argv) {
                // A key file is read when checked: only the parse is tried for that one.
                Ok(Parsed::Run(a)) if a.key_file.is_some() => {}
                Ok(Parsed::Run(a)) => assert!(a.into_config().is_ok(), "{argv:?}"),
                _ => panic!("{argv:?}"),
            }
        }
    }

    #[test]
    fn process_options_go_to_output() {
        let argv: Vec<String> = ["-q", "-vv", "-o", "/var/log/z.log", "tank/data", "h"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let Parsed::Run((_, output)) = super::config(&argv).unwrap() else {
            panic!("not a run");
        };
        let want = Output {
            log_file: Some("/var/log/z.log".into()),
            verbose: 2,
            quiet: true,
        };
        assert_eq!(output, want);
    }
}
