//! Property tests of the wire protocol, with a small deterministic generator (xorshift):
//! random valid messages round-trip, every cut-off is an error, random bytes never panic
//! and never make the reader consume more than one header plus the kind's limit. The same
//! seed gives the same cases on every run, so a failure names its case and can be replayed.
//!
//! The fuzz targets in `fuzz/` check the same properties with coverage guidance; these
//! run in every `cargo test`.

use std::io::{self, Cursor, Read};
use zfsync_protocol::{
    DatasetKind, Error, FrameReader, FrameWriter, Message, Outcome, Plan, Reason, SnapshotInfo,
    MAX_CONTROL, MAX_DATA, MAX_NAME, MAX_SNAPSHOTS, MAX_TEXT,
};

const HEADER: usize = 5;
const CASES: u64 = 3000;

/// xorshift64: tiny, deterministic, good enough to pick cases.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }
    /// A length in 0..=max, often at or near the edges.
    fn len(&mut self, max: usize) -> usize {
        match self.below(8) {
            0 => 0,
            1 => max,
            2 => max.saturating_sub(1),
            3 => self.below(max as u64 + 1) as usize,
            _ => self.below(16.min(max as u64 + 1)) as usize,
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// A string of at most `max` bytes: ASCII, multi-byte characters, control characters.
    fn string(&mut self, max: usize) -> String {
        let want = self.len(max);
        let mut s = String::new();
        loop {
            let c = match self.below(10) {
                0 => 'é',
                1 => '\u{1F600}',
                2 => (self.below(32) as u8) as char,
                _ => (b' ' + self.below(95) as u8) as char,
            };
            if s.len() + c.len_utf8() > want {
                return s;
            }
            s.push(c);
        }
    }
    fn u32(&mut self) -> u32 {
        self.next() as u32
    }
    fn reason(&mut self) -> Reason {
        let all: Vec<Reason> = (0..=u16::MAX).filter_map(Reason::from_code).collect();
        all[self.below(all.len() as u64) as usize]
    }
}

/// The `agent` limit of Hello and Welcome, and the client-name limit of Hello (both
/// private to the protocol crate; a test below pins them).
const MAX_AGENT: usize = 256;
const MAX_CLIENT: usize = 64;
const NONCE: usize = 32;

/// A random valid message: every field within its limit, so it must survive the trip
/// unchanged. Data is kept small except now and then, to keep the tests fast.
fn message(rng: &mut Rng) -> Message {
    match rng.below(22) {
        0 => Message::Hello {
            version: zfsync_protocol::VERSION,
            agent: rng.string(MAX_AGENT),
            dest: rng.string(MAX_NAME),
            client: rng.string(MAX_CLIENT),
        },
        1 => Message::Welcome {
            version: zfsync_protocol::VERSION,
            agent: rng.string(MAX_AGENT),
            features: rng.next(),
            proof: if rng.bool() { vec![] } else { rng.bytes(NONCE) },
        },
        2 => Message::Challenge {
            nonce: rng.bytes(NONCE),
        },
        3 => Message::Proof {
            nonce: rng.bytes(NONCE),
            mac: rng.bytes(NONCE),
        },
        4 => Message::Offer {
            path: rng.string(MAX_NAME),
            kind: if rng.bool() {
                DatasetKind::Volume
            } else {
                DatasetKind::Filesystem
            },
            count: rng.below(MAX_SNAPSHOTS as u64 + 1) as u32,
            dry_run: rng.bool(),
        },
        5 => Message::Snap(SnapshotInfo {
            name: rng.string(MAX_NAME),
            guid: rng.next(),
            createtxg: rng.next(),
        }),
        6 => Message::Reply(Plan::UpToDate {
            name: rng.string(MAX_NAME),
        }),
        7 => Message::Reply(Plan::Incremental {
            from_guid: rng.next(),
            from_name: rng.string(MAX_NAME),
            rollback: rng.string(MAX_TEXT),
        }),
        8 => Message::Reply(Plan::Full {
            buffered: rng.bool(),
        }),
        9 => Message::Reply(Plan::Refused {
            reason: rng.reason(),
            text: rng.string(MAX_TEXT),
        }),
        10 => Message::Reply(Plan::Resume {
            token: rng.string(MAX_TEXT),
        }),
        19 => Message::Reply(Plan::Placeholder {
            made: rng.bool(),
            buffered: rng.bool(),
        }),
        11 => {
            let n = if rng.below(50) == 0 {
                MAX_DATA
            } else {
                1 + rng.below(300) as usize
            };
            Message::Data(rng.bytes(n))
        }
        12 => Message::End { bytes: rng.next() },
        13 => Message::Abort {
            text: rng.string(MAX_TEXT),
        },
        14 => Message::Result(Outcome::Done {
            bytes: rng.next(),
            newest: rng.string(MAX_NAME),
            newest_guid: rng.next(),
        }),
        15 => Message::Result(Outcome::Failed {
            reason: rng.reason(),
            text: rng.string(MAX_TEXT),
        }),
        16 => Message::CleanupDone {
            placed: rng.u32(),
            removed: rng.u32(),
            waiting: rng.u32(),
            failed: rng.u32(),
            text: rng.string(MAX_TEXT),
        },
        17 => Message::Error {
            reason: rng.reason(),
            text: rng.string(MAX_TEXT),
        },
        18 => Message::Cleanup,
        // Short, to keep the tests fast: a Root at its limit (32 KiB) makes the prefix
        // sweep below quadratic. The message's own tests take it to its limit.
        20 => Message::Root {
            guids: (0..rng.len(64)).map(|_| rng.next()).collect(),
        },
        _ => [Message::KeepAlive, Message::Bye][rng.below(2) as usize].clone(),
    }
}

fn encode(msgs: &[Message]) -> (Vec<u8>, Vec<usize>) {
    let mut w = FrameWriter::new(Vec::new());
    let mut ends = Vec::new();
    for m in msgs {
        w.write_message(m)
            .unwrap_or_else(|e| panic!("{} does not encode: {e}", m.name()));
        w.flush().unwrap();
        ends.push(w.get_ref().len());
    }
    (w.get_ref().clone(), ends)
}

fn payload(m: &Message) -> Vec<u8> {
    let mut p = Vec::new();
    m.encode_payload(&mut p).unwrap();
    p
}

/// Reads frames until the end or an error: the messages read, and how it ended.
fn decode_all(bytes: &[u8]) -> (Vec<Message>, Result<(), Error>) {
    let mut r = FrameReader::new(Cursor::new(bytes));
    let mut out = Vec::new();
    loop {
        match r.read_message() {
            Ok(Some(m)) => out.push(m),
            Ok(None) => return (out, Ok(())),
            Err(e) => return (out, Err(e)),
        }
    }
}

fn sequence(rng: &mut Rng) -> Vec<Message> {
    (0..1 + rng.below(6)).map(|_| message(rng)).collect()
}

#[test]
fn random_valid_messages_round_trip_through_frames() {
    for case in 0..CASES {
        let mut rng = Rng::new(case);
        let msgs = sequence(&mut rng);
        let (bytes, _) = encode(&msgs);
        let (got, end) = decode_all(&bytes);
        assert!(end.is_ok(), "case {case}: {end:?}");
        assert_eq!(got, msgs, "case {case}");
    }
}

#[test]
fn random_valid_messages_round_trip_through_payloads() {
    for case in 0..CASES {
        let mut rng = Rng::new(case);
        let m = message(&mut rng);
        let p = payload(&m);
        let limit = if m.kind() == 0x20 {
            MAX_DATA
        } else {
            MAX_CONTROL
        };
        assert!(
            p.len() <= limit,
            "case {case}: {} of {} bytes",
            m.name(),
            p.len()
        );
        let back = Message::decode(m.kind(), p.clone())
            .unwrap_or_else(|e| panic!("case {case}: {} does not decode: {e}", m.name()));
        assert_eq!(back, m, "case {case}");
        assert_eq!(payload(&back), p, "case {case}");
    }
}

#[test]
fn random_truncation_is_always_an_error() {
    for case in 0..CASES {
        let mut rng = Rng::new(case);
        let msgs = sequence(&mut rng);
        let (bytes, ends) = encode(&msgs);
        let cut = rng.below(bytes.len() as u64) as usize; // 0..len: always short
        let whole = ends.iter().filter(|&&e| e <= cut).count();
        let (got, end) = decode_all(&bytes[..cut]);
        // The frames before the cut arrive intact...
        assert_eq!(got, msgs[..whole], "case {case} cut {cut}");
        // ...and a cut inside a frame is never a message nor a clean end.
        if ends.contains(&cut) || cut == 0 {
            assert!(end.is_ok(), "case {case} cut {cut} at a boundary: {end:?}");
        } else {
            assert!(
                matches!(end, Err(Error::Truncated { .. })),
                "case {case} cut {cut}: {end:?}"
            );
        }
    }
}

/// A Hello or Welcome of another protocol version: by design only its frozen start (magic,
/// version) is read, so that the answer is "version mismatch" whatever follows; the
/// exactness properties below hold for this version's layouts.
fn foreign_greeting(kind: u8, p: &[u8]) -> bool {
    let at = match kind {
        0x01 => 6,
        0x02 => 0,
        _ => return false,
    };
    p.len() >= at + 2 && u16::from_be_bytes([p[at], p[at + 1]]) != zfsync_protocol::VERSION
}

#[test]
fn every_proper_prefix_of_a_payload_is_refused() {
    for case in 0..CASES / 3 {
        let mut rng = Rng::new(case);
        let m = message(&mut rng);
        if matches!(m, Message::Data(_)) {
            continue; // a shorter piece of stream is still a piece of stream
        }
        let p = payload(&m);
        for cut in 0..p.len() {
            if foreign_greeting(m.kind(), &p[..cut]) {
                continue;
            }
            assert!(
                Message::decode(m.kind(), p[..cut].to_vec()).is_err(),
                "case {case}: {} cut to {cut}/{} bytes decodes",
                m.name(),
                p.len()
            );
        }
    }
}

#[test]
fn mutated_payloads_that_decode_re_encode_identically() {
    // Decoding is exact: no two payloads give the same message, so whatever decodes
    // encodes back to the very bytes it came from.
    let mut decoded = 0;
    for case in 0..CASES * 3 {
        let mut rng = Rng::new(case);
        let m = message(&mut rng);
        let mut p = payload(&m);
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(p.len() as u64 + 1) as usize;
            match rng.below(4) {
                0 if i < p.len() => p[i] ^= 1 << rng.below(8),
                1 if i < p.len() => p[i] = rng.next() as u8,
                2 => p.truncate(i),
                _ => p.insert(i, rng.next() as u8),
            }
        }
        let kind = if rng.below(10) == 0 {
            rng.next() as u8
        } else {
            m.kind()
        };
        if foreign_greeting(kind, &p) {
            continue;
        }
        if let Ok(back) = Message::decode(kind, p.clone()) {
            decoded += 1;
            assert_eq!(back.kind(), kind, "case {case}");
            assert_eq!(payload(&back), p, "case {case}: {back:?}");
        }
    }
    assert!(
        decoded > 100,
        "only {decoded} mutations decoded: the sweep is too weak"
    );
}

/// A reader that counts what is taken from it, over an endless source.
struct Counting<R> {
    inner: R,
    taken: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.taken += n as u64;
        Ok(n)
    }
}

fn known_kinds() -> Vec<u8> {
    (0..=255u8)
        .filter(|&k| !matches!(Message::decode(k, vec![]), Err(Error::UnknownKind(_))))
        .collect()
}

#[test]
fn random_bytes_never_panic_and_stay_within_the_limits() {
    let kinds = known_kinds();
    for case in 0..CASES * 5 {
        let mut rng = Rng::new(case);
        let n = rng.len(200);
        let mut bytes = rng.bytes(n);
        // Most cases start like a real frame (known kind, short length), so the payload
        // parsers are reached, not just the header check.
        let mut at = 0;
        while at + HEADER <= bytes.len() && rng.below(4) != 0 {
            bytes[at] = kinds[rng.below(kinds.len() as u64) as usize];
            let len = rng.below((bytes.len() - at - HEADER + 8) as u64) as u32;
            bytes[at + 1..at + 5].copy_from_slice(&len.to_be_bytes());
            at += HEADER + len as usize;
        }
        let mut r = FrameReader::new(Cursor::new(&bytes[..]));
        loop {
            let start = r.get_ref().position();
            let res = r.read_message();
            let used = (r.get_ref().position() - start) as usize;
            match res {
                Ok(Some(m)) => {
                    let limit = if m.kind() == 0x20 {
                        MAX_DATA
                    } else {
                        MAX_CONTROL
                    };
                    assert!(used <= HEADER + limit, "case {case}");
                }
                Ok(None) => break,
                Err(e) => {
                    if matches!(e, Error::UnknownKind(_) | Error::TooLarge { .. }) {
                        assert_eq!(used, HEADER, "case {case}: {e}");
                    }
                    assert!(!e.to_string().is_empty());
                    break;
                }
            }
        }
    }
}

#[test]
fn hostile_lengths_are_refused_after_the_header_alone() {
    // An endless peer: whatever the header announces, the reader takes the 5 header
    // bytes and stops; it neither reads nor allocates the announced payload.
    for kind in known_kinds() {
        let limit = if kind == 0x20 { MAX_DATA } else { MAX_CONTROL };
        for len in [limit as u32 + 1, 1 << 30, u32::MAX] {
            let mut header = vec![kind];
            header.extend_from_slice(&len.to_be_bytes());
            let mut src = Counting {
                inner: Cursor::new(header).chain(io::repeat(b'A')),
                taken: 0,
            };
            let err = FrameReader::new(&mut src).read_message().unwrap_err();
            assert!(matches!(err, Error::TooLarge { .. }), "{kind:#04x}: {err}");
            assert_eq!(src.taken, HEADER as u64, "{kind:#04x} len {len}");
        }
    }
}

#[test]
fn an_endless_line_is_refused_after_five_bytes() {
    // Someone speaking a line protocol (HTTP, SMTP, a shell) at the port.
    for first in [b'G', b'P', b'H', b'\r', b'\n', b' ', 0x00, 0xff] {
        let mut src = Counting {
            inner: io::repeat(first),
            taken: 0,
        };
        let res = FrameReader::new(&mut src).read_message();
        assert!(res.is_err(), "{first:#04x}: {res:?}");
        assert_eq!(src.taken, HEADER as u64, "{first:#04x}");
    }
}

#[test]
fn a_frame_at_its_limit_takes_exactly_header_plus_limit() {
    // The reader never reads ahead into the next frame: with an endless source, one frame
    // at the limit costs exactly its own bytes.
    for kind in known_kinds() {
        let limit = if kind == 0x20 { MAX_DATA } else { MAX_CONTROL };
        let mut header = vec![kind];
        header.extend_from_slice(&(limit as u32).to_be_bytes());
        let mut src = Counting {
            inner: Cursor::new(header).chain(io::repeat(0)),
            taken: 0,
        };
        let _ = FrameReader::new(&mut src).read_message();
        assert_eq!(src.taken, (HEADER + limit) as u64, "{kind:#04x}");
    }
}

#[test]
fn private_limits_are_what_these_tests_assume() {
    let hello = |agent: usize, client: usize| Message::Hello {
        version: zfsync_protocol::VERSION,
        agent: "a".repeat(agent),
        dest: String::new(),
        client: "c".repeat(client),
    };
    // An agent is clipped to MAX_AGENT; a client name over MAX_CLIENT is refused.
    match Message::decode(0x01, payload(&hello(MAX_AGENT + 10, 0))).unwrap() {
        Message::Hello { agent, .. } => assert_eq!(agent.len(), MAX_AGENT),
        other => panic!("{other:?}"),
    }
    assert!(hello(0, MAX_CLIENT).encode_payload(&mut Vec::new()).is_ok());
    assert!(hello(0, MAX_CLIENT + 1)
        .encode_payload(&mut Vec::new())
        .is_err());
}
