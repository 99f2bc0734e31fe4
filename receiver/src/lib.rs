//! `zfsync-recv` as a library: [`serve`] runs the receiving service on a bound listener
//! until a stop flag is raised, so tests can bind 127.0.0.1:0 and drive it.
//!
//! Where connections come from (`accept.rs`: the listener, at most `max_connections` at
//! once, more are answered with a clear error and closed) is apart from what runs on one
//! (`session::run_session`, a thread each). After every connection, and once at start,
//! the buffer is cleaned up, so datasets buffered for a sender that crashed are still put
//! in place.

mod accept;
mod catalog;
pub mod cli;
mod compare;
mod greet;
pub mod http;
mod offer;
mod orphans;
pub mod owner;
mod page;
mod place;
mod prune;
mod pump;
mod record;
mod session;
mod status;
mod tree;

use log::{error, info};
use std::fmt;
use std::io;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tree::{Left, Tree};
use zfsync_text::IoWords;
use zfsync_zfs::{Dataset, Zfs};

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub target: Dataset,
    pub buffer: Dataset,
    pub listen: String,
    pub max_connections: usize,
    pub timeout: Duration,
    /// How long a new dataset whose parent is being received waits for it before it
    /// goes to the buffer.
    pub parent_wait: Duration,
    pub allow_rollback: bool,
    pub allow_overwrite: bool,
    pub zfs: PathBuf,
    /// Keys of the clients allowed in; empty: no authentication.
    pub keys: Vec<zfsync_protocol::auth::Key>,
    /// `--keep PLAN [--tz ZONE]`: prune each dataset by this plan after a receive into it.
    pub keep: Option<zfsync_retention::Keep>,
    /// `--orphans-after DUR [--dry-run-orphans]`: destroy replicas whose source has been
    /// gone that long (see `orphans.rs`); `None`: keep them.
    pub orphans: Option<Orphans>,
    /// Where the history is kept (`history.sqlite`).
    pub state_dir: PathBuf,
    /// Days of history kept.
    pub history_days: u64,
    /// Where the status page and /metrics are served (`HOST:PORT`); `None`: nowhere.
    pub http: Option<String>,
}

/// `--orphans-after`: how a replica whose source dataset is gone is dealt with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Orphans {
    /// Seconds every run of its sender must have lacked it.
    pub after: i64,
    /// `--dry-run-orphans`: log the plan, destroy nothing.
    pub dry_run: bool,
}

/// Errors of the receiver.
#[derive(Debug)]
pub enum Error {
    Protocol(zfsync_protocol::Error),
    Zfs(zfsync_zfs::Error),
    Io(io::Error),
    /// The peer broke the protocol.
    Violation(String),
    /// The peer reported an error and closed.
    Peer(String),
    /// The configuration cannot work on this system.
    Setup(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Protocol(e) => e.fmt(f),
            Error::Zfs(e) => e.fmt(f),
            Error::Io(e) => IoWords(e).fmt(f),
            Error::Violation(s) => write!(f, "protocol violation: {s}"),
            Error::Peer(s) => write!(f, "peer reported: {s}"),
            Error::Setup(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for Error {}

impl From<zfsync_protocol::Error> for Error {
    fn from(e: zfsync_protocol::Error) -> Self {
        Error::Protocol(e)
    }
}
impl From<zfsync_zfs::Error> for Error {
    fn from(e: zfsync_zfs::Error) -> Self {
        Error::Zfs(e)
    }
}
impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// What every session shares.
pub(crate) struct Shared<'a> {
    pub(crate) config: &'a Config,
    pub(crate) zfs: &'a Zfs,
    pub(crate) tree: Tree,
    pub(crate) stop: &'a AtomicBool,
    /// What happened: the history store and this process's figures.
    pub(crate) history: record::History,
    /// What each sender delivered since its last counted dataset list.
    pub(crate) delivered: orphans::Delivered,
}

/// Checks that TARGET can be received into: it exists, or its parent does; and, where
/// zfs cannot receive without mounting, that nothing received would be mounted.
pub fn check_target(config: &Config, zfs: &Zfs) -> Result<()> {
    let target = &config.target;
    // Where the mountpoint of what is received comes from: TARGET, or the parent that a
    // new TARGET inherits it from.
    let source = if zfs.exists(target)? {
        target.clone()
    } else {
        match target.parent() {
            Some(p) if zfs.exists(&p)? => p,
            Some(p) => {
                return Err(Error::Setup(format!(
                    "neither TARGET {target} nor its parent {p} exists: create {p} first"
                )))
            }
            None => return Err(Error::Setup(format!("pool {target} does not exist"))),
        }
    };
    // zfs-fuse has no `zfs recv -u`: it mounts whatever it receives where the inherited
    // mountpoint says (`canmount=off` on the parent does not stop that). A mounted replica
    // changes when it is only read (access times), and its next incremental is refused.
    if !zfs.capabilities().recv_unmounted {
        let mountpoint = zfs.get(source.as_str(), "mountpoint")?;
        if mountpoint.starts_with('/') {
            return Err(Error::Setup(format!(
                "{source} has mountpoint {mountpoint}, and this zfs mounts what it receives (it has no zfs recv -u): the replicas under {target} would be mounted, and a mounted replica changes even when it is only read, which breaks its next incremental. Fix: zfs set mountpoint=none {source}"
            )));
        }
    }
    Ok(())
}

/// Serves connections on `listener` until `stop` is raised. Then it stops accepting, wakes
/// sessions that are waiting between datasets, gives streams in flight up to the timeout
/// to finish (a receive cut after that is discarded by ZFS, leaving the destination as it
/// was), and returns. With `http` (bound by [`http::bind`]), the status page and /metrics
/// are served there meanwhile.
pub fn serve(
    listener: TcpListener,
    http: Option<TcpListener>,
    config: &Config,
    zfs: &Zfs,
    stop: &AtomicBool,
) -> Result<()> {
    let shared = Shared {
        config,
        zfs,
        tree: Tree::new(config.target.clone(), config.buffer.clone()),
        stop,
        history: record::History::open(config),
        delivered: orphans::Delivered::default(),
    };
    shared.clean_up("start");
    std::thread::scope(|scope| -> Result<()> {
        if let Some(h) = http {
            http::spawn(scope, h, &shared)?;
        }
        let accepted = accept::accept_until_stopped(listener, &shared);
        // The HTTP threads end with the stop flag, also when accepting failed.
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(accepted?)
    })?;
    info!("stopped");
    Ok(())
}

impl Shared<'_> {
    /// Puts buffered datasets in place (see `Tree::cleanup`) and logs what that did.
    pub(crate) fn clean_up(&self, when: &str) {
        let r = self.tree.cleanup(self.zfs);
        let left = |l| r.count(l);
        if !r.entries.is_empty() {
            info!(
                "cleanup when={when:?} placed={} removed={} waiting={} busy={} failed={}",
                left(Left::Placed),
                left(Left::Removed),
                left(Left::Waiting),
                left(Left::Busy),
                left(Left::Failed)
            );
        }
        for n in r.notes() {
            if left(Left::Failed) > 0 {
                error!("cleanup: {n}");
            } else {
                info!("cleanup: {n}");
            }
        }
    }
}
