//! `zfsync prune`: destroys the zfsync snapshots of a dataset tree that a retention plan
//! does not keep, on a source or on a backup host.
//!
//! Owns the command line of `prune` and its run: one listing of the tree (snapshots with
//! creation times and holds), one read of the receivers' marks, then per dataset the plan
//! ([`zfsync_retention::plan_dataset`]) and its application. The dry run, `--explain` and the
//! real run print from the same plan. Must not decide what is kept (the retention crate
//! and `keep.rs` do), nor destroy anything but snapshots the plan says to.

use crate::context::help;
use crate::context::Context;
use crate::Error;
use jiff::Timestamp;
use log::info;
use std::collections::HashMap;
use zfsync_cli::{parse_options, Exit, Output, Parsed, Program, UsageError};
use zfsync_retention::parse_name;
use zfsync_retention::{plan_dataset, Candidate, Keep};
use zfsync_zfs::protect::{is_valid_id, mark_id, mark_property};
use zfsync_zfs::{Dataset, DatasetFacts, FailureKind, Zfs};

pub const USAGE: &str = concat!(
    "\
Usage: zfsync prune --keep PLAN [options] DATASET

Destroy the zfsync snapshots of DATASET and of every dataset below it that the
retention plan PLAN does not keep; on a source or on a backup host. Never
destroyed: a dataset's newest zfsync snapshot, snapshots not named by zfsync
(zfsync_<UTC time>), held snapshots (zfs holds; a receiver's base on a backup
host), and a receiver's base marked on a source (zfsync:base:ID). A dataset in
which the plan would destroy more than half of the zfsync snapshots, or all but
the newest, is left as it is (exit 1) unless --force.

A plan is rules separated by commas; a snapshot is kept if any rule keeps it:
  last=N         the N newest snapshots
  within=AGE     every snapshot younger than AGE (a number and s, m, h, d or w)
  [K]UNIT=N      the oldest snapshot of each of the N newest buckets of K UNITs
                 that hold one; UNIT: secondly minutely hourly daily weekly
                 monthly yearly (15minutely, 2hourly, 3monthly: quarters)

Options:
      --keep PLAN          the retention plan, e.g. hourly=24,daily=30,monthly=12
      --tz ZONE            time zone of the plan's buckets (default UTC), e.g.
                           Europe/Berlin: its days start at its midnight
  -n, --dry-run            print what would be destroyed; change nothing
      --explain            print every snapshot's fate: KEEP with the rules and
                           buckets that keep it, DESTROY, or PROTECT with why
      --force              prune even where the plan destroys more than half of
                           a dataset's zfsync snapshots, or all but the newest
      --mark-id ID         only marks of receiver ID protect (repeatable), read
                           by name (default: every zfsync:base:* mark protects)
",
    help!(options zfs),
    "Prints each snapshot destroyed ('destroyed DATASET@SNAP'); with --dry-run, each
that would be ('would destroy DATASET@SNAP').
",
    help!(environment),
    ".
Exit status: 0 all done, 1 a destroy failed or a dataset was left as it is by the
safety check (the other datasets were still pruned), 2 usage error or no such
DATASET.

Examples:
  zfsync prune --keep hourly=24,daily=30,monthly=12 tank/home
      a day of hours, a month of days and a year of months, in UTC
  zfsync prune -n --explain --keep daily=7,weekly=8 --tz Europe/Berlin tank/home
      show what each snapshot would become and why, days of Berlin's calendar
  zfsync prune --keep daily=90,weekly=104 backup/hosts/fileserver
      on a backup host: the receiver's held base is never destroyed
"
);

pub static PROGRAM: Program = crate::program("zfsync prune", USAGE);

/// Which marks protect a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Marks {
    /// Every `zfsync:base:*` mark.
    Any,
    /// Only the marks of these receivers.
    Of(Vec<String>),
}

/// A checked command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub dataset: Dataset,
    pub keep: Keep,
    pub dry_run: bool,
    pub explain: bool,
    pub force: bool,
    pub marks: Marks,
    pub context: Context,
}

pub fn config(argv: &[String]) -> Result<Parsed<(Config, Output)>, UsageError> {
    let mut o = getopts::Options::new();
    o.optopt("", "keep", "", "PLAN");
    o.optopt("", "tz", "", "ZONE");
    o.optflag("n", "dry-run", "");
    o.optflag("", "explain", "");
    o.optflag("", "force", "");
    o.optmulti("", "mark-id", "", "ID");
    Context::options(&mut o);
    parse_options(o, argv)?.try_map(|(m, output)| {
        let dataset = Context::dataset(&m)?;
        let plan = m
            .opt_str("keep")
            .ok_or("missing --keep PLAN: say what to keep")?;
        let ids = m.opt_strs("mark-id");
        if let Some(bad) = ids.iter().find(|id| !is_valid_id(id)) {
            return Err(format!("--mark-id wants 1-64 of a-z 0-9 . _ -, got {bad:?}").into());
        }
        let config = Config {
            keep: Keep::parse(&plan, m.opt_str("tz").as_deref()).map_err(UsageError::new)?,
            dataset,
            dry_run: m.opt_present("n"),
            explain: m.opt_present("explain"),
            force: m.opt_present("force"),
            marks: if ids.is_empty() {
                Marks::Any
            } else {
                Marks::Of(ids)
            },
            context: Context::from_matches(&m)?,
        };
        Ok((config, output))
    })
}

/// The receivers whose base each snapshot is: full snapshot name -> ids. One zfs command
/// for the tree; only marks set on the snapshot itself count (a user property set on a
/// filesystem shows, inherited, on each of its snapshots: that is no mark).
fn read_marks(
    zfs: &Zfs,
    root: &Dataset,
    marks: &Marks,
) -> Result<HashMap<String, Vec<String>>, Error> {
    let props: Vec<String> = match marks {
        Marks::Any => vec!["all".into()],
        Marks::Of(ids) => ids.iter().map(|id| mark_property(id)).collect(),
    };
    let props: Vec<&str> = props.iter().map(String::as_str).collect();
    let mut marked: HashMap<String, Vec<String>> = HashMap::new();
    for (name, prop, value) in zfs.get_local(root, &props)? {
        if let (Some(id), true, false) = (mark_id(&prop), name.contains('@'), value == "-") {
            marked.entry(name).or_default().push(id.to_string());
        }
    }
    Ok(marked)
}

/// A dataset's snapshots as pruning sees them, with the marks read for the tree.
fn candidates(ds: &DatasetFacts, marks: &HashMap<String, Vec<String>>) -> Vec<Candidate> {
    ds.snapshots
        .iter()
        .map(|s| Candidate {
            name: s.name.clone(),
            // A zfsync name says its time; another snapshot's is its creation.
            time: match parse_name(&s.name) {
                Some(_) => None,
                None => s.creation.and_then(|t| Timestamp::from_second(t).ok()),
            },
            userrefs: s.userrefs,
            marks: marks
                .get(&format!("{}@{}", ds.name, s.name))
                .cloned()
                .unwrap_or_default(),
        })
        .collect()
}

pub fn run(config: &Config, output: &Output) -> Result<Exit, Error> {
    let zfs = config.context.zfs()?;
    let root = &config.dataset;
    let tree = match zfs.lifecycle_tree(root, false) {
        Ok(tree) => tree,
        Err(e) if e.kind() == FailureKind::NotFound => {
            crate::problem(&PROGRAM, output, &format!("cannot use {root}: {e}"));
            return Ok(Exit::Usage);
        }
        Err(e) => return Err(e.into()),
    };
    let marks = read_marks(&zfs, root, &config.marks)?;
    let mut exit = Exit::Done;
    for ds in &tree {
        let plan = plan_dataset(
            &ds.name,
            &candidates(ds, &marks),
            &[],
            &config.keep,
            config.context.now,
            config.force,
        );
        if config.explain {
            for line in plan.explain() {
                crate::say!("{line}");
            }
        }
        if let Some(why) = &plan.stop {
            let why = format!(
                "{}: left as it is: {why}; --force prunes it anyway",
                ds.name
            );
            crate::problem(&PROGRAM, output, &why);
            exit = Exit::Failed;
            continue;
        }
        let dataset = Dataset::new(&ds.name)?;
        for snap in plan.to_destroy() {
            let full = dataset.snapshot(snap);
            if config.dry_run {
                if !config.explain {
                    crate::say!("would destroy {full}");
                }
                continue;
            }
            match zfs.destroy_snapshot(&dataset, snap) {
                Ok(()) => {
                    info!("pruned dataset={dataset} snap={snap} reason=rule-miss");
                    crate::say!("destroyed {full}");
                }
                Err(e) => {
                    crate::problem(&PROGRAM, output, &e.to_string());
                    exit = Exit::Failed;
                }
            }
        }
    }
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{refused, run_of};
    use zfsync_zfs::{Kind, SnapshotFacts};

    #[test]
    fn command_lines() {
        let c = run_of(config, &["--keep", "daily=7", "tank/home"]).unwrap();
        assert_eq!(c.keep, Keep::parse("daily=7", None).unwrap());
        assert_eq!(c.marks, Marks::Any);
        assert!(!c.dry_run && !c.explain && !c.force);
        let c = run_of(
            config,
            &[
                "-n",
                "--explain",
                "--force",
                "--tz",
                "Europe/Berlin",
                "--keep",
                "hourly=24",
                "--mark-id",
                "bk1",
                "--mark-id",
                "backup.example.org-7611",
                "tank/home",
            ],
        )
        .unwrap();
        assert!(c.dry_run && c.explain && c.force);
        assert_eq!(
            c.keep,
            Keep::parse("hourly=24", Some("Europe/Berlin")).unwrap()
        );
        assert_eq!(
            c.marks,
            Marks::Of(vec!["bk1".into(), "backup.example.org-7611".into()])
        );
        assert!(
            run_of(config, &["--dry-run", "--keep", "last=3", "tank/a"])
                .unwrap()
                .dry_run
        );
    }

    #[test]
    fn bad_command_lines() {
        refused(
            config,
            &[
                (&["tank/a"][..], "missing --keep PLAN"),
                (&["--keep", "daily=7"], "missing DATASET"),
                (
                    &["--keep", "daily=0", "tank/a"],
                    "--keep: retention plan \"daily=0\" is an empty plan",
                ),
                (
                    &["--keep", "daily=7", "--tz", "Nowhere/Town", "tank/a"],
                    "--tz: unknown time zone",
                ),
                (
                    &["--keep", "daily=7", "--mark-id", "Host:1", "tank/a"],
                    "--mark-id wants 1-64",
                ),
                (
                    &["--keep", "daily=7", "tank/a", "tank/b"],
                    "one DATASET expected",
                ),
            ],
        );
    }

    #[test]
    fn help_ends_with_examples_that_parse() {
        crate::tests::examples_parse(&PROGRAM, config);
    }

    #[test]
    fn candidates_carry_times_holds_and_marks() {
        let ds = DatasetFacts {
            name: "p/a".into(),
            kind: Kind::Filesystem,
            written: None,
            snapshots: vec![
                SnapshotFacts {
                    name: "s1".into(),
                    createtxg: 1,
                    creation: Some(1_800_000_000),
                    userrefs: 2,
                },
                SnapshotFacts {
                    name: "s2".into(),
                    createtxg: 2,
                    creation: None,
                    userrefs: 0,
                },
                SnapshotFacts {
                    name: "zfsync_2027-01-01T00:00:00Z".into(),
                    createtxg: 3,
                    creation: Some(1_800_000_000),
                    userrefs: 0,
                },
            ],
        };
        let marks = HashMap::from([("p/a@s2".to_string(), vec!["bk1".to_string()])]);
        assert_eq!(
            candidates(&ds, &marks),
            [
                Candidate {
                    name: "s1".into(),
                    time: Some(Timestamp::from_second(1_800_000_000).unwrap()),
                    userrefs: 2,
                    marks: vec![],
                },
                Candidate {
                    name: "s2".into(),
                    time: None,
                    userrefs: 0,
                    marks: vec!["bk1".into()],
                },
                Candidate::new("zfsync_2027-01-01T00:00:00Z"),
            ]
        );
    }
}
