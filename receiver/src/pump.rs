//! Moving one stream into `zfs recv`: frames from the socket into its pipe, the bounds on
//! a zfs that stops taking data or does not finish, the result sent back, and discarding
//! the partial state of a stream that is worth nothing. It must not decide what is
//! received or where, nor touch snapshots or holds.

use crate::session::Session;
use crate::{Error, Result};
use log::{debug, info, warn};
use std::os::fd::AsFd;
use std::time::Duration;
use zfsync_protocol::{Frame, Message, MoveError, Outcome, Reason};
use zfsync_text::{quoted, IoWords};
use zfsync_zfs::{Dataset, DatasetInfo, RecvOptions, Snapshot, StreamFlags, BEGIN_HEAD};

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
    /// stream ends with, when the plan says which (`None`: a resumed stream).
    pub(crate) fn receive(
        &mut self,
        ds: &Dataset,
        opts: &RecvOptions,
        ends_with: Option<Snapshot>,
    ) -> Result<Outcome> {
        let resuming = ends_with.is_none();
        let zfs = self.shared.zfs;
        let mut proc = match zfs.recv(ds, opts) {
            Ok(p) => p,
            Err(e) => {
                return self.fail_and_drain(Outcome::Failed {
                    reason: Reason::ZfsFailed,
                    text: e.to_string(),
                })
            }
        };
        let stdin = proc.take_stdin().expect("zfs recv has stdin");
        enum End {
            Complete,
            RecvDied(String),
            Aborted(String),
            Mismatch(u64),
        }
        let limit = self.shared.config.timeout;
        let mut total: u64 = 0;
        // The stream's first bytes, gathered until its flags can be read (a first frame
        // may be shorter than the record that holds them); `None` once done with.
        let mut head: Option<Vec<u8>> = Some(Vec::with_capacity(BEGIN_HEAD));
        let end = loop {
            let frame = match self.reader.read_stream_frame() {
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
            };
            let msg = match frame {
                // The payload goes from the socket into zfs recv's pipe by splice. A zfs
                // recv that takes nothing for five times the timeout is stuck.
                Frame::Data(_) => {
                    if let Some(bytes) = &mut head {
                        if self.gather_head(ds, bytes) {
                            head = None;
                        }
                    }
                    match self.reader.move_data_to(stdin.as_fd(), limit * 5) {
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
                    }
                }
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
                    return self.violation(&format!("unexpected {} inside a stream", other.name()));
                }
            }
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
                return self.fail_and_drain(Outcome::Failed { reason, text });
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
        self.writer.send(&Message::Result(outcome.clone()))?;
        Ok(outcome)
    }

    /// Adds the pending frame's first bytes to `head`, the stream's so far, leaving them
    /// for `zfs recv`; once it holds [`BEGIN_HEAD`] bytes, notes the stream's flags (raw,
    /// compressed) for the history. True when done: the flags noted, or a head that could
    /// not be read or is not a stream's, which leaves them false (`zfs recv` judges the
    /// stream, not this).
    fn gather_head(&mut self, ds: &Dataset, head: &mut Vec<u8>) -> bool {
        match self.reader.peek_data(BEGIN_HEAD - head.len()) {
            Ok(bytes) => head.extend_from_slice(&bytes),
            Err(e) => {
                debug!("stream head unread dataset={} error={e}", quoted(ds));
                return true;
            }
        }
        if head.len() < BEGIN_HEAD {
            return false;
        }
        match StreamFlags::of(head) {
            Some(flags) => self.record.streamed(flags),
            None => debug!("stream head not a send stream's dataset={}", quoted(ds)),
        }
        true
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

    /// Sends a failure before the stream has ended, then reads and drops the rest of the
    /// stream (the sender stops as soon as it sees the result, and sends `Abort`).
    fn fail_and_drain(&mut self, outcome: Outcome) -> Result<Outcome> {
        self.writer.send(&Message::Result(outcome.clone()))?;
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
