//! Moving stream data between a pipe (to or from `zfs`) and the connection without copying
//! it through this process.
//!
//! A `Data` frame's payload goes from `zfs send`'s pipe to the socket, and from the socket to
//! `zfs recv`'s pipe, with `splice(2)`: the kernel hands pages over instead of copying them
//! into a user buffer and out again. Only the 5-byte frame header is written or read the
//! ordinary way. Where `splice` is not available (not Linux, or a descriptor that does not
//! support it), the same moves fall back to `read`/`write` through a buffer; the bytes on the
//! wire are the same either way.

use crate::Error;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

/// A failed move, by side: the connection's (a peer that is gone, cut or silent) or the
/// local pipe's (the `zfs` process at the other end stopped reading or writing).
#[derive(Debug)]
pub enum MoveError {
    Network(Error),
    Local(io::Error),
}

impl std::fmt::Display for MoveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MoveError::Network(e) => write!(f, "{e}"),
            MoveError::Local(e) => write!(f, "pipe to zfs: {e}"),
        }
    }
}

impl std::error::Error for MoveError {}

/// Bytes that can be read from `fd` (a pipe) without blocking (`FIONREAD`).
pub fn readable_bytes(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which is valid.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD as _, &mut n) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// Waits until one of `fds` has any of its `events`, or `timeout` passes. Returns each
/// descriptor's `revents` (all 0 on timeout). An interrupted wait is retried with the time
/// left. No allocation: it runs once per frame.
pub fn poll<const N: usize>(fds: [(RawFd, i16); N], timeout: Duration) -> io::Result<[i16; N]> {
    let mut pfds = fds.map(|(fd, events)| libc::pollfd {
        fd,
        events,
        revents: 0,
    });
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `pfds` is a valid array of `N` pollfd structs.
        let rc = unsafe { libc::poll(pfds.as_mut_ptr(), N as libc::nfds_t, ms) };
        if rc >= 0 {
            return Ok(pfds.map(|p| p.revents));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The socket's receive low-water mark (`SO_RCVLOWAT`) while a `Data` payload is moved:
/// with it at N, the kernel reports the socket readable, and wakes a waiting reader, only
/// once N bytes have arrived (or the peer closed, or its receive memory is full), so one
/// `splice` moves a batch instead of each segment as it lands. Set back to 1 when dropped:
/// a blocking `read` of a frame header waits for `min(mark, length asked)` bytes, and a mark
/// above what the peer will send before it waits for an answer would stall it.
pub(crate) struct LowWater {
    fd: RawFd,
    mark: usize,
}

impl LowWater {
    pub(crate) fn new(fd: RawFd) -> Self {
        LowWater { fd, mark: 1 }
    }

    /// Sets the mark to `n` (at least 1) if it is not already. A socket that refuses keeps
    /// waking per segment, which is slower but correct.
    pub(crate) fn set(&mut self, n: usize) {
        let n = n.clamp(1, i32::MAX as usize);
        if n != self.mark && set_rcvlowat(self.fd, n).is_ok() {
            self.mark = n;
        }
    }

    pub(crate) fn mark(&self) -> usize {
        self.mark
    }
}

impl Drop for LowWater {
    fn drop(&mut self) {
        if self.mark != 1 {
            let _ = set_rcvlowat(self.fd, 1);
        }
    }
}

fn set_rcvlowat(fd: RawFd, n: usize) -> io::Result<()> {
    let v = n as libc::c_int;
    // SAFETY: SO_RCVLOWAT reads one c_int through the pointer, which is valid for its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Moves up to `len` bytes from `from` to `to` with one `splice(2)` call. `Ok(None)`: splice
/// cannot do this pair (fall back to copying). `Ok(Some(0))`: end of input.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn splice_once(from: RawFd, to: RawFd, len: usize) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: plain syscall on descriptors the caller keeps open; no offsets.
        let rc = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE,
            )
        };
        if rc >= 0 {
            return Ok(Some(rc as usize));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => return Ok(None),
            _ => return Err(e),
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn splice_once(_from: RawFd, _to: RawFd, _len: usize) -> io::Result<Option<usize>> {
    Ok(None)
}

/// `write(2)` of all of `buf` to `fd`.
pub(crate) fn write_all_fd(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        let rc = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if rc == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[rc as usize..];
    }
    Ok(())
}

/// `read(2)` into `buf`: the count, 0 at end of input.
pub(crate) fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let rc = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
