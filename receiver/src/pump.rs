//! Moving one stream into `zfs recv`: frames from the socket into its pipe, the bounds on
//! a zfs that stops taking data or does not finish, the result sent back, and discarding
//! the partial state of a stream that is worth nothing. It reads the stream's head first:
//! its flags (raw, compressed) go to the history, and where `zfs recv` cannot keep a
//! stream's properties out (no `-x`), one that carries properties is refused. It must not decide what is received or where, nor touch
//! snapshots or holds.

use crate::session::Session;
use crate::{Error, Result};
use log::{debug, info, warn};
use std::os::fd::AsFd;
use std::time::Duration;
use zfsync_protocol::{write_to_pipe, Frame, Message, MoveError, Outcome, Reason};
use zfsync_text::{quoted, IoWords};
use zfsync_zfs::{
    flags_head_len, stream_head, Dataset, DatasetInfo, RecvOptions, Snapshot, StreamFlags,
    StreamHead,
};

/// Ends a `zfs recv` whose stream was cut or refused: its input is closed (after what is
/// already queued), so ZFS sees a truncated stream and discards the partial receive, or
/// keeps its resume token; only one that does not end within `limit` is killed. Returns
/// once it is gone, so the dataset's lock is not released while a half-received dataset
/// is still visible (zfs-fuse shows it until its daemon has read the end of the pipe).
/// The caller closes the stream's pipe first: that is what ends the input.
fn end_cut_recv(proc: zfsync_zfs::ZfsProcess, limit: Duration) {
    let _ = proc.wait_or_kill(limit);
}

impl Session<'_> {
    /// Receives one stream into `ds` and sends the result. `ends_with` is the snapshot the
    /// stream ends with, when the plan says which (`None`: a resumed stream). `finishing`
    /// is called right before the result goes out.
    pub(crate) fn receive(
        &mut self,
        ds: &Dataset,
        opts: &RecvOptions,
        ends_with: Option<Snapshot>,
        finishing: &dyn Fn(),
    ) -> Result<Outcome> {
        let resuming = ends_with.is_none();
        let zfs = self.shared.zfs;
        let limit = self.shared.config.timeout;
        // The head says whether the stream is raw or compressed (for the history), and
        // what it carries. Without `zfs recv -x`, properties in a stream would be set on
        // the replica, a mountpoint over a path of this host included: such a stream is
        // refused unread.
        let (head, mut ended) = self.read_head()?;
        match StreamFlags::of(&head) {
            Some(flags) => self.record.streamed(flags),
            None => debug!("stream head not a send stream's dataset={}", quoted(ds)),
        }
        if !zfs.capabilities().recv_exclude
            && stream_head(&head) == (StreamHead::Compound { properties: true })
        {
            let outcome = Outcome::Failed {
                reason: Reason::Denied,
                text: format!(
                    "the stream carries properties (zfs send -p or -R), which this receiver's \
                     ZFS ({}) would set on {ds}, mountpoint included: its zfs recv cannot keep \
                     them out (no -x); nothing was received",
                    zfs.capabilities().flavor
                ),
            };
            if ended.is_some() {
                self.send_result(&outcome, finishing)?;
                return Ok(outcome);
            }
            return self.fail_and_drain(outcome, finishing);
        }
        let mut proc = match zfs.recv(ds, opts) {
            Ok(p) => p,
            Err(e) => {
                let failed = Outcome::Failed {
                    reason: Reason::ZfsFailed,
                    text: e.to_string(),
                };
                return self.fail_and_drain(failed, finishing);
            }
        };
        let stdin = proc.take_stdin().expect("zfs recv has stdin");
        enum End {
            Complete,
            RecvDied(String),
            Aborted(String),
            Mismatch(u64),
        }
        let mut total = head.len() as u64;
        let end = match write_to_pipe(stdin.as_fd(), &head, limit * 5) {
            Err(e) => End::RecvDied(IoWords(&e).to_string()),
            Ok(()) => loop {
                let frame = match ended.take() {
                    Some(m) => Frame::Message(m),
                    None => match self.reader.read_stream_frame() {
                        Ok(Some(f)) => f,
                        Ok(None) => {
                            drop(stdin);
                            end_cut_recv(proc, limit);
                            return Err(Error::Violation("closed inside a stream".into()));
                        }
                        Err(e) => {
                            drop(stdin);
                            end_cut_recv(proc, limit);
                            return Err(e.into());
                        }
                    },
                };
                let msg = match frame {
                    // The payload goes from the socket into zfs recv's pipe by splice. A
                    // zfs recv that takes nothing for five times the timeout is stuck.
                    Frame::Data(_) => match self.reader.move_data_to(stdin.as_fd(), limit * 5) {
                        Ok(n) => {
                            total += n as u64;
                            continue;
                        }
                        Err(MoveError::Local(e)) => break End::RecvDied(IoWords(&e).to_string()),
                        Err(MoveError::Network(e)) => {
                            drop(stdin);
                            end_cut_recv(proc, limit);
                            return Err(e.into());
                        }
                    },
                    Frame::Message(m) => m,
                };
                match msg {
                    Message::End { bytes } if bytes == total => break End::Complete,
                    Message::End { bytes } => break End::Mismatch(bytes),
                    Message::Abort { text } => break End::Aborted(text),
                    Message::KeepAlive => {}
                    other => {
                        drop(stdin);
                        end_cut_recv(proc, limit);
                        return self
                            .violation(&format!("unexpected {} inside a stream", other.name()));
                    }
                }
            },
        };
        drop(stdin);
        let outcome = match end {
            End::Complete => {
                // The input is complete and closed: zfs recv commits and exits. A generous
                // bound only so that a zfs that hangs cannot hold this session and the
                // dataset's lock for ever (the writer is joined after: it may be blocked
                // writing to a zfs recv that stopped reading).
                let finished = proc.wait_or_kill(self.shared.config.timeout * 5);
                match (finished, ends_with) {
                    // zfs recv exits 0 only once every snapshot of the stream is
                    // committed, each with the GUID the stream carries: no listing needed.
                    (Ok(_), Some(snap)) => Outcome::Done {
                        bytes: total,
                        newest: snap.name,
                        newest_guid: snap.guid,
                    },
                    (Ok(_), None) => self.verify(ds, total),
                    (Err(e), _) => {
                        let (reason, text) = recv_failure(ds, &e);
                        Outcome::Failed { reason, text }
                    }
                }
            }
            End::RecvDied(why) => {
                let finished = proc.wait_or_kill(self.shared.config.timeout);
                let (reason, text) = match finished {
                    Ok(_) => (
                        Reason::ZfsFailed,
                        format!("zfs recv into {ds} ended before the stream did ({why})"),
                    ),
                    Err(e) => {
                        let (reason, text) = recv_failure(ds, &e);
                        (reason, format!("{text} ({why})"))
                    }
                };
                if resuming {
                    // The token led nowhere: drop the partial state so the next offer
                    // falls back to a normal incremental.
                    self.discard_partial(ds);
                }
                return self.fail_and_drain(Outcome::Failed { reason, text }, finishing);
            }
            End::Aborted(text) => {
                end_cut_recv(proc, self.shared.config.timeout);
                // The sender's stream is bad (its zfs send failed): partial state from it
                // is worth nothing. A cut connection, by contrast, keeps its resume token.
                self.discard_partial(ds);
                Outcome::Failed {
                    reason: Reason::StreamFailed,
                    text: format!("sender aborted the stream: {text}"),
                }
            }
            End::Mismatch(announced) => {
                end_cut_recv(proc, self.shared.config.timeout);
                self.discard_partial(ds);
                Outcome::Failed {
                    reason: Reason::StreamFailed,
                    text: format!("stream length mismatch: sender announced {announced} bytes, {total} arrived"),
                }
            }
        };
        self.send_result(&outcome, finishing)?;
        Ok(outcome)
    }

    /// Reads the stream's first frames until its head is here ([`zfsync_zfs::STREAM_HEAD`] bytes, of
    /// a compound stream up to its first substream's: [`flags_head_len`]), for a look
    /// before `zfs recv` gets them. Returns them, and the `End` or `Abort` that came
    /// first if the stream was shorter. Errors as the receive's own reading.
    fn read_head(&mut self) -> Result<(Vec<u8>, Option<Message>)> {
        let mut head = Vec::new();
        while head.len() < flags_head_len(&head) {
            match self.reader.read_stream_frame()? {
                Some(Frame::Data(_)) => {
                    self.reader.copy_data_to(&mut head).map_err(|e| match e {
                        MoveError::Network(e) => Error::from(e),
                        MoveError::Local(e) => Error::from(e), // a Vec does not fail
                    })?;
                }
                Some(Frame::Message(Message::KeepAlive)) => {}
                Some(Frame::Message(m @ (Message::End { .. } | Message::Abort { .. }))) => {
                    return Ok((head, Some(m)))
                }
                Some(Frame::Message(other)) => {
                    return self.violation(&format!("unexpected {} inside a stream", other.name()))
                }
                None => return Err(Error::Violation("closed inside a stream".into())),
            }
        }
        Ok((head, None))
    }

    /// Drops the partial state of an interrupted resumable receive (`zfs recv -A`), if the
    /// ZFS keeps such state at all. Nothing else is touched: for an existing dataset that
    /// is only the unfinished stream, for a new one the unfinished dataset.
    fn discard_partial(&self, ds: &Dataset) {
        let zfs = self.shared.zfs;
        if !zfs.capabilities().resumable {
            return;
        }
        match zfs.dataset(ds) {
            Ok(Some(DatasetInfo {
                resume_token: Some(_),
                ..
            })) => match zfs.recv_abort(ds) {
                Ok(()) => info!("discarded partial receive dataset={}", quoted(ds)),
                Err(e) => warn!(
                    "cannot discard partial receive dataset={} error={}",
                    quoted(ds),
                    quoted(e)
                ),
            },
            Ok(_) => {}
            Err(e) => warn!(
                "cannot check for partial receive dataset={} error={}",
                quoted(ds),
                quoted(e)
            ),
        }
    }

    /// After a successful resumed receive, reads back what is newest in `ds` now.
    fn verify(&self, ds: &Dataset, total: u64) -> Outcome {
        match self.shared.zfs.list_snapshots(ds) {
            Ok(Some(snaps)) if !snaps.is_empty() => {
                let newest = snaps.last().unwrap();
                Outcome::Done {
                    bytes: total,
                    newest: newest.name.clone(),
                    newest_guid: newest.guid,
                }
            }
            Ok(_) => Outcome::Failed {
                reason: Reason::ZfsFailed,
                text: format!("zfs recv succeeded but {ds} has no snapshot"),
            },
            Err(e) => Outcome::Failed {
                reason: Reason::ZfsFailed,
                text: e.to_string(),
            },
        }
    }

    /// Sends `outcome` as the Result, once the offer is marked finishing: from then on
    /// the sender may be done with the run and ask for its cleanup.
    fn send_result(&mut self, outcome: &Outcome, finishing: &dyn Fn()) -> Result<()> {
        finishing();
        Ok(self.writer.send(&Message::Result(outcome.clone()))?)
    }

    /// Sends a failure before the stream has ended, then reads and drops the rest of the
    /// stream (the sender stops as soon as it sees the result, and sends `Abort`).
    fn fail_and_drain(&mut self, outcome: Outcome, finishing: &dyn Fn()) -> Result<Outcome> {
        self.send_result(&outcome, finishing)?;
        loop {
            match self.reader.read_message()? {
                Some(Message::Data(_)) | Some(Message::KeepAlive) => {}
                Some(Message::End { .. }) | Some(Message::Abort { .. }) => return Ok(outcome),
                Some(other) => {
                    return self.violation(&format!("unexpected {} inside a stream", other.name()))
                }
                None => return Err(Error::Violation("closed inside a stream".into())),
            }
        }
    }
}

/// Why a `zfs recv` into `ds` failed, for the sender. A destination changed since its
/// newest snapshot is divergence like a snapshot of its own (refused, nothing changed,
/// healed by a rollback its admin allows), not a malfunction of zfs.
fn recv_failure(ds: &Dataset, e: &zfsync_zfs::Error) -> (Reason, String) {
    if e.kind() == zfsync_zfs::FailureKind::DestinationModified {
        let text = format!("{e}; nothing was changed (to discard the changes, allow it for this dataset once: zfs set zfsync:rollback=once {ds} on the receiver; or for every dataset: start zfsync-recv with --allow-rollback)");
        (Reason::Diverged, text)
    } else {
        (Reason::ZfsFailed, e.to_string())
    }
}
