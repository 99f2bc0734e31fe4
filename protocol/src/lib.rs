//! The zfsync wire protocol: bytes -> frame -> typed message, and back.
//!
//! This crate owns the exact bytes that cross the TCP connection between `zfsync-send` and
//! `zfsync-recv`, and nothing else: it knows no ZFS, spawns no process and starts no thread.
//! Dataset names travel here as plain strings; checking them against ZFS naming rules is the
//! receiver's job.
//!
//! # Format
//!
//! A connection is a sequence of frames in each direction:
//!
//! ```text
//! frame   = kind:u8 length:u32be payload[length]
//! ```
//!
//! `kind` says which message the payload holds (see [`Message`] for each one's layout).
//! `length` is checked against the kind's limit *before* any byte of the payload is read or
//! allocated: [`MAX_DATA`] for stream data, [`MAX_CONTROL`] for everything else. Inside a
//! payload, fields are packed with no padding:
//!
//! ```text
//! u8, u16, u32, u64 = big-endian integers
//! str               = len:u16be bytes[len]   (UTF-8, each field with its own limit)
//! bool              = u8, 0 or 1
//! ```
//!
//! A payload must be consumed exactly: trailing bytes are an error, so a frame that does not
//! match its kind's layout is rejected rather than half-understood.
//!
//! The conversation is documented in `docs/PROTOCOL.md`.

pub mod auth;
mod frame;
mod message;
pub mod splice;

pub use frame::{Frame, FrameReader, FrameWriter};
pub use message::{
    listed_frames, root_sample, DatasetKind, Message, Outcome, Plan, Reason, SnapshotInfo,
};
pub use splice::{write_to_pipe, MoveError};

use std::fmt;
use std::io;
use zfsync_text::IoWords;

/// The protocol version this build speaks. Peers must speak the same version: a mismatch is
/// refused at the greeting, with both numbers in the error. Version 2 added [`Message::Root`], the
/// offer of a dataset without snapshots and its placeholder reply, and the rollback of an
/// accepted plan; [`Message::Listed`] came later within it, as an optional message behind
/// [`FEATURE_LISTED`] (no peer receives a kind it does not know).
pub const VERSION: u16 = 2;

/// The bytes that open every `Hello` payload, so that a zfsync receiver talking to something
/// else (or the other way round) fails at once and says so.
pub const MAGIC: &[u8; 6] = b"ZFSYNC";

/// The default TCP port of `zfsync-recv` (unprivileged, unassigned).
pub const DEFAULT_PORT: u16 = 7611;

/// Largest payload of a [`Message::Data`] frame.
pub const MAX_DATA: usize = 1 << 20;
/// Largest payload of any frame other than `Data`.
pub const MAX_CONTROL: usize = 64 << 10;
/// Largest dataset path or snapshot name field. ZFS itself stops at 255 bytes; the receiver
/// applies that rule, this one only bounds what we read.
pub const MAX_NAME: usize = 1024;
/// Largest free-text field (error messages, zfs stderr). Longer texts are cut by
/// [`clip_text`] before they are sent.
pub const MAX_TEXT: usize = 16 << 10;
/// Largest number of snapshot GUIDs in a [`Message::Root`]: enough to judge whether the
/// receiver's copy of the root is a replica of it (see [`root_sample`]), in one frame.
pub const MAX_ROOT_GUIDS: usize = 4096;
/// Largest number of paths in one dataset list ([`Message::Listed`], all its frames
/// together). The receiver keeps the list until the run's cleanup, so this bounds what a
/// sender can make it hold (paths are at most 255 bytes once checked).
pub const MAX_LISTED: usize = 100_000;
/// Welcome's `features` bit of a receiver that takes [`Message::Listed`]. A sender sends
/// the list only to such a receiver, so an older receiver (features 0) never sees the kind.
pub const FEATURE_LISTED: u64 = 1;
/// Largest number of snapshots one `Offer` may announce. The receiver reads them one frame at
/// a time and keeps none of them, so this is a sanity bound, not a buffer size.
pub const MAX_SNAPSHOTS: u32 = 10_000_000;

/// Errors of this crate.
#[derive(Debug)]
pub enum Error {
    /// The transport failed (includes a read or write that timed out).
    Io(io::Error),
    /// The peer closed the connection inside a frame.
    Truncated { wanted: usize, got: usize },
    /// A frame announced a payload larger than its kind allows.
    TooLarge { kind: u8, len: usize, max: usize },
    /// A frame kind this version does not know.
    UnknownKind(u8),
    /// A payload that does not match its kind's layout.
    Malformed { kind: &'static str, why: String },
}

impl Error {
    /// True when the peer simply did not answer in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }

    /// True when a new connection may succeed where this one failed (transport trouble), false
    /// when the peer spoke something we cannot understand (it will do so again).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Io(_) | Error::Truncated { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(_) if self.is_timeout() => f.write_str("timed out waiting for the peer"),
            Error::Io(e) => write!(f, "connection error: {}", IoWords(e)),
            Error::Truncated { wanted, got } => {
                write!(
                    f,
                    "connection closed inside a frame (wanted {wanted} bytes, got {got})"
                )
            }
            Error::TooLarge { kind, len, max } => {
                write!(
                    f,
                    "frame of kind {kind:#04x} announces {len} bytes, limit is {max}"
                )
            }
            Error::UnknownKind(k) => write!(
                f,
                "unknown frame kind {k:#04x} (peer speaks another protocol?)"
            ),
            Error::Malformed { kind, why } => write!(f, "malformed {kind} frame: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Cuts `text` to at most [`MAX_TEXT`] bytes on a character boundary, so that a long zfs
/// stderr can always be sent.
pub fn clip_text(text: &str) -> String {
    clip(text, MAX_TEXT)
}

pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}
