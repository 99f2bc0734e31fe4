//! Protecting a base snapshot: the one home of zfsync's marks, holds and bookmarks.
//!
//! A *base* is the snapshot the next incremental to a receiver starts from. Losing it
//! forces a full send, so both sides keep it:
//! - on the source, per receiver id, a **mark** (the user property `zfsync:base:ID` on
//!   the snapshot, readable on any ZFS, so expiry can skip it) and, where holds work, a
//!   **hold** `zfsync-base-ID`, so that `zfs destroy` itself refuses;
//! - on the source, where the ZFS has bookmarks (OpenZFS), a **bookmark**
//!   `DATASET#zfsync-base-ID:SNAPSHOT` of the base (a replication cursor): should the
//!   snapshot go all the same (destroyed by hand, by another tool's expiry, its hold
//!   released), an incremental can still start from the bookmark (`zfs send -i #bm`);
//! - on the backup host, a **hold** `zfsync-recv` on each replica's newest received
//!   snapshot, so nobody's expiry there removes it.
//!
//! Every move sets the new protection before it removes the old one: a crash in between
//! leaves one protected snapshot (or bookmark) too many, never none. A bookmark's name
//! cannot be given to another bookmark while it exists, so each base's bookmark has a
//! name of its own (the snapshot's name is in it) and is made before the old one is
//! destroyed.
//!
//! Owns: the names of marks, hold tags and bookmarks, and the order of the zfs commands
//! that move them. Does not own: deciding which snapshot is a base (the sender's and
//! receiver's plans do that), or deciding what expiry destroys.

use crate::{Bookmark, Dataset, DatasetInfo, FailureKind, Result, Zfs, MAX_NAME_LEN};
use log::warn;
use std::collections::HashMap;

/// The hold tag the receiver keeps on each replica's newest received snapshot.
pub const RECEIVER_HOLD: &str = "zfsync-recv";

/// Prefix of the source's mark property; the full name is `zfsync:base:ID`.
pub const MARK_PREFIX: &str = "zfsync:base:";

/// The source's mark property for receiver `id`.
pub fn mark_property(id: &str) -> String {
    format!("{MARK_PREFIX}{id}")
}

/// The receiver id of a mark property (`zfsync:base:ID` -> `ID`), or `None` if `prop` is
/// not a mark.
pub fn mark_id(prop: &str) -> Option<&str> {
    prop.strip_prefix(MARK_PREFIX).filter(|id| !id.is_empty())
}

/// Whether `id` can name a receiver: it becomes part of a user property name and a hold
/// tag, so 1-64 of a-z 0-9 . _ - (what scripts/zfsyncron derives from HOST:PORT).
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
}

/// The source's hold tag for receiver `id`.
pub fn source_hold_tag(id: &str) -> String {
    format!("{BOOKMARK_PREFIX}{id}")
}

/// Prefix of the source's bookmarks (and its hold tags).
const BOOKMARK_PREFIX: &str = "zfsync-base-";

/// The name (after `#`) of receiver `id`'s bookmark of its base `snapshot`:
/// `zfsync-base-ID:SNAPSHOT`. An id holds no `:` ([`is_valid_id`]), so the name splits
/// back into the two at its first `:` ([`bookmark_base`]), whatever `_`, `-` or `:` the
/// snapshot's name holds.
pub fn base_bookmark(id: &str, snapshot: &str) -> String {
    format!("{BOOKMARK_PREFIX}{id}:{snapshot}")
}

/// The receiver id and the snapshot name of a base bookmark's name (`zfsync-base-ID:SNAP`
/// -> `(ID, SNAP)`), or `None` if `name` is not one of zfsync's.
pub fn bookmark_base(name: &str) -> Option<(&str, &str)> {
    let (id, snap) = name.strip_prefix(BOOKMARK_PREFIX)?.split_once(':')?;
    (is_valid_id(id) && crate::check_snapshot_name(snap).is_ok()).then_some((id, snap))
}

/// The marks of one receiver id on a source tree, read once when a run starts.
/// `SourceMarks::default()` marks nothing (no `--mark`, or a dry run).
#[derive(Default)]
pub struct SourceMarks {
    id: String,
    prop: String,
    hold: String,
    /// Dataset name -> names of its snapshots that carry the mark.
    marked: HashMap<String, Vec<String>>,
    /// Dataset name -> its bookmarks of this receiver id (none on a ZFS without them).
    bookmarked: HashMap<String, Vec<Bookmark>>,
}

impl SourceMarks {
    /// Reads the marks of receiver `id` below `root` (one zfs command); its bookmarks
    /// come from `listed`, datasets of the source's listing ([`Zfs::list_source_tree`]).
    pub fn load<'a>(
        zfs: &Zfs,
        root: &Dataset,
        id: &str,
        listed: impl IntoIterator<Item = &'a DatasetInfo>,
    ) -> Result<SourceMarks> {
        let prop = mark_property(id);
        let mut marked: HashMap<String, Vec<String>> = HashMap::new();
        for (name, value) in zfs.get_local_recursive(root, &prop)? {
            if let (Some((ds, snap)), false) = (name.split_once('@'), value == "-") {
                marked
                    .entry(ds.to_string())
                    .or_default()
                    .push(snap.to_string());
            }
        }
        let bookmarked = listed
            .into_iter()
            .map(|d| {
                let ours = d
                    .bookmarks
                    .iter()
                    .filter(|b| bookmark_base(&b.name).is_some_and(|(of, _)| of == id));
                (d.name.clone(), ours.cloned().collect::<Vec<_>>())
            })
            .filter(|(_, ours)| !ours.is_empty())
            .collect();
        Ok(SourceMarks {
            id: id.to_string(),
            hold: source_hold_tag(id),
            prop,
            marked,
            bookmarked,
        })
    }

    /// Moves the mark (and hold, and bookmark) of `dataset` to its snapshot `delivered`
    /// (GUID `guid`), which the receiver now has as its newest, and clears them from the
    /// ones marked before. In that order: the new base is protected before the old one is
    /// not.
    pub fn mark_delivered(
        &self,
        zfs: &Zfs,
        dataset: &str,
        delivered: &str,
        guid: u64,
    ) -> Result<()> {
        if self.prop.is_empty() {
            return Ok(());
        }
        let old: &[String] = self
            .marked
            .get(dataset)
            .map(|v| v.as_slice())
            .unwrap_or(&[]);
        let old_bookmarks: &[Bookmark] = self
            .bookmarked
            .get(dataset)
            .map(|v| v.as_slice())
            .unwrap_or(&[]);
        let caps = zfs.capabilities();
        let bookmark = caps
            .bookmarks
            .then(|| base_bookmark(&self.id, delivered))
            .filter(|b| dataset.len() + 1 + b.len() <= MAX_NAME_LEN);
        if caps.bookmarks && bookmark.is_none() {
            warn!(
                "no bookmark of base dataset={dataset} snap={delivered}: the name would be \
                 longer than 255 bytes (the mark and hold protect it)"
            );
        }
        let bookmarked = |name: &str| old_bookmarks.iter().find(|b| b.name == name);
        let bookmark_done = match &bookmark {
            Some(b) => old_bookmarks.len() == 1 && bookmarked(b).is_some_and(|b| b.guid == guid),
            None => old_bookmarks.is_empty(),
        };
        if old.len() == 1 && old[0] == delivered && bookmark_done {
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let base = format!("{dataset}@{delivered}");
        zfs.set(&base, &self.prop, &now.to_string())?;
        if caps.holds {
            zfs.hold(&base, &self.hold)?;
        }
        if let Some(name) = &bookmark {
            match bookmarked(name) {
                Some(b) if b.guid == guid => {}
                // Of an earlier snapshot of the same name: the name is taken until it goes
                // (the new base is marked and held meanwhile).
                Some(_) => {
                    zfs.destroy_bookmark(dataset, name)?;
                    zfs.bookmark(&base, name)?;
                }
                None => zfs.bookmark(&base, name)?,
            }
        }
        for b in old_bookmarks
            .iter()
            .filter(|b| Some(&b.name) != bookmark.as_ref())
        {
            zfs.destroy_bookmark(dataset, &b.name)?;
        }
        for snap in old.iter().filter(|s| *s != delivered) {
            let old = format!("{dataset}@{snap}");
            if caps.holds {
                zfs.release(&old, &self.hold)?;
            }
            match zfs.inherit(&old, &self.prop) {
                Ok(()) => {}
                // Destroyed meanwhile: its mark went with it.
                Err(e) if e.kind() == FailureKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Moves the receiver's hold on `ds` to `newest`, from `prev` (the base the receive
/// started from, if any). Best effort: a failure is logged, never fatal, because the
/// receive it follows has succeeded.
pub fn move_receiver_hold(zfs: &Zfs, ds: &Dataset, newest: &str, prev: Option<&str>) {
    if !zfs.capabilities().holds {
        return;
    }
    if let Err(e) = zfs.hold(&ds.snapshot(newest), RECEIVER_HOLD) {
        warn!("cannot hold base dataset={ds} snap={newest} error={e}");
        return;
    }
    if let Some(prev) = prev.filter(|p| *p != newest) {
        if let Err(e) = zfs.release(&ds.snapshot(prev), RECEIVER_HOLD) {
            warn!("cannot release old base dataset={ds} snap={prev} error={e}");
        }
    }
}

/// Holds the newest snapshot of `ds`, as a receive into place would have: for a
/// dataset put in place some other way (a buffered copy renamed into place).
pub fn hold_receiver_newest(zfs: &Zfs, ds: &Dataset) {
    if !zfs.capabilities().holds {
        return;
    }
    let newest = match zfs.list_snapshots(ds) {
        Ok(Some(snaps)) => snaps.last().map(|s| s.name.clone()),
        _ => None,
    };
    if let Some(n) = newest {
        if let Err(e) = zfs.hold(&ds.snapshot(&n), RECEIVER_HOLD) {
            warn!("cannot hold base dataset={ds} snap={n} error={e}");
        }
    }
}

/// Releases the receiver's hold on snapshot `snap` of `ds`, a replica about to be
/// destroyed as an orphan: the hold would make `zfs destroy -r` fail as busy. Best effort:
/// a snapshot without the hold is the usual case for all but the newest.
pub fn release_receiver_hold(zfs: &Zfs, ds: &Dataset, snap: &str) {
    if !zfs.capabilities().holds {
        return;
    }
    if let Err(e) = zfs.release(&ds.snapshot(snap), RECEIVER_HOLD) {
        log::debug!("no receiver hold released dataset={ds} snap={snap} error={e}");
    }
}

/// Releases the receiver's hold on snapshots `names` of `ds`, which an allowed rollback
/// is about to destroy: the hold would make `zfs rollback -r` fail as busy.
pub fn release_for_rollback(zfs: &Zfs, ds: &Dataset, names: &[String]) -> Result<()> {
    if !zfs.capabilities().holds {
        return Ok(());
    }
    for name in names {
        zfs.release(&ds.snapshot(name), RECEIVER_HOLD)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_a_receivers_protection() {
        assert_eq!(mark_property("bk1"), "zfsync:base:bk1");
        assert_eq!(source_hold_tag("bk1"), "zfsync-base-bk1");
        assert_eq!(mark_id("zfsync:base:bk1"), Some("bk1"));
        for prop in ["zfsync:base:", "zfsync:basex", "other:base:bk1"] {
            assert_eq!(mark_id(prop), None, "{prop}");
        }
    }

    #[test]
    fn a_base_bookmark_names_its_receiver_and_snapshot() {
        // Ids and snapshot names may both hold '_' and '-': the first ':' splits them.
        for (id, snap) in [
            ("bk1", "s1"),
            ("a_b", "zfsync_2026-12-02T00:39:40Z"),
            ("backup1.example.org-7611", "x_y:z"),
        ] {
            let name = base_bookmark(id, snap);
            assert_eq!(bookmark_base(&name), Some((id, snap)), "{name}");
        }
        assert_eq!(base_bookmark("bk1", "s1"), "zfsync-base-bk1:s1");
    }

    #[test]
    fn other_bookmarks_are_not_zfsyncs() {
        for name in [
            "zfsync-base-bk1",
            "zfsync-base-:s1",
            "zfsync-base-bk1:",
            "zfsync-base-Bk1:s1",
            "zfsync-base-bk1:a/b",
            "zrepl_CURSOR_G_0000000000000001_J_push",
            "before-upgrade",
        ] {
            assert_eq!(bookmark_base(name), None, "{name}");
        }
    }

    #[test]
    fn receiver_ids() {
        for id in ["bk1", "backup1.example.org-7611", "a_b", &"x".repeat(64)] {
            assert!(is_valid_id(id), "{id}");
        }
        for id in ["", "Bk1", "host:7611", "a b", "\u{e9}", &"x".repeat(65)] {
            assert!(!is_valid_id(id), "{id:?}");
        }
    }
}
