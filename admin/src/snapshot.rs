//! `zfsync snapshot`: zfsync's snapshot of a dataset tree, `DATASET@zfsync_<UTC time>`,
//! taken in one atomic step, and with `--min-change` only where enough has changed.
//!
//! Owns the command line of `snapshot`, the refusal of a time that is not newer than the
//! newest zfsync snapshot, and which datasets get the snapshot (plan, then apply: the
//! dry run prints the plan). The names are the retention crate's ([`format_name`]). Must
//! not destroy anything but a snapshot this run has just taken.

use crate::context::help;
use crate::context::Context;
use crate::Error;
use jiff::Timestamp;
use log::{debug, info, warn};
use std::io::Read;
use zfsync_cli::{parse_options, Exit, Output, Parsed, Program, UsageError};
use zfsync_retention::{format_name, parse_name};
use zfsync_zfs::{Dataset, DatasetFacts, FailureKind, SendOptions, Zfs};

pub const USAGE: &str = concat!(
    "\
Usage: zfsync snapshot [options] DATASET

Take zfsync's snapshot of DATASET and every dataset below it, named
DATASET@zfsync_<UTC time> (zfsync_2026-12-02T00:39:40Z), all in the same instant.
A time not newer than the newest zfsync snapshot in the tree (two runs in one
second, or the clock went back) is refused: no snapshot, exit 1.

Options:
  -n, --dry-run            print what would be snapshotted; change nothing
      --min-change BYTES   give a dataset below DATASET a new snapshot only if
                           BYTES or more were written to it since its newest
                           snapshot (suffixes K, M, G, T: powers of 1024);
                           DATASET itself always gets one
",
    help!(options zfs),
    "Prints each snapshot taken ('snapshot DATASET@NAME') and, with --min-change, each
dataset left out ('skip DATASET: ...'); with --dry-run, what would be.
",
    help!(environment),
    ".
Exit status: 0 snapshot taken, 1 it failed or its time was refused, 2 usage error
or no such DATASET.

Examples:
  zfsync snapshot tank/home
      snapshot tank/home and everything below it, e.g. from cron before a send
  zfsync snapshot --min-change 1M tank/home
      datasets below tank/home with less than 1 MiB written since their last
      snapshot get none; tank/home itself always does, so every run shows
  zfsync snapshot -n --min-change 64K tank/vm
      see which volumes and filesystems would get a snapshot
"
);

pub static PROGRAM: Program = crate::program("zfsync snapshot", USAGE);

/// A checked command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub dataset: Dataset,
    pub dry_run: bool,
    pub min_change: Option<u64>,
    pub context: Context,
}

pub fn config(argv: &[String]) -> Result<Parsed<(Config, Output)>, UsageError> {
    let mut o = getopts::Options::new();
    o.optflag("n", "dry-run", "");
    o.optopt("", "min-change", "", "BYTES");
    Context::options(&mut o);
    parse_options(o, argv)?.try_map(|(m, output)| {
        let dataset = Context::dataset(&m)?;
        let min_change = m
            .opt_str("min-change")
            .map(|v| parse_bytes(&v).map_err(|e| e.context("--min-change")))
            .transpose()?;
        let config = Config {
            dataset,
            dry_run: m.opt_present("n"),
            min_change,
            context: Context::from_matches(&m)?,
        };
        Ok((config, output))
    })
}

/// A byte count: digits, optionally followed by K, M, G or T (powers of 1024).
fn parse_bytes(text: &str) -> Result<u64, UsageError> {
    let (digits, shift) = match text.char_indices().last() {
        Some((i, c)) if "KMGT".contains(c.to_ascii_uppercase()) => {
            let shift = 10 * (1 + "KMGT".find(c.to_ascii_uppercase()).unwrap_or(0) as u32);
            (&text[..i], shift)
        }
        _ => (text, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|_| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| {
            format!("wants bytes (digits, then optionally K, M, G or T), got {text:?}").into()
        })
}

/// Whether one dataset gets this run's snapshot, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    Take { dataset: String },
    Skip { dataset: String, why: String },
}

/// Which datasets of `tree` (the root first) get a snapshot when each needs `min` bytes
/// written since its newest snapshot: the root always; a dataset without snapshots, or
/// whose `written` is unknown, too.
pub fn choose(tree: &[DatasetFacts], min: u64) -> Vec<Choice> {
    tree.iter()
        .enumerate()
        .map(|(i, ds)| {
            let dataset = ds.name.clone();
            match (ds.snapshots.last(), ds.written) {
                (Some(newest), Some(written)) if i > 0 && written < min => Choice::Skip {
                    why: format!(
                        "{written} bytes written since {dataset}@{}, below {min}",
                        newest.name
                    ),
                    dataset,
                },
                _ => Choice::Take { dataset },
            }
        })
        .collect()
}

/// The newest zfsync snapshot in `tree`, with its time.
fn newest_ours(tree: &[DatasetFacts]) -> Option<(String, Timestamp)> {
    tree.iter()
        .flat_map(|ds| {
            ds.snapshots.iter().filter_map(move |s| {
                Some((format!("{}@{}", ds.name, s.name), parse_name(&s.name)?))
            })
        })
        .max_by_key(|(_, t)| *t)
}

pub fn run(config: &Config, output: &Output) -> Result<Exit, Error> {
    let zfs = config.context.zfs()?;
    let root = &config.dataset;
    let tree = match zfs.lifecycle_tree(root, config.min_change.is_some()) {
        Ok(tree) => tree,
        Err(e) if e.kind() == FailureKind::NotFound => {
            crate::problem(&PROGRAM, output, &format!("cannot use {root}: {e}"));
            return Ok(Exit::Usage);
        }
        Err(e) => return Err(e.into()),
    };
    let now = config.context.now;
    let name = format_name(now);
    if let Some((newest, _)) = newest_ours(&tree).filter(|(_, at)| *at >= now) {
        let why = format!(
            "not taking a snapshot: time stamp {} is not newer than the newest snapshot \
             {newest} (two runs in one second, or the clock went back)",
            now.strftime("%Y-%m-%dT%H:%M:%SZ")
        );
        crate::problem(&PROGRAM, output, &why);
        return Ok(Exit::Failed);
    }
    let would = if config.dry_run { "would " } else { "" };
    let full = root.snapshot(&name);
    let Some(min) = config.min_change else {
        if !config.dry_run {
            zfs.snapshot(std::slice::from_ref(&full), true)?;
            info!("snapshot name={full} recursive=yes");
        }
        crate::say!("{would}snapshot {full} (recursive)");
        return Ok(Exit::Done);
    };
    let caps = zfs.capabilities();
    if !(caps.written && caps.snapshot_many) {
        return snapshot_then_measure(&zfs, config, output, &tree, &name, min);
    }
    // Plan, then apply: every chosen dataset in one zfs snapshot, all at once.
    let choices = choose(&tree, min);
    let mut names = Vec::new();
    for choice in &choices {
        match choice {
            Choice::Take { dataset } => {
                let full = format!("{dataset}@{name}");
                crate::say!("{would}snapshot {full}");
                names.push(full);
            }
            Choice::Skip { dataset, why } => crate::say!("{would}skip {dataset}: {why}"),
        }
    }
    if !config.dry_run {
        zfs.snapshot(&names, false)?;
        info!(
            "snapshot name={name} datasets={} of={}",
            names.len(),
            tree.len()
        );
    }
    Ok(Exit::Done)
}

/// Bytes of an incremental stream that carries no change: its begin and end records
/// (2 x 312 bytes, the size of a replay record on zfs-fuse).
const EMPTY_STREAM: u64 = 624;

/// `--min-change` on a ZFS without the `written` property (zfs-fuse): how much changed is
/// only known against a snapshot. So the whole tree is snapshotted at once (`-r`), each
/// dataset below the root measures its change by its incremental stream from its previous
/// snapshot (read up to `min` bytes, then stopped), and the new snapshot of a dataset
/// below `min` is destroyed again.
fn snapshot_then_measure(
    zfs: &Zfs,
    config: &Config,
    output: &Output,
    tree: &[DatasetFacts],
    name: &str,
    min: u64,
) -> Result<Exit, Error> {
    let root = &config.dataset;
    let full = root.snapshot(name);
    if config.dry_run {
        crate::say!(
            "would snapshot {full} (recursive), then destroy it again in each dataset below \
             {root} with less than {min} bytes changed since its newest snapshot (this ZFS \
             has no written property: a change is measured against a snapshot)"
        );
        return Ok(Exit::Done);
    }
    zfs.snapshot(std::slice::from_ref(&full), true)?;
    info!("snapshot name={full} recursive=yes min_change={min}");
    crate::say!("snapshot {full}");
    let mut exit = Exit::Done;
    for ds in tree.iter().skip(1) {
        let dataset = Dataset::new(&ds.name)?;
        let Some(prev) = ds.snapshots.last() else {
            crate::say!("snapshot {}", dataset.snapshot(name));
            continue;
        };
        let changed = match changed_bytes(zfs, &dataset, &prev.name, name, min) {
            Ok(n) => n,
            Err(e) => {
                // Unmeasured: keep the snapshot, as if changed.
                warn!("cannot measure the change of dataset={dataset}, snapshot kept: {e}");
                crate::say!("snapshot {}", dataset.snapshot(name));
                continue;
            }
        };
        if changed >= min {
            crate::say!("snapshot {}", dataset.snapshot(name));
            continue;
        }
        match zfs.destroy_snapshot(&dataset, name) {
            Ok(()) => crate::say!(
                "skip {dataset}: {changed} bytes changed since {}, below {min}",
                dataset.snapshot(&prev.name)
            ),
            Err(e) => {
                crate::problem(&PROGRAM, output, &e.to_string());
                exit = Exit::Failed;
            }
        }
    }
    Ok(exit)
}

/// How many bytes of change the incremental stream `prev` -> `new` of `ds` carries
/// beyond an empty one, counted up to `min` (then the stream is stopped).
fn changed_bytes(zfs: &Zfs, ds: &Dataset, prev: &str, new: &str, min: u64) -> Result<u64, Error> {
    let opts = SendOptions {
        from: Some(ds.snapshot(prev)),
        ..SendOptions::default()
    };
    let mut proc = zfs.send(&ds.snapshot(new), &opts)?;
    let limit = EMPTY_STREAM.saturating_add(min);
    let stream = proc.take_stdout().expect("zfs send has a stdout");
    let mut read = 0u64;
    let mut buf = vec![0u8; 128 << 10];
    let mut stream = stream.take(limit);
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => read += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Error::Io(format!("reading {}: {e}", proc.command())));
            }
        }
    }
    if read >= limit {
        // Enough seen: the rest is not needed (dropping the process stops it).
        debug!("change of dataset={ds} reaches min_change={min}");
        return Ok(min);
    }
    drop(stream);
    proc.wait()?;
    Ok(read.saturating_sub(EMPTY_STREAM))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{refused, run_of};
    use zfsync_zfs::{Kind, SnapshotFacts};

    #[test]
    fn command_lines() {
        let c = run_of(config, &["tank/home"]).unwrap();
        assert_eq!(c.dataset.as_str(), "tank/home");
        assert!(!c.dry_run);
        assert_eq!(c.min_change, None);
        assert_eq!(c.context.zfs_bin, std::path::PathBuf::from("zfs"));
        let c = run_of(
            config,
            &["-n", "--min-change", "64K", "--zfs", "/sbin/zfs", "tank/vm"],
        )
        .unwrap();
        assert!(c.dry_run);
        assert_eq!(c.min_change, Some(65536));
        assert_eq!(c.context.zfs_bin, std::path::PathBuf::from("/sbin/zfs"));
    }

    #[test]
    fn bad_command_lines() {
        refused(
            config,
            &[
                (&[][..], "missing DATASET"),
                (&["a/b", "c/d"], "one DATASET expected, got 2"),
                (&["tank/a@s"], "DATASET: "),
                (
                    &["--min-change", "x", "tank/a"],
                    "--min-change: wants bytes",
                ),
                (&["--bogus", "tank/a"], "Unrecognized option"),
            ],
        );
    }

    #[test]
    fn byte_counts() {
        for (text, want) in [
            ("0", Some(0)),
            ("1048576", Some(1 << 20)),
            ("1K", Some(1024)),
            ("1k", Some(1024)),
            ("3M", Some(3 << 20)),
            ("2G", Some(2 << 30)),
            ("1T", Some(1 << 40)),
            ("", None),
            ("K", None),
            ("-1", None),
            ("+1", None),
            ("1.5M", None),
            ("1MB", None),
            ("99999999999T", None),
        ] {
            assert_eq!(parse_bytes(text).ok(), want, "{text:?}");
        }
    }

    #[test]
    fn help_ends_with_examples_that_parse() {
        crate::tests::examples_parse(&PROGRAM, config);
    }

    /// A dataset with snapshots `snaps` and `written` bytes since the newest.
    fn ds(name: &str, snaps: &[&str], written: Option<u64>) -> DatasetFacts {
        DatasetFacts {
            name: name.into(),
            kind: Kind::Filesystem,
            written,
            snapshots: snaps
                .iter()
                .enumerate()
                .map(|(i, s)| SnapshotFacts {
                    name: s.to_string(),
                    createtxg: i as u64 + 1,
                    creation: None,
                    userrefs: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn min_change_leaves_out_quiet_datasets_below_the_root() {
        let tree = [
            ds("p/a", &["s1"], Some(0)),
            ds("p/a/quiet", &["s0", "s1"], Some(4095)),
            ds("p/a/busy", &["s1"], Some(4096)),
            ds("p/a/new", &[], Some(0)),
            ds("p/a/unknown", &["s1"], None),
        ];
        let take = |d: &str| Choice::Take { dataset: d.into() };
        assert_eq!(
            choose(&tree, 4096),
            [
                take("p/a"),
                Choice::Skip {
                    dataset: "p/a/quiet".into(),
                    why: "4095 bytes written since p/a/quiet@s1, below 4096".into()
                },
                take("p/a/busy"),
                take("p/a/new"),
                take("p/a/unknown"),
            ]
        );
    }

    #[test]
    fn the_newest_zfsync_snapshot_of_the_tree() {
        let tree = [
            ds("p/a", &["zfsync_2026-01-01T00:00:00Z_D", "manual"], None),
            ds(
                "p/a/b",
                &[
                    "zfsync_2026-01-02T00:00:00Z",
                    "zfsync_2099-01-01T00:00:00Z_Q",
                ],
                None,
            ),
        ];
        let (name, at) = newest_ours(&tree).unwrap();
        assert_eq!(name, "p/a/b@zfsync_2026-01-02T00:00:00Z");
        assert_eq!(at, "2026-01-02T00:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(newest_ours(&[ds("p/a", &["manual"], None)]), None);
    }
}
