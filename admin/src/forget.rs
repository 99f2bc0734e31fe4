//! `zfsync forget`: retires datasets that are no longer replicated, so that `zfsync
//! status` and `zfsync check replication` stop judging them by their last, ever older,
//! transfer. The history keeps every attempt; a retired dataset that is sent or received
//! again comes back by itself (see `Store::retire`).
//!
//! A subcommand of its own rather than an option of `check`: a check is a monitoring
//! plugin that only reads, and this writes. Plan, then apply: the plan (which replicas
//! DATASET names) is made first, shown by `--dry-run`, and applied only whole: a DATASET
//! the history does not know changes nothing, so a typo is not half-applied.
//!
//! Owns the command line of `forget` and its plan. Must not delete attempts or run zfs.

use crate::context::{self, now};
use crate::replica::{replicas, Replica};
use crate::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use zfsync_cli::{parse_options, Exit, Output, Parsed, Program, UsageError};
use zfsync_history::{rfc3339, Role, Store};

pub const USAGE: &str = "\
Usage: zfsync forget [options] DATASET...

Retire datasets that are no longer sent (dropped from a job, or destroyed) from
zfsync status and zfsync check replication, which otherwise judge them by their
last transfer for ever and turn CRITICAL. DATASET is the name as the history has
it (the source's name on a sender, where it landed on a receiver; zfsync status
lists them). Every peer and side (send, recv) of DATASET is retired unless
--peer or --role chooses. The history keeps the attempts (zfsync history and
zfsync report still show them), and a retired dataset that is replicated again
is back in status and check by itself. Nothing is changed when a DATASET is not
in the history (or already retired).

Options:
      --peer PEER          only the replica with PEER (as zfsync status shows)
      --role ROLE          only the sender's (send) or the receiver's (recv)
  -n, --dry-run            show what would be retired, change nothing
      --state-dir DIR      where the history is (default: /var/lib/zfsync)
  -o, --log-file FILE      write the log to FILE instead of stderr
  -v, --verbose            more log output (-vv for debug)
  -h, --help               show this help
  -V, --version            show the version

Environment: ZFSYNC_NOW=SECONDS replaces the clock (unix seconds).
Exit status: 0 retired (or shown with --dry-run), 1 the history cannot be read
or written, or a DATASET is not in it (nothing was retired), 2 usage error.

Examples:
  zfsync forget --dry-run tank/old
      what would be retired: tank/old with every peer
  zfsync forget tank/old tank/old/child
      retire both, with every peer they were sent to
  zfsync forget --peer backup2:7611 --role send tank/home
      tank/home is no longer sent to backup2, but still to the others
";

pub static PROGRAM: Program = crate::program("zfsync forget", USAGE);

/// `zfsync forget ARGS`.
pub fn main(argv: &[String]) -> ExitCode {
    zfsync_cli::main_with(&PROGRAM, argv, config, run)
}

/// A checked command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub datasets: Vec<String>,
    pub peer: Option<String>,
    pub role: Option<Role>,
    pub dry_run: bool,
    pub state_dir: PathBuf,
    /// Unix seconds.
    pub now: i64,
}

pub fn config(argv: &[String]) -> Result<Parsed<(Config, Output)>, UsageError> {
    let mut o = getopts::Options::new();
    o.optopt("", "peer", "", "PEER");
    o.optopt("", "role", "", "ROLE");
    o.optflag("n", "dry-run", "");
    context::state_dir_option(&mut o);
    parse_options(o, argv)?.try_map(|(m, output)| {
        if m.free.is_empty() {
            return Err("missing DATASET".into());
        }
        let role = context::role(&m)?;
        let config = Config {
            datasets: m.free.clone(),
            peer: m.opt_str("peer"),
            role,
            dry_run: m.opt_present("dry-run"),
            state_dir: context::state_dir(&m),
            now: now()?.as_second(),
        };
        Ok((config, output))
    })
}

/// The replicas `config` names, in the history's order, or the DATASETs that name none.
pub fn plan<'a>(config: &Config, all: &'a [Replica]) -> Result<Vec<&'a Replica>, Vec<String>> {
    let chosen = |r: &Replica| {
        config.peer.as_ref().map_or(true, |p| *p == r.peer)
            && config.role.map_or(true, |role| role == r.role)
    };
    let unknown: Vec<String> = config
        .datasets
        .iter()
        .filter(|d| !all.iter().any(|r| r.dataset == **d && chosen(r)))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(unknown);
    }
    Ok(all
        .iter()
        .filter(|r| config.datasets.contains(&r.dataset) && chosen(r))
        .collect())
}

/// `tank/old to backup:7611 (send): last try 2026-12-01T00:00:00Z, failed`.
fn describe(r: &Replica) -> String {
    let way = match r.role {
        Role::Send => "to",
        Role::Recv => "from",
    };
    format!(
        "{} {way} {} ({}): last try {}, {}",
        r.dataset,
        r.peer,
        r.role.as_str(),
        rfc3339(r.last_attempt),
        r.state.as_str()
    )
}

pub fn run(config: &Config, _output: &Output) -> Result<Exit, Error> {
    // A dry run must not even migrate the file; nor may a wrong --state-dir get a new,
    // empty history (a writer creates one where there is none).
    let store = match (config.dry_run, Store::open_read_only(&config.state_dir)) {
        (true, read) => read?,
        (false, Err(e @ zfsync_history::Error::Missing { .. })) => return Err(e.into()),
        (false, _) => Store::open(&config.state_dir)?,
    };
    let all = replicas(&store, &config.state_dir, config.now)?;
    let chosen = plan(config, &all).map_err(|unknown| {
        let which = unknown.join(", ");
        let mut text = format!("not in the history (or already retired): {which}");
        if config.peer.is_some() || config.role.is_some() {
            text.push_str(" with that --peer or --role");
        }
        Error::Io(format!("{text}; nothing was retired"))
    })?;
    for r in chosen {
        if config.dry_run {
            crate::say!("would retire {}", describe(r));
            continue;
        }
        store.retire(&r.dataset, &r.peer, r.role, config.now)?;
        log::info!(
            "retired dataset={} peer={} role={}",
            zfsync_text::quoted(&r.dataset),
            zfsync_text::quoted(&r.peer),
            r.role.as_str()
        );
        crate::say!("retired {}", describe(r));
    }
    Ok(Exit::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::State;

    fn config_of(argv: &[&str]) -> Result<Config, UsageError> {
        crate::tests::run_of(config, argv)
    }

    fn replica(dataset: &str, peer: &str, role: Role) -> Replica {
        Replica {
            dataset: dataset.into(),
            peer: peer.into(),
            role,
            job: "bk1".into(),
            state: State::Failed,
            last_attempt: 1_796_169_600,
            last_success: None,
            since_success: 0,
            base: None,
            source_newest: None,
            lag: None,
            backlog: 1,
            last_error: None,
        }
    }

    fn chosen(argv: &[&str], all: &[Replica]) -> Result<Vec<String>, Vec<String>> {
        let c = config_of(argv).unwrap();
        plan(&c, all).map(|rs| {
            rs.iter()
                .map(|r| format!("{} {} {}", r.dataset, r.peer, r.role.as_str()))
                .collect()
        })
    }

    #[test]
    fn the_plan_names_every_peer_and_side_unless_chosen() {
        let all = [
            replica("tank/a", "b1", Role::Send),
            replica("tank/old", "b1", Role::Send),
            replica("tank/old", "b2", Role::Send),
            replica("tank/old", "src", Role::Recv),
        ];
        let s = |v: &[&str]| -> Vec<String> { v.iter().map(|x| x.to_string()).collect() };
        for (argv, want) in [
            (
                &["tank/old"][..],
                Ok(s(&[
                    "tank/old b1 send",
                    "tank/old b2 send",
                    "tank/old src recv",
                ])),
            ),
            (&["--peer", "b2", "tank/old"], Ok(s(&["tank/old b2 send"]))),
            (
                &["--role", "recv", "tank/old"],
                Ok(s(&["tank/old src recv"])),
            ),
            (
                &["tank/a", "tank/old", "--role", "send", "--peer", "b1"],
                Ok(s(&["tank/a b1 send", "tank/old b1 send"])),
            ),
            (&["tank/ol", "tank/a"], Err(s(&["tank/ol"]))),
            (&["--peer", "b2", "tank/a"], Err(s(&["tank/a"]))),
        ] {
            assert_eq!(chosen(argv, &all), want, "{argv:?}");
        }
    }

    #[test]
    fn the_description_names_the_replica() {
        assert_eq!(
            describe(&replica("tank/old", "b1:7611", Role::Send)),
            "tank/old to b1:7611 (send): last try 2026-12-02T00:00:00Z, failed"
        );
    }

    #[test]
    fn command_lines() {
        let c = config_of(&["-n", "--peer", "b1", "--role", "send", "t/a", "t/b"]).unwrap();
        assert!(c.dry_run);
        assert_eq!(c.datasets, ["t/a", "t/b"]);
        assert_eq!((c.peer.as_deref(), c.role), (Some("b1"), Some(Role::Send)));
        for (argv, want) in [
            (&[][..], "missing DATASET"),
            (&["--role", "both", "t/a"], "--role wants send or recv"),
        ] {
            let e = config_of(argv).unwrap_err().to_string();
            assert!(e.starts_with(want), "{argv:?}: {e}");
        }
    }

    #[test]
    fn help_ends_with_examples_that_parse() {
        crate::tests::examples_parse(&PROGRAM, config);
    }
}
