//! Where connections come from: the accept loop on the listener, the bound on open
//! connections (`-j`; one more is told it is busy and closed), and the stop (no more
//! accepting, idle sessions woken, streams in flight given the timeout). Each admitted
//! connection gets a thread running [`run_session`]; this module must not speak the
//! protocol beyond the busy refusal, nor look at datasets.

use crate::session::run_session;
use crate::Shared;
use log::{info, warn};
use std::collections::HashMap;
use std::io::{self, BufWriter};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use zfsync_protocol::{FrameWriter, Message, Reason};
use zfsync_text::quoted;

/// Accepts connections on `listener`, a session on each, until the stop flag is raised;
/// then stops the open ones and returns once every session has ended.
pub(crate) fn accept_until_stopped(listener: TcpListener, shared: &Shared) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let max = shared.config.max_connections;
    let connections = Connections::default();
    std::thread::scope(|scope| {
        while !shared.stop.load(Ordering::SeqCst) {
            let Some((stream, peer)) = accept(&listener) else {
                continue;
            };
            let Some(slot) = connections.admit(&stream, max) else {
                warn!(
                    "connection refused peer={}: {max} connections already",
                    quoted(peer)
                );
                refuse(stream, max);
                continue;
            };
            scope.spawn(move || run_session(shared, stream, peer, &slot.busy));
        }
        connections.stop_all(shared.config.timeout);
    });
    Ok(())
}

/// The next connection, in blocking mode; `None` after a short wait for one (so the
/// caller looks at the stop flag) or a failure, which is logged.
fn accept(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept() {
        Ok((stream, peer)) => match stream.set_nonblocking(false) {
            Ok(()) => Some((stream, peer)),
            Err(e) => {
                let e = quoted(zfsync_text::IoWords(&e));
                warn!("connection setup failed peer={} error={e}", quoted(peer));
                None
            }
        },
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            wait_readable(listener, 200);
            None
        }
        Err(e) => {
            // Out of file descriptors and the like: keep serving the others.
            warn!("accept failed error={}", quoted(zfsync_text::IoWords(&e)));
            std::thread::sleep(Duration::from_millis(100));
            None
        }
    }
}

/// The open connections: how many (against `-j`), and what a stop needs to reach them.
#[derive(Default)]
struct Connections {
    active: AtomicUsize,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Open>>,
}

/// An open connection, so a stop can wake a session that is waiting for its peer.
struct Open {
    stream: TcpStream,
    busy: Arc<AtomicBool>,
}

/// One admitted connection's place among the open ones, given back when dropped (once
/// its session, and the cleanup after it, have ended).
struct Slot<'c> {
    connections: &'c Connections,
    id: u64,
    /// Set by the session while it works on an offer: a stop lets that finish.
    busy: Arc<AtomicBool>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.connections.open().remove(&self.id);
        self.connections.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Connections {
    fn open(&self) -> MutexGuard<'_, HashMap<u64, Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for `stream`, or `None` when `max` connections are open already. Only the
    /// accepting thread admits, so the count cannot pass `max` between look and take.
    fn admit(&self, stream: &TcpStream, max: usize) -> Option<Slot<'_>> {
        if self.active.load(Ordering::SeqCst) >= max {
            return None;
        }
        self.active.fetch_add(1, Ordering::SeqCst);
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let busy = Arc::new(AtomicBool::new(false));
        if let Ok(clone) = stream.try_clone() {
            self.open().insert(
                id,
                Open {
                    stream: clone,
                    busy: busy.clone(),
                },
            );
        }
        Some(Slot {
            connections: self,
            id,
            busy,
        })
    }

    /// Wakes sessions waiting between datasets (their connection is shut down), gives
    /// streams in flight up to `timeout` to finish (a receive cut after that is discarded
    /// by ZFS, leaving the destination as it was), and returns once no session is left.
    fn stop_all(&self, timeout: Duration) {
        info!(
            "stopping: {} connection(s) open",
            self.active.load(Ordering::SeqCst)
        );
        let deadline = Instant::now() + timeout;
        while self.active.load(Ordering::SeqCst) > 0 {
            let past = Instant::now() >= deadline;
            for o in self.open().values() {
                if past || !o.busy.load(Ordering::SeqCst) {
                    let _ = o.stream.shutdown(Shutdown::Both);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
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
