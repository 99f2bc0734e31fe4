//! Moving stream data between a pipe (to or from `zfs`) and the connection without copying
//! it through this process.
//!
//! A `Data` frame's payload goes from `zfs send`'s pipe to the socket, and from the socket to
//! `zfs recv`'s pipe, with `splice(2)`: the kernel hands pages over instead of copying them
//! into a user buffer and out again. Only the 5-byte frame header is written or read the
//! ordinary way. Where `splice` is not available (not Linux, or a descriptor that does not
//! support it), the same moves fall back to `read`/`write` through a buffer; the bytes on the
//! wire are the same either way.
//!
//! This module owns the stream phase's side of [`FrameReader`] and [`FrameWriter`] on a
//! `TcpStream` (`read_stream_frame`, `move_data_to`, `move_data_from`) and the descriptor
//! calls they make. What a frame is, and how it is checked, stays in the codec: a header
//! read here goes through the same checks as any other.

use crate::frame::{read_full, HEADER};
use crate::message::KIND_DATA;
use crate::{Error, Frame, FrameReader, FrameWriter, Result, MAX_DATA};
use byteorder::{BigEndian, ByteOrder};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::TcpStream;
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

impl FrameReader<BufReader<TcpStream>> {
    /// [`FrameReader::read_frame`] for the stream phase: when nothing is buffered, the
    /// header is read straight from the socket, 5 bytes, so that the payload behind it stays
    /// in the kernel for [`FrameReader::move_data_to`] instead of being read into the buffer.
    pub fn read_stream_frame(&mut self) -> Result<Option<Frame>> {
        self.skip_pending()?;
        if self.has_buffered() {
            return self.read_frame();
        }
        let mut header = [0u8; HEADER];
        let got = read_full(self.inner.get_mut(), &mut header)?;
        self.frame_from(header, got)
    }

    /// Up to `want` bytes from the start of the pending `Data` payload, left in place for
    /// [`FrameReader::move_data_to`]: what is buffered, then the rest peeked at in the
    /// socket (`MSG_PEEK`, waiting for all of it up to the socket's read timeout). Fewer
    /// when the payload is shorter or the peer stops sending. For a look at a stream's
    /// head (its flags) without giving up `splice(2)` for its body.
    pub fn peek_data(&mut self, want: usize) -> Result<Vec<u8>> {
        let want = want.min(self.pending);
        let buffered = self.inner.buffer();
        let mut out = buffered[..buffered.len().min(want)].to_vec();
        if out.len() < want {
            let mut rest = vec![0u8; want - out.len()];
            let n = peek_all(self.inner.get_ref().as_raw_fd(), &mut rest)?;
            out.extend_from_slice(&rest[..n]);
        }
        Ok(out)
    }

    /// Moves the pending `Data` payload into `pipe` (the input of `zfs recv`): what is
    /// already buffered is written, the rest goes from the socket to the pipe with
    /// `splice(2)`. Returns the payload's length. A pipe that takes nothing for `stall` is a
    /// local error (its reader stopped reading), like one whose reader is gone.
    pub fn move_data_to(
        &mut self,
        pipe: BorrowedFd<'_>,
        stall: Duration,
    ) -> std::result::Result<usize, MoveError> {
        let len = self.pending;
        let pfd = pipe.as_raw_fd();
        let sock = self.inner.get_ref().as_raw_fd();
        let timeout = self
            .inner
            .get_ref()
            .read_timeout()
            .map_err(|e| MoveError::Network(Error::Io(e)))?;
        let mut lowat = LowWater::new(sock);
        let room = pipe_capacity(pfd);
        while self.pending > 0 {
            wait_writable(pfd, stall)?;
            if let Some(cap) = room {
                // zfs recv reads a record at a time, and each read out of a full pipe wakes
                // the writer: when less than a batch fits, let it read more first. What is
                // left in the pipe keeps it busy meanwhile.
                let queued = readable_bytes(pipe).unwrap_or(0);
                if cap.saturating_sub(queued) < self.pending.min(RECV_BATCH) {
                    std::thread::sleep(PIPE_DRAIN_WAIT);
                }
            }
            let buffered = self.inner.buffer().len();
            if buffered > 0 {
                // At most a page after each wait: a pipe with room takes it without blocking.
                let n = buffered.min(self.pending).min(PIPE_PAGE);
                write_all_fd(pfd, &self.inner.buffer()[..n]).map_err(MoveError::Local)?;
                self.inner.consume(n);
                self.pending -= n;
                continue;
            }
            // Wait for a batch, never for more than this frame still owes us: the sender
            // has those bytes in hand, but may send nothing after them until we answer.
            lowat.set(self.pending.min(RECV_BATCH));
            wait_readable(sock, lowat.mark(), timeout)?;
            match splice_once(sock, pfd, self.pending) {
                Ok(Some(0)) => {
                    return Err(MoveError::Network(Error::Truncated {
                        wanted: len,
                        got: len - self.pending,
                    }))
                }
                Ok(Some(n)) => self.pending -= n,
                Ok(None) => {
                    // No splice here: copy, one page at a time for the same reason.
                    let mut buf = [0u8; PIPE_PAGE];
                    let want = self.pending.min(PIPE_PAGE);
                    let n = read_full(self.inner.get_mut(), &mut buf[..want])
                        .map_err(MoveError::Network)?;
                    if n == 0 {
                        return Err(MoveError::Network(Error::Truncated {
                            wanted: len,
                            got: len - self.pending,
                        }));
                    }
                    // Off the socket now, whatever the write does: what the frame still
                    // owes must not count them again, or skipping the rest would eat
                    // into the next frame.
                    self.pending -= n;
                    write_all_fd(pfd, &buf[..n]).map_err(MoveError::Local)?;
                }
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => return Err(MoveError::Local(e)),
                Err(e) => return Err(MoveError::Network(Error::Io(e))),
            }
        }
        Ok(len)
    }
}

impl FrameWriter<BufWriter<TcpStream>> {
    /// Sends one `Data` frame of `len` bytes (1 to [`MAX_DATA`]) taken from `pipe` (the
    /// output of `zfs send`), which must hold at least that many bytes ready to read. What
    /// is queued is flushed first; the payload goes from the pipe to the socket with
    /// `splice(2)`.
    pub fn move_data_from(
        &mut self,
        pipe: BorrowedFd<'_>,
        len: usize,
    ) -> std::result::Result<(), MoveError> {
        if len == 0 || len > MAX_DATA {
            return Err(MoveError::Network(Error::TooLarge {
                kind: KIND_DATA,
                len,
                max: MAX_DATA,
            }));
        }
        let net = |e: io::Error| MoveError::Network(Error::Io(e));
        let mut header = [0u8; HEADER];
        header[0] = KIND_DATA;
        BigEndian::write_u32(&mut header[1..], len as u32);
        let sock = self.inner.get_ref().as_raw_fd();
        if self.inner.buffer().is_empty() {
            // MSG_MORE: the payload follows the header into the same segments rather than
            // leaving it in a 5-byte packet of its own.
            send_more(sock, &header).map_err(net)?;
        } else {
            self.inner.write_all(&header).map_err(net)?;
            self.inner.flush().map_err(net)?;
        }
        let mut left = len;
        while left > 0 {
            match splice_once(pipe.as_raw_fd(), sock, left) {
                Ok(Some(0)) => {
                    return Err(MoveError::Local(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "zfs send's output ended inside a frame",
                    )))
                }
                Ok(Some(n)) => left -= n,
                Ok(None) => {
                    let mut buf = [0u8; 16 << 10];
                    let want = left.min(buf.len());
                    let n =
                        read_fd(pipe.as_raw_fd(), &mut buf[..want]).map_err(MoveError::Local)?;
                    if n == 0 {
                        return Err(MoveError::Local(io::ErrorKind::UnexpectedEof.into()));
                    }
                    self.inner.get_mut().write_all(&buf[..n]).map_err(net)?;
                    left -= n;
                }
                // The pipe holds the bytes already: what fails is the connection.
                Err(e) => return Err(net(e)),
            }
        }
        Ok(())
    }
}

/// Bytes the receiver lets arrive before it splices them on (see [`LowWater`]). With
/// [`PIPE_DRAIN_WAIT`], the receiving side of a 1 GiB stream on zfs-fuse went from ~11 600
/// splices (~90 KiB each, many of 4 KiB) to ~2 200, and its spinning on the pipe's lock,
/// which `zfs recv` holds while it reads, from 1.8 % of all CPU cycles to 0.1 %.
const RECV_BATCH: usize = 256 << 10;

/// How long the receiver lets `zfs recv` drain a pipe that has less than a batch of room.
const PIPE_DRAIN_WAIT: Duration = Duration::from_micros(250);

/// A pipe's capacity in bytes (`F_GETPIPE_SZ`), if the descriptor is a pipe.
fn pipe_capacity(fd: RawFd) -> Option<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: F_GETPIPE_SZ takes no argument and only reads the descriptor's state.
        let rc = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
        (rc > 0).then_some(rc as usize)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = fd;
        None
    }
}

/// Longest wait for a batch before looking at what has arrived anyway: a kernel whose
/// receive memory fills before the low-water mark is reached may not wake the reader.
const BATCH_WAIT: Duration = Duration::from_millis(50);

/// Waits until the socket has `mark` bytes to read (or is closed or failed), or at least
/// one byte once a [`BATCH_WAIT`] has passed without the batch. No byte within `timeout`
/// (the socket's read timeout; `None`, no limit) is the same timeout error a read gives.
fn wait_readable(
    sock: RawFd,
    mark: usize,
    timeout: Option<Duration>,
) -> std::result::Result<(), MoveError> {
    let start = std::time::Instant::now();
    loop {
        let slice = if mark > 1 {
            BATCH_WAIT
        } else {
            Duration::from_secs(3600)
        };
        let slice = match timeout {
            Some(t) => slice.min(t.saturating_sub(start.elapsed())),
            None => slice,
        };
        let revents =
            poll([(sock, libc::POLLIN)], slice).map_err(|e| MoveError::Network(Error::Io(e)))?;
        if revents[0] != 0 {
            return Ok(());
        }
        // SAFETY: the descriptor is the reader's socket, open while it is borrowed here.
        let fd = unsafe { BorrowedFd::borrow_raw(sock) };
        if readable_bytes(fd).map_err(|e| MoveError::Network(Error::Io(e)))? > 0 {
            return Ok(());
        }
        if let Some(t) = timeout {
            if start.elapsed() >= t {
                return Err(MoveError::Network(Error::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no data from the peer for {t:?}"),
                ))));
            }
        }
    }
}

/// What one write to a pipe with room is sure to take without blocking (`PIPE_BUF`).
const PIPE_PAGE: usize = 4096;

/// Waits until `pipe` has room, for at most `limit`.
fn wait_writable(pipe: RawFd, limit: Duration) -> std::result::Result<(), MoveError> {
    let revents = poll([(pipe, libc::POLLOUT)], limit).map_err(MoveError::Local)?;
    if revents[0] == 0 {
        return Err(MoveError::Local(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("zfs took no data for {limit:?}"),
        )));
    }
    Ok(())
}

#[cfg(any(target_os = "linux", target_os = "android"))]
const MSG_MORE: libc::c_int = libc::MSG_MORE;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const MSG_MORE: libc::c_int = 0;

/// `send(2)` of all of `buf` with `MSG_MORE` (more data follows at once).
fn send_more(sock: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        let rc = unsafe { libc::send(sock, buf.as_ptr().cast(), buf.len(), MSG_MORE) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[rc as usize..];
    }
    Ok(())
}

/// `recv(2)` with `MSG_PEEK | MSG_WAITALL`: fills `buf` from the socket's queue without
/// taking anything off it, waiting for that much up to the socket's read timeout; fewer
/// bytes at end of stream. A timeout is an error like any other read's.
fn peek_all(sock: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let rc = unsafe {
            libc::recv(
                sock,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK | libc::MSG_WAITALL,
            )
        };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

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
struct LowWater {
    fd: RawFd,
    mark: usize,
}

impl LowWater {
    fn new(fd: RawFd) -> Self {
        LowWater { fd, mark: 1 }
    }

    /// Sets the mark to `n` (at least 1) if it is not already. A socket that refuses keeps
    /// waking per segment, which is slower but correct.
    fn set(&mut self, n: usize) {
        let n = n.clamp(1, i32::MAX as usize);
        if n != self.mark && set_rcvlowat(self.fd, n).is_ok() {
            self.mark = n;
        }
    }

    fn mark(&self) -> usize {
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
fn splice_once(from: RawFd, to: RawFd, len: usize) -> io::Result<Option<usize>> {
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
fn splice_once(_from: RawFd, _to: RawFd, _len: usize) -> io::Result<Option<usize>> {
    Ok(None)
}

/// `write(2)` of all of `buf` to `fd`.
fn write_all_fd(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
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
fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
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
