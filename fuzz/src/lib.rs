//! What the fuzz targets check, as plain functions: the libFuzzer targets in
//! `fuzz_targets/` call them, and so do this crate's own tests (on stable, over the seed
//! corpus), so a check can be debugged without libFuzzer.
//!
//! Owns: the properties of the wire protocol's parser that must hold for *any* input.
//! Does not own: the protocol itself (`zfsync-protocol`), or what the receiver does with a
//! message (the hostile-input integration tests in `tests/tests/hostile.rs`).
//!
//! - [`frames`]: arbitrary bytes as a connection's byte stream. Reading never panics,
//!   never consumes more than a header plus the kind's limit for one frame, rejects a
//!   bad header after its 5 bytes, and every frame it accepts re-encodes to exactly the
//!   bytes it was read from.
//! - [`decode`]: a kind byte and a payload. Whatever decodes re-encodes to the same
//!   payload, and no proper prefix of it decodes.
//! - [`roundtrip`]: the input is a recipe for a message (any variant, names and texts of
//!   any length and characters). Encoding then decoding gives the message back, with
//!   over-long texts clipped on a character boundary and over-long names refused.

use std::io::Cursor;
use zfsync_protocol::{
    clip_text, DatasetKind, Error, FrameReader, FrameWriter, Message, Outcome, Plan, Reason,
    SnapshotInfo, MAX_CONTROL, MAX_DATA, MAX_NAME, MAX_ROOT_GUIDS, MAX_TEXT,
};

/// Frame header: kind u8, length u32.
const HEADER: usize = 5;
/// The `agent` limit of Hello and Welcome, the `client` limit of Hello (private to the
/// protocol crate).
const MAX_AGENT: usize = 256;
const MAX_CLIENT: usize = 64;
/// The nonce and MAC length of Challenge, Proof and Welcome.
const NONCE: usize = 32;

/// Whether this build of the protocol knows frame kind `kind`.
pub fn is_known_kind(kind: u8) -> bool {
    !matches!(
        Message::decode(kind, Vec::new()),
        Err(Error::UnknownKind(_))
    )
}

fn limit(kind: u8) -> usize {
    if kind == 0x20 {
        MAX_DATA
    } else {
        MAX_CONTROL
    }
}

fn encode_frame(msg: &Message) -> zfsync_protocol::Result<Vec<u8>> {
    let mut w = FrameWriter::new(Vec::new());
    w.write_message(msg)?;
    w.flush()?;
    Ok(w.get_ref().clone())
}

/// `data` as the bytes arriving on a connection.
pub fn frames(data: &[u8]) {
    let mut r = FrameReader::new(Cursor::new(data));
    loop {
        let start = r.get_ref().position() as usize;
        let res = r.read_message();
        let end = r.get_ref().position() as usize;
        let used = end - start;
        match res {
            Ok(Some(msg)) => {
                assert!(
                    used <= HEADER + limit(msg.kind()),
                    "{} frame used {used} bytes",
                    msg.name()
                );
                if foreign_greeting(&msg) {
                    continue;
                }
                let again = encode_frame(&msg)
                    .unwrap_or_else(|e| panic!("decoded {msg:?} does not encode: {e}"));
                assert_eq!(
                    again,
                    &data[start..end],
                    "{msg:?} re-encodes to other bytes"
                );
            }
            Ok(None) => {
                assert_eq!(start, data.len(), "clean EOF before the end of input");
                return;
            }
            Err(e) => {
                match &e {
                    // Refused on the header alone: not one payload byte was read.
                    Error::TooLarge { .. } | Error::UnknownKind(_) => {
                        assert_eq!(used, HEADER, "{e}")
                    }
                    Error::Truncated { .. } => {
                        assert_eq!(end, data.len(), "truncated before the end: {e}")
                    }
                    Error::Malformed { .. } => {
                        let kind = data[start];
                        assert_eq!(used, HEADER + payload_len(&data[start..]), "{e}");
                        assert!(used <= HEADER + limit(kind), "{e}");
                    }
                    Error::Io(_) => panic!("a cursor cannot fail: {e}"),
                }
                assert!(!e.to_string().is_empty());
                assert!(!e.is_retryable() || matches!(e, Error::Truncated { .. }));
                return;
            }
        }
    }
}

/// A Hello or Welcome of another protocol version. By design only its frozen start
/// (magic, version) is read, so the receiver can answer "version mismatch" whatever
/// layout follows; the exactness checks hold for this version's layouts only.
fn foreign_greeting(msg: &Message) -> bool {
    matches!(msg, Message::Hello { version, .. } | Message::Welcome { version, .. } if *version != zfsync_protocol::VERSION)
}

fn payload_len(frame: &[u8]) -> usize {
    u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize
}

/// `data[0]` as a frame kind and the rest as its payload.
pub fn decode(data: &[u8]) {
    let Some((&kind, payload)) = data.split_first() else {
        return;
    };
    match Message::decode(kind, payload.to_vec()) {
        Ok(msg) => {
            assert_eq!(msg.kind(), kind);
            if foreign_greeting(&msg) {
                return;
            }
            let mut again = Vec::new();
            msg.encode_payload(&mut again)
                .unwrap_or_else(|e| panic!("decoded {msg:?} does not encode: {e}"));
            assert_eq!(again, payload, "{msg:?} re-encodes to another payload");
            // A cut payload is never a message (a shorter Data frame is just less data).
            if kind != 0x20 && !payload.is_empty() {
                for cut in [0, payload.len() / 2, payload.len() - 1] {
                    assert!(
                        Message::decode(kind, payload[..cut].to_vec()).is_err(),
                        "{msg:?} cut to {cut} bytes still decodes"
                    );
                }
            }
        }
        Err(e) => {
            if !is_known_kind(kind) {
                assert!(matches!(e, Error::UnknownKind(k) if k == kind), "{e}");
            }
            assert!(!e.to_string().is_empty());
        }
    }
}

/// Reads the recipe of a message from fuzz input; past its end, every byte is 0.
struct Recipe<'a> {
    data: &'a [u8],
}

impl Recipe<'_> {
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        ((self.u32() as u64) << 32) | self.u32() as u64
    }
    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    /// A string of up to about `max + 64` bytes: mostly ASCII, some multi-byte characters
    /// (so clipping must find a boundary), some control characters.
    fn string(&mut self, max: usize) -> String {
        let chars = (self.u16() as usize) % (max + 64);
        let mut s = String::new();
        for _ in 0..chars {
            if self.data.is_empty() {
                break;
            }
            let b = self.u8();
            s.push(match b {
                0..=0x7f => b as char,
                0x80..=0x9f => 'é',
                0xa0..=0xbf => '€',
                0xc0..=0xdf => '\u{1F600}',
                _ => char::from_u32(0x100 + (b as u32) * 97).unwrap_or('?'),
            });
        }
        s
    }
    fn reason(&mut self) -> Reason {
        let codes: Vec<Reason> = (0..64).filter_map(Reason::from_code).collect();
        codes[self.u8() as usize % codes.len()]
    }
    fn message(&mut self) -> Message {
        match self.u8() % 24 {
            // Only this version's greetings have an exact layout: another version's
            // Hello/Welcome is read up to its version number alone, by design.
            0 => Message::Hello {
                version: zfsync_protocol::VERSION,
                agent: self.string(MAX_AGENT),
                dest: self.string(MAX_NAME),
                client: self.string(MAX_CLIENT),
            },
            1 => Message::Welcome {
                version: zfsync_protocol::VERSION,
                agent: self.string(MAX_AGENT),
                features: self.u64(),
                proof: self.blob(),
            },
            18 => Message::Challenge { nonce: self.blob() },
            19 => Message::Proof {
                nonce: self.blob(),
                mac: self.blob(),
            },
            20 => Message::Reply(Plan::Resume {
                token: self.string(MAX_TEXT),
            }),
            22 => Message::Reply(Plan::Placeholder {
                made: self.bool(),
                buffered: self.bool(),
            }),
            2 => Message::Offer {
                path: self.string(MAX_NAME),
                kind: if self.bool() {
                    DatasetKind::Volume
                } else {
                    DatasetKind::Filesystem
                },
                count: self.u32() % 10_000_001,
                dry_run: self.bool(),
            },
            3 => Message::Snap(SnapshotInfo {
                name: self.string(MAX_NAME),
                guid: self.u64(),
                createtxg: self.u64(),
            }),
            4 => Message::Reply(Plan::UpToDate {
                name: self.string(MAX_NAME),
            }),
            5 => Message::Reply(Plan::Incremental {
                from_guid: self.u64(),
                from_name: self.string(MAX_NAME),
                rollback: self.string(MAX_TEXT),
            }),
            6 => Message::Reply(Plan::Full {
                buffered: self.bool(),
            }),
            7 => Message::Reply(Plan::Refused {
                reason: self.reason(),
                text: self.string(MAX_TEXT),
            }),
            8 => {
                let n = 1 + self.u16() as usize % self.data.len().max(1);
                let bytes = (0..n).map(|_| self.u8()).collect();
                Message::Data(bytes)
            }
            9 => Message::End { bytes: self.u64() },
            10 => Message::Abort {
                text: self.string(MAX_TEXT),
            },
            11 => Message::Result(Outcome::Done {
                bytes: self.u64(),
                newest: self.string(MAX_NAME),
                newest_guid: self.u64(),
            }),
            12 => Message::Result(Outcome::Failed {
                reason: self.reason(),
                text: self.string(MAX_TEXT),
            }),
            13 => Message::Cleanup,
            14 => Message::CleanupDone {
                placed: self.u32(),
                removed: self.u32(),
                waiting: self.u32(),
                failed: self.u32(),
                text: self.string(MAX_TEXT),
            },
            15 => Message::KeepAlive,
            16 => Message::Bye,
            17 | 21 => Message::Error {
                reason: self.reason(),
                text: self.string(MAX_TEXT),
            },
            23 => Message::Listed {
                last: self.bool(),
                paths: (0..self.u8() % 16)
                    .map_while(|_| (!self.data.is_empty()).then(|| self.string(MAX_NAME + 8)))
                    .collect(),
            },
            22 => Message::Root {
                guids: (0..self.u16() as usize % (MAX_ROOT_GUIDS + 64))
                    .map_while(|_| (!self.data.is_empty()).then(|| self.u64()))
                    .collect(),
            },
            _ => unreachable!("the variant is picked modulo 24"),
        }
    }
    /// A nonce or MAC: mostly the right length, sometimes empty or off by some.
    fn blob(&mut self) -> Vec<u8> {
        let n = match self.u8() % 8 {
            0 => 0,
            1 => self.u8() as usize % 70,
            _ => NONCE,
        };
        (0..n).map(|_| self.u8()).collect()
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn clip(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// What `msg` looks like after the trip: free texts clipped to their limits. `None` when
/// it must not be encoded at all, because the decoder would refuse it: a name over
/// [`MAX_NAME`] (a clipped name is another name), a nonce or MAC not of its fixed length.
fn expected(msg: &Message) -> Option<Message> {
    let name_ok = |s: &String| s.len() <= MAX_NAME;
    let mut m = msg.clone();
    let fits = match &mut m {
        Message::Hello {
            agent,
            dest,
            client,
            ..
        } => {
            *agent = clip(agent, MAX_AGENT);
            name_ok(dest) && client.len() <= MAX_CLIENT
        }
        Message::Welcome { agent, proof, .. } => {
            *agent = clip(agent, MAX_AGENT);
            // The decoder takes 0 to 32 bytes (the receiver sends 0 or 32).
            proof.len() <= NONCE
        }
        Message::Challenge { nonce } => nonce.len() == NONCE,
        Message::Proof { nonce, mac } => nonce.len() == NONCE && mac.len() == NONCE,
        Message::Reply(Plan::Resume { token }) => token.len() <= MAX_TEXT,
        Message::Offer { path, .. } => name_ok(path),
        Message::Snap(s) => name_ok(&s.name),
        Message::Root { guids } => guids.len() <= MAX_ROOT_GUIDS,
        // Paths are names: over their limit they are refused, never cut.
        Message::Listed { paths, .. } => paths.iter().all(name_ok),
        Message::Reply(Plan::UpToDate { name }) => name_ok(name),
        Message::Reply(Plan::Incremental {
            from_name,
            rollback,
            ..
        }) => {
            *rollback = clip_text(rollback);
            name_ok(from_name)
        }
        Message::Result(Outcome::Done { newest, .. }) => name_ok(newest),
        Message::Reply(Plan::Refused { text, .. })
        | Message::Result(Outcome::Failed { text, .. })
        | Message::Abort { text }
        | Message::CleanupDone { text, .. }
        | Message::Error { text, .. } => {
            *text = clip_text(text);
            true
        }
        Message::Reply(Plan::Full { .. })
        | Message::Reply(Plan::Placeholder { .. })
        | Message::Data(_)
        | Message::End { .. }
        | Message::Cleanup
        | Message::KeepAlive
        | Message::Bye => true,
    };
    fits.then_some(m)
}

/// `data` as a recipe for a few messages, each encoded, decoded and compared.
pub fn roundtrip(data: &[u8]) {
    let mut recipe = Recipe { data };
    let mut want = Vec::new();
    let mut bytes = Vec::new();
    for _ in 0..4 {
        if recipe.data.is_empty() {
            break;
        }
        let msg = recipe.message();
        match (expected(&msg), encode_frame(&msg)) {
            (Some(exp), Ok(frame)) => {
                assert!(frame.len() <= HEADER + limit(msg.kind()));
                want.push(exp);
                bytes.extend_from_slice(&frame);
            }
            (None, Err(_)) => {}
            (Some(_), Err(e)) => panic!("{msg:?} does not encode: {e}"),
            (None, Ok(_)) => panic!("{msg:?} was encoded, but no decoder takes it back"),
        }
    }
    let mut r = FrameReader::new(Cursor::new(&bytes));
    let mut got = Vec::new();
    while let Some(m) = r.read_message().expect("what was encoded decodes") {
        got.push(m);
    }
    assert_eq!(got, want);
}

/// One encoded frame of every message kind and variant, some at their limits: the seed
/// corpus of all three targets (`examples/seeds.rs` writes it out).
pub fn seed_messages() -> Vec<Message> {
    let s = |name: &str, guid, createtxg| {
        Message::Snap(SnapshotInfo {
            name: name.into(),
            guid,
            createtxg,
        })
    };
    vec![
        Message::Hello {
            version: zfsync_protocol::VERSION,
            agent: "zfsync-send 0.1.0".into(),
            dest: "".into(),
            client: "".into(),
        },
        Message::Hello {
            version: zfsync_protocol::VERSION,
            agent: "a".repeat(MAX_AGENT),
            dest: "hosts/alpha".into(),
            client: "alpha".into(),
        },
        Message::Challenge {
            nonce: (0..NONCE as u8).collect(),
        },
        Message::Proof {
            nonce: vec![0xa5; NONCE],
            mac: (0..NONCE as u8).rev().collect(),
        },
        Message::Welcome {
            version: zfsync_protocol::VERSION,
            agent: "zfsync-recv 0.1.0".into(),
            features: 0,
            proof: vec![],
        },
        Message::Welcome {
            version: zfsync_protocol::VERSION,
            agent: "zfsync-recv 0.1.0".into(),
            features: 1,
            proof: vec![9; NONCE],
        },
        Message::Reply(Plan::Resume {
            token: "1-e604ea4bf-e0-789c63a2".into(),
        }),
        Message::Offer {
            path: "home/alice".into(),
            kind: DatasetKind::Filesystem,
            count: 2,
            dry_run: false,
        },
        Message::Offer {
            path: "".into(),
            kind: DatasetKind::Volume,
            count: 10_000_000,
            dry_run: true,
        },
        Message::Root {
            guids: vec![0x8d5b_2f4a_1c3e_9071, 1],
        },
        Message::Listed {
            paths: vec!["home".into(), "home/alice".into()],
            last: true,
        },
        Message::Listed {
            paths: vec![],
            last: false,
        },
        Message::Root {
            guids: vec![u64::MAX; MAX_ROOT_GUIDS],
        },
        s("2026-11-22_0347_D", 0x8d5b_2f4a_1c3e_9071, 4711),
        s(&"n".repeat(MAX_NAME), u64::MAX, 0),
        Message::Reply(Plan::UpToDate { name: "s2".into() }),
        Message::Reply(Plan::Incremental {
            from_guid: 42,
            from_name: "s1".into(),
            rollback: String::new(),
        }),
        Message::Reply(Plan::Full { buffered: true }),
        Message::Reply(Plan::Placeholder {
            made: false,
            buffered: true,
        }),
        Message::Reply(Plan::Refused {
            reason: Reason::InvalidPath,
            text: "invalid name \"..\"".into(),
        }),
        Message::Data(b"\0\0\0\0\0\0\0\0\xac\xcb\xba\xf5".to_vec()),
        Message::End { bytes: 12 },
        Message::Abort {
            text: "zfs send failed".into(),
        },
        Message::Result(Outcome::Done {
            bytes: 12,
            newest: "s2".into(),
            newest_guid: 7,
        }),
        Message::Result(Outcome::Failed {
            reason: Reason::ZfsFailed,
            text: "cannot receive: ü".into(),
        }),
        Message::Cleanup,
        Message::CleanupDone {
            placed: 1,
            removed: 2,
            waiting: 3,
            failed: 4,
            text: "x".into(),
        },
        Message::KeepAlive,
        Message::Bye,
        Message::Error {
            reason: Reason::Busy,
            text: "receiver busy".into(),
        },
    ]
}

/// Seed inputs per target: `frames` gets single frames and whole conversations,
/// `decode` kind byte + payload, `roundtrip` a recipe per message variant.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let msgs = seed_messages();
    let mut out = Vec::new();
    let mut all = Vec::new();
    for m in &msgs {
        let frame = encode_frame(m).expect("seed encodes");
        all.extend_from_slice(&frame);
        out.push(("frames", frame.clone()));
        out.push((
            "decode",
            frame[..1].iter().chain(&frame[HEADER..]).copied().collect(),
        ));
    }
    out.push(("frames", all));
    out.push(("frames", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()));
    for variant in 0..23u8 {
        let mut recipe = vec![variant];
        recipe.extend((0..64u8).map(|i| i.wrapping_mul(37).wrapping_add(variant)));
        out.push(("roundtrip", recipe));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checks pass on the seeds and on a deterministic sweep of mutations of them,
    /// so a broken check is found here, on stable, before a fuzz run.
    #[test]
    fn seeds_and_their_mutations_pass_every_check() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for (target, seed) in seeds() {
            let check: fn(&[u8]) = match target {
                "frames" => frames,
                "decode" => decode,
                _ => roundtrip,
            };
            check(&seed);
            for _ in 0..200 {
                let mut m = seed.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % m.len().max(1);
                    match next() % 4 {
                        0 if !m.is_empty() => m[i] ^= 1 << (next() % 8),
                        1 if !m.is_empty() => m[i] = next() as u8,
                        2 => m.truncate(i),
                        _ => m.insert(i.min(m.len()), next() as u8),
                    }
                }
                check(&m);
            }
        }
    }

    #[test]
    fn every_kind_is_seeded() {
        let seeded: Vec<u8> = seed_messages().iter().map(|m| m.kind()).collect();
        for kind in (0..=255u8).filter(|&k| is_known_kind(k)) {
            assert!(seeded.contains(&kind), "kind {kind:#04x} has no seed");
        }
    }
}
