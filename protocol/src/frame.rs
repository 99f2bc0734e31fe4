//! Framing: reading and writing whole frames on a byte stream.
//!
//! A frame's header is checked (kind known, length within the kind's limit) before its
//! payload is read, so a hostile length never becomes an allocation. A clean end of input
//! between frames is `Ok(None)`; an end inside a frame is [`Error::Truncated`].

use crate::message::{kind_name, KIND_DATA};
use crate::splice::{
    poll, read_fd, readable_bytes, splice_once, write_all_fd, LowWater, MoveError,
};
use crate::{Error, Message, Result, MAX_CONTROL, MAX_DATA};
use byteorder::{BigEndian, ByteOrder};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

const HEADER: usize = 5;

/// Reads frames from `R` (normally a `BufReader<TcpStream>` with a read timeout set).
pub struct FrameReader<R> {
    inner: R,
    /// Payload bytes of the last `Data` frame that [`FrameReader::read_frame`] announced and
    /// nobody has moved yet; skipped before the next frame is read.
    pending: usize,
}

/// A frame as [`FrameReader::read_frame`] returns it: a whole message, or the header of a
/// `Data` frame whose payload (1 to [`MAX_DATA`] bytes) is still to be moved, with
/// [`FrameReader::copy_data_to`] or [`FrameReader::move_data_to`].
#[derive(Debug)]
pub enum Frame {
    Message(Message),
    Data(usize),
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader { inner, pending: 0 }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Reads the next whole message. `Ok(None)` means the peer closed the connection
    /// cleanly between two frames.
    pub fn read_message(&mut self) -> Result<Option<Message>> {
        match self.read_frame()? {
            None => Ok(None),
            Some(Frame::Message(m)) => Ok(Some(m)),
            Some(Frame::Data(len)) => {
                let mut payload = Vec::with_capacity(len);
                self.copy_data_to(&mut payload).map_err(|e| match e {
                    MoveError::Network(e) => e,
                    MoveError::Local(e) => Error::Io(e), // a Vec does not fail
                })?;
                Message::decode(KIND_DATA, payload).map(Some)
            }
        }
    }

    /// Reads the next frame, leaving a `Data` frame's payload unread. A payload left
    /// unmoved is skipped first.
    pub fn read_frame(&mut self) -> Result<Option<Frame>> {
        self.skip_pending()?;
        let mut header = [0u8; HEADER];
        let got = read_full(&mut self.inner, &mut header)?;
        self.frame_from(header, got)
    }

    fn frame_from(&mut self, header: [u8; HEADER], got: usize) -> Result<Option<Frame>> {
        if got == 0 {
            return Ok(None);
        }
        if got < HEADER {
            return Err(Error::Truncated {
                wanted: HEADER,
                got,
            });
        }
        let kind = header[0];
        let len = BigEndian::read_u32(&header[1..]) as usize;
        if kind_name(kind).is_none() {
            return Err(Error::UnknownKind(kind));
        }
        let max = if kind == KIND_DATA {
            MAX_DATA
        } else {
            MAX_CONTROL
        };
        if len > max {
            return Err(Error::TooLarge { kind, len, max });
        }
        if kind == KIND_DATA {
            if len == 0 {
                return Err(Error::Malformed {
                    kind: "data",
                    why: "empty data frame".into(),
                });
            }
            self.pending = len;
            return Ok(Some(Frame::Data(len)));
        }
        // Read into a vector that grows as bytes arrive rather than one sized up front: the
        // length is within limits, but there is no need to zero a buffer first.
        let mut payload = Vec::with_capacity(len);
        let n = (&mut self.inner)
            .take(len as u64)
            .read_to_end(&mut payload)
            .map_err(Error::Io)?;
        if n < len {
            return Err(Error::Truncated {
                wanted: len,
                got: n,
            });
        }
        Message::decode(kind, payload)
            .map(Some)
            .map(|m| m.map(Frame::Message))
    }

    /// Writes the pending `Data` payload to `out` (through a buffer). Returns its length.
    pub fn copy_data_to<W: Write>(&mut self, out: &mut W) -> std::result::Result<usize, MoveError> {
        let len = self.pending;
        let mut buf = [0u8; 16 << 10];
        while self.pending > 0 {
            let want = self.pending.min(buf.len());
            let n = match self.inner.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(MoveError::Network(Error::Truncated {
                        wanted: len,
                        got: len - self.pending,
                    }))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(MoveError::Network(Error::Io(e))),
            };
            self.pending -= n;
            out.write_all(&buf[..n]).map_err(MoveError::Local)?;
        }
        Ok(len)
    }

    /// Reads and drops the rest of a `Data` payload nobody moved.
    fn skip_pending(&mut self) -> Result<()> {
        if self.pending > 0 {
            self.copy_data_to(&mut io::sink()).map_err(|e| match e {
                MoveError::Network(e) => e,
                MoveError::Local(e) => Error::Io(e),
            })?;
        }
        Ok(())
    }
}

impl<T: Read> FrameReader<BufReader<T>> {
    /// True when bytes of a next frame already sit in this process's buffer, where a poll
    /// of the socket would not see them.
    pub fn has_buffered(&self) -> bool {
        !self.inner.buffer().is_empty()
    }
}

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

/// Like `read_exact`, but returns how many bytes were read before a clean end of input, so
/// the caller can tell "closed between frames" (0) from "closed inside one".
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Ok(got)
}

/// Writes frames to `W` (normally a `BufWriter<TcpStream>` with a write timeout set).
/// Nothing reaches the peer before [`FrameWriter::flush`].
pub struct FrameWriter<W: Write> {
    inner: W,
    scratch: Vec<u8>,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        FrameWriter {
            inner,
            scratch: Vec::with_capacity(256),
        }
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Queues one message. Data is better written with [`FrameWriter::write_data`], which
    /// does not copy it.
    pub fn write_message(&mut self, msg: &Message) -> Result<()> {
        if let Message::Data(bytes) = msg {
            return self.write_data(bytes);
        }
        self.scratch.clear();
        msg.encode_payload(&mut self.scratch)?;
        if self.scratch.len() > MAX_CONTROL {
            return Err(Error::TooLarge {
                kind: msg.kind(),
                len: self.scratch.len(),
                max: MAX_CONTROL,
            });
        }
        write_header(&mut self.inner, msg.kind(), self.scratch.len())?;
        self.inner.write_all(&self.scratch)?;
        Ok(())
    }

    /// Queues one `Data` frame holding `bytes` (1 to [`MAX_DATA`] of them).
    pub fn write_data(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() || bytes.len() > MAX_DATA {
            return Err(Error::TooLarge {
                kind: KIND_DATA,
                len: bytes.len(),
                max: MAX_DATA,
            });
        }
        write_header(&mut self.inner, KIND_DATA, bytes.len())?;
        self.inner.write_all(bytes)?;
        Ok(())
    }

    /// Queues and flushes one message: for the last frame before waiting for an answer.
    pub fn send(&mut self, msg: &Message) -> Result<()> {
        self.write_message(msg)?;
        self.flush()
    }

    pub fn flush(&mut self) -> Result<()> {
        self.inner.flush().map_err(Error::Io)
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

fn write_header<W: Write>(w: &mut W, kind: u8, len: usize) -> Result<()> {
    let mut header = [0u8; HEADER];
    header[0] = kind;
    BigEndian::write_u32(&mut header[1..], len as u32);
    w.write_all(&header)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DatasetKind, Outcome, Plan, Reason, SnapshotInfo, MAX_TEXT, VERSION};
    use std::io::Cursor;

    fn encode(msgs: &[Message]) -> Vec<u8> {
        let mut w = FrameWriter::new(Vec::new());
        for m in msgs {
            w.write_message(m).unwrap();
        }
        w.flush().unwrap();
        w.inner
    }

    fn decode_all(bytes: &[u8]) -> Result<Vec<Message>> {
        let mut r = FrameReader::new(Cursor::new(bytes));
        let mut out = Vec::new();
        while let Some(m) = r.read_message()? {
            out.push(m);
        }
        Ok(out)
    }

    fn every_message() -> Vec<Message> {
        vec![
            Message::Hello {
                version: VERSION,
                agent: "zfsync-send 0.1.0".into(),
                dest: "clients/a b".into(),
                client: "alice".into(),
            },
            Message::Challenge { nonce: vec![1; 32] },
            Message::Proof {
                nonce: vec![2; 32],
                mac: vec![3; 32],
            },
            Message::Welcome {
                version: VERSION,
                agent: "zfsync-recv 0.1.0".into(),
                features: 0,
                proof: vec![4; 32],
            },
            Message::Offer {
                path: "home/alice".into(),
                kind: DatasetKind::Volume,
                count: 2,
                dry_run: true,
            },
            Message::Snap(SnapshotInfo {
                name: "2026-11-22_0347_D".into(),
                guid: u64::MAX,
                createtxg: 17,
            }),
            Message::Reply(Plan::UpToDate { name: "s2".into() }),
            Message::Reply(Plan::Incremental {
                from_guid: 42,
                from_name: "s1".into(),
            }),
            Message::Reply(Plan::Full { buffered: true }),
            Message::Reply(Plan::Resume {
                token: "1-e604ea4bf-e0-789c63a2".into(),
            }),
            Message::Reply(Plan::Refused {
                reason: Reason::Diverged,
                text: "newer snapshots: x".into(),
            }),
            Message::Data(vec![7; 1000]),
            Message::End { bytes: 1000 },
            Message::Abort {
                text: "zfs send failed".into(),
            },
            Message::Result(Outcome::Done {
                bytes: 1000,
                newest: "s2".into(),
                newest_guid: 9,
            }),
            Message::Result(Outcome::Failed {
                reason: Reason::ZfsFailed,
                text: "cannot receive".into(),
            }),
            Message::Cleanup,
            Message::CleanupDone {
                placed: 3,
                removed: 1,
                waiting: 2,
                failed: 0,
                text: "".into(),
            },
            Message::KeepAlive,
            Message::Bye,
            Message::Error {
                reason: Reason::VersionMismatch,
                text: "speaks 2".into(),
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        let msgs = every_message();
        assert_eq!(decode_all(&encode(&msgs)).unwrap(), msgs);
    }

    #[test]
    fn clean_eof_between_frames_is_none() {
        let mut r = FrameReader::new(Cursor::new(Vec::new()));
        assert!(r.read_message().unwrap().is_none());
    }

    #[test]
    fn every_cut_off_point_is_an_error() {
        // Cutting the encoding of one message anywhere but at its end must never yield a
        // message, nor a clean EOF.
        for msg in every_message() {
            let bytes = encode(std::slice::from_ref(&msg));
            for cut in 1..bytes.len() {
                match decode_all(&bytes[..cut]) {
                    Err(Error::Truncated { .. }) => {}
                    other => panic!("{} cut at {cut}/{}: {other:?}", msg.name(), bytes.len()),
                }
            }
        }
    }

    #[test]
    fn unknown_kind_is_rejected() {
        let err = decode_all(b"GET / HTTP/1.1\r\n\r\n").unwrap_err();
        assert!(matches!(err, Error::UnknownKind(b'G')), "{err:?}");
    }

    #[test]
    fn oversized_control_frame_is_rejected_before_reading() {
        // The header alone announces too much: no payload follows, and none is waited for.
        let mut bytes = vec![0x10];
        bytes.extend_from_slice(&((MAX_CONTROL as u32) + 1).to_be_bytes());
        let err = decode_all(&bytes).unwrap_err();
        assert!(matches!(err, Error::TooLarge { kind: 0x10, .. }), "{err:?}");
    }

    #[test]
    fn oversized_data_frame_is_rejected() {
        let mut bytes = vec![0x20];
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode_all(&bytes).unwrap_err(),
            Error::TooLarge { .. }
        ));
    }

    #[test]
    fn over_long_name_field_is_rejected() {
        let mut payload = vec![];
        payload.extend_from_slice(&2000u16.to_be_bytes());
        payload.extend_from_slice(&[b'a'; 2000]);
        payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let err = Message::decode(0x10, payload).unwrap_err();
        assert!(err.to_string().contains("limit is 1024"), "{err}");
    }

    #[test]
    fn over_long_name_is_not_encoded() {
        let msg = Message::Offer {
            path: "a".repeat(2000),
            kind: DatasetKind::Filesystem,
            count: 0,
            dry_run: false,
        };
        assert!(FrameWriter::new(Vec::new()).write_message(&msg).is_err());
    }

    #[test]
    fn long_text_is_clipped_not_refused() {
        let text = "é".repeat(MAX_TEXT); // two bytes each: twice the limit
        let msg = Message::Abort { text };
        let back = decode_all(&encode(&[msg])).unwrap();
        match &back[0] {
            Message::Abort { text } => {
                assert!(text.len() <= MAX_TEXT && text.len() >= MAX_TEXT - 1)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut payload = vec![];
        Message::End { bytes: 5 }
            .encode_payload(&mut payload)
            .unwrap();
        payload.push(0);
        assert!(Message::decode(0x21, payload).is_err());
    }

    #[test]
    fn bad_magic_is_rejected() {
        let mut bytes = encode(&[Message::Hello {
            version: 1,
            agent: "x".into(),
            dest: "".into(),
            client: "".into(),
        }]);
        bytes[5] = b'X';
        let err = decode_all(&bytes).unwrap_err();
        assert!(err.to_string().contains("magic"), "{err}");
    }

    #[test]
    fn short_nonce_is_rejected() {
        // By the decoder (a hand-made payload: len 31, then 31 bytes)...
        let mut payload = vec![0, 31];
        payload.extend_from_slice(&[1; 31]);
        assert!(Message::decode(0x03, payload).is_err());
        // ...and already by the encoder, so nothing is sent that the peer must refuse.
        let short = Message::Challenge { nonce: vec![1; 31] };
        assert!(short.encode_payload(&mut Vec::new()).is_err());
        let proof = Message::Proof {
            nonce: vec![1; 32],
            mac: vec![],
        };
        assert!(proof.encode_payload(&mut Vec::new()).is_err());
    }

    #[test]
    fn snapshot_count_over_limit_is_rejected() {
        let mut payload = vec![];
        Message::Offer {
            path: "a".into(),
            kind: DatasetKind::Filesystem,
            count: crate::MAX_SNAPSHOTS + 1,
            dry_run: false,
        }
        .encode_payload(&mut payload)
        .unwrap();
        assert!(Message::decode(0x10, payload).is_err());
    }

    #[test]
    fn unknown_reason_and_tags_are_rejected() {
        assert!(Message::decode(0x7f, vec![0xff, 0xff, 0, 0]).is_err());
        assert!(Message::decode(0x12, vec![9]).is_err());
        assert!(Message::decode(0x23, vec![9]).is_err());
        assert!(Message::decode(
            0x11,
            vec![0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        )
        .is_err());
    }

    #[test]
    fn empty_data_frame_is_rejected() {
        assert!(decode_all(&[0x20, 0, 0, 0, 0]).is_err());
        assert!(FrameWriter::new(Vec::new()).write_data(&[]).is_err());
    }

    #[test]
    fn reason_codes_round_trip() {
        for code in 0..100u16 {
            if let Some(r) = Reason::from_code(code) {
                assert_eq!(r.code(), code);
            }
        }
        assert!(Reason::Busy.is_retryable());
        assert!(!Reason::Diverged.is_retryable());
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic sweep; the fuzz harness goes further.
        let mut x: u64 = 0x9E3779B97F4A7C15;
        for _ in 0..20_000 {
            let mut buf = vec![0u8; (x % 64) as usize];
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if !buf.is_empty() {
                buf[0] = [0x01, 0x10, 0x11, 0x12, 0x23, 0x31, 0x7f][(x % 7) as usize];
            }
            let _ = decode_all(&buf);
        }
    }
}
