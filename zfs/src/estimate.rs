//! What a `zfs send` is expected to carry, for progress: the size OpenZFS's `zfs send -nvP`
//! prints, or, where there is no such dry run (zfs-fuse), the snapshot's `referenced` for a
//! full stream, marked approximate.
//!
//! This module reads what zfs prints; `Zfs::send_size` runs the commands.

/// The expected size of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendSize {
    pub bytes: u64,
    /// Not zfs's own estimate of the stream but a property it is near to (`referenced`):
    /// the stream may be larger or smaller.
    pub approximate: bool,
}

/// The size in the output of `zfs send -nvP` (OpenZFS prints a `size\tN` line, on stdout
/// or stderr depending on the version).
pub(crate) fn parse_dry_run(out: &str) -> Option<u64> {
    out.lines().find_map(|l| {
        let (key, value) = l.split_once(['\t', ' '])?;
        (key == "size").then(|| value.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_line_of_a_dry_run() {
        // OpenZFS 2.x: a line per stream, then the total.
        let out = "incremental\tzfsync_1\ttank/a@zfsync_2\t1234\nsize\t1234\n";
        assert_eq!(parse_dry_run(out), Some(1234));
        let full = "full\ttank/a@s1\t4096\nsize\t4096\n";
        assert_eq!(parse_dry_run(full), Some(4096));
        assert_eq!(
            parse_dry_run("send from @a to tank@b estimated size is 1.2M\n"),
            None
        );
        assert_eq!(parse_dry_run("size\tmany\n"), None);
    }
}
