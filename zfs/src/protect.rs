//! Protecting a base snapshot: the one home of zfsync's marks and holds (and, on OpenZFS,
//! bookmarks once they come).
//!
//! A *base* is the snapshot the next incremental to a receiver starts from. Losing it
//! forces a full send, so both sides keep it:
//! - on the source, per receiver id, a **mark** (the user property `zfsync:base:ID` on
//!   the snapshot, readable on any ZFS, so expiry can skip it) and, where holds work, a
//!   **hold** `zfsync-base-ID`, so that `zfs destroy` itself refuses;
//! - on the backup host, a **hold** `zfsync-recv` on each replica's newest received
//!   snapshot, so nobody's expiry there removes it.
//!
//! Every move sets the new protection before it removes the old one: a crash in between
//! leaves one protected snapshot too many, never none.
//!
//! Owns: the names of marks and hold tags, and the order of the zfs commands that move
//! them. Does not own: deciding which snapshot is a base (the sender's and receiver's
//! plans do that), or deciding what expiry destroys.

use crate::{Dataset, FailureKind, Result, Zfs};
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
    format!("zfsync-base-{id}")
}

/// The marks of one receiver id on a source tree, read once when a run starts.
/// `SourceMarks::default()` marks nothing (no `--mark`, or a dry run).
#[derive(Default)]
pub struct SourceMarks {
    prop: String,
    hold: String,
    /// Dataset name -> names of its snapshots that carry the mark.
    marked: HashMap<String, Vec<String>>,
}

impl SourceMarks {
    /// Reads the marks of receiver `id` below `root` (one zfs command).
    pub fn load(zfs: &Zfs, root: &Dataset, id: &str) -> Result<SourceMarks> {
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
        Ok(SourceMarks {
            hold: source_hold_tag(id),
            prop,
            marked,
        })
    }

    /// Moves the mark (and hold) of `dataset` to its snapshot `delivered`, which the
    /// receiver now has as its newest, and clears it from the ones marked before.
    pub fn mark_delivered(&self, zfs: &Zfs, dataset: &str, delivered: &str) -> Result<()> {
        if self.prop.is_empty() {
            return Ok(());
        }
        let old: &[String] = self
            .marked
            .get(dataset)
            .map(|v| v.as_slice())
            .unwrap_or(&[]);
        if old.len() == 1 && old[0] == delivered {
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let holds = zfs.capabilities().holds;
        let base = format!("{dataset}@{delivered}");
        zfs.set(&base, &self.prop, &now.to_string())?;
        if holds {
            zfs.hold(&base, &self.hold)?;
        }
        for snap in old.iter().filter(|s| *s != delivered) {
            let old = format!("{dataset}@{snap}");
            if holds {
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
    fn receiver_ids() {
        for id in ["bk1", "backup1.example.org-7611", "a_b", &"x".repeat(64)] {
            assert!(is_valid_id(id), "{id}");
        }
        for id in ["", "Bk1", "host:7611", "a b", "\u{e9}", &"x".repeat(65)] {
            assert!(!is_valid_id(id), "{id:?}");
        }
    }
}
