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

use crate::context::help;
use crate::context::{self, now};
use crate::replica::{replicas, Replica};
use crate::Error;
use std::path::PathBuf;
use zfsync_cli::{parse_options, Exit, Output, Parsed, Program, UsageError};
use zfsync_history::{rfc3339, Role, Store};

pub const USAGE: &str = concat!(
    "\
Usage: zfsync forget [options] DATASET...

Retire datasets that are no longer sent (dropped from a job, or destroyed) from
zfsync status and zfsync check replication, which otherwise judge them by their
last transfer for ever and turn CRITICAL. DATASET is the name as the history has
it (the source's name on a sender, where it landed on a receiver; zfsync status
lists them). Every peer and side (send, recv) of DATASET is retired unless
--peer or --role chooses; with -r, every dataset below it too. The history
keeps the attempts (zfsync history and zfsync report still show them), and a
retired dataset that is replicated again is back in status and check by
itself. Nothing is changed when a DATASET is not in the history (or already
retired).

Options:
      --peer PEER          only the replica with PEER (as zfsync status shows)
      --role ROLE          only the sender's (send) or the receiver's (recv)
  -r, --recursive          DATASET and every dataset below it in the history
  -n, --dry-run            show what would be retired, change nothing
",
    help!(options state_dir),
    help!(environment),
    ".
Exit status: 0 retired (or shown with --dry-run), 1 the history cannot be read
or written, or a DATASET is not in it (nothing was retired), 2 usage error.

Examples:
  zfsync forget --dry-run tank/old
      what would be retired: tank/old with every peer
  zfsync forget -r tank/old
      retire tank/old and every dataset below it, with every peer
  zfsync forget --peer backup2:7611 --role send tank/home
      tank/home is no longer sent to backup2, but still to the others
"
);

pub static PROGRAM: Program = crate::program("zfsync forget", USAGE);

/// A checked command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub datasets: Vec<String>,
    pub peer: Option<String>,
    pub role: Option<Role>,
    pub recursive: bool,
    pub dry_run: bool,
    pub state_dir: PathBuf,
    /// Unix seconds.
    pub now: i64,
}

pub fn config(argv: &[String]) -> Result<Parsed<(Config, Output)>, UsageError> {
    let mut o = getopts::Options::new();
    o.optopt("", "peer", "", "PEER");
    context::role_option(&mut o);
    o.optflag("r", "recursive", "");
    o.optflag("n", "dry-run", "");
    context::state_dir_option(&mut o);
    parse_options(o, argv)?.try_map(|(m, output)| {
        if m.free.is_empty() {
            return Err("missing DATASET".into());
        }
        let role = context::role(&m)?;
        let config = Config {
            // "tank/old/" (a shell's completion) names tank/old.
            datasets: m
                .free
                .iter()
                .map(|d| match d.trim_end_matches('/') {
                    "" => d.clone(),
                    trimmed => trimmed.to_string(),
                })
                .collect(),
            peer: m.opt_str("peer"),
            role,
            recursive: m.opt_present("recursive"),
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
    // With -r, "tank/old" names tank/old/a, never tank/older.
    let names = |d: &str, r: &Replica| {
        r.dataset == d
            || (config.recursive
                && r.dataset
                    .strip_prefix(d)
                    .is_some_and(|rest| rest.starts_with('/')))
    };
    let unknown: Vec<String> = config
        .datasets
        .iter()
        .filter(|d| !all.iter().any(|r| names(d, r) && chosen(r)))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(unknown);
    }
    Ok(all
        .iter()
        .filter(|r| config.datasets.iter().any(|d| names(d, r)) && chosen(r))
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
    use crate::tests::{refused, run_of};

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
        let c = run_of(config, argv).unwrap();
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
    fn recursive_names_the_datasets_below_not_those_that_share_a_prefix() {
        let all = [
            replica("tank/old", "b1", Role::Send),
            replica("tank/old/a", "b1", Role::Send),
            replica("tank/old/a/b", "b2", Role::Send),
            replica("tank/older", "b1", Role::Send),
            replica("tank/x/y", "b1", Role::Send),
        ];
        let s = |v: &[&str]| -> Vec<String> { v.iter().map(|x| x.to_string()).collect() };
        for (argv, want) in [
            (
                &["-r", "tank/old"][..],
                Ok(s(&[
                    "tank/old b1 send",
                    "tank/old/a b1 send",
                    "tank/old/a/b b2 send",
                ])),
            ),
            (&["tank/old"], Ok(s(&["tank/old b1 send"]))),
            (
                &["-r", "--peer", "b2", "tank/old"],
                Ok(s(&["tank/old/a/b b2 send"])),
            ),
            // Nothing of its own in the history, but datasets below it.
            (&["-r", "tank/x"], Ok(s(&["tank/x/y b1 send"]))),
            (&["tank/x"], Err(s(&["tank/x"]))),
            (&["-r", "tank/ol"], Err(s(&["tank/ol"]))),
            (&["-r", "tank/x/"], Ok(s(&["tank/x/y b1 send"]))),
            (&["tank/old//"], Ok(s(&["tank/old b1 send"]))),
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
        let c = run_of(
            config,
            &["-n", "--peer", "b1", "--role", "send", "t/a", "t/b"],
        )
        .unwrap();
        assert!(c.dry_run);
        assert_eq!(c.datasets, ["t/a", "t/b"]);
        assert_eq!((c.peer.as_deref(), c.role), (Some("b1"), Some(Role::Send)));
        refused(
            config,
            &[
                (&[][..], "missing DATASET"),
                (&["--role", "both", "t/a"], "--role wants send or recv"),
            ],
        );
    }

    #[test]
    fn help_ends_with_examples_that_parse() {
        crate::tests::examples_parse(&PROGRAM, config);
    }
}
