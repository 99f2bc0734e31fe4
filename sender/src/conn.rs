//! One connection to the receiver and the messages of one dataset's exchange: offer and
//! plan, abandon, cleanup, keepalive, bye. The greeting is in `greet`, the stream pump in
//! `pump`.
//!
//! It decides nothing about what to send: it carries what the caller asks.

mod greet;
mod pump;

use crate::report::CleanupDone;
use crate::{Config, Error, Result};
use std::io::{BufReader, BufWriter};
use std::net::TcpStream;
use std::time::Duration;
use zfsync_protocol::{
    DatasetKind, FrameReader, FrameWriter, Message, Outcome, Plan, SnapshotInfo,
};
use zfsync_zfs::{Kind, Snapshot};

pub struct Connection {
    reader: FrameReader<BufReader<TcpStream>>,
    writer: FrameWriter<BufWriter<TcpStream>>,
    fd: i32,
    timeout: Duration,
}

impl Connection {
    /// Dials the receiver and greets it.
    pub fn open(config: &Config) -> Result<Connection> {
        let stream = zfsync_link::dial(&config.address, config.timeout).map_err(Error::Connect)?;
        Connection::greet(stream, config)
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

    /// Asks the receiver to place buffered datasets now.
    pub fn cleanup(&mut self) -> Result<CleanupDone> {
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
