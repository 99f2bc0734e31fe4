//! The stream pump: `zfs send`'s output to the socket in `Data` frames, moved by the
//! kernel (`splice`), ended by `End` or `Abort`, and the receiver's result for it.
//!
//! It does not choose what to send, and of the result it checks only what the stream
//! itself settles (the byte count, no `Done` before the end): the rest is the caller's.

use super::Connection;
use crate::{Error, Result};
use log::{debug, warn};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;
use zfsync_protocol::{splice, Message, MoveError, Outcome, Reason, MAX_DATA};
use zfsync_text::quoted;
use zfsync_zfs::ZfsProcess;

/// A frame is sent once the pipe from `zfs send` holds this much, or after [`FRAME_WAIT`]:
/// half the pipe, so that zfs send never finds it full meanwhile.
const FRAME_TARGET: usize = 512 << 10;
const FRAME_WAIT: Duration = Duration::from_micros(250);

impl Connection {
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
                Ok(()) => {
                    total += len as u64;
                    self.sent += len as u64;
                    crate::progress::sent(len as u64);
                }
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
            debug!(
                "stream stopped early dataset={} cmd={} zfs_send_stderr={}",
                quoted(dataset),
                quoted(&snapshot),
                quoted(&stderr)
            );
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
            let e = zfsync_text::IoWords(&e);
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
            warn!(
                "zfs send failed dataset={} error={}",
                quoted(dataset),
                quoted(&text)
            );
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
            o => {
                if let Outcome::Done { bytes, .. } = o {
                    self.confirmed += bytes;
                }
                Ok((o, total))
            }
        }
    }
}
