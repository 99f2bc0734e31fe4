//! The run's `--deadline`: when it passes, no dataset is started any more and every
//! connection in use is cut (shut down both ways), so that streams in flight end at once
//! wherever they are blocked. The receiver discards a cut stream (or keeps it resumable).
//!
//! It owns the clock and the watch list of sockets; it must not decide what a dataset's
//! report says (the pool does) nor speak the protocol.

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The run's bound, shared by the pool and its connections.
#[derive(Clone, Default)]
pub(crate) struct Deadline(Arc<Inner>);

#[derive(Default)]
struct Inner {
    /// `--deadline` and when it passes; none: the run has no bound.
    limit: Option<(Duration, Instant)>,
    passed: AtomicBool,
    next_id: AtomicU64,
    /// A clone of each watched connection's socket, to cut it.
    sockets: Mutex<HashMap<u64, TcpStream>>,
}

/// A connection's place on the watch list, left when dropped (with the connection).
pub(crate) struct Watch {
    deadline: Deadline,
    id: u64,
}

impl Drop for Watch {
    fn drop(&mut self) {
        // Closes the clone: the connection's own descriptors close the socket.
        self.deadline.sockets().remove(&self.id);
    }
}

impl Deadline {
    /// `limit` from `started`; none: no bound.
    pub(crate) fn new(limit: Option<Duration>, started: Instant) -> Deadline {
        Deadline(Arc::new(Inner {
            limit: limit.map(|l| (l, started + l)),
            ..Inner::default()
        }))
    }

    fn sockets(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        self.0.sockets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the deadline has passed.
    pub(crate) fn passed(&self) -> bool {
        self.0.passed.load(Ordering::SeqCst)
            || self.0.limit.is_some_and(|(_, at)| Instant::now() >= at)
    }

    /// How long until it passes; none without a deadline.
    pub(crate) fn left(&self) -> Option<Duration> {
        self.0
            .limit
            .map(|(_, at)| at.saturating_duration_since(Instant::now()))
    }

    /// "the run's --deadline of 30 s passed".
    pub(crate) fn text(&self) -> String {
        let secs = self.0.limit.map_or(0, |(l, _)| l.as_secs());
        format!("the run's --deadline of {secs} s passed")
    }

    /// Puts `socket` on the watch list: cut when the deadline passes (at once if it has).
    pub(crate) fn watch(&self, socket: TcpStream) -> Watch {
        if self.passed() {
            let _ = socket.shutdown(Shutdown::Both);
        }
        let id = self.0.next_id.fetch_add(1, Ordering::SeqCst);
        self.sockets().insert(id, socket);
        Watch {
            deadline: self.clone(),
            id,
        }
    }

    /// Waits for the deadline, then cuts every watched connection; returns early, having
    /// done nothing, once `done` is dropped (the run ended first).
    pub(crate) fn enforce(&self, done: &crossbeam_channel::Receiver<()>) {
        let Some(left) = self.left() else {
            let _ = done.recv();
            return;
        };
        if done.recv_timeout(left) == Err(crossbeam_channel::RecvTimeoutError::Timeout) {
            self.0.passed.store(true, Ordering::SeqCst);
            for s in self.sockets().values() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn without_a_deadline_nothing_passes() {
        let d = Deadline::new(None, Instant::now());
        assert!(!d.passed());
        assert_eq!(d.left(), None);
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        drop(tx);
        d.enforce(&rx);
        assert!(!d.passed());
    }

    #[test]
    fn a_passed_deadline_cuts_the_watched_connections() {
        let d = Deadline::new(Some(Duration::from_millis(50)), Instant::now());
        assert_eq!(d.text(), "the run's --deadline of 0 s passed");
        let (mine, mut theirs) = pair();
        let _watch = d.watch(mine.try_clone().unwrap());
        let (_tx, rx) = crossbeam_channel::bounded::<()>(0);
        d.enforce(&rx);
        assert!(d.passed());
        // The peer sees the end of the connection, though `mine` is still open.
        let mut buf = [0u8; 1];
        assert_eq!(theirs.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn the_run_ending_first_cuts_nothing() {
        let d = Deadline::new(Some(Duration::from_secs(60)), Instant::now());
        let (mine, _theirs) = pair();
        let watch = d.watch(mine.try_clone().unwrap());
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        drop(tx);
        d.enforce(&rx);
        assert!(!d.passed());
        drop(watch);
        assert!(d.sockets().is_empty());
    }
}
