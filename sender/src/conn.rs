//! One connection to the receiver and the messages of one dataset's exchange: offer and
//! plan, abandon, cleanup, keepalive, bye. The greeting is in `greet`, the stream pump in
//! `pump`.
//!
//! It decides nothing about what to send: it carries what the caller asks.

mod greet;
mod pump;

use crate::deadline::{Deadline, Watch};
use crate::report::CleanupDone;
use crate::{Config, Error, Result};
use log::warn;
use std::io::{BufReader, BufWriter};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use zfsync_protocol::{
    listed_frames, DatasetKind, FrameReader, FrameWriter, Message, Outcome, Plan, SnapshotInfo,
    FEATURE_LISTED,
};
use zfsync_zfs::{Kind, Snapshot};

/// The least a greeting is given, however long connecting took.
const MIN_GREETING: Duration = Duration::from_millis(500);

/// A failed greeting, said as what it means: a peer that never answered, or answered
/// something else than zfsync, is not a zfsync receiver.
fn greeting_error(e: Error, config: &Config) -> Error {
    let address = config.address.clone();
    match e {
        Error::Protocol(p) if p.is_timeout() => Error::NoGreeting {
            address,
            within: config.connect_timeout,
        },
        Error::Protocol(p) if !p.is_retryable() => Error::NotZfsync {
            address,
            what: p.to_string(),
        },
        e => e,
    }
}

pub struct Connection {
    /// On the run's `--deadline` watch list while open. First, so that it is dropped
    /// (its clone of the socket closed) before the connection's own descriptors.
    watch: Option<Watch>,
    reader: FrameReader<BufReader<TcpStream>>,
    writer: FrameWriter<BufWriter<TcpStream>>,
    fd: i32,
    timeout: Duration,
    /// Whether the root's snapshots were announced on this connection (`announce_root`).
    root_announced: bool,
    /// The receiver's feature bits, from its Welcome.
    features: u64,
    /// Stream bytes sent on this connection, and of them those the receiver confirmed
    /// (streams it reported done): how far a try got, even one that broke off.
    sent: u64,
    confirmed: u64,
}

impl Connection {
    /// Dials the receiver and greets it, both within `--connect-timeout`; the connection
    /// then has `--timeout` on each read and write.
    pub fn open(config: &Config) -> Result<Connection> {
        let started = Instant::now();
        let limit = config.connect_timeout;
        let stream = zfsync_link::dial(&config.address, limit).map_err(Error::Connect)?;
        // What is left of the bound is the greeting's, read by read: a zfsync receiver
        // answers at once, something else that listens there (an HTTP server waiting for
        // a request) never does.
        let left = limit.saturating_sub(started.elapsed()).max(MIN_GREETING);
        stream.set_read_timeout(Some(left))?;
        stream.set_write_timeout(Some(left))?;
        let socket = stream.try_clone()?;
        let conn = Connection::greet(stream, config).map_err(|e| greeting_error(e, config))?;
        zfsync_link::configure(&socket, config.timeout)?;
        Ok(conn)
    }

    /// Puts the connection on `deadline`'s watch list: cut when the run's deadline passes.
    pub(crate) fn watch(&mut self, deadline: &Deadline) -> Result<()> {
        let socket = self.writer.get_ref().get_ref().try_clone()?;
        self.watch = Some(deadline.watch(socket));
        Ok(())
    }

    /// Stream bytes sent so far, and of them those the receiver confirmed.
    pub(crate) fn counters(&self) -> (u64, u64) {
        (self.sent, self.confirmed)
    }

    /// Reads the next message that is not a keepalive. A clean close or an `Error` frame
    /// from the receiver are errors here: the conversation expected more.
    fn read(&mut self) -> Result<Message> {
        loop {
            match self.reader.read_message()? {
                Some(Message::KeepAlive) => continue,
                Some(Message::Error { reason, text }) => return Err(Error::Peer { reason, text }),
                Some(m) => return Ok(m),
                None => return Err(Error::Closed),
            }
        }
    }

    /// Tells the receiver the GUIDs of the sent root's snapshots (`root_sample` of them),
    /// once per connection, before its first offer: the receiver judges every child by
    /// them. Goes out with the offer that follows.
    pub fn announce_root(&mut self, guids: &[u64]) -> Result<()> {
        if !self.root_announced {
            self.writer.write_message(&Message::Root {
                guids: guids.to_vec(),
            })?;
            self.root_announced = true;
        }
        Ok(())
    }

    pub fn keepalive(&mut self) -> Result<()> {
        self.writer.send(&Message::KeepAlive).map_err(Error::from)
    }

    /// Offers a dataset and returns the receiver's plan.
    pub fn offer(
        &mut self,
        path: &str,
        kind: Kind,
        snaps: &[Snapshot],
        dry_run: bool,
    ) -> Result<Plan> {
        let kind = match kind {
            Kind::Filesystem => DatasetKind::Filesystem,
            Kind::Volume => DatasetKind::Volume,
        };
        self.writer.write_message(&Message::Offer {
            path: path.to_string(),
            kind,
            count: snaps.len() as u32,
            dry_run,
        })?;
        for s in snaps {
            self.writer.write_message(&Message::Snap(SnapshotInfo {
                name: s.name.clone(),
                guid: s.guid,
                createtxg: s.createtxg,
            }))?;
        }
        self.writer.flush()?;
        match self.read()? {
            Message::Reply(plan) => Ok(plan),
            other => Err(Error::Violation(format!(
                "expected reply, got {}",
                other.name()
            ))),
        }
    }

    /// Asks the receiver to place buffered datasets now. `listed`: every dataset this
    /// run's listing found below the root (relative paths), told first to a receiver that
    /// takes the list; `None` when the listing was not whole, and nothing is told.
    pub fn cleanup(&mut self, listed: Option<&[String]>) -> Result<CleanupDone> {
        let frames = listed.filter(|_| self.features & FEATURE_LISTED != 0);
        if let Some(paths) = frames {
            match listed_frames(paths) {
                Some(frames) => {
                    for f in &frames {
                        self.writer.write_message(f)?;
                    }
                }
                None => warn!(
                    "dataset list not sent: {} datasets, more than a receiver takes",
                    paths.len()
                ),
            }
        }
        self.writer.send(&Message::Cleanup)?;
        match self.read()? {
            Message::CleanupDone {
                placed,
                removed,
                waiting,
                failed,
                text,
            } => Ok(CleanupDone {
                placed,
                removed,
                waiting,
                failed,
                text,
            }),
            other => Err(Error::Violation(format!(
                "expected cleanup-done, got {}",
                other.name()
            ))),
        }
    }

    pub fn bye(mut self) {
        let _ = self.writer.send(&Message::Bye);
    }

    /// Ends a stream the receiver has asked for but this side will not send (its plan
    /// cannot be followed): Abort, and the receiver's Result for it, so that the
    /// connection stays in step for the next dataset.
    pub fn abandon(&mut self, text: &str) -> Result<()> {
        self.writer.send(&Message::Abort { text: text.into() })?;
        self.result().map(|_| ())
    }

    fn result(&mut self) -> Result<Outcome> {
        match self.read()? {
            Message::Result(o) => Ok(o),
            other => Err(Error::Violation(format!(
                "expected result, got {}",
                other.name()
            ))),
        }
    }
}
