//! Framing: reading and writing whole frames on a byte stream.
//!
//! A frame's header is checked (kind known, length within the kind's limit) before its
//! payload is read, so a hostile length never becomes an allocation. A clean end of input
//! between frames is `Ok(None)`; an end inside a frame is [`Error::Truncated`].
//!
//! This is the codec only, over any `Read` or `Write`: moving a `Data` payload between a
//! pipe and the socket without copying it (`splice(2)`) is the [`crate::splice`] module's.

use crate::message::{kind_name, KIND_DATA};
use crate::splice::MoveError;
use crate::{Error, Message, Result, MAX_CONTROL, MAX_DATA};
use byteorder::{BigEndian, ByteOrder};
use std::io::{self, BufReader, Read, Write};

/// Bytes of a frame header: kind, then the payload's length.
pub(crate) const HEADER: usize = 5;

/// Reads frames from `R` (normally a `BufReader<TcpStream>` with a read timeout set).
pub struct FrameReader<R> {
    pub(crate) inner: R,
    /// Payload bytes of the last `Data` frame that [`FrameReader::read_frame`] announced and
    /// nobody has moved yet; skipped before the next frame is read.
    pub(crate) pending: usize,
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

    /// The frame behind `header`, of which `got` bytes were read (0: a clean end of input).
    pub(crate) fn frame_from(&mut self, header: [u8; HEADER], got: usize) -> Result<Option<Frame>> {
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
    pub(crate) fn skip_pending(&mut self) -> Result<()> {
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

/// Like `read_exact`, but returns how many bytes were read before a clean end of input, so
/// the caller can tell "closed between frames" (0) from "closed inside one".
pub(crate) fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize> {
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
    pub(crate) inner: W,
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
            Message::Root {
                guids: vec![1, u64::MAX],
            },
            Message::Root { guids: vec![] },
            Message::Reply(Plan::UpToDate { name: "s2".into() }),
            Message::Reply(Plan::Incremental {
                from_guid: 42,
                from_name: "s1".into(),
                rollback: "rolled back to @s1, destroying @x".into(),
            }),
            Message::Reply(Plan::Full { buffered: true }),
            Message::Reply(Plan::Resume {
                token: "1-e604ea4bf-e0-789c63a2".into(),
            }),
            Message::Reply(Plan::Placeholder {
                made: true,
                buffered: false,
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
