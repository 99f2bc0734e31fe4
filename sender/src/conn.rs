//! One connection to the receiver and what travels on it: the greeting, one dataset's
//! offer and answer, and the `zfs send` stream.

use crate::{Config, Error, Result};
use log::{debug, warn};
use std::io::{BufReader, BufWriter};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;
use zfsync_protocol::{
    auth, splice, DatasetKind, FrameReader, FrameWriter, Message, MoveError, Outcome, Plan, Reason,
    SnapshotInfo, MAX_DATA, VERSION,
};
use zfsync_zfs::{Kind, Snapshot, ZfsProcess};

/// A frame is sent once the pipe from `zfs send` holds this much, or after [`FRAME_WAIT`]:
/// half the pipe, so that zfs send never finds it full meanwhile.
const FRAME_TARGET: usize = 512 << 10;
const FRAME_WAIT: Duration = Duration::from_micros(250);

pub struct Connection {
    reader: FrameReader<BufReader<TcpStream>>,
    writer: FrameWriter<BufWriter<TcpStream>>,
    fd: i32,
    timeout: Duration,
    /// Whether the root's snapshots were announced on this connection (`announce_root`).
    root_announced: bool,
}

impl Connection {
    /// Dials the receiver and greets it.
    pub fn open(config: &Config) -> Result<Connection> {
        let stream = zfsync_link::dial(&config.address, config.timeout)
            .map_err(|e| Error::Connect(e.to_string()))?;
        Connection::greet(stream, config)
    }

    /// Greets (and authenticates to) the receiver on a connected, configured stream:
    /// whoever opened it, the sender speaks first.
    pub fn greet(stream: TcpStream, config: &Config) -> Result<Connection> {
        let fd = stream.as_raw_fd();
        let mut conn = Connection {
            reader: FrameReader::new(BufReader::with_capacity(64 << 10, stream.try_clone()?)),
            writer: FrameWriter::new(BufWriter::with_capacity(64 << 10, stream)),
            fd,
            timeout: config.timeout,
            root_announced: false,
        };
        let client = config
            .key
            .as_ref()
            .map(|k| k.name.clone())
            .unwrap_or_default();
        conn.writer.send(&Message::Hello {
            version: VERSION,
            agent: format!("zfsync-send {}", env!("CARGO_PKG_VERSION")),
            dest: config.dest.clone(),
            client: client.clone(),
        })?;
        let mut client_nonce = Vec::new();
        let mut server_nonce = Vec::new();
        let mut msg = conn.read()?;
        if let Message::Challenge { nonce } = msg {
            let Some(key) = &config.key else {
                return Err(Error::Auth(
                    "the receiver requires a key: give --key-file".into(),
                ));
            };
            client_nonce = auth::nonce()?.to_vec();
            let mac = auth::client_proof(&key.secret, &nonce, &client_nonce, &client, &config.dest);
            server_nonce = nonce;
            conn.writer.send(&Message::Proof {
                nonce: client_nonce.clone(),
                mac,
            })?;
            msg = conn.read()?;
        }
        match msg {
            Message::Welcome {
                version,
                agent,
                proof,
                ..
            } if version == VERSION => {
                if let Some(key) = &config.key {
                    // Mutual: a receiver that cannot prove the key gets no data.
                    if server_nonce.is_empty() {
                        return Err(Error::Auth(
                            "the receiver did not ask for a key (started without --key-file?): refusing to send to an unauthenticated receiver".into(),
                        ));
                    }
                    if !auth::verify_server(
                        &key.secret,
                        &server_nonce,
                        &client_nonce,
                        &client,
                        &proof,
                    ) {
                        return Err(Error::Auth("the receiver failed to prove the key".into()));
                    }
                }
                debug!("connected addr={} peer_agent={agent:?}", config.address);
                Ok(conn)
            }
            Message::Welcome { version, .. } => Err(Error::Peer {
                reason: Reason::VersionMismatch,
                text: format!("receiver speaks protocol version {version}, this sender {VERSION}"),
            }),
            other => Err(Error::Violation(format!(
                "expected welcome, got {}",
                other.name()
            ))),
        }
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
    pub fn cleanup(&mut self) -> Result<(u32, u32, u32, u32, String)> {
        self.writer.send(&Message::Cleanup)?;
        match self.read()? {
            Message::CleanupDone {
                placed,
                removed,
                waiting,
                failed,
                text,
            } => Ok((placed, removed, waiting, failed, text)),
            other => Err(Error::Violation(format!(
                "expected cleanup-done, got {}",
                other.name()
            ))),
        }
    }

    pub fn bye(mut self) {
        let _ = self.writer.send(&Message::Bye);
    }

    /// Streams `zfs send` of `snapshot` and returns the receiver's result. The caller has
    /// had a full or incremental plan for it.
    ///
    /// Whatever `zfs send` has written to its pipe goes out as one `Data` frame, moved from
    /// the pipe to the socket by the kernel (`splice`), without passing through this process.
    /// One wait covers the pipe and the socket: data to send, the end of the stream, or an
    /// early word from the receiver (its `zfs recv` failed).
    pub fn stream(
        &mut self,
        spawned: zfsync_zfs::Result<ZfsProcess>,
        dataset: &str,
    ) -> Result<(Outcome, u64)> {
        let mut proc = match spawned {
            Ok(p) => p,
            Err(e) => {
                self.writer.send(&Message::Abort {
                    text: e.to_string(),
                })?;
                return self.result().map(|o| (o, 0));
            }
        };
        let snapshot = proc.command().to_string();
        let stdout = proc.take_stdout().expect("zfs send has stdout");
        let pipe = stdout.as_fd();
        let mut total: u64 = 0;
        let mut early: Option<Outcome> = None;
        let mut stalled = false;
        let mut read_error: Option<std::io::Error> = None;
        loop {
            if self.reader.has_buffered() {
                early = Some(self.result()?);
                break;
            }
            // The receiver drops a connection that stays silent for the timeout: a zfs
            // send that produces nothing for that long costs its dataset, not the worker.
            let ready = splice::poll(
                [(pipe.as_raw_fd(), libc::POLLIN), (self.fd, libc::POLLIN)],
                self.timeout,
            )?;
            if ready[1] != 0 {
                early = Some(self.result()?);
                break;
            }
            if ready[0] == 0 {
                stalled = true;
                break;
            }
            let mut n = match splice::readable_bytes(pipe) {
                Ok(n) => n,
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            };
            if n > 0 && n < FRAME_TARGET && ready[0] & libc::POLLHUP == 0 {
                // zfs send writes a record (~128 KiB) at a time, and each frame costs a
                // few system calls on each side: give it a moment to write more.
                std::thread::sleep(FRAME_WAIT);
                n = splice::readable_bytes(pipe).unwrap_or(n);
            }
            if n == 0 {
                if ready[0] & (libc::POLLHUP | libc::POLLERR) != 0 {
                    break; // end of the stream
                }
                continue;
            }
            let len = n.min(MAX_DATA);
            match self.writer.move_data_from(pipe, len) {
                Ok(()) => total += len as u64,
                Err(MoveError::Network(e)) => return Err(e.into()),
                Err(MoveError::Local(e)) => {
                    read_error = Some(e);
                    break;
                }
            }
        }
        if let Some(outcome) = early {
            // The receiver gave up (zfs recv failed): stop our side and say so.
            let stderr = proc.kill();
            debug!("stream stopped early dataset={dataset} cmd={snapshot:?} zfs_send_stderr={stderr:?}");
            self.writer.send(&Message::Abort {
                text: "receiver reported a failure".into(),
            })?;
            if let Outcome::Done { .. } = outcome {
                // Only a failure can come before the End: a receiver cannot have all of a
                // stream it has not seen the end of.
                return Err(Error::Violation(
                    "receiver reported the dataset done before the stream ended".into(),
                ));
            }
            return Ok((outcome, total));
        }
        drop(stdout);
        let failure = if stalled {
            let stderr = proc.kill();
            Some(format!(
                "zfs send produced nothing for {:?}, stopped: {stderr}",
                self.timeout
            ))
        } else if let Some(e) = read_error {
            let stderr = proc.kill();
            Some(format!("reading zfs send output: {e}: {stderr}"))
        } else {
            // Its output has ended, so zfs send is exiting: the bound is only for one
            // that hangs there.
            match proc.wait_or_kill(self.timeout) {
                Err(e) => Some(e.to_string()),
                // zfs-fuse can exit 0 after a warning and no stream: never call that success.
                Ok(stderr) if total == 0 => Some(format!("{snapshot}: produced no data: {stderr}")),
                Ok(_) => None,
            }
        };
        if let Some(text) = failure {
            warn!("zfs send failed dataset={dataset} error={text}");
            self.writer.send(&Message::Abort { text: text.clone() })?;
            let _ = self.result()?;
            return Ok((
                Outcome::Failed {
                    reason: Reason::StreamFailed,
                    text,
                },
                total,
            ));
        }
        self.writer.send(&Message::End { bytes: total })?;
        match self.result()? {
            Outcome::Done { bytes, .. } if bytes != total => Err(Error::Violation(format!(
                "receiver reported {bytes} bytes received of the {total} sent"
            ))),
            o => Ok((o, total)),
        }
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
