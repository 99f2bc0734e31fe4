//! A short-lived picture of the receiver's datasets, so that an offer costs no zfs command.
//!
//! A sender offers its datasets one after another, all below one root (where its root
//! dataset lands). Listing each one costs a zfs command (~10 ms on zfs-fuse); listing the
//! whole root once, recursively, costs about as much as a few of them. The catalog keeps
//! such a listing of the root and of the buffer for [`TTL`] after it ended, shared by
//! every session. (After it ended, not began: a tree whose listing takes longer than
//! [`TTL`], tens of thousands of snapshots on zfs-fuse, would otherwise be listed again for
//! the offers that waited for it.)
//!
//! It stays correct about zfsync's own changes. Every change the receiver makes to a
//! dataset (receive, rollback, rename, destroy) is recorded with a generation number
//! ([`Catalog::touch`]). A listing remembers the generation it started at, and an entry
//! changed after that is looked up afresh, except that a dataset zfsync has just received
//! into or renamed into place is known to exist (a child's offer asks whether its parent
//! does). Changes made behind zfsync's back (an admin's snapshot on the backup host) can
//! go unseen for at most [`TTL`] and the time the listing took. What that can do: plan an incremental that `zfs recv`
//! then refuses (changes since the base: reported, nothing changed), or one it takes
//! over a snapshot made in that window without changes, which then stays on the backup
//! host between the base and the new snapshots (`zfs recv` allows that; a fresh listing
//! refuses it as divergence). Nothing is lost either way, and the next run sees the
//! truth. The other way round, a refusal is never given from a listing alone: `place.rs`
//! looks at the refused dataset afresh first (a snapshot destroyed by hand must neither
//! refuse nor be named in the run made right after), which costs a zfs command only to an
//! offer that would be refused.
//!
//! The listing carries the receiver's marks (`zfsync:rollback`, `zfsync:placeholder`), so
//! an unmarked dataset, the usual case, costs no zfs command either. A mark the listing
//! shows is confirmed afresh before it is used (`tree.rs`): one cleared since must never
//! roll a dataset back. A mark set since can go unseen for [`TTL`], like a snapshot: a
//! refusal's fresh look sees it, and an incremental that needed it is refused by `zfs recv`
//! with nothing changed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zfsync_zfs::{Dataset, DatasetInfo, FailureKind, Zfs};

/// How long a listing serves offers.
pub const TTL: Duration = Duration::from_secs(10);

struct Listing {
    /// When it was complete: it serves offers for [`TTL`] from then.
    ended: Instant,
    generation: u64,
    /// Every dataset below the root and the buffer, by full name.
    datasets: HashMap<String, DatasetInfo>,
    root: Dataset,
    buffer: Dataset,
}

impl Listing {
    fn covers(&self, ds: &Dataset) -> bool {
        ds.is_within(&self.root) || ds.is_within(&self.buffer)
    }
}

pub struct Catalog {
    /// [`TTL`], but for tests.
    ttl: Duration,
    generation: AtomicU64,
    /// Dataset name -> generation of zfsync's last change to it.
    changed: Mutex<HashMap<String, u64>>,
    /// Root dataset name -> its listing.
    listings: Mutex<HashMap<String, Arc<Listing>>>,
    /// Datasets that exist because zfsync's own last change to them made them (a receive
    /// that succeeded, a rename into place), and since when: for [`TTL`], like a listing,
    /// their existence needs no lookup.
    present: Mutex<HashMap<String, Instant>>,
}

impl Default for Catalog {
    fn default() -> Catalog {
        Catalog {
            ttl: TTL,
            generation: AtomicU64::default(),
            changed: Mutex::default(),
            listings: Mutex::default(),
            present: Mutex::default(),
        }
    }
}

impl Catalog {
    /// Records that zfsync changed (or is about to change) `name`: any listing taken
    /// before now no longer speaks for it.
    pub fn touch(&self, name: &str) {
        let g = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.changed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), g);
        self.present
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Records that zfsync's change to `name`, just touched, left it existing (a receive
    /// that succeeded, a rename into place), until its next change or for [`TTL`].
    pub fn mark_present(&self, name: &str) {
        let mut present = self.present.lock().unwrap_or_else(|p| p.into_inner());
        present.retain(|_, since| since.elapsed() < self.ttl);
        present.insert(name.to_string(), Instant::now());
    }

    /// `ds` with its snapshots, or `None` if it does not exist, from the listing of `root`
    /// where it can, else from zfs.
    pub fn dataset(
        &self,
        zfs: &Zfs,
        root: &Dataset,
        buffer: &Dataset,
        ds: &Dataset,
    ) -> zfsync_zfs::Result<Option<DatasetInfo>> {
        let listing = self.listing(zfs, root, buffer)?;
        let changed_since = {
            let changed = self.changed.lock().unwrap_or_else(|p| p.into_inner());
            changed
                .get(ds.as_str())
                .is_some_and(|g| *g > listing.generation)
        };
        if listing.covers(ds) && !changed_since {
            return Ok(listing.datasets.get(ds.as_str()).cloned());
        }
        zfs.dataset(ds)
    }

    /// `ds` as the listing shows it, whatever zfsync did to it since.
    pub fn listed(
        &self,
        zfs: &Zfs,
        root: &Dataset,
        buffer: &Dataset,
        ds: &Dataset,
    ) -> zfsync_zfs::Result<Option<DatasetInfo>> {
        let listing = self.listing(zfs, root, buffer)?;
        Ok(listing.datasets.get(ds.as_str()).cloned())
    }

    /// Whether `ds` exists, as [`Catalog::dataset`] sees it.
    pub fn exists(
        &self,
        zfs: &Zfs,
        root: &Dataset,
        buffer: &Dataset,
        ds: &Dataset,
    ) -> zfsync_zfs::Result<bool> {
        let known = self
            .present
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(ds.as_str())
            .is_some_and(|since| since.elapsed() < self.ttl);
        Ok(known || self.dataset(zfs, root, buffer, ds)?.is_some())
    }

    /// Takes the listing of `root` now if there is no fresh one: called when a sender
    /// greets, so the listing overlaps with the sender's own.
    pub fn warm(&self, zfs: &Zfs, root: &Dataset, buffer: &Dataset) -> zfsync_zfs::Result<()> {
        self.listing(zfs, root, buffer).map(drop)
    }

    /// The listing of `root` (and the buffer), fresh enough, taking one if needed. One
    /// session lists while the others of the same run wait for it.
    fn listing(
        &self,
        zfs: &Zfs,
        root: &Dataset,
        buffer: &Dataset,
    ) -> zfsync_zfs::Result<Arc<Listing>> {
        let mut listings = self.listings.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = listings.get(root.as_str()) {
            if l.ended.elapsed() < self.ttl {
                return Ok(l.clone());
            }
        }
        listings.retain(|_, l| l.ended.elapsed() < self.ttl);
        // The generation is read before listing: a change that lands during the listing
        // is newer than it, so its dataset is looked up afresh.
        let generation = self.generation.load(Ordering::SeqCst);
        let mut datasets = HashMap::new();
        for top in [root, buffer] {
            match zfs.list_tree(top) {
                Ok(list) => datasets.extend(list.into_iter().map(|d| (d.name.clone(), d))),
                Err(e) if e.kind() == FailureKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let l = Arc::new(Listing {
            ended: Instant::now(),
            generation,
            datasets,
            root: root.clone(),
            buffer: buffer.clone(),
        });
        listings.insert(root.as_str().to_string(), l.clone());
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    // A listing that takes longer than the time it serves for still serves the offers
    // that come right after it: one listing, not one an offer.
    #[test]
    fn a_listing_serves_from_when_it_ended() {
        let dir = std::env::temp_dir().join(format!("zfsync-catalog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (bin, calls) = (dir.join("zfs"), dir.join("calls"));
        let script = format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\n\
             case \"$*\" in\n\
             version) exit 2 ;;\n\
             *' pool/t') sleep 0.3; printf 'pool/t\\ttype\\tfilesystem\\n' ;;\n\
             *) echo \"cannot open 'pool/b': dataset does not exist\" >&2; exit 1 ;;\n\
             esac\n",
            calls.display()
        );
        std::fs::write(&bin, script).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let zfs = Zfs::detect(&bin).unwrap();
        let catalog = Catalog {
            ttl: Duration::from_millis(200),
            ..Catalog::default()
        };
        let (root, buffer) = (
            Dataset::new("pool/t").unwrap(),
            Dataset::new("pool/b").unwrap(),
        );
        catalog.warm(&zfs, &root, &buffer).unwrap();
        let t = catalog.dataset(&zfs, &root, &buffer, &root).unwrap();
        assert_eq!(t.map(|d| d.name), Some("pool/t".to_string()));
        let listings = |calls: &std::path::Path| {
            let ran = std::fs::read_to_string(calls).unwrap();
            ran.lines().filter(|l| l.ends_with(" pool/t")).count()
        };
        assert_eq!(listings(&calls), 1);
        // Past its time it is taken again.
        std::thread::sleep(Duration::from_millis(250));
        catalog.warm(&zfs, &root, &buffer).unwrap();
        assert_eq!(listings(&calls), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
