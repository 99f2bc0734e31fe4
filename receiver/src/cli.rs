//! Command line of `zfsync-recv`: raw options ([`Args`]) become a checked [`Config`].

use crate::Config;
use std::path::PathBuf;
use std::time::Duration;
use zfsync_zfs::Dataset;

pub const USAGE: &str = "\
Usage: zfsync-recv [options] TARGET

Receive ZFS datasets replicated by zfsync-send under TARGET, a dataset that is the replica
of the sender's root (TARGET itself need not exist yet; its parent must). Runs until
SIGTERM or SIGINT.

Options:
  -l, --listen ADDR:PORT   address to listen on (default 0.0.0.0:7611)
  -b, --buffer DATASET     where children whose parent has not arrived yet wait
                           (default: TARGET_zfsync_buffer beside TARGET); must lie
                           outside TARGET
  -j, --max-connections N  concurrent connections served (default 16); more are
                           refused with a clear error
      --timeout SECS       give up on a silent peer after SECS seconds (default 60),
                           and kill a zfs command that runs 5 times as long
      --parent-wait SECS   how long a new dataset whose parent is being received
                           waits for it before going to the buffer (default 2;
                           0: at once)
      --allow-rollback     allow rolling a destination back to the newest common
                           snapshot, destroying the snapshots and changes it has
                           that the source does not (default: refuse such datasets)
      --allow-overwrite    allow a full receive over an existing dataset that has no
                           snapshots (destroys its contents; default: refuse)
      --key-file FILE      accept only senders that prove knowledge of a key in FILE
                           (challenge-response, the key never crosses the wire).
                           Lines: NAME SECRET [SUBTREE]; a client with a SUBTREE is
                           confined to TARGET/SUBTREE. FILE must be mode 600.
      --zfs PATH           zfs binary (default: zfs)
  -o, --log-file FILE      write the log to FILE instead of stderr
  -v, --verbose            more log output (-vv for debug)
  -h, --help               show this help
  -V, --version            show the version

Prints 'listening on ADDR:PORT' on stdout once it accepts connections.
Exit status: 0 after a clean stop, 1 on a runtime error, 2 on a usage error.
";

/// Options as given, before any check.
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
    pub log_file: Option<String>,
    pub verbose: usize,
}

/// What `parse` found: a config to run with, or something to print.
pub enum Parsed {
    Run(Box<Args>),
    Help,
    Version,
}

pub fn parse(argv: &[String]) -> Result<Parsed, String> {
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
    o.optopt("o", "log-file", "", "FILE");
    o.optflagmulti("v", "verbose", "");
    o.optflag("h", "help", "");
    o.optflag("V", "version", "");
    let m = o.parse(argv).map_err(|e| e.to_string())?;
    if m.opt_present("h") {
        return Ok(Parsed::Help);
    }
    if m.opt_present("V") {
        return Ok(Parsed::Version);
    }
    let target = match m.free.as_slice() {
        [t] => t.clone(),
        [] => return Err("missing TARGET".into()),
        _ => return Err(format!("one TARGET expected, got {}", m.free.len())),
    };
    Ok(Parsed::Run(Box::new(Args {
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
        log_file: m.opt_str("o"),
        verbose: m.opt_count("v"),
    })))
}

fn positive(name: &str, v: Option<&str>, default: u64) -> Result<u64, String> {
    match v {
        None => Ok(default),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{name} wants a positive whole number, got {s:?}")),
        },
    }
}

impl Args {
    pub fn into_config(self) -> Result<Config, String> {
        let target = Dataset::new(&self.target).map_err(|e| format!("TARGET: {e}"))?;
        let buffer = match &self.buffer {
            Some(b) => Dataset::new(b).map_err(|e| format!("--buffer: {e}"))?,
            None => default_buffer(&target)?,
        };
        if buffer.is_within(&target) || target.is_within(&buffer) {
            return Err(format!(
                "--buffer {buffer} must lie outside TARGET {target} (and not contain it)"
            ));
        }
        let pool = |d: &Dataset| d.as_str().split('/').next().unwrap_or_default().to_string();
        if pool(&buffer) != pool(&target) {
            return Err(format!(
                "--buffer {buffer} must be in TARGET's pool {}: buffered datasets are renamed into place, and zfs rename cannot cross pools",
                pool(&target)
            ));
        }
        let listen = self
            .listen
            .unwrap_or_else(|| format!("0.0.0.0:{}", zfsync_protocol::DEFAULT_PORT));
        Ok(Config {
            target,
            buffer,
            listen,
            max_connections: positive("--max-connections", self.max_connections.as_deref(), 16)?
                as usize,
            timeout: Duration::from_secs(positive("--timeout", self.timeout.as_deref(), 60)?),
            parent_wait: Duration::from_secs(match self.parent_wait.as_deref() {
                None => 2,
                Some(s) => s
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n <= 3600)
                    .ok_or_else(|| {
                        format!("--parent-wait wants whole seconds from 0 to 3600, got {s:?}")
                    })?,
            }),
            allow_rollback: self.allow_rollback,
            allow_overwrite: self.allow_overwrite,
            zfs: PathBuf::from(self.zfs.unwrap_or_else(|| "zfs".into())),
            log_file: self.log_file.map(PathBuf::from),
            verbose: self.verbose,
            keys: match &self.key_file {
                None => Vec::new(),
                Some(f) => read_receiver_keys(std::path::Path::new(f))?,
            },
        })
    }
}

/// Reads the key file and checks each client's subtree.
fn read_receiver_keys(path: &std::path::Path) -> Result<Vec<zfsync_protocol::auth::Key>, String> {
    let keys = zfsync_protocol::auth::read_key_file(path)?;
    for k in &keys {
        zfsync_zfs::check_relative_path(&k.subtree).map_err(|e| {
            format!(
                "key file {}: client {}: subtree: {e}",
                path.display(),
                k.name
            )
        })?;
    }
    Ok(keys)
}

/// The buffer beside TARGET: `pool/backup/data` -> `pool/backup/data_zfsync_buffer`.
fn default_buffer(target: &Dataset) -> Result<Dataset, String> {
    if target.parent().is_none() {
        return Err(format!(
            "TARGET {target} is a pool's root dataset: give --buffer explicitly"
        ));
    }
    Dataset::new(&format!("{target}_zfsync_buffer"))
        .map_err(|e| format!("default buffer: {e}: give --buffer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, String> {
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse(&argv)? {
            Parsed::Run(a) => a.into_config(),
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
        let c = config(&["--parent-wait", "0", "tank/backup"]).unwrap();
        assert_eq!(c.parent_wait, Duration::ZERO);
    }

    #[test]
    fn buffer_inside_target_is_refused() {
        assert!(config(&["-b", "tank/backup/buf", "tank/backup"])
            .unwrap_err()
            .contains("outside"));
    }

    #[test]
    fn buffer_in_another_pool_is_refused() {
        assert!(config(&["-b", "other/buf", "tank/backup"])
            .unwrap_err()
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
        assert!(config(&["tank"]).unwrap_err().contains("--buffer"));
    }
}
