//! Command line of `zfsync-recv`: raw options ([`Args`]) become a checked [`Config`].

use crate::Config;
use std::path::PathBuf;
use zfsync_cli::parse_options;
use zfsync_cli::values::{duration_secs, number, seconds, HostPort};
// The types this module's functions return.
pub use zfsync_cli::{Output, Parsed, UsageError};
use zfsync_retention::Keep;
use zfsync_zfs::Dataset;

pub const USAGE: &str = "\
Usage: zfsync-recv [options] TARGET
       zfsync-recv --gen-key NAME

Receive ZFS datasets replicated by zfsync-send under TARGET, a dataset that is the replica
of the sender's root (TARGET itself need not exist yet; its parent must). Runs until
SIGTERM or SIGINT (or SIGHUP without -o); SIGHUP reopens the -o log file.

Options:
  -l, --listen ADDR[:PORT] address to listen on (default 0.0.0.0:7611; PORT
                           defaults to 7611); an IPv6 address in brackets: [::]
  -b, --buffer DATASET     where children whose parent has not arrived yet wait
                           (default: TARGET_zfsync_buffer beside TARGET); must lie
                           outside TARGET
  -j, --max-connections N  concurrent connections served (default 16); more are
                           refused with a clear error
      --timeout SECS       give up on a silent peer after SECS seconds (default 60),
                           kill a zfs command that runs 5 times as long, and
                           let a sender's cleanup wait that long for its datasets
                           still locked after their result
      --parent-wait SECS   how long a new dataset whose parent is being received
                           waits for it before going to the buffer (default 2;
                           0: at once)
      --allow-rollback     allow rolling a destination back to the newest common
                           snapshot, destroying the snapshots and changes it has
                           that the source does not (default: refuse such datasets)
      --allow-overwrite    allow a full receive over an existing dataset that has no
                           snapshots (destroys its contents; default: refuse)
      --keep PLAN          after each receive into a dataset, destroy its zfsync
                           snapshots this retention plan does not keep, never the
                           newest (the base), a held one or one not named by
                           zfsync (zfsync prune --help: plans; default: keep all)
      --tz ZONE            time zone of the plan's buckets (default UTC)
      --orphans-after DUR  destroy a replica whose source dataset every run of its
                           sender has lacked for DUR (e.g. 30d, 36h; at least 1d)
                           and at least two runs, with everything below it;
                           counted from the first run that lacked it, and only if
                           that sender delivered it before; needs --key-file
                           (default: keep such replicas for ever)
      --dry-run-orphans    with --orphans-after: log the replicas that would be
                           destroyed and those still waiting, destroy none
      --key-file FILE      accept only senders that prove knowledge of a key in FILE
                           (challenge-response, the key never crosses the wire).
                           Lines: NAME SECRET [SUBTREE]; a client with a SUBTREE is
                           confined to TARGET/SUBTREE. FILE must be mode 600;
                           secrets have at least 16 characters.
      --gen-key NAME       print a new key for client NAME (a random secret of 64
                           hex digits): its line for this side's key file and for
                           the sender's, then exit
      --zfs PATH           zfs binary (default: zfs)
      --state-dir DIR      keep the history of receives in DIR/history.sqlite
                           (default $ZFSYNC_STATE_DIR, else /var/lib/zfsync);
                           a state dir that fails costs a warning, never a
                           receive
      --history-days N     keep N days of history (default 90; the newest
                           attempt and success of each dataset are always kept)
      --http ADDR[:PORT]   serve a status page (/), /status.json and /metrics
                           (Prometheus) on ADDR (default: off; PORT defaults to
                           9611); they name the datasets: keep ADDR on loopback
                           or a trusted network
  -o, --log-file FILE      write the log to FILE instead of stderr; SIGHUP reopens
                           it (logrotate: rename FILE, then send SIGHUP)
  -v, --verbose            more log output (-v debug, -vv trace; default info)
  -h, --help               show this help
  -V, --version            show the version

Prints 'listening on ADDR:PORT' on stdout once it accepts connections.
ZFSYNC_NOW (unix seconds), when set, replaces the clock of the history and the page.
Exit status: 0 after a clean stop, 1 on a runtime error, 2 on a usage or configuration
error (a TARGET, lock or address that cannot be used).

Examples:
  zfsync-recv -o /var/log/zfsync-recv.log backup/hosts/fileserver
      receive one source's tree on port 7611 of every address, log to a file
      (SIGHUP reopens it: logrotate's postrotate is 'pkill -HUP -x zfsync-recv')
  zfsync-recv --key-file /etc/zfsync/keys --keep hourly=48,daily=90,monthly=24 \
      --http 127.0.0.1:9611 backup/clients
      several sources, each confined to the subtree its key names; keep two days of
      hours, three months of days and two years of months of what arrives, whatever
      the sources keep; a status page and /metrics on a local port
  zfsync-recv --key-file /etc/zfsync/keys --orphans-after 30d backup/clients
      several sources, each confined to its key's subtree; destroy the replica of a
      dataset destroyed on a source once a month of that source's runs have lacked
      it (--dry-run-orphans: only say)
  zfsync-recv --gen-key fileserver
      make a key for a sender called fileserver
";

/// The port of --http when none is given.
pub const HTTP_PORT: u16 = 9611;

/// Options as given, before any check; the process's options are already an [`Output`].
#[derive(Debug, Default)]
pub struct Args {
    pub target: String,
    pub listen: Option<String>,
    pub buffer: Option<String>,
    pub max_connections: Option<String>,
    pub timeout: Option<String>,
    pub parent_wait: Option<String>,
    pub allow_rollback: bool,
    pub allow_overwrite: bool,
    pub zfs: Option<String>,
    pub key_file: Option<String>,
    pub keep: Option<String>,
    pub tz: Option<String>,
    pub orphans_after: Option<String>,
    pub dry_run_orphans: bool,
    /// `--gen-key NAME`: make a key instead of serving.
    pub gen_key: Option<String>,
    pub state_dir: Option<String>,
    pub history_days: Option<String>,
    pub http: Option<String>,
    pub output: Output,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Serve TARGET.
    Serve(Box<Config>),
    /// Print a new key for client NAME, for both sides' key files.
    GenKey(String),
}

/// The command line as what to do and the process's [`Output`].
pub fn command(argv: &[String]) -> Result<Parsed<(Command, Output)>, UsageError> {
    parse(argv)?.try_map(|args| match &args.gen_key {
        Some(name) => {
            zfsync_protocol::auth::check_client_name(name)
                .map_err(|e| e.replace("client name", "--gen-key"))?;
            Ok((Command::GenKey(name.clone()), args.output))
        }
        None => args
            .into_config()
            .map(|(config, output)| (Command::Serve(Box::new(config)), output)),
    })
}

/// The command line as the job's [`Config`] and the process's [`Output`].
pub fn config(argv: &[String]) -> Result<Parsed<(Config, Output)>, UsageError> {
    parse(argv)?.try_map(Args::into_config)
}

pub fn parse(argv: &[String]) -> Result<Parsed<Args>, UsageError> {
    let mut o = getopts::Options::new();
    o.optopt("l", "listen", "", "ADDR:PORT");
    o.optopt("b", "buffer", "", "DATASET");
    o.optopt("j", "max-connections", "", "N");
    o.optopt("", "timeout", "", "SECS");
    o.optopt("", "parent-wait", "", "SECS");
    o.optflag("", "allow-rollback", "");
    o.optflag("", "allow-overwrite", "");
    o.optopt("", "zfs", "", "PATH");
    o.optopt("", "key-file", "", "FILE");
    o.optopt("", "keep", "", "PLAN");
    o.optopt("", "orphans-after", "", "DUR");
    o.optflag("", "dry-run-orphans", "");
    o.optopt("", "tz", "", "ZONE");
    o.optopt("", "gen-key", "", "NAME");
    o.optopt("", "state-dir", "", "DIR");
    o.optopt("", "history-days", "", "N");
    o.optopt("", "http", "", "ADDR:PORT");
    let (m, output) = match parse_options(o, argv)? {
        Parsed::Run(r) => r,
        Parsed::Special(s) => return Ok(Parsed::Special(s)),
    };
    let gen_key = m.opt_str("gen-key");
    let target = match (m.free.as_slice(), &gen_key) {
        ([], Some(_)) => String::new(),
        (_, Some(_)) => return Err("--gen-key takes no TARGET".into()),
        ([t], None) => t.clone(),
        ([], None) => return Err("missing TARGET".into()),
        (_, None) => return Err(format!("one TARGET expected, got {}", m.free.len()).into()),
    };
    Ok(Parsed::Run(Args {
        target,
        listen: m.opt_str("l"),
        buffer: m.opt_str("b"),
        max_connections: m.opt_str("j"),
        timeout: m.opt_str("timeout"),
        parent_wait: m.opt_str("parent-wait"),
        allow_rollback: m.opt_present("allow-rollback"),
        allow_overwrite: m.opt_present("allow-overwrite"),
        zfs: m.opt_str("zfs"),
        key_file: m.opt_str("key-file"),
        keep: m.opt_str("keep"),
        orphans_after: m.opt_str("orphans-after"),
        dry_run_orphans: m.opt_present("dry-run-orphans"),
        tz: m.opt_str("tz"),
        gen_key,
        state_dir: m.opt_str("state-dir"),
        history_days: m.opt_str("history-days"),
        http: m.opt_str("http"),
        output,
    }))
}

impl Args {
    pub fn into_config(self) -> Result<(Config, Output), UsageError> {
        let target = Dataset::new(&self.target).map_err(|e| format!("TARGET: {e}"))?;
        let buffer = match &self.buffer {
            Some(b) => Dataset::new(b).map_err(|e| format!("--buffer: {e}"))?,
            None => default_buffer(&target)?,
        };
        if buffer.is_within(&target) || target.is_within(&buffer) {
            return Err(format!(
                "--buffer {buffer} must lie outside TARGET {target} (and not contain it)"
            )
            .into());
        }
        let pool = |d: &Dataset| d.as_str().split('/').next().unwrap_or_default().to_string();
        if pool(&buffer) != pool(&target) {
            return Err(format!(
                "--buffer {buffer} must be in TARGET's pool {}: buffered datasets are renamed into place, and zfs rename cannot cross pools",
                pool(&target)
            ).into());
        }
        let listen = self.listen.as_deref().unwrap_or("0.0.0.0");
        let listen = HostPort::parse(listen, zfsync_protocol::DEFAULT_PORT, 0)
            .map_err(|e| e.context("--listen"))?;
        let http = match &self.http {
            Some(a) => Some(
                HostPort::parse(a, HTTP_PORT, 0)
                    .map_err(|e| e.context("--http"))?
                    .to_string(),
            ),
            None => None,
        };
        // Checked once here, so the clock never fails later.
        zfsync_cli::now()?;
        let config = Config {
            target,
            buffer,
            listen: listen.to_string(),
            max_connections: number(
                "--max-connections",
                self.max_connections.as_deref(),
                16,
                1..=u64::MAX,
            )? as usize,
            timeout: seconds("--timeout", self.timeout.as_deref(), 60, 1..=u64::MAX)?,
            parent_wait: seconds("--parent-wait", self.parent_wait.as_deref(), 2, 0..=3600)?,
            allow_rollback: self.allow_rollback,
            allow_overwrite: self.allow_overwrite,
            zfs: PathBuf::from(self.zfs.unwrap_or_else(|| "zfs".into())),
            keys: match &self.key_file {
                None => Vec::new(),
                Some(f) => read_receiver_keys(std::path::Path::new(f))?,
            },
            keep: match (&self.keep, &self.tz) {
                (Some(plan), tz) => {
                    // The clock a prune reads: a bad ZFSYNC_NOW is refused now, not then.
                    zfsync_cli::now()?;
                    Some(Keep::parse(plan, tz.as_deref()).map_err(UsageError::new)?)
                }
                (None, Some(_)) => {
                    return Err("--tz is the time zone of --keep's plan: give --keep".into())
                }
                (None, None) => None,
            },
            orphans: orphans(
                self.orphans_after.as_deref(),
                self.dry_run_orphans,
                self.key_file.is_some(),
            )?,
            state_dir: self
                .state_dir
                .map(PathBuf::from)
                .unwrap_or_else(zfsync_history::default_dir),
            history_days: number(
                "--history-days",
                self.history_days.as_deref(),
                90,
                1..=36_500,
            )?,
            http,
        };
        Ok((config, self.output))
    }
}

/// The least `--orphans-after`: one bad run, or a few in a row, must not cost a replica.
const MIN_ORPHANS_AFTER: i64 = 86_400;

/// `--orphans-after DUR [--dry-run-orphans]`, which needs `--key-file` (`keys`): a list
/// speaks for a client's own replicas, and without keys every host is the same client.
fn orphans(
    after: Option<&str>,
    dry_run: bool,
    keys: bool,
) -> Result<Option<crate::Orphans>, UsageError> {
    let Some(text) = after else {
        if dry_run {
            return Err("--dry-run-orphans shows what --orphans-after would do: give it".into());
        }
        return Ok(None);
    };
    let after = duration_secs(text).map_err(|e| format!("--orphans-after {e}"))?;
    if after < MIN_ORPHANS_AFTER {
        return Err(format!("--orphans-after must be at least 1d, got {text:?}").into());
    }
    if !keys {
        return Err(
            "--orphans-after needs --key-file: without keys any host that can connect \
                    could have backups destroyed"
                .into(),
        );
    }
    Ok(Some(crate::Orphans { after, dry_run }))
}

/// Reads the key file and checks each client's subtree.
fn read_receiver_keys(
    path: &std::path::Path,
) -> Result<Vec<zfsync_protocol::auth::Key>, UsageError> {
    let keys = zfsync_protocol::auth::read_key_file(path)?;
    for k in &keys {
        zfsync_zfs::check_relative_path(&k.subtree).map_err(|e| {
            UsageError::new(format!(
                "key file {}: client {}: subtree: {e}",
                path.display(),
                k.name
            ))
        })?;
    }
    Ok(keys)
}

/// The buffer beside TARGET: `pool/backup/data` -> `pool/backup/data_zfsync_buffer`.
fn default_buffer(target: &Dataset) -> Result<Dataset, UsageError> {
    if target.parent().is_none() {
        return Err(
            format!("TARGET {target} is a pool's root dataset: give --buffer explicitly").into(),
        );
    }
    Dataset::new(&format!("{target}_zfsync_buffer"))
        .map_err(|e| format!("default buffer: {e}: give --buffer").into())
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
    fn defaults() {
        let c = config(&["tank/backup"]).unwrap();
        assert_eq!(c.buffer.as_str(), "tank/backup_zfsync_buffer");
        assert_eq!(c.listen, "0.0.0.0:7611");
        assert!(!c.allow_rollback);
        assert_eq!(c.parent_wait, Duration::from_secs(2));
        assert_eq!(c.state_dir, zfsync_history::default_dir());
        assert_eq!(c.history_days, 90);
        assert_eq!(c.http, None);
        let c = config(&["--parent-wait", "0", "tank/backup"]).unwrap();
        assert_eq!(c.parent_wait, Duration::ZERO);
    }

    #[test]
    fn listen_address_takes_the_default_port() {
        for (given, want) in [
            ("127.0.0.1", "127.0.0.1:7611"),
            ("127.0.0.1:0", "127.0.0.1:0"),
            ("[::1]", "[::1]:7611"),
            ("[::]:7612", "[::]:7612"),
        ] {
            assert_eq!(config(&["-l", given, "tank/b"]).unwrap().listen, want);
        }
        assert_eq!(
            config(&["-l", "0.0.0.0:99999", "tank/b"])
                .unwrap_err()
                .to_string(),
            "--listen: port 99999 is out of range 0-65535"
        );
    }

    #[test]
    fn history_and_http_options() {
        let c = config(&[
            "--state-dir",
            "/tmp/st",
            "--history-days",
            "7",
            "--http",
            "127.0.0.1",
            "tank/b",
        ])
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/tmp/st"));
        assert_eq!(c.history_days, 7);
        assert_eq!(c.http.as_deref(), Some("127.0.0.1:9611"));
        let c = config(&["--http", "[::1]:8080", "tank/b"]).unwrap();
        assert_eq!(c.http.as_deref(), Some("[::1]:8080"));
        for (args, want) in [
            (
                &["--history-days", "0", "tank/b"][..],
                "--history-days wants a whole number from 1 to 36500, got \"0\"",
            ),
            (
                &["--http", "127.0.0.1:70000", "tank/b"][..],
                "--http: port 70000 is out of range 0-65535",
            ),
        ] {
            assert_eq!(config(args).unwrap_err().to_string(), want, "{args:?}");
        }
    }

    #[test]
    fn buffer_inside_target_is_refused() {
        assert!(config(&["-b", "tank/backup/buf", "tank/backup"])
            .unwrap_err()
            .to_string()
            .contains("outside"));
    }

    #[test]
    fn buffer_in_another_pool_is_refused() {
        assert!(config(&["-b", "other/buf", "tank/backup"])
            .unwrap_err()
            .to_string()
            .contains("TARGET's pool tank"));
        assert_eq!(
            config(&["-b", "tank/buf", "tank/backup"])
                .unwrap()
                .buffer
                .as_str(),
            "tank/buf"
        );
    }

    #[test]
    fn bad_values_are_usage_errors() {
        assert!(config(&["-j", "0", "tank/b"]).is_err());
        assert!(config(&["--timeout", "x", "tank/b"]).is_err());
        assert!(config(&["--parent-wait", "-1", "tank/b"]).is_err());
        assert!(config(&["--parent-wait", "3601", "tank/b"]).is_err());
        assert!(config(&["tank/b@s"]).is_err());
        assert!(config(&[]).is_err());
        assert!(config(&["tank"])
            .unwrap_err()
            .to_string()
            .contains("--buffer"));
    }

    #[test]
    fn help_ends_with_examples_that_parse() {
        let examples = zfsync_cli::examples(USAGE, "zfsync-recv").unwrap();
        assert_eq!(examples.len(), 4);
        for argv in examples {
            let Ok(Parsed::Run(a)) = parse(&argv) else {
                panic!("{argv:?}");
            };
            // A key file is read when checked: only the parse is tried for that one.
            if a.key_file.is_none() {
                assert!(command(&argv).is_ok(), "{argv:?}");
            }
        }
    }

    #[test]
    fn a_retention_plan_is_the_receivers_own_option() {
        assert_eq!(config(&["tank/b"]).unwrap().keep, None);
        let c = config(&["--keep", "daily=7", "--tz", "Europe/Berlin", "tank/b"]).unwrap();
        assert_eq!(
            c.keep,
            Some(Keep::parse("daily=7", Some("Europe/Berlin")).unwrap())
        );
        for (args, want) in [
            (
                &["--keep", "daily=0", "tank/b"][..],
                "--keep: retention plan \"daily=0\" is an empty plan",
            ),
            (
                &["--keep", "daily=7", "--tz", "Nowhere", "tank/b"],
                "--tz: unknown time zone",
            ),
            (
                &["--tz", "UTC", "tank/b"],
                "--tz is the time zone of --keep's plan",
            ),
        ] {
            let e = config(args).unwrap_err().to_string();
            assert!(e.starts_with(want), "{args:?}: {e}");
        }
    }

    // issue 16: replicas of destroyed sources are kept unless the receiver says otherwise.
    #[test]
    fn orphans_are_destroyed_only_by_the_receivers_own_option() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("zfsync-recv-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let keys = dir.join("keys");
        std::fs::write(&keys, "alice alice-secret-0123456789\n").unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        let keys = keys.to_str().unwrap();
        assert_eq!(config(&["tank/b"]).unwrap().orphans, None);
        let opt = [
            "--orphans-after",
            "30d",
            "--dry-run-orphans",
            "--key-file",
            keys,
        ];
        let c = config(&[&opt[..], &["tank/b"]].concat());
        std::fs::remove_dir_all(&dir).unwrap();
        let c = c.unwrap();
        assert_eq!(
            c.orphans,
            Some(crate::Orphans {
                after: 30 * 86_400,
                dry_run: true
            })
        );
        for (args, want) in [
            (
                &["--orphans-after", "23h", "tank/b"][..],
                "--orphans-after must be at least 1d",
            ),
            (
                &["--orphans-after", "soon", "tank/b"],
                "--orphans-after wants a duration",
            ),
            (
                &["--dry-run-orphans", "tank/b"],
                "--dry-run-orphans shows what --orphans-after would do",
            ),
            // Without keys every host is the same client: any could send empty lists.
            (
                &["--orphans-after", "30d", "tank/b"],
                "--orphans-after needs --key-file: without keys any host that can connect \
                 could have backups destroyed",
            ),
        ] {
            let e = config(args).unwrap_err().to_string();
            assert!(e.starts_with(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn gen_key_names_a_client_and_no_target() {
        let cmd = |args: &[&str]| {
            let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            command(&argv)
        };
        assert!(matches!(
            cmd(&["--gen-key", "fileserver"]),
            Ok(Parsed::Run((Command::GenKey(n), _))) if n == "fileserver"
        ));
        assert!(matches!(
            cmd(&["tank/b"]),
            Ok(Parsed::Run((Command::Serve(_), _)))
        ));
        assert_eq!(
            cmd(&["--gen-key", "Bob"]).unwrap_err().to_string(),
            "--gen-key \"Bob\": wants 1-64 of a-z 0-9 . _ -"
        );
        assert!(cmd(&["--gen-key", "bob", "tank/b"]).is_err());
        assert!(cmd(&["--gen-key"]).is_err());
    }

    #[test]
    fn log_options_belong_to_the_process() {
        let argv: Vec<String> = ["-vv", "-o", "/var/log/z.log", "tank/b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        match super::config(&argv) {
            Ok(Parsed::Run((c, o))) => {
                assert_eq!(c.target.as_str(), "tank/b");
                assert_eq!(o.verbose, 2);
                assert_eq!(o.log_file, Some(PathBuf::from("/var/log/z.log")));
                assert!(!o.quiet, "the receiver has no -q");
            }
            _ => panic!("not a run"),
        }
    }
}
