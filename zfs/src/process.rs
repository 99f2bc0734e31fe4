//! A running zfs child process (`zfs send`, `zfs recv`) with its stderr drained on its own
//! thread.
//!
//! Without the drain thread a chatty child can fill its stderr pipe and block while we
//! block on its stdout or stdin: a deadlock. `Drop` kills and reaps the child, so an
//! abandoned `zfs recv` never lingers (ZFS discards a killed non-resumable receive, leaving
//! the destination as it was).

use crate::error::{classify, Error, FailureKind, Result};
use log::debug;
use std::io::Read;
use std::process::{Child, ChildStdin, ChildStdout};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How much of a child's stderr is kept; the rest is read and dropped.
const STDERR_KEEP: usize = 64 << 10;

pub struct ZfsProcess {
    cmd: String,
    child: Option<Child>,
    stderr: Option<JoinHandle<String>>,
    started: Instant,
    /// Set when [`ZfsProcess::wait_or_kill`] killed it: the limit it did not finish within.
    killed_after: Option<Duration>,
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
            killed_after: None,
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
        if let Some(c) = self.child.as_mut() {
            drop(c.stdin.take());
            if !exits_within(c, limit) {
                debug!("zfs kill cmd={:?} (did not end within {limit:?})", self.cmd);
                let _ = c.kill();
                self.killed_after = Some(limit);
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
        if let Some(limit) = self.killed_after {
            return Err(Error::Failed {
                cmd: std::mem::take(&mut self.cmd),
                status: format!("killed: did not finish within {limit:?}"),
                stderr,
                kind: FailureKind::Other,
            });
        }
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

/// Waits until `child` has exited (without reaping it), for at most `limit`; true if it
/// did. The wait ends the moment the child does: a `zfs recv` in a tree of small datasets
/// lasts tens of milliseconds, so a wait that wakes every so often to look would add a
/// good part of that to every dataset.
pub(crate) fn exits_within(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(fd) = pidfd_open(child.id()) {
        use std::os::fd::AsRawFd;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
            // SAFETY: one valid pollfd; the pidfd is open for the duration of the call.
            let rc = unsafe { libc::poll(&mut p, 1, ms) };
            if rc > 0 {
                return true;
            }
            if rc == 0 {
                return matches!(child.try_wait(), Ok(Some(_)));
            }
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break; // cannot wait this way: look every so often instead
            }
        }
    }
    // No pidfd (not Linux, or a kernel before 5.3): look, sleeping 1 ms and doubling up to
    // 20 ms between looks.
    let mut nap = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(nap.min(deadline.saturating_duration_since(Instant::now())));
                nap = (nap * 2).min(Duration::from_millis(20));
            }
            _ => return false,
        }
    }
}

/// A descriptor that becomes readable when process `pid` (our unreaped child) exits.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn pidfd_open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the descriptor was just created and nothing else owns it.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as libc::c_int) })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn spawn(script: &str) -> ZfsProcess {
        let child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        ZfsProcess::new(format!("sh -c {script:?}"), child)
    }

    #[test]
    fn a_child_that_ends_by_itself_is_reaped_with_its_status_and_stderr() {
        let ok = spawn("cat >/dev/null; echo warned >&2").wait_or_kill(Duration::from_secs(30));
        assert_eq!(ok.unwrap().trim(), "warned");
        let failed =
            spawn("cat >/dev/null; echo broken >&2; exit 3").wait_or_kill(Duration::from_secs(30));
        match failed {
            Err(Error::Failed { stderr, status, .. }) => {
                assert_eq!(stderr.trim(), "broken");
                assert!(status.contains('3'), "{status}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_child_that_does_not_end_within_the_limit_is_killed() {
        // Ignores the end of its input; only the kill ends it.
        let killed = spawn("exec sleep 600").wait_or_kill(Duration::from_millis(200));
        match killed {
            Err(Error::Failed { status, .. }) => {
                assert_eq!(status, "killed: did not finish within 200ms")
            }
            other => panic!("expected a killed child, got {other:?}"),
        }
    }
}
