//! The head of a `zfs send` stream: what its first record (`DRR_BEGIN`) says about the
//! stream, read from bytes a receiver has before it hands them to `zfs recv`.
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
//! Identical in zfs-fuse and OpenZFS.

/// Bytes of a stream's head that [`stream_head`] reads.
pub const STREAM_HEAD: usize = 24;

const DRR_BEGIN: u32 = 0;
const DMU_BACKUP_MAGIC: u64 = 0x2_F5BA_CBAC;
const DMU_SUBSTREAM: u64 = 1;
const DMU_COMPOUNDSTREAM: u64 = 2;

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

/// What the first [`STREAM_HEAD`] bytes of a stream (or more; fewer give
/// [`StreamHead::Unknown`]) say about it.
pub fn stream_head(head: &[u8]) -> StreamHead {
    let Some(head) = head.get(..STREAM_HEAD) else {
        return StreamHead::Unknown;
    };
    let u64_at = |at: usize, big: bool| {
        let bytes: [u8; 8] = head[at..at + 8].try_into().expect("8 bytes");
        if big {
            u64::from_be_bytes(bytes)
        } else {
            u64::from_le_bytes(bytes)
        }
    };
    let Some(big) = [false, true]
        .into_iter()
        .find(|&big| u64_at(8, big) == DMU_BACKUP_MAGIC)
    else {
        return StreamHead::Unknown;
    };
    let u32_at = |at: usize| {
        let bytes: [u8; 4] = head[at..at + 4].try_into().expect("4 bytes");
        match big {
            true => u32::from_be_bytes(bytes),
            false => u32::from_le_bytes(bytes),
        }
    };
    if u32_at(0) != DRR_BEGIN {
        return StreamHead::Unknown;
    }
    match u64_at(16, big) & 0b11 {
        DMU_SUBSTREAM => StreamHead::Substream,
        DMU_COMPOUNDSTREAM => StreamHead::Compound {
            properties: u32_at(4) > 0,
        },
        _ => StreamHead::Unknown,
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

    #[test]
    fn heads_of_zfs_fuse_streams() {
        // The first 24 bytes of `zfs send SNAP`, `zfs send -I SNAP1 SNAP2`, `zfs send -p SNAP`
        // and `zfs send -R SNAP` on zfs-fuse (x86-64).
        let plain = "0000000000000000accbbaf5020000000100000000000000";
        let intermediates = "0000000000000000accbbaf5020000000200000000000000";
        let props = "0000000014020000accbbaf5020000000200000000000000";
        let replicate = "00000000f0010000accbbaf5020000000200000000000000";
        let bytes = |hex: &str| -> Vec<u8> {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect()
        };
        assert_eq!(stream_head(&bytes(plain)), StreamHead::Substream);
        let compound = |properties| StreamHead::Compound { properties };
        assert_eq!(stream_head(&bytes(intermediates)), compound(false));
        assert_eq!(stream_head(&bytes(props)), compound(true));
        assert_eq!(stream_head(&bytes(replicate)), compound(true));
    }
}
