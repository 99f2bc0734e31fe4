//! SIGHUP, SIGTERM and SIGINT. The handler only stores to atomics and writes the signal's
//! number to a pipe (both async-signal-safe); a thread of its own reads the pipe and does
//! the rest, logging included:
//!
//! - SIGHUP with a log file: reopen it (logrotate). The writer also checks the flag on
//!   every write, so no line goes to the old file once the signal is in.
//! - SIGTERM, SIGINT, and SIGHUP without a log file: log `stopping on signal=NAME`, then
//!   stop as the binary asks ([`OnStop`]).
//!
//! No signal is blocked anywhere, and handlers fall back to the default action in a
//! program started with exec, so child processes (zfs) see signals as they always did.
//! Stopping the work itself is the binary's business (it reads its flag).

use crate::log_file::LogFile;
use log::{info, warn};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

/// What SIGTERM and SIGINT do once logged.
#[derive(Clone, Copy, Debug)]
pub enum OnStop {
    /// Raise this flag: a service that stops cleanly when it sees it. Logged at info.
    Flag(&'static AtomicBool),
    /// Die of the signal as if it were not handled (to a shell: 128 + its number).
    /// Logged at warn: the work is cut short.
    Die,
}

/// Set by SIGHUP, taken by whoever reopens the log file first.
static REOPEN: AtomicBool = AtomicBool::new(false);
/// The pipe's write end, or -1 before [`handle`].
static PIPE: AtomicI32 = AtomicI32::new(-1);

/// True once per SIGHUP since the last call.
pub(crate) fn take_reopen() -> bool {
    REOPEN.swap(false, Ordering::SeqCst)
}

/// What the handler does on SIGHUP, for tests of the log file.
#[cfg(test)]
pub(crate) fn ask_reopen() {
    REOPEN.store(true, Ordering::SeqCst);
}

extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGHUP {
        REOPEN.store(true, Ordering::SeqCst);
    }
    let fd = PIPE.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: write(2) on a non-blocking pipe is async-signal-safe (a full pipe drops
        // the byte: the thread already has a signal to act on). errno is put back so the
        // code the signal interrupted sees its own.
        unsafe {
            let errno = libc::__errno_location();
            let saved = *errno;
            libc::write(fd, (&byte as *const u8).cast(), 1);
            *errno = saved;
        }
    }
}

/// Starts the signal thread and installs the handlers; once per process. `log` is the
/// `-o FILE` log, if any.
pub fn handle(on_stop: OnStop, log: Option<Arc<LogFile>>) -> io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors on success. Close-on-exec: zfs children must not
    // hold them.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fds[0] is ours alone from here on.
    let read_end = unsafe { File::from_raw_fd(fds[0]) };
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fds[1], libc::F_GETFL);
        libc::fcntl(fds[1], libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    if PIPE
        .compare_exchange(-1, fds[1], Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // SAFETY: fds[1] was not published.
        unsafe { libc::close(fds[1]) };
        return Err(io::Error::other("signals are handled already"));
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || watch(read_end, on_stop, log))?;
    for sig in [libc::SIGHUP, libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction with a handler that only touches atomics and writes
        // to a pipe. SA_RESTART: other threads' system calls go on undisturbed.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// The signal thread: one byte per signal.
fn watch(mut pipe: File, on_stop: OnStop, log: Option<Arc<LogFile>>) {
    let mut byte = [0u8];
    loop {
        match pipe.read(&mut byte) {
            Ok(1) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The write end is never closed: neither can happen.
            Ok(_) | Err(_) => return,
        }
        let sig = libc::c_int::from(byte[0]);
        match &log {
            Some(file) if sig == libc::SIGHUP => {
                file.reopen_if_asked();
                info!(
                    "log file reopened signal=SIGHUP path={}",
                    file.path().display()
                );
            }
            _ => stop(sig, on_stop),
        }
    }
}

fn stop(sig: libc::c_int, on_stop: OnStop) {
    let name = name(sig);
    match on_stop {
        OnStop::Flag(flag) => {
            info!("stopping on signal={name}");
            flag.store(true, Ordering::SeqCst);
        }
        OnStop::Die => {
            warn!("stopping on signal={name}");
            // SAFETY: back to the default action, then the same signal to this thread:
            // the process ends as it would have without a handler.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::raise(sig);
            }
        }
    }
}

fn name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "?",
    }
}
