//! What the installed ZFS can do: [`Capabilities`], derived once from `zfs version`.
//!
//! This module only says which flags and features a command may use; it runs nothing
//! (`Zfs::detect` runs `zfs version` and hands its output here) and builds no command line.

/// What the installed ZFS can do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Human-readable description, e.g. "OpenZFS 2.3.2" or "legacy ZFS (zfs-fuse)".
    pub flavor: String,
    /// `zfs list -p` (exact numbers from `zfs list`).
    pub list_parsable: bool,
    /// `zfs recv -u` (do not mount what was received).
    pub recv_unmounted: bool,
    /// `zfs recv -x PROP` (keep a stream's property out). Without it, `zfs recv` applies
    /// whatever properties a stream carries (zfs-fuse mounts at the stream's mountpoint).
    pub recv_exclude: bool,
    /// `zfs recv -s` and `zfs send -t` (resumable streams).
    pub resumable: bool,
    /// Bookmarks (`zfs bookmark`, `send -i #bm`).
    pub bookmarks: bool,
    /// `zfs hold` / `zfs release` that work.
    pub holds: bool,
    /// `zfs send -c`, `-L`, `-e`.
    pub send_compressed: bool,
    /// `zfs send -w` (raw, for encrypted datasets).
    pub send_raw: bool,
    /// `zfs send -nvP`: a dry run that prints the stream's estimated size.
    pub send_dry_run: bool,
    /// The `written` property: bytes written since the previous snapshot.
    pub written: bool,
    /// Several names in one `zfs snapshot`, all taken at once (atomically).
    pub snapshot_many: bool,
}

impl Capabilities {
    /// The oldest CLI we support: zfs-fuse's (pool version 23).
    pub fn legacy() -> Capabilities {
        Capabilities {
            flavor: "legacy ZFS without 'zfs version' (zfs-fuse or similar)".into(),
            list_parsable: false,
            recv_unmounted: false,
            recv_exclude: false,
            resumable: false,
            bookmarks: false,
            holds: false,
            send_compressed: false,
            send_raw: false,
            send_dry_run: false,
            written: false,
            snapshot_many: false,
        }
    }

    /// OpenZFS of the given version (0.8 introduced `zfs version`, raw sends, and is the
    /// oldest we tell apart from the legacy CLI).
    pub fn openzfs(version: &str) -> Capabilities {
        Capabilities {
            flavor: format!("OpenZFS {version}"),
            list_parsable: true,
            recv_unmounted: true,
            recv_exclude: true,
            resumable: true,
            bookmarks: true,
            holds: true,
            send_compressed: true,
            send_raw: true,
            send_dry_run: true,
            written: true,
            snapshot_many: true,
        }
    }

    /// The capabilities behind `zfs version`'s output, whose first line names the userland
    /// version ("zfs-2.3.2-2~bpo12+2\nzfs-kmod-2.3.2-2~bpo12+2").
    pub(crate) fn from_version_output(out: &str) -> Capabilities {
        let first = out.lines().next().unwrap_or("").trim();
        let version = first.strip_prefix("zfs-").unwrap_or(first);
        Capabilities::openzfs(version.split('-').next().unwrap_or(version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_output_names_the_openzfs_version() {
        for (out, flavor) in [
            (
                "zfs-2.3.2-2~bpo12+2\nzfs-kmod-2.3.2-2~bpo12+2\n",
                "OpenZFS 2.3.2",
            ),
            (
                "zfs-0.8.3-1ubuntu12\nzfs-kmod-0.8.3-1ubuntu12\n",
                "OpenZFS 0.8.3",
            ),
            ("  zfs-2.1.5\n", "OpenZFS 2.1.5"),
            ("2.2.0-rc1\n", "OpenZFS 2.2.0"),
        ] {
            let caps = Capabilities::from_version_output(out);
            assert_eq!(caps.flavor, flavor, "{out:?}");
            assert!(caps.list_parsable && caps.resumable, "{out:?}");
        }
    }
}
