//! What the first record of a `zfs send` stream says about the stream: whether it is raw
//! (`-w`, encrypted blocks as they are on disk) and whether its blocks are compressed
//! (`-c`). The receiver learns this from the bytes it passes to `zfs recv`, since the
//! protocol does not carry it.
//!
//! Reads bytes only; it must not read more of a stream than [`BEGIN_HEAD`].
//!
//! # Layout (OpenZFS `include/sys/zfs_ioctl.h`)
//! A stream opens with a `dmu_replay_record` of type `DRR_BEGIN` (0): `drr_type:u32
//! drr_payloadlen:u32`, then `struct drr_begin`: `drr_magic:u64` (`DMU_BACKUP_MAGIC`,
//! 0x2F5bacbac) and `drr_versioninfo:u64`, all in the sending host's byte order (the
//! magic tells which). In `drr_versioninfo`, bits 0-1 are the header type and bits 2-31
//! the feature flags (`DMU_GET_FEATUREFLAGS`), where `DMU_BACKUP_FEATURE_COMPRESSED` is
//! 1 << 22 and `DMU_BACKUP_FEATURE_RAW` 1 << 24. Streams of ZFS before those features
//! (zfs-fuse's) have neither bit set.

/// The bytes of a stream's head that [`StreamFlags::of`] reads: the record header, the
/// magic and the version info.
pub const BEGIN_HEAD: usize = 24;

const DRR_BEGIN: u32 = 0;
const DMU_BACKUP_MAGIC: u64 = 0x2_F5BA_CBAC;
const FEATURE_COMPRESSED: u64 = 1 << 22;
const FEATURE_RAW: u64 = 1 << 24;

/// What a stream's `DRR_BEGIN` record says it carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamFlags {
    /// `zfs send -w`: encrypted (or otherwise raw) blocks, as stored.
    pub raw: bool,
    /// `zfs send -c`: blocks compressed as stored.
    pub compressed: bool,
}

impl StreamFlags {
    /// The flags of the stream whose first bytes are `head` (at least [`BEGIN_HEAD`] of
    /// them); `None` when they are not a `DRR_BEGIN` record of either byte order.
    pub fn of(head: &[u8]) -> Option<StreamFlags> {
        let head = head.get(..BEGIN_HEAD)?;
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
        let features = (u64_at(16, le) >> 2) & ((1 << 30) - 1);
        Some(StreamFlags {
            raw: features & FEATURE_RAW != 0,
            compressed: features & FEATURE_COMPRESSED != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream head: DRR_BEGIN with `features` and header type 1 (substream), in the
    /// byte order `le` says.
    fn head(le: bool, features: u64) -> Vec<u8> {
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
            assert_eq!(StreamFlags::of(&head(le, features)), want, "{name}");
        }
    }

    #[test]
    fn anything_else_says_nothing() {
        let mut not_begin = head(true, FEATURE_RAW);
        not_begin[0] = 5; // DRR_END
        let mut bad_magic = head(true, FEATURE_RAW);
        bad_magic[8] ^= 1;
        for (name, bytes) in [
            ("empty", Vec::new()),
            ("short", head(true, FEATURE_RAW)[..BEGIN_HEAD - 1].to_vec()),
            ("not DRR_BEGIN", not_begin),
            ("bad magic", bad_magic),
            ("text", b"cannot send tank/a@s: no such snapshot".to_vec()),
        ] {
            assert_eq!(StreamFlags::of(&bytes), None, "{name}");
        }
        // Exactly the head is enough.
        assert_eq!(
            StreamFlags::of(&head(true, FEATURE_RAW)[..BEGIN_HEAD]),
            flags(true, false)
        );
    }
}
