//! The head of a `zfs send` stream: what its first record (`DRR_BEGIN`) says about the
//! stream (one dataset's or compound, with properties or not; raw, compressed), read from
//! bytes a receiver has before it hands them to `zfs recv`. The protocol does not carry
//! these: the stream is the one source of truth.
//!
//! It runs nothing and checks nothing else of the stream (`zfs recv` does that): a head it
//! cannot read is [`StreamHead::Unknown`], for `zfs recv` to refuse.
//!
//! # Format
//!
//! A stream starts with a `dmu_replay_record` of type `DRR_BEGIN`, in the sending host's
//! byte order: `drr_type` (u32, 0 for `DRR_BEGIN`), `drr_payloadlen` (u32), then
//! `drr_begin`: `drr_magic` (u64, `0x2F5bacbac`, whose byte order tells the stream's) and
//! `drr_versioninfo` (u64, whose low 2 bits are the header type: 1 `DMU_SUBSTREAM`, one
//! dataset's snapshot; 2 `DMU_COMPOUNDSTREAM`, a wrapper around substreams). `zfs send -I`
//! makes a compound stream without payload; `-R` and `-p` give its first record a payload,
//! a packed nvlist whose `fss` holds the datasets' properties, which `zfs recv` sets.
//! Bits 2-31 of `drr_versioninfo` are the feature flags (`DMU_GET_FEATUREFLAGS`), where
//! `DMU_BACKUP_FEATURE_COMPRESSED` is 1 << 22 and `DMU_BACKUP_FEATURE_RAW` 1 << 24; streams
//! of ZFS before those features (zfs-fuse's) have neither.
//! Identical in zfs-fuse and OpenZFS.
//!
//! A compound stream's own `DRR_BEGIN` has none of those flags (OpenZFS sets only its
//! holds flag there): they are in each substream's. The first substream begins after the
//! compound's record (every record is a `dmu_replay_record_t` of [`RECORD`] bytes), its
//! payload and a `DRR_END` record, so [`StreamFlags::of`] wants that much more of a
//! compound stream's head ([`flags_head_len`]).

/// Bytes of a stream's head that [`stream_head`] reads.
pub const STREAM_HEAD: usize = 24;

const DRR_BEGIN: u32 = 0;
const DMU_BACKUP_MAGIC: u64 = 0x2_F5BA_CBAC;
const DMU_SUBSTREAM: u64 = 1;
const DMU_COMPOUNDSTREAM: u64 = 2;
const FEATURE_COMPRESSED: u64 = 1 << 22;
const FEATURE_RAW: u64 = 1 << 24;
/// Bytes of a `dmu_replay_record_t`, the fixed part of every record of a stream.
const RECORD: usize = 312;
/// The most of a stream's head [`flags_head_len`] asks for: a compound stream whose first
/// payload (properties) is larger says nothing of its flags.
pub const FLAGS_HEAD_MAX: usize = 1 << 20;

/// What the head of a stream says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamHead {
    /// One dataset's snapshot, without properties (`zfs send [-i] SNAP`).
    Substream,
    /// A compound stream. With `properties` its first record has a payload (`zfs send -R`
    /// or `-p`): the datasets' properties, which a `zfs recv` without `-x` sets on what it
    /// receives, `mountpoint` included. Without, substreams only (`zfs send -I`).
    Compound { properties: bool },
    /// Too short, or not a `DRR_BEGIN` record of a ZFS stream.
    Unknown,
}

/// The `DRR_BEGIN` record at the start of `head`: its `drr_payloadlen` and
/// `drr_versioninfo`, in either byte order; `None` if `head` is shorter than
/// [`STREAM_HEAD`] or not such a record.
fn begin_record(head: &[u8]) -> Option<(u32, u64)> {
    let head = head.get(..STREAM_HEAD)?;
    // The N bytes at `i` as little-endian, turned around when the stream is not.
    fn at<const N: usize>(head: &[u8], i: usize, le: bool) -> [u8; N] {
        let mut b: [u8; N] = head[i..i + N].try_into().expect("within the head");
        if !le {
            b.reverse();
        }
        b
    }
    let u64_at = |i: usize, le: bool| u64::from_le_bytes(at(head, i, le));
    let le = [true, false]
        .into_iter()
        .find(|le| u64_at(8, *le) == DMU_BACKUP_MAGIC)?;
    if u32::from_le_bytes(at(head, 0, le)) != DRR_BEGIN {
        return None;
    }
    Some((u32::from_le_bytes(at(head, 4, le)), u64_at(16, le)))
}

/// What the first [`STREAM_HEAD`] bytes of a stream (or more; fewer give
/// [`StreamHead::Unknown`]) say about it.
pub fn stream_head(head: &[u8]) -> StreamHead {
    match begin_record(head) {
        Some((_, versioninfo)) if versioninfo & 0b11 == DMU_SUBSTREAM => StreamHead::Substream,
        Some((payload, versioninfo)) if versioninfo & 0b11 == DMU_COMPOUNDSTREAM => {
            StreamHead::Compound {
                properties: payload > 0,
            }
        }
        _ => StreamHead::Unknown,
    }
}

/// What a stream's `DRR_BEGIN` record says it carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamFlags {
    /// `zfs send -w`: encrypted (or otherwise raw) blocks, as stored.
    pub raw: bool,
    /// `zfs send -c`: blocks compressed as stored.
    pub compressed: bool,
}

/// Where a compound stream's first substream begins, for a compound stream whose first
/// record has a payload of `payload` bytes.
fn first_substream(payload: u32) -> usize {
    2 * RECORD + payload as usize
}

/// How many bytes of a stream [`StreamFlags::of`] needs, given its first bytes `head`:
/// [`STREAM_HEAD`], or for a compound stream up to its first substream's head (at most
/// [`FLAGS_HEAD_MAX`]).
pub fn flags_head_len(head: &[u8]) -> usize {
    match begin_record(head) {
        Some((payload, versioninfo)) if versioninfo & 0b11 == DMU_COMPOUNDSTREAM => {
            (first_substream(payload) + STREAM_HEAD).min(FLAGS_HEAD_MAX)
        }
        _ => STREAM_HEAD,
    }
}

impl StreamFlags {
    /// The flags of the stream whose first bytes are `head` (at least [`STREAM_HEAD`] of
    /// them, and of a compound stream [`flags_head_len`]: its first substream's); `None`
    /// when they are not a `DRR_BEGIN` record of either byte order, or a compound stream's
    /// first substream is not within them.
    pub fn of(head: &[u8]) -> Option<StreamFlags> {
        let (payload, mut versioninfo) = begin_record(head)?;
        if versioninfo & 0b11 == DMU_COMPOUNDSTREAM {
            let substream = head.get(first_substream(payload)..)?;
            versioninfo = begin_record(substream)?.1;
        }
        let features = (versioninfo >> 2) & ((1 << 30) - 1);
        Some(StreamFlags {
            raw: features & FEATURE_RAW != 0,
            compressed: features & FEATURE_COMPRESSED != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head of `kind`, `magic` and `versioninfo` with a payload of 532 bytes (what
    /// `zfs send -p` gives), little-endian or big-endian.
    fn head(kind: u32, magic: u64, versioninfo: u64, big: bool) -> Vec<u8> {
        let mut h = Vec::new();
        if big {
            h.extend(kind.to_be_bytes());
            h.extend(532u32.to_be_bytes());
            h.extend(magic.to_be_bytes());
            h.extend(versioninfo.to_be_bytes());
        } else {
            h.extend(kind.to_le_bytes());
            h.extend(532u32.to_le_bytes());
            h.extend(magic.to_le_bytes());
            h.extend(versioninfo.to_le_bytes());
        }
        h
    }

    #[test]
    fn the_head_says_substream_or_compound_in_either_byte_order() {
        // Feature flags (DMU_BACKUP_FEATURE_*) sit above the header type, from bit 2.
        let cases = [
            (head(0, DMU_BACKUP_MAGIC, 1, false), StreamHead::Substream),
            (head(0, DMU_BACKUP_MAGIC, 1, true), StreamHead::Substream),
            (
                head(0, DMU_BACKUP_MAGIC, 2, false),
                StreamHead::Compound { properties: true },
            ),
            (
                head(0, DMU_BACKUP_MAGIC, 2, true),
                StreamHead::Compound { properties: true },
            ),
            (
                head(0, DMU_BACKUP_MAGIC, 2 | 0x4 << 2, false),
                StreamHead::Compound { properties: true },
            ),
            (head(0, DMU_BACKUP_MAGIC, 0, false), StreamHead::Unknown),
            (head(0, DMU_BACKUP_MAGIC, 3, false), StreamHead::Unknown),
            (head(1, DMU_BACKUP_MAGIC, 2, false), StreamHead::Unknown),
            (head(0, 0x1234, 2, false), StreamHead::Unknown),
            (
                head(0, DMU_BACKUP_MAGIC, 2, false)[..23].to_vec(),
                StreamHead::Unknown,
            ),
            (Vec::new(), StreamHead::Unknown),
        ];
        for (bytes, want) in cases {
            assert_eq!(stream_head(&bytes), want, "{bytes:02x?}");
        }
    }

    /// The bytes a string of hex digits spells.
    fn bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn heads_of_zfs_fuse_streams() {
        // The first 24 bytes of `zfs send SNAP`, `zfs send -I SNAP1 SNAP2`, `zfs send -p SNAP`
        // and `zfs send -R SNAP` on zfs-fuse (x86-64).
        let plain = "0000000000000000accbbaf5020000000100000000000000";
        let intermediates = "0000000000000000accbbaf5020000000200000000000000";
        let props = "0000000014020000accbbaf5020000000200000000000000";
        let replicate = "00000000f0010000accbbaf5020000000200000000000000";
        assert_eq!(stream_head(&bytes(plain)), StreamHead::Substream);
        let compound = |properties| StreamHead::Compound { properties };
        assert_eq!(stream_head(&bytes(intermediates)), compound(false));
        assert_eq!(stream_head(&bytes(props)), compound(true));
        assert_eq!(stream_head(&bytes(replicate)), compound(true));
    }

    /// A stream head: DRR_BEGIN with `features` and header type 1 (substream), in the
    /// byte order `le` says.
    fn flagged_head(le: bool, features: u64) -> Vec<u8> {
        let versioninfo = (features << 2) | 1;
        let mut out = Vec::new();
        if le {
            out.extend(0u32.to_le_bytes());
            out.extend(312u32.to_le_bytes());
            out.extend(DMU_BACKUP_MAGIC.to_le_bytes());
            out.extend(versioninfo.to_le_bytes());
        } else {
            out.extend(0u32.to_be_bytes());
            out.extend(312u32.to_be_bytes());
            out.extend(DMU_BACKUP_MAGIC.to_be_bytes());
            out.extend(versioninfo.to_be_bytes());
        }
        out.extend([0u8; 16]);
        out
    }

    fn flags(raw: bool, compressed: bool) -> Option<StreamFlags> {
        Some(StreamFlags { raw, compressed })
    }

    #[test]
    fn the_feature_flags_decide() {
        // Features a stream of OpenZFS 2 carries besides: embedded data, LZ4, large
        // blocks, large dnodes.
        let others = (1 << 16) | (1 << 17) | (1 << 19) | (1 << 23);
        for (name, le, features, want) in [
            ("plain, or zfs-fuse", true, 0, flags(false, false)),
            ("-c", true, others | FEATURE_COMPRESSED, flags(false, true)),
            ("-w", true, others | FEATURE_RAW, flags(true, false)),
            (
                "-w -c",
                true,
                FEATURE_RAW | FEATURE_COMPRESSED,
                flags(true, true),
            ),
            ("-L -e", true, others, flags(false, false)),
            ("big-endian -w", false, FEATURE_RAW, flags(true, false)),
            (
                "big-endian -c",
                false,
                FEATURE_COMPRESSED,
                flags(false, true),
            ),
        ] {
            assert_eq!(StreamFlags::of(&flagged_head(le, features)), want, "{name}");
        }
    }

    #[test]
    fn a_compound_streams_flags_are_its_first_substreams() {
        // Heads of OpenZFS 2.3 streams (x86-64): the compound's first record, then the
        // first substream's at 624 + the compound's payload; the compound's own flags are
        // none.
        let compound = "0000000000000000accbbaf5020000000200000000000000";
        let with_props = "0000000090020000accbbaf5020000000200000000000000"; // payload 656
        let c_sub = "0000000000000000accbbaf50200000011000c0100000000";
        let plain_sub = "0000000000000000accbbaf50200000011000c0000000000";
        let raw_sub = "0000000004040000accbbaf5020000001100080500000000";
        let stream = |first: &str, at: usize, sub: &str| {
            let mut out = bytes(first);
            out.resize(at, 0);
            out.extend(bytes(sub));
            out
        };
        for (name, head, want) in [
            (
                "-c -L -e -I",
                stream(compound, 624, c_sub),
                flags(false, true),
            ),
            (
                "-L -e -I",
                stream(compound, 624, plain_sub),
                flags(false, false),
            ),
            (
                "-c -L -e -w -I",
                stream(compound, 624, raw_sub),
                flags(true, true),
            ),
            (
                "-c -L -e -p -I",
                stream(with_props, 1280, c_sub),
                flags(false, true),
            ),
            // The substream not (yet) there: nothing said.
            (
                "-c -I, cut",
                stream(compound, 624, c_sub)[..640].to_vec(),
                None,
            ),
            ("-I, the head alone", bytes(compound), None),
        ] {
            assert_eq!(StreamFlags::of(&head), want, "{name}");
        }
        // How much of the head that takes: up to the substream's head, within bounds.
        for (name, head, want) in [
            ("nothing yet", Vec::new(), STREAM_HEAD),
            ("a substream", bytes(c_sub), STREAM_HEAD),
            ("-I", bytes(compound), 648),
            ("-p -I", bytes(with_props), 1304),
            (
                "a huge payload",
                bytes("00000000ffffffffaccbbaf5020000000200000000000000"),
                FLAGS_HEAD_MAX,
            ),
        ] {
            assert_eq!(flags_head_len(&head), want, "{name}");
        }
    }

    #[test]
    fn anything_else_says_nothing() {
        let mut not_begin = flagged_head(true, FEATURE_RAW);
        not_begin[0] = 5; // DRR_END
        let mut bad_magic = flagged_head(true, FEATURE_RAW);
        bad_magic[8] ^= 1;
        for (name, bytes) in [
            ("empty", Vec::new()),
            (
                "short",
                flagged_head(true, FEATURE_RAW)[..STREAM_HEAD - 1].to_vec(),
            ),
            ("not DRR_BEGIN", not_begin),
            ("bad magic", bad_magic),
            ("text", b"cannot send tank/a@s: no such snapshot".to_vec()),
        ] {
            assert_eq!(StreamFlags::of(&bytes), None, "{name}");
        }
        // Exactly the head is enough.
        assert_eq!(
            StreamFlags::of(&flagged_head(true, FEATURE_RAW)[..STREAM_HEAD]),
            flags(true, false)
        );
    }
}
