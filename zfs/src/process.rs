//! A running zfs child process (`zfs send`, `zfs recv`) with its stderr drained on its own
//! thread.
//!
//! Without the drain thread a chatty child can fill its stderr pipe and block while we
//! block on its stdout or stdin: a deadlock. `Drop` kills and reaps the child, so an
//! abandoned `zfs recv` never lingers (ZFS discards a killed non-resumable receive, leaving
//! the destination as it was).

use crate::{classify, Error, Result};
use log::debug;
use std::io::Read;
use std::process::{Child, ChildStdin, ChildStdout};
use std::thread::JoinHandle;
use std::time::Instant;

/// How much of a child's stderr is kept; the rest is read and dropped.
const STDERR_KEEP: usize = 64 << 10;

pub struct ZfsProcess {
    cmd: String,
    child: Option<Child>,
    stderr: Option<JoinHandle<String>>,
    started: Instant,
}

impl ZfsProcess {
    pub(crate) fn new(cmd: String, mut child: Child) -> ZfsProcess {
        let stderr = child.stderr.take().map(|mut err| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match err.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let room = STDERR_KEEP.saturating_sub(kept.len());
                            kept.extend_from_slice(&buf[..n.min(room)]);
                        }
                    }
                }
                String::from_utf8_lossy(&kept).trim_end().to_string()
            })
        });
        ZfsProcess {
            cmd,
            child: Some(child),
            stderr,
            started: Instant::now(),
        }
    }

    /// The command line, for messages.
    pub fn command(&self) -> &str {
        &self.cmd
    }

    /// The child's stdout (once).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.as_mut().and_then(|c| c.stdout.take())
    }

    /// The child's stdin (once). Drop it to signal end of input.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.as_mut().and_then(|c| c.stdin.take())
    }

    /// The child's process id.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the child (if still running) and reaps it; returns what it wrote on stderr.
    pub fn kill(mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }

    /// Waits up to `limit` for the child to exit by itself (after its stdin was closed),
    /// then kills it; returns like [`ZfsProcess::wait`]. For ending a `zfs recv` whose
    /// stream was cut: letting it see the end of its input makes ZFS clean up the partial
    /// receive before we go on (zfs-fuse keeps a half-received dataset visible until its
    /// daemon reads EOF), while the limit keeps a stuck one from holding us.
    pub fn wait_or_kill(mut self, limit: std::time::Duration) -> Result<String> {
        let deadline = Instant::now() + limit;
        if let Some(c) = self.child.as_mut() {
            drop(c.stdin.take());
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(20))
                    }
                    _ => {
                        debug!("zfs kill cmd={:?} (did not end within {limit:?})", self.cmd);
                        let _ = c.kill();
                        break;
                    }
                }
            }
        }
        self.wait()
    }

    /// Waits for the child to exit. A non-zero exit becomes [`Error::Failed`] with the
    /// stderr text; on success the stderr text (warnings) is returned.
    pub fn wait(mut self) -> Result<String> {
        let mut child = self.child.take().expect("ZfsProcess waited twice");
        drop(child.stdin.take());
        let status = child.wait().map_err(|e| Error::Io {
            what: format!("waiting for {}", self.cmd),
            source: e,
        })?;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        debug!(
            "zfs end cmd={:?} status={} secs={:.3}",
            self.cmd,
            status,
            self.started.elapsed().as_secs_f64()
        );
        if status.success() {
            Ok(stderr)
        } else {
            let kind = classify(&stderr);
            Err(Error::Failed {
                cmd: std::mem::take(&mut self.cmd),
                status: status.to_string(),
                stderr,
                kind,
            })
        }
    }
}

impl Drop for ZfsProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            debug!("zfs kill cmd={:?} (abandoned)", self.cmd);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
