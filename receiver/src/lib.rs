//! `zfsync-recv` as a library: [`serve`] runs the receiving service on a bound listener
//! until a stop flag is raised, so tests can bind 127.0.0.1:0 and drive it.
//!
//! One thread per connection, at most `max_connections` at once (more are answered with a
//! clear error and closed). After every connection, and once at start, the buffer is
//! cleaned up, so datasets buffered for a sender that crashed are still put in place.

mod catalog;
pub mod cli;
mod plan;
mod session;
mod tree;

pub use plan::{Decision, Matcher};

use log::{error, info, warn};
use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufWriter};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tree::Tree;
use zfsync_protocol::{FrameWriter, Message, Reason};
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
            Error::Io(e) => e.fmt(f),
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
}

/// An open connection, so a stop can wake a session that is waiting for its peer.
struct Open {
    stream: TcpStream,
    busy: Arc<AtomicBool>,
}

/// Checks that TARGET can be received into: it exists, or its parent does.
pub fn check_target(config: &Config, zfs: &Zfs) -> Result<()> {
    if zfs.exists(&config.target)? {
        return Ok(());
    }
    match config.target.parent() {
        Some(p) if zfs.exists(&p)? => Ok(()),
        Some(p) => Err(Error::Setup(format!(
            "neither TARGET {} nor its parent {p} exists: create {p} first",
            config.target
        ))),
        None => Err(Error::Setup(format!(
            "pool {} does not exist",
            config.target
        ))),
    }
}

/// Serves connections on `listener` until `stop` is raised. Then it stops accepting, wakes
/// sessions that are waiting between datasets, gives streams in flight up to the timeout
/// to finish (a receive cut after that is discarded by ZFS, leaving the destination as it
/// was), and returns.
pub fn serve(listener: TcpListener, config: &Config, zfs: &Zfs, stop: &AtomicBool) -> Result<()> {
    let shared = Shared {
        config,
        zfs,
        tree: Tree::new(config.target.clone(), config.buffer.clone()),
        stop,
    };
    log_cleanup("start", &shared);
    listener.set_nonblocking(true)?;
    let active = AtomicUsize::new(0);
    let next_id = AtomicU64::new(0);
    let open: Mutex<HashMap<u64, Open>> = Mutex::new(HashMap::new());
    std::thread::scope(|scope| {
        while !stop.load(Ordering::SeqCst) {
            let (stream, peer) = match listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_readable(&listener, 200);
                    continue;
                }
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the others.
                    warn!("accept failed error={e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if let Err(e) = stream.set_nonblocking(false) {
                warn!("connection setup failed peer={peer} error={e}");
                continue;
            }
            if active.load(Ordering::SeqCst) >= config.max_connections {
                warn!(
                    "connection refused peer={peer}: {} connections already",
                    config.max_connections
                );
                refuse(stream, config.max_connections);
                continue;
            }
            active.fetch_add(1, Ordering::SeqCst);
            let id = next_id.fetch_add(1, Ordering::SeqCst);
            let busy = Arc::new(AtomicBool::new(false));
            if let Ok(clone) = stream.try_clone() {
                open.lock().unwrap_or_else(|p| p.into_inner()).insert(
                    id,
                    Open {
                        stream: clone,
                        busy: busy.clone(),
                    },
                );
            }
            let (shared, active, open) = (&shared, &active, &open);
            scope.spawn(move || {
                let result =
                    session::Session::new(shared, stream, peer, &busy).and_then(|s| s.run());
                match result {
                    Ok(()) => info!("session end peer={peer}"),
                    Err(e) => warn!("session end peer={peer} error={e}"),
                }
                open.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                log_cleanup("connection end", shared);
                active.fetch_sub(1, Ordering::SeqCst);
            });
        }
        info!(
            "stopping: {} connection(s) open",
            active.load(Ordering::SeqCst)
        );
        let deadline = Instant::now() + config.timeout;
        while active.load(Ordering::SeqCst) > 0 {
            let past = Instant::now() >= deadline;
            for o in open.lock().unwrap_or_else(|p| p.into_inner()).values() {
                if past || !o.busy.load(Ordering::SeqCst) {
                    let _ = o.stream.shutdown(Shutdown::Both);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    info!("stopped");
    Ok(())
}

fn log_cleanup(when: &str, shared: &Shared) {
    let r = shared.tree.cleanup(shared.zfs);
    if r.placed + r.removed + r.waiting + r.failed > 0 {
        info!(
            "cleanup when={when:?} placed={} removed={} waiting={} failed={}",
            r.placed, r.removed, r.waiting, r.failed
        );
    }
    for n in &r.notes {
        if r.failed > 0 {
            error!("cleanup: {n}");
        } else {
            info!("cleanup: {n}");
        }
    }
}

/// Tells a connection over the limit why it is closed, without waiting on it for long.
fn refuse(stream: TcpStream, max: usize) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut w = FrameWriter::new(BufWriter::new(stream));
    let _ = w.send(&Message::Error {
        reason: Reason::Busy,
        text: format!("receiver busy: {max} connections already"),
    });
}

/// Waits up to `ms` for a connection to arrive (or a signal), without spinning.
fn wait_readable(listener: &TcpListener, ms: i32) {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe {
        libc::poll(&mut pfd, 1, ms);
    }
}
