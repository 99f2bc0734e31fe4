//! Typed messages and their payload layouts.
//!
//! Each variant of [`Message`] documents its frame kind and payload bytes. Encoding and
//! decoding live side by side here so that a layout change touches one place.

use crate::auth::{MAC_LEN, NONCE_LEN};
use crate::{
    clip, Error, Result, MAGIC, MAX_CONTROL, MAX_NAME, MAX_ROOT_GUIDS, MAX_SNAPSHOTS, MAX_TEXT,
    VERSION,
};
use byteorder::{BigEndian, ByteOrder};

/// Largest `agent` field of `Hello`/`Welcome` (a program name and version).
const MAX_AGENT: usize = 256;
/// Largest client name.
const MAX_CLIENT: usize = 64;

/// One message of the conversation. Which side sends which, and when, is in
/// `docs/PROTOCOL.md`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Sender's greeting, the first frame of every connection.
    ///
    /// # Format
    /// kind `0x01`: `"ZFSYNC" version:u16 agent:str(256) dest:str(1024) client:str(64)`.
    /// `dest` is where the sent root lands, relative to the receiver's target ("" = the
    /// target itself, or the client's subtree); `client` names the sender's key ("" when
    /// it has none).
    Hello {
        version: u16,
        agent: String,
        dest: String,
        client: String,
    },
    /// Receiver: "prove you know the key" (only when it has a key file).
    ///
    /// # Format
    /// kind `0x03`: `nonce:bytes(32)` where `bytes(n) = len:u16be bytes[len]`, len = n.
    Challenge { nonce: Vec<u8> },
    /// Sender's answer to a challenge (see the `auth` module).
    ///
    /// # Format
    /// kind `0x04`: `nonce:bytes(32) mac:bytes(32)`.
    Proof { nonce: Vec<u8>, mac: Vec<u8> },
    /// Receiver's answer to a `Hello` it accepts.
    ///
    /// # Format
    /// kind `0x02`: `version:u16 agent:str(256) features:u64 proof:bytes(0 or 32)`
    /// (feature bits: [`crate::FEATURE_LISTED`] = 1, the receiver takes
    /// [`Message::Listed`]; a sender ignores bits it does not know; `proof` is the
    /// receiver's own proof of the key after a challenge, empty without one).
    Welcome {
        version: u16,
        agent: String,
        features: u64,
        proof: Vec<u8>,
    },
    /// Sender: "my root has these snapshots", once per connection, before its first
    /// [`Message::Offer`]: what the receiver judges the root's replica by before it takes
    /// any child of it (a child may be offered before the root, on another connection).
    /// `guids` are [`root_sample`]'s pick of the root's snapshots, oldest first: all of
    /// them, or the oldest and the newest 4,095; none when the root has no snapshots.
    ///
    /// # Format
    /// kind `0x13`: `count:u16 guid:u64 × count`, `count` at most 4,096.
    Root { guids: Vec<u64> },
    /// Sender, only to a receiver whose Welcome has [`crate::FEATURE_LISTED`]: "my listing
    /// of this run found these datasets below my root", every one of them whatever the
    /// run's filters chose to send, by path relative to the sent root (the root itself is
    /// not listed). Sent before `Cleanup`, only after a listing of the whole tree that
    /// succeeded; spread over as many frames as it takes, the last with `last` true. What
    /// the receiver's `--orphans-after` counts a replica's absence by.
    ///
    /// # Format
    /// kind `0x14`: `last:bool count:u16 path:str(1024) × count`, the payload within
    /// [`MAX_CONTROL`]; all frames of one list together hold at most
    /// [`crate::MAX_LISTED`] paths (the receiver counts).
    Listed { paths: Vec<String>, last: bool },
    /// Sender: "here is a dataset and its snapshots". Followed by exactly `count`
    /// [`Message::Snap`] frames, oldest snapshot first. `count` 0 offers a filesystem
    /// without snapshots that has descendants with some: the receiver makes it a
    /// placeholder parent if it has no dataset there (answered [`Plan::Placeholder`]).
    ///
    /// # Format
    /// kind `0x10`: `path:str(1024) kind:u8 count:u32 dry_run:bool`. `path` is relative to
    /// the sent root ("" for the root itself); `kind` is 0 filesystem, 1 volume;
    /// `count` is at most 10,000,000.
    Offer {
        path: String,
        kind: DatasetKind,
        count: u32,
        dry_run: bool,
    },
    /// One snapshot of the dataset being offered.
    ///
    /// # Format
    /// kind `0x11`: `name:str(1024) guid:u64 createtxg:u64` (`name` is the part after `@`;
    /// createtxg 0 = unknown).
    Snap(SnapshotInfo),
    /// Receiver's answer to an offer.
    ///
    /// # Format
    /// kind `0x12`: `tag:u8` then
    /// - 0 up to date: `name:str(1024)` (the newest snapshot, which both sides have)
    /// - 1 incremental: `from_guid:u64 from_name:str(1024) rollback:str(16384)` (`rollback`:
    ///   how the receiver rolled the destination back first, and which snapshots that
    ///   destroyed; empty when it did not)
    /// - 2 full: `buffered:bool` (true: parent missing, it lands in the buffer dataset)
    /// - 3 refused: `reason:u16 text:str(16384)`
    /// - 4 resume: `token:str(16384)` (an interrupted stream left this token: send the
    ///   rest with `zfs send -t TOKEN`)
    /// - 5 placeholder (the answer to an offer without snapshots): `made:bool buffered:bool`
    ///   (made: the receiver made a placeholder parent, or would in a dry run; else a
    ///   dataset is there already; buffered: in the buffer dataset, its parent missing)
    Reply(Plan),
    /// A piece of the `zfs send` stream. Sent only after a `Reply` of full or incremental,
    /// and always ended by `End` or `Abort`.
    ///
    /// # Format
    /// kind `0x20`: the stream bytes themselves, 1 to 1,048,576 of them.
    Data(Vec<u8>),
    /// The sender's `zfs send` finished and every byte was sent.
    ///
    /// # Format
    /// kind `0x21`: `bytes:u64`, the stream's total length (the receiver checks it).
    End { bytes: u64 },
    /// The sender's `zfs send` failed mid-way: the receiver must abort its `zfs recv`.
    ///
    /// # Format
    /// kind `0x22`: `text:str(16384)`.
    Abort { text: String },
    /// Receiver: the outcome of one stream. May arrive before the sender has finished
    /// sending, when `zfs recv` fails early; the sender then stops and sends `Abort`.
    ///
    /// # Format
    /// kind `0x23`: `tag:u8` then
    /// - 0 done: `bytes:u64 newest:str(1024) newest_guid:u64` (the snapshot now newest on
    ///   the receiver)
    /// - 1 failed: `reason:u16 text:str(16384)`
    Result(Outcome),
    /// Sender: "my run is over, place the buffered datasets now".
    ///
    /// # Format
    /// kind `0x30`: empty.
    Cleanup,
    /// Receiver: what the cleanup did.
    ///
    /// # Format
    /// kind `0x31`: `placed:u32 removed:u32 waiting:u32 failed:u32 text:str(16384)`:
    /// buffered datasets renamed into place; stale buffered copies dropped because the
    /// real dataset already holds their newest snapshot; copies left in the buffer (parent
    /// still missing, or a stale copy kept for an operator to look at); failures.
    CleanupDone {
        placed: u32,
        removed: u32,
        waiting: u32,
        failed: u32,
        text: String,
    },
    /// "Still working": lets a peer keep a short read timeout through a long wait.
    ///
    /// # Format
    /// kind `0x3e`: empty.
    KeepAlive,
    /// Clean end of the conversation; the sender closes after it.
    ///
    /// # Format
    /// kind `0x3f`: empty.
    Bye,
    /// Either side: the connection cannot go on (version mismatch, protocol violation,
    /// shutting down). The sender of it closes the connection.
    ///
    /// # Format
    /// kind `0x7f`: `reason:u16 text:str(16384)`.
    Error { reason: Reason, text: String },
}

/// What kind of dataset is offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetKind {
    Filesystem,
    Volume,
}

/// A snapshot as the protocol sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub name: String,
    pub guid: u64,
    pub createtxg: u64,
}

/// The receiver's decision for one offered dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    UpToDate {
        name: String,
    },
    Incremental {
        from_guid: u64,
        from_name: String,
        /// The receiver's account of the rollback it made first; empty if none.
        rollback: String,
    },
    Full {
        buffered: bool,
    },
    Refused {
        reason: Reason,
        text: String,
    },
    Resume {
        token: String,
    },
    /// The answer to an offer without snapshots: nothing is streamed.
    Placeholder {
        made: bool,
        buffered: bool,
    },
}

/// The result of one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done {
        bytes: u64,
        newest: String,
        newest_guid: u64,
    },
    Failed {
        reason: Reason,
        text: String,
    },
}

macro_rules! reasons {
    ($($name:ident = $code:expr, $retry:expr, $doc:expr;)*) => {
        /// Why something was refused or failed. The code crosses the wire as `u16`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Reason { $(#[doc = $doc] $name,)* }

        impl Reason {
            pub fn code(self) -> u16 { match self { $(Reason::$name => $code,)* } }

            pub fn from_code(code: u16) -> Option<Reason> {
                match code { $($code => Some(Reason::$name),)* _ => None }
            }

            /// Whether trying again later (another connection, after other datasets) can
            /// help. Divergence and refusals do not heal by themselves.
            pub fn is_retryable(self) -> bool { match self { $(Reason::$name => $retry,)* } }

            /// The code's name (`Diverged`), as docs/PROTOCOL.md names it; people get
            /// [`Reason::words`].
            pub fn as_str(self) -> &'static str {
                match self { $(Reason::$name => stringify!($name),)* }
            }
        }
    };
}

reasons! {
    Diverged = 1, false, "The destination has snapshots or changes the source does not have.";
    NoCommonSnapshot = 2, false, "The destination exists but shares no snapshot (by GUID) with the source.";
    NotReplica = 3, false, "The destination exists but was not made by a receive (no snapshots).";
    InvalidPath = 4, false, "The dataset path is not a valid ZFS name or leaves the receiver's root.";
    Busy = 5, true, "Another session is receiving into the same dataset.";
    ParentMissing = 6, true, "The parent does not exist on the receiver and the dataset cannot be buffered.";
    ZfsFailed = 7, false, "A zfs command failed; the text holds its stderr.";
    Internal = 8, true, "Something unexpected failed on the peer.";
    VersionMismatch = 9, false, "The peers speak different protocol versions.";
    Protocol = 10, false, "The peer broke the protocol.";
    ShuttingDown = 11, true, "The receiver is stopping.";
    Denied = 12, false, "The peer is not allowed to do this.";
    StreamFailed = 13, true, "The sender's zfs send failed or the stream was cut.";
}

impl Reason {
    /// The reason in lowercase words, for people: "diverged", "no common snapshot", "zfs
    /// failed". [`Reason::as_str`] is the code's name, for the protocol's documentation.
    pub fn words(self) -> String {
        match self {
            Reason::NotReplica => "not a replica".into(),
            Reason::Internal => "internal error".into(),
            Reason::Protocol => "protocol error".into(),
            // The rest say it in their names: "ParentMissing" -> "parent missing".
            other => {
                let mut words = String::new();
                for c in other.as_str().chars() {
                    if c.is_uppercase() && !words.is_empty() {
                        words.push(' ');
                    }
                    words.extend(c.to_lowercase());
                }
                words
            }
        }
    }
}

impl Message {
    /// The frame kind byte of this message.
    pub fn kind(&self) -> u8 {
        match self {
            Message::Hello { .. } => 0x01,
            Message::Welcome { .. } => 0x02,
            Message::Challenge { .. } => 0x03,
            Message::Proof { .. } => 0x04,
            Message::Offer { .. } => 0x10,
            Message::Snap(_) => 0x11,
            Message::Reply(_) => 0x12,
            Message::Root { .. } => 0x13,
            Message::Listed { .. } => 0x14,
            Message::Data(_) => KIND_DATA,
            Message::End { .. } => 0x21,
            Message::Abort { .. } => 0x22,
            Message::Result(_) => 0x23,
            Message::Cleanup => 0x30,
            Message::CleanupDone { .. } => 0x31,
            Message::KeepAlive => 0x3e,
            Message::Bye => 0x3f,
            Message::Error { .. } => 0x7f,
        }
    }

    /// A name for the kind, for errors and logs.
    pub fn name(&self) -> &'static str {
        kind_name(self.kind()).unwrap_or("unknown")
    }

    /// Appends the payload of this message to `out`. Text fields longer than their limit
    /// are clipped; a name longer than its limit is an error (it would be refused anyway).
    pub fn encode_payload(&self, out: &mut Vec<u8>) -> Result<()> {
        let mut e = Encoder {
            out,
            kind: kind_name(self.kind()).unwrap_or("unknown"),
        };
        match self {
            Message::Hello {
                version,
                agent,
                dest,
                client,
            } => {
                e.out.extend_from_slice(MAGIC);
                e.u16(*version);
                e.text(agent, MAX_AGENT);
                e.name(dest)?;
                e.exact(client, MAX_CLIENT)?;
            }
            Message::Welcome {
                version,
                agent,
                features,
                proof,
            } => {
                e.u16(*version);
                e.text(agent, MAX_AGENT);
                e.u64(*features);
                e.bytes(proof, MAC_LEN)?;
            }
            Message::Challenge { nonce } => e.exact_bytes(nonce, NONCE_LEN)?,
            Message::Proof { nonce, mac } => {
                e.exact_bytes(nonce, NONCE_LEN)?;
                e.exact_bytes(mac, MAC_LEN)?;
            }
            Message::Offer {
                path,
                kind,
                count,
                dry_run,
            } => {
                e.name(path)?;
                e.u8(match kind {
                    DatasetKind::Filesystem => 0,
                    DatasetKind::Volume => 1,
                });
                e.u32(*count);
                e.u8(*dry_run as u8);
            }
            Message::Snap(s) => {
                e.name(&s.name)?;
                e.u64(s.guid);
                e.u64(s.createtxg);
            }
            Message::Root { guids } => {
                // Over the limit is an error, not a cut: a cut list is another root.
                if guids.len() > MAX_ROOT_GUIDS {
                    return Err(Error::Malformed {
                        kind: e.kind,
                        why: format!("{} GUIDs, limit is {MAX_ROOT_GUIDS}", guids.len()),
                    });
                }
                e.u16(guids.len() as u16);
                for g in guids {
                    e.u64(*g);
                }
            }
            Message::Listed { paths, last } => {
                // More than fits one frame is the caller's to split (`listed_frames`).
                if paths.len() > u16::MAX as usize {
                    return Err(Error::Malformed {
                        kind: e.kind,
                        why: format!("{} paths in one frame, limit is {}", paths.len(), u16::MAX),
                    });
                }
                e.u8(*last as u8);
                e.u16(paths.len() as u16);
                for p in paths {
                    e.name(p)?;
                }
            }
            Message::Reply(plan) => match plan {
                Plan::UpToDate { name } => {
                    e.u8(0);
                    e.name(name)?;
                }
                Plan::Incremental {
                    from_guid,
                    from_name,
                    rollback,
                } => {
                    e.u8(1);
                    e.u64(*from_guid);
                    e.name(from_name)?;
                    e.text(rollback, MAX_TEXT);
                }
                Plan::Full { buffered } => {
                    e.u8(2);
                    e.u8(*buffered as u8);
                }
                Plan::Refused { reason, text } => {
                    e.u8(3);
                    e.u16(reason.code());
                    e.text(text, MAX_TEXT);
                }
                Plan::Resume { token } => {
                    e.u8(4);
                    e.exact(token, MAX_TEXT)?;
                }
                Plan::Placeholder { made, buffered } => {
                    e.u8(5);
                    e.u8(*made as u8);
                    e.u8(*buffered as u8);
                }
            },
            Message::Data(bytes) => e.out.extend_from_slice(bytes),
            Message::End { bytes } => e.u64(*bytes),
            Message::Abort { text } => e.text(text, MAX_TEXT),
            Message::Result(outcome) => match outcome {
                Outcome::Done {
                    bytes,
                    newest,
                    newest_guid,
                } => {
                    e.u8(0);
                    e.u64(*bytes);
                    e.name(newest)?;
                    e.u64(*newest_guid);
                }
                Outcome::Failed { reason, text } => {
                    e.u8(1);
                    e.u16(reason.code());
                    e.text(text, MAX_TEXT);
                }
            },
            Message::Cleanup | Message::KeepAlive | Message::Bye => {}
            Message::CleanupDone {
                placed,
                removed,
                waiting,
                failed,
                text,
            } => {
                e.u32(*placed);
                e.u32(*removed);
                e.u32(*waiting);
                e.u32(*failed);
                e.text(text, MAX_TEXT);
            }
            Message::Error { reason, text } => {
                e.u16(reason.code());
                e.text(text, MAX_TEXT);
            }
        }
        Ok(())
    }

    /// Parses a whole payload of frame kind `kind`. The payload must be used up exactly.
    pub fn decode(kind: u8, payload: Vec<u8>) -> Result<Message> {
        let name = kind_name(kind).ok_or(Error::UnknownKind(kind))?;
        if kind == KIND_DATA {
            if payload.is_empty() {
                return Err(Error::Malformed {
                    kind: name,
                    why: "empty data frame".into(),
                });
            }
            return Ok(Message::Data(payload));
        }
        let mut d = Decoder {
            buf: &payload,
            kind: name,
        };
        let msg = match kind {
            0x01 => {
                let magic = d.take(MAGIC.len())?;
                if magic != MAGIC {
                    return Err(d.bad("bad magic: the peer is not a zfsync sender"));
                }
                let version = d.u16()?;
                if version != VERSION {
                    // Only magic and version are frozen across versions: the rest may have
                    // another layout, and the answer must still be "version mismatch".
                    return Ok(Message::Hello {
                        version,
                        agent: String::new(),
                        dest: String::new(),
                        client: String::new(),
                    });
                }
                Message::Hello {
                    version,
                    agent: d.str(MAX_AGENT)?,
                    dest: d.str(MAX_NAME)?,
                    client: d.str(MAX_CLIENT)?,
                }
            }
            0x02 => {
                let version = d.u16()?;
                if version != VERSION {
                    return Ok(Message::Welcome {
                        version,
                        agent: String::new(),
                        features: 0,
                        proof: Vec::new(),
                    });
                }
                Message::Welcome {
                    version,
                    agent: d.str(MAX_AGENT)?,
                    features: d.u64()?,
                    proof: d.bytes(MAC_LEN)?,
                }
            }
            0x03 => Message::Challenge {
                nonce: d.exact_bytes(NONCE_LEN)?,
            },
            0x04 => Message::Proof {
                nonce: d.exact_bytes(NONCE_LEN)?,
                mac: d.exact_bytes(MAC_LEN)?,
            },
            0x10 => {
                let path = d.str(MAX_NAME)?;
                let kind = match d.u8()? {
                    0 => DatasetKind::Filesystem,
                    1 => DatasetKind::Volume,
                    k => return Err(d.bad(&format!("unknown dataset kind {k}"))),
                };
                let count = d.u32()?;
                if count > MAX_SNAPSHOTS {
                    return Err(d.bad(&format!(
                        "{count} snapshots announced, limit is {MAX_SNAPSHOTS}"
                    )));
                }
                Message::Offer {
                    path,
                    kind,
                    count,
                    dry_run: d.bool()?,
                }
            }
            0x11 => Message::Snap(SnapshotInfo {
                name: d.str(MAX_NAME)?,
                guid: d.u64()?,
                createtxg: d.u64()?,
            }),
            0x13 => {
                let count = d.u16()? as usize;
                if count > MAX_ROOT_GUIDS {
                    return Err(d.bad(&format!(
                        "{count} GUIDs announced, limit is {MAX_ROOT_GUIDS}"
                    )));
                }
                let guids = (0..count).map(|_| d.u64()).collect::<Result<_>>()?;
                Message::Root { guids }
            }
            0x14 => {
                let last = d.bool()?;
                let count = d.u16()?;
                // The frame's length bounds what is read: each path costs 2 bytes at least.
                let paths = (0..count).map(|_| d.str(MAX_NAME)).collect::<Result<_>>()?;
                Message::Listed { paths, last }
            }
            0x12 => Message::Reply(match d.u8()? {
                0 => Plan::UpToDate {
                    name: d.str(MAX_NAME)?,
                },
                1 => Plan::Incremental {
                    from_guid: d.u64()?,
                    from_name: d.str(MAX_NAME)?,
                    rollback: d.str(MAX_TEXT)?,
                },
                2 => Plan::Full {
                    buffered: d.bool()?,
                },
                3 => Plan::Refused {
                    reason: d.reason()?,
                    text: d.str(MAX_TEXT)?,
                },
                4 => Plan::Resume {
                    token: d.str(MAX_TEXT)?,
                },
                5 => Plan::Placeholder {
                    made: d.bool()?,
                    buffered: d.bool()?,
                },
                t => return Err(d.bad(&format!("unknown plan tag {t}"))),
            }),
            0x21 => Message::End { bytes: d.u64()? },
            0x22 => Message::Abort {
                text: d.str(MAX_TEXT)?,
            },
            0x23 => Message::Result(match d.u8()? {
                0 => Outcome::Done {
                    bytes: d.u64()?,
                    newest: d.str(MAX_NAME)?,
                    newest_guid: d.u64()?,
                },
                1 => Outcome::Failed {
                    reason: d.reason()?,
                    text: d.str(MAX_TEXT)?,
                },
                t => return Err(d.bad(&format!("unknown result tag {t}"))),
            }),
            0x30 => Message::Cleanup,
            0x31 => Message::CleanupDone {
                placed: d.u32()?,
                removed: d.u32()?,
                waiting: d.u32()?,
                failed: d.u32()?,
                text: d.str(MAX_TEXT)?,
            },
            0x3e => Message::KeepAlive,
            0x3f => Message::Bye,
            0x7f => Message::Error {
                reason: d.reason()?,
                text: d.str(MAX_TEXT)?,
            },
            _ => return Err(Error::UnknownKind(kind)),
        };
        if !d.buf.is_empty() {
            return Err(d.bad(&format!("{} trailing bytes", d.buf.len())));
        }
        Ok(msg)
    }
}

pub(crate) const KIND_DATA: u8 = 0x20;

/// The GUIDs a [`Message::Root`] carries for a root with snapshots `guids` (oldest
/// first): all of them when they fit, else the oldest and the newest that fit. The newest
/// find the replica's newest snapshot in the usual case; the oldest is what a replica made
/// in this very run holds after its first (full) stream.
pub fn root_sample(guids: &[u64]) -> Vec<u64> {
    if guids.len() <= MAX_ROOT_GUIDS {
        return guids.to_vec();
    }
    let mut out = Vec::with_capacity(MAX_ROOT_GUIDS);
    out.push(guids[0]);
    out.extend_from_slice(&guids[guids.len() - (MAX_ROOT_GUIDS - 1)..]);
    out
}

/// A dataset list as [`Message::Listed`] frames, each within [`MAX_CONTROL`], the last
/// with `last` set (one empty frame for an empty list). `None` when a path is longer than
/// a name field may be or the list holds more than [`crate::MAX_LISTED`] paths: the
/// receiver would refuse it, and a cut list would make the rest look absent.
pub fn listed_frames(paths: &[String]) -> Option<Vec<Message>> {
    if paths.len() > crate::MAX_LISTED || paths.iter().any(|p| p.len() > MAX_NAME) {
        return None;
    }
    let mut frames = Vec::new();
    let mut chunk = Vec::new();
    let mut size = 3; // last:bool count:u16
    for p in paths {
        if size + 2 + p.len() > MAX_CONTROL || chunk.len() == u16::MAX as usize {
            frames.push(Message::Listed {
                paths: std::mem::take(&mut chunk),
                last: false,
            });
            size = 3;
        }
        size += 2 + p.len();
        chunk.push(p.clone());
    }
    frames.push(Message::Listed {
        paths: chunk,
        last: true,
    });
    Some(frames)
}

/// The name of a frame kind, or `None` if this version does not know it.
pub(crate) fn kind_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        0x01 => "hello",
        0x02 => "welcome",
        0x03 => "challenge",
        0x04 => "proof",
        0x10 => "offer",
        0x11 => "snap",
        0x12 => "reply",
        0x13 => "root",
        0x14 => "listed",
        KIND_DATA => "data",
        0x21 => "end",
        0x22 => "abort",
        0x23 => "result",
        0x30 => "cleanup",
        0x31 => "cleanup-done",
        0x3e => "keepalive",
        0x3f => "bye",
        0x7f => "error",
        _ => return None,
    })
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    kind: &'static str,
}

impl Encoder<'_> {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn raw_str(&mut self, s: &str) {
        self.u16(s.len() as u16);
        self.out.extend_from_slice(s.as_bytes());
    }
    /// A free-text field: clipped to its limit, never an error.
    fn text(&mut self, s: &str, max: usize) {
        self.raw_str(&clip(s, max));
    }
    /// A name field: over its limit is an error, since a clipped name is another name.
    fn name(&mut self, s: &str) -> Result<()> {
        self.exact(s, MAX_NAME)
    }
    /// A byte field of exactly `n` bytes: what the decoder accepts, nothing else (issue 5,
    /// found by the `roundtrip` fuzz target: a short nonce used to encode, then be refused).
    fn exact_bytes(&mut self, b: &[u8], n: usize) -> Result<()> {
        if b.len() != n {
            return Err(Error::Malformed {
                kind: self.kind,
                why: format!("byte field of {} bytes, wanted {n}", b.len()),
            });
        }
        self.bytes(b, n)
    }
    /// A byte field of at most `max` bytes.
    fn bytes(&mut self, b: &[u8], max: usize) -> Result<()> {
        if b.len() > max {
            return Err(Error::Malformed {
                kind: self.kind,
                why: format!("byte field of {} bytes, limit is {max}", b.len()),
            });
        }
        self.u16(b.len() as u16);
        self.out.extend_from_slice(b);
        Ok(())
    }
    /// A field that must arrive whole (a name, a token): over `max` is an error.
    fn exact(&mut self, s: &str, max: usize) -> Result<()> {
        if s.len() > max {
            return Err(Error::Malformed {
                kind: self.kind,
                why: format!("field of {} bytes, limit is {max}", s.len()),
            });
        }
        self.raw_str(s);
        Ok(())
    }
}

struct Decoder<'a> {
    buf: &'a [u8],
    kind: &'static str,
}

impl<'a> Decoder<'a> {
    fn bad(&self, why: &str) -> Error {
        Error::Malformed {
            kind: self.kind,
            why: why.to_string(),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(self.bad(&format!(
                "payload ends early (wanted {n} more bytes, have {})",
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.bad(&format!("boolean byte {b}"))),
        }
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(BigEndian::read_u16(self.take(2)?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(BigEndian::read_u32(self.take(4)?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(BigEndian::read_u64(self.take(8)?))
    }
    fn str(&mut self, max: usize) -> Result<String> {
        let len = self.u16()? as usize;
        if len > max {
            return Err(self.bad(&format!("string of {len} bytes, limit is {max}")));
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.bad("string is not UTF-8"))
    }
    fn bytes(&mut self, max: usize) -> Result<Vec<u8>> {
        let len = self.u16()? as usize;
        if len > max {
            return Err(self.bad(&format!("byte field of {len} bytes, limit is {max}")));
        }
        Ok(self.take(len)?.to_vec())
    }
    fn exact_bytes(&mut self, n: usize) -> Result<Vec<u8>> {
        let b = self.bytes(n)?;
        if b.len() != n {
            return Err(self.bad(&format!("byte field of {} bytes, wanted {n}", b.len())));
        }
        Ok(b)
    }
    fn reason(&mut self) -> Result<Reason> {
        let code = self.u16()?;
        Reason::from_code(code).ok_or_else(|| self.bad(&format!("unknown reason code {code}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_sample_keeps_every_guid_that_fits() {
        let all: Vec<u64> = (1..=MAX_ROOT_GUIDS as u64).collect();
        assert_eq!(root_sample(&all), all);
        assert_eq!(root_sample(&[]), Vec::<u64>::new());
    }

    #[test]
    fn a_root_sample_of_too_many_keeps_the_oldest_and_the_newest() {
        let all: Vec<u64> = (1..=MAX_ROOT_GUIDS as u64 + 10).collect();
        let sample = root_sample(&all);
        assert_eq!(sample.len(), MAX_ROOT_GUIDS);
        assert_eq!(sample[0], 1);
        assert_eq!(sample[1], 12, "the newest 4,095 follow the oldest");
        assert_eq!(sample.last(), all.last());
    }

    #[test]
    fn a_root_at_its_limit_round_trips_within_a_control_frame() {
        let msg = Message::Root {
            guids: (0..MAX_ROOT_GUIDS as u64).map(|g| g << 40 | g).collect(),
        };
        let mut payload = Vec::new();
        msg.encode_payload(&mut payload).unwrap();
        assert_eq!(payload.len(), 2 + 8 * MAX_ROOT_GUIDS);
        assert!(payload.len() <= crate::MAX_CONTROL);
        assert_eq!(Message::decode(0x13, payload).unwrap(), msg);
    }

    #[test]
    fn a_root_with_too_many_guids_is_neither_encoded_nor_decoded() {
        let msg = Message::Root {
            guids: vec![7; MAX_ROOT_GUIDS + 1],
        };
        assert!(msg.encode_payload(&mut Vec::new()).is_err());
        let mut payload = ((MAX_ROOT_GUIDS + 1) as u16).to_be_bytes().to_vec();
        payload.extend(std::iter::repeat(0).take(8 * (MAX_ROOT_GUIDS + 1)));
        let err = Message::decode(0x13, payload).unwrap_err();
        assert!(err.to_string().contains("limit is 4096"), "{err}");
    }

    #[test]
    fn a_root_whose_count_and_length_disagree_is_malformed() {
        let mut two = vec![0, 2];
        two.extend_from_slice(&9u64.to_be_bytes());
        assert!(
            Message::decode(0x13, two.clone()).is_err(),
            "one GUID short"
        );
        two.extend_from_slice(&9u64.to_be_bytes());
        two.push(0);
        assert!(Message::decode(0x13, two).is_err(), "a trailing byte");
    }

    fn encoded(msg: &Message) -> Vec<u8> {
        let mut payload = Vec::new();
        msg.encode_payload(&mut payload).unwrap();
        payload
    }

    #[test]
    fn a_dataset_list_round_trips() {
        let msg = Message::Listed {
            paths: vec!["a".into(), "a/b".into(), "c d".into()],
            last: true,
        };
        let payload = encoded(&msg);
        assert_eq!(&payload[..3], &[1, 0, 3]);
        assert_eq!(Message::decode(0x14, payload).unwrap(), msg);
    }

    #[test]
    fn a_dataset_list_is_split_into_frames_that_fit() {
        let paths: Vec<String> = (0..2000).map(|i| format!("{i:0>60}")).collect();
        let frames = listed_frames(&paths).unwrap();
        assert!(frames.len() > 1, "{} frames", frames.len());
        let mut back = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let payload = encoded(f);
            assert!(payload.len() <= MAX_CONTROL, "frame {i}: {}", payload.len());
            match Message::decode(0x14, payload).unwrap() {
                Message::Listed { paths, last } => {
                    assert_eq!(last, i == frames.len() - 1, "frame {i}");
                    back.extend(paths);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(back, paths);
    }

    #[test]
    fn an_empty_dataset_list_is_one_last_frame() {
        let frames = listed_frames(&[]).unwrap();
        assert_eq!(
            frames,
            [Message::Listed {
                paths: vec![],
                last: true
            }]
        );
    }

    #[test]
    fn a_dataset_list_over_its_limits_is_not_split() {
        let many = vec!["a".to_string(); crate::MAX_LISTED + 1];
        assert!(listed_frames(&many).is_none());
        assert!(listed_frames(&["n".repeat(MAX_NAME + 1)]).is_none());
    }

    #[test]
    fn a_dataset_list_whose_count_and_length_disagree_is_malformed() {
        let cases: [(&[u8], &str); 4] = [
            (&[1, 0, 2, 0, 1, b'a'], "one path short"),
            (&[1, 0, 1, 0, 1, b'a', 0], "a trailing byte"),
            (&[2, 0, 0], "a bad boolean"),
            (&[1, 0, 1, 0xff, 0xff], "a path over its limit"),
        ];
        for (payload, what) in cases {
            assert!(Message::decode(0x14, payload.to_vec()).is_err(), "{what}");
        }
    }

    #[test]
    fn reasons_read_as_words() {
        let cases = [
            (Reason::Diverged, "diverged"),
            (Reason::NoCommonSnapshot, "no common snapshot"),
            (Reason::NotReplica, "not a replica"),
            (Reason::ZfsFailed, "zfs failed"),
            (Reason::ShuttingDown, "shutting down"),
            (Reason::Denied, "denied"),
            (Reason::Internal, "internal error"),
            (Reason::Protocol, "protocol error"),
        ];
        for (reason, want) in cases {
            assert_eq!(reason.words(), want, "{reason:?}");
        }
        for code in 0..=u16::MAX {
            if let Some(r) = Reason::from_code(code) {
                let w = r.words();
                assert!(!w.is_empty() && w == w.to_lowercase(), "{r:?}: {w:?}");
            }
        }
    }
}
