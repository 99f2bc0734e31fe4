//! `zfsync check`: monitoring-plugin checks of snapshots, replication, pool health and
//! pool capacity, and `all` of them at once, with the plugins' exit codes (0 OK, 1
//! WARNING, 2 CRITICAL, 3 UNKNOWN) and output (`check/verdict.rs`).
//!
//! Owns the command line of `check` (which check, which options apply to it, the
//! thresholds), gathering what each check judges (a zfs listing, the history, zpool),
//! and the rule that a check that cannot run is UNKNOWN, never OK: a usage error too,
//! since a monitoring system reads 2 as CRITICAL. The judging is in `check/`, one module
//! per check; it must not be done here.

mod pools;
mod replication;
mod snapshots;
mod verdict;

use crate::context::help;
use crate::context::{self, Context};
use crate::replica::replicas;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use verdict::{Status, Verdict};
use zfsync_cli::{parse_options, Output, Parsed, Program, UsageError};
use zfsync_history::Store;
use zfsync_retention::Keep;
use zfsync_zfs::{Dataset, Zfs, Zpool};

pub const USAGE: &str = concat!(
    "\
Usage: zfsync check CHECK [options] [ARGS]

Monitoring-plugin checks, for Nagios, Icinga, Checkmk and the like, or for
Prometheus's node_exporter: the first line is 'ZFSYNC CHECK STATUS - summary |
perfdata', then one line for each problem, naming the dataset or pool and its
numbers; the exit status is the result. A check that cannot run (zfs or zpool
fails, no history to read) is UNKNOWN, never OK.

Checks:
  snapshots DATASET  the age of the newest zfsync snapshot of DATASET and of
                     each dataset below it; the thresholds come from --keep PLAN
                     (its smallest period among rules that keep something:
                     warning at 1.5x, critical at 3x); a snapshot dated in the
                     future is a warning, a dataset without one critical
  replication        per dataset and peer in the history (--state-dir): the
                     time since the last success and the lag; thresholds from
                     --interval (warning 3x, critical 6x) unless given; a
                     dataset that never succeeded counts from its first try
  health [POOL...]   pool state and errors: DEGRADED or device errors that
                     were repaired warn; FAULTED, UNAVAIL, REMOVED or data
                     errors are critical (default: every pool)
  capacity [POOL...] percent of each pool allocated (default: every pool)
  all [DATASET]      every check that applies, with every line kept, the worst
                     result first: health and capacity of the --pool pools,
                     replication when there is a history, snapshots of DATASET
                     with --keep

Options:
      --keep PLAN          snapshots, all: the retention plan, as zfsync prune
                           takes it (hourly=24,daily=30)
      --interval SECS      replication, all: how often zfsync-send runs
                           (default 900)
      --warning N          snapshots, replication: seconds (or 90m, 2h, 1d);
                           capacity: percent (default 80)
      --critical N         the same for critical (capacity default 90)
      --pool POOL          all: a pool to check (repeatable; default: every pool)
      --format FORMAT      nagios (default), json, or prom: a node_exporter
                           textfile (zfsync_check_status and the numbers)
      --state-dir DIR      replication, all: where the history is (default:
                           $ZFSYNC_STATE_DIR, else /var/lib/zfsync)
      --zfs PATH           zfs binary (default: zfs)
      --zpool PATH         zpool binary (default: zpool)
",
    help!(options),
    help!(environment),
    ".
Exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the check could not run, or
the command line is wrong).

Examples:
  zfsync check replication --interval 3600
      for a zfsync-send run hourly: warning after 3 h without a success,
      critical after 6 h
  zfsync check snapshots --keep hourly=24,daily=30 tank/home
      warning when a newest zfsync snapshot is 90 min old, critical at 3 h
  zfsync check all --format prom --keep hourly=24 --pool tank tank/home
      everything about tank, for node_exporter's textfile collector
"
);

pub static PROGRAM: Program = crate::program("zfsync check", USAGE);

/// How long a zfs or zpool command of a check may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// `--interval` when none is given: zfsyncron's usual quarter hour.
const DEFAULT_INTERVAL: i64 = 900;

/// A warning and a critical threshold: seconds, or percent for capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub warning: i64,
    pub critical: i64,
}

/// As durations: `warning 1h30m, critical 3h`.
impl fmt::Display for Thresholds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "warning {}, critical {}",
            crate::age::show(self.warning),
            crate::age::show(self.critical)
        )
    }
}

/// Which check, with what it needs.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    Snapshots {
        dataset: Dataset,
        limits: Thresholds,
    },
    Replication {
        limits: Thresholds,
    },
    Health {
        pools: Vec<String>,
    },
    Capacity {
        pools: Vec<String>,
        limits: Thresholds,
    },
    All {
        snapshots: Option<(Dataset, Thresholds)>,
        replication: Thresholds,
        pools: Vec<String>,
    },
}

/// How the verdict is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Nagios,
    Json,
    Prom,
}

/// A checked command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub check: Check,
    pub format: Format,
    pub state_dir: PathBuf,
    /// `--state-dir` was given: `all` then runs replication even without a history.
    pub state_dir_given: bool,
    pub zpool: PathBuf,
    pub context: Context,
}

/// The options each check takes, beyond those all of them have.
const OPTIONS: &[(&str, &[&str])] = &[
    ("snapshots", &["keep", "warning", "critical", "zfs"]),
    (
        "replication",
        &["interval", "warning", "critical", "state-dir"],
    ),
    ("health", &["zpool"]),
    ("capacity", &["warning", "critical", "zpool"]),
    (
        "all",
        &["keep", "interval", "pool", "state-dir", "zfs", "zpool"],
    ),
];

/// `zfsync check ARGS`. Not the scaffold's `main_with`: a usage error must be UNKNOWN
/// (exit 3), with a first line a monitoring system shows.
pub fn main(argv: &[String]) -> ExitCode {
    let (config, output) = match config(argv) {
        Ok(Parsed::Run(r)) => r,
        Ok(Parsed::Special(s)) => {
            PROGRAM.print_special(s);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            crate::say!("ZFSYNC CHECK UNKNOWN - {e}");
            eprintln!("{}: {e}\nTry '{} --help'.", PROGRAM.name, PROGRAM.name);
            return ExitCode::from(Status::Unknown.code());
        }
    };
    if let Err(e) = output.init_logging(PROGRAM.levels) {
        crate::say!("ZFSYNC CHECK UNKNOWN - {e}");
        return ExitCode::from(Status::Unknown.code());
    }
    let verdict = run(&config);
    let text = match config.format {
        Format::Nagios => verdict.nagios(),
        Format::Json => verdict.json(),
        Format::Prom => verdict.prom(),
    };
    crate::say!("{}", text.trim_end_matches('\n'));
    ExitCode::from(verdict.status.code())
}

pub fn config(argv: &[String]) -> Result<Parsed<(Config, Output)>, UsageError> {
    let mut o = getopts::Options::new();
    o.optopt("", "keep", "", "PLAN");
    o.optopt("", "interval", "", "SECS");
    o.optopt("", "warning", "", "N");
    o.optopt("", "critical", "", "N");
    o.optmulti("", "pool", "", "POOL");
    o.optopt("", "format", "", "FORMAT");
    o.optopt("", "zpool", "", "PATH");
    context::state_dir_option(&mut o);
    Context::options(&mut o);
    parse_options(o, argv)?.try_map(|(m, output)| {
        let (name, args) = match m.free.split_first() {
            Some((name, args)) => (name.as_str(), args),
            None => {
                return Err("missing CHECK: snapshots, replication, health, capacity or all".into())
            }
        };
        let allowed = OPTIONS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, opts)| *opts)
            .ok_or_else(|| {
                format!("unknown check {name:?}: snapshots, replication, health, capacity or all")
            })?;
        for option in OPTIONS.iter().flat_map(|(_, opts)| opts.iter()) {
            if m.opt_present(option) && !allowed.contains(option) {
                return Err(format!("--{option} does not apply to check {name}").into());
            }
        }
        let seconds = |option: &str| -> Result<Option<i64>, UsageError> {
            m.opt_str(option)
                .map(|v| {
                    crate::age::parse(&v).map_err(|e| UsageError::new(format!("--{option} {e}")))
                })
                .transpose()
        };
        let interval = seconds("interval")?.unwrap_or(DEFAULT_INTERVAL);
        if interval == 0 {
            return Err("--interval must be above 0".into());
        }
        let from_interval = Thresholds {
            warning: 3 * interval,
            critical: 6 * interval,
        };
        let keep = m
            .opt_str("keep")
            .map(|plan| Keep::parse(&plan, None).map_err(UsageError::new))
            .transpose()?;
        let no_args = |what: &str| match args {
            [] => Ok(()),
            _ => Err(UsageError::new(format!(
                "check {what} takes no arguments, got {args:?}"
            ))),
        };
        let check = match name {
            "snapshots" => {
                let dataset = match args {
                    [d] => Dataset::new(d).map_err(|e| format!("DATASET: {e}"))?,
                    [] => return Err("missing DATASET: check snapshots DATASET".into()),
                    _ => return Err(format!("one DATASET expected, got {}", args.len()).into()),
                };
                let limits = thresholds(seconds("warning")?, seconds("critical")?, || {
                    from_plan(keep.as_ref())
                })?;
                Check::Snapshots { dataset, limits }
            }
            "replication" => {
                no_args(name)?;
                let limits = thresholds(seconds("warning")?, seconds("critical")?, || {
                    Ok(from_interval)
                })?;
                Check::Replication { limits }
            }
            "health" => Check::Health {
                pools: args.to_vec(),
            },
            "capacity" => {
                let percent = |option: &str| -> Result<Option<i64>, UsageError> {
                    m.opt_str(option)
                        .map(|v| match v.trim_end_matches('%').parse::<i64>() {
                            Ok(n) if (0..=100).contains(&n) => Ok(n),
                            _ => Err(format!(
                                "--{option} wants a percentage from 0 to 100, got {v:?}"
                            )
                            .into()),
                        })
                        .transpose()
                };
                let limits = thresholds(percent("warning")?, percent("critical")?, || {
                    Ok(Thresholds {
                        warning: 80,
                        critical: 90,
                    })
                })?;
                Check::Capacity {
                    pools: args.to_vec(),
                    limits,
                }
            }
            _ => {
                let snapshots = match (args, keep) {
                    ([], None) => None,
                    ([d], Some(keep)) => Some((
                        Dataset::new(d).map_err(|e| format!("DATASET: {e}"))?,
                        from_plan(Some(&keep))?,
                    )),
                    ([_], None) => {
                        return Err("all DATASET needs --keep PLAN for its snapshots' ages".into())
                    }
                    ([], Some(_)) => return Err("--keep needs a DATASET to check".into()),
                    _ => return Err(format!("one DATASET at most, got {}", args.len()).into()),
                };
                Check::All {
                    snapshots,
                    replication: from_interval,
                    pools: m.opt_strs("pool"),
                }
            }
        };
        let format = match m.opt_str("format").as_deref() {
            None | Some("nagios") => Format::Nagios,
            Some("json") => Format::Json,
            Some("prom") => Format::Prom,
            Some(f) => return Err(format!("--format wants nagios, json or prom, got {f:?}").into()),
        };
        let config = Config {
            check,
            format,
            state_dir: context::state_dir(&m),
            state_dir_given: m.opt_present("state-dir"),
            zpool: PathBuf::from(m.opt_str("zpool").unwrap_or_else(|| "zpool".into())),
            context: Context::from_matches(&m)?,
        };
        Ok((config, output))
    })
}

/// `--warning` and `--critical` where given, the defaults' where not; warning must stay
/// below critical.
fn thresholds(
    warning: Option<i64>,
    critical: Option<i64>,
    defaults: impl FnOnce() -> Result<Thresholds, UsageError>,
) -> Result<Thresholds, UsageError> {
    let limits = match (warning, critical) {
        (Some(warning), Some(critical)) => Thresholds { warning, critical },
        _ => {
            let d = defaults()?;
            Thresholds {
                warning: warning.unwrap_or(d.warning),
                critical: critical.unwrap_or(d.critical),
            }
        }
    };
    if limits.warning >= limits.critical {
        return Err(format!(
            "the warning threshold ({}) must be below the critical one ({})",
            limits.warning, limits.critical
        )
        .into());
    }
    Ok(limits)
}

/// The snapshot thresholds a plan implies: its smallest period among the rules that
/// keep something, x1.5 and x3.
fn from_plan(keep: Option<&Keep>) -> Result<Thresholds, UsageError> {
    let keep = keep.ok_or("missing --keep PLAN (or both --warning and --critical)")?;
    let period = keep.plan.expected_period().ok_or_else(|| {
        format!(
            "--keep {}: its rules (last, within) ask for no rate: give --warning and --critical",
            keep.plan
        )
    })?;
    let secs = period.as_secs();
    Ok(Thresholds {
        warning: secs + secs / 2,
        critical: 3 * secs,
    })
}

/// Gathers and judges; whatever fails becomes UNKNOWN.
pub fn run(config: &Config) -> Verdict {
    let now = config.context.now.as_second();
    match &config.check {
        Check::Snapshots { dataset, limits } => snapshots(config, dataset, *limits, now),
        Check::Replication { limits } => replication(config, *limits, now),
        Check::Health { pools } => health(config, pools),
        Check::Capacity { pools, limits } => capacity(config, pools, *limits),
        Check::All {
            snapshots: snap,
            replication: limits,
            pools,
        } => {
            let mut parts = vec![health(config, pools), capacity(config, pools, CAPACITY)];
            let history = config.state_dir.join(zfsync_history::FILE_NAME);
            if config.state_dir_given || history.exists() {
                parts.push(replication(config, *limits, now));
            }
            if let Some((dataset, limits)) = snap {
                parts.push(snapshots(config, dataset, *limits, now));
            }
            Verdict::all(parts)
        }
    }
}

/// The capacity thresholds of `all`.
const CAPACITY: Thresholds = Thresholds {
    warning: 80,
    critical: 90,
};

fn snapshots(config: &Config, dataset: &Dataset, limits: Thresholds, now: i64) -> Verdict {
    let tree = Zfs::detect(&config.context.zfs_bin)
        .map(|z| z.with_limit(COMMAND_LIMIT))
        .and_then(|zfs| zfs.lifecycle_tree(dataset, false));
    match tree {
        Ok(tree) => snapshots::judge(&tree, limits, now),
        Err(e) => Verdict::unknown("snapshots", format!("cannot list {dataset}: {e}")),
    }
}

fn replication(config: &Config, limits: Thresholds, now: i64) -> Verdict {
    let dir = &config.state_dir;
    match Store::open_read_only(dir).and_then(|store| replicas(&store, dir, now)) {
        Ok(all) => replication::judge(&all, limits),
        Err(e) => Verdict::unknown("replication", e.to_string()),
    }
}

fn zpool(config: &Config) -> Zpool {
    Zpool::new(&config.zpool, COMMAND_LIMIT)
}

fn health(config: &Config, pools: &[String]) -> Verdict {
    let zpool = zpool(config);
    match zpool.list().and_then(|list| Ok((list, zpool.unhealthy()?))) {
        Ok((list, unhealthy)) => pools::health(&list, &unhealthy, pools),
        Err(e) => Verdict::unknown("health", e.to_string()),
    }
}

fn capacity(config: &Config, pools: &[String], limits: Thresholds) -> Verdict {
    match zpool(config).list() {
        Ok(list) => pools::capacity(&list, pools, limits),
        Err(e) => Verdict::unknown("capacity", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{refused, run_of};

    fn check_of(argv: &[&str]) -> Check {
        run_of(config, argv).unwrap().check
    }

    #[test]
    fn thresholds_from_the_plan_the_interval_or_the_options() {
        let t = |warning, critical| Thresholds { warning, critical };
        let ds = || Dataset::new("tank/a").unwrap();
        let snapshots = |limits| Check::Snapshots {
            dataset: ds(),
            limits,
        };
        let cases: Vec<(&[&str], Check)> = vec![
            (
                &[
                    "snapshots",
                    "--keep",
                    "minutely=0,hourly=24,daily=7",
                    "tank/a",
                ],
                snapshots(t(5400, 10_800)),
            ),
            (
                &[
                    "snapshots",
                    "--keep",
                    "hourly=24",
                    "--warning",
                    "2h",
                    "tank/a",
                ],
                snapshots(t(7200, 10_800)),
            ),
            (
                &[
                    "snapshots",
                    "--warning",
                    "60",
                    "--critical",
                    "120",
                    "tank/a",
                ],
                snapshots(t(60, 120)),
            ),
            (
                &["replication"],
                Check::Replication {
                    limits: t(2700, 5400),
                },
            ),
            (
                &["replication", "--interval", "1h"],
                Check::Replication {
                    limits: t(10_800, 21_600),
                },
            ),
            (
                &["replication", "--warning", "3600", "--critical", "7200"],
                Check::Replication {
                    limits: t(3600, 7200),
                },
            ),
            (
                &["capacity"],
                Check::Capacity {
                    pools: vec![],
                    limits: t(80, 90),
                },
            ),
            (
                &["capacity", "--warning", "70%", "tank", "bk"],
                Check::Capacity {
                    pools: vec!["tank".into(), "bk".into()],
                    limits: t(70, 90),
                },
            ),
            (
                &["health", "tank"],
                Check::Health {
                    pools: vec!["tank".into()],
                },
            ),
            (
                &["all", "--pool", "tank", "--keep", "hourly=24", "tank/a"],
                Check::All {
                    snapshots: Some((ds(), t(5400, 10_800))),
                    replication: t(2700, 5400),
                    pools: vec!["tank".into()],
                },
            ),
        ];
        for (argv, want) in cases {
            assert_eq!(check_of(argv), want, "{argv:?}");
        }
        let c = run_of(
            config,
            &["all", "--format", "prom", "--state-dir", "/srv/z"],
        )
        .unwrap();
        assert_eq!(c.format, Format::Prom);
        assert!(c.state_dir_given);
        assert!(!run_of(config, &["health"]).unwrap().state_dir_given);
    }

    #[test]
    fn bad_command_lines() {
        refused(
            config,
            &[
                (&[][..], "missing CHECK"),
                (&["bogus"], "unknown check \"bogus\""),
                (
                    &["health", "--keep", "daily=1"],
                    "--keep does not apply to check health",
                ),
                (
                    &["replication", "--pool", "x"],
                    "--pool does not apply to check replication",
                ),
                (&["snapshots", "tank/a"], "missing --keep PLAN"),
                (
                    &["snapshots", "--keep", "last=5", "tank/a"],
                    "--keep last=5: its rules",
                ),
                (&["snapshots", "--keep", "hourly=1"], "missing DATASET"),
                (
                    &["replication", "--warning", "2h", "--critical", "1h"],
                    "the warning threshold (7200) must be below",
                ),
                (
                    &["replication", "x"],
                    "check replication takes no arguments",
                ),
                (
                    &["capacity", "--critical", "120"],
                    "--critical wants a percentage",
                ),
                (
                    &["replication", "--interval", "0"],
                    "--interval must be above 0",
                ),
                (
                    &["replication", "--interval", "soon"],
                    "--interval wants a duration",
                ),
                (&["all", "tank/a"], "all DATASET needs --keep"),
                (&["all", "--keep", "hourly=1"], "--keep needs a DATASET"),
                (
                    &["health", "--format", "xml"],
                    "--format wants nagios, json or prom",
                ),
            ],
        );
    }

    #[test]
    fn help_ends_with_examples_that_parse() {
        crate::tests::examples_parse(&PROGRAM, config);
    }
}
