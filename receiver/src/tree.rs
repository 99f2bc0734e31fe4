//! The receiver's dataset tree: where an offered dataset lives (in place, or in the
//! buffer), who may touch it (per-dataset locks), the placeholders it makes for parents
//! without snapshots, and the cleanup that renames buffered datasets into place.
//!
//! Datasets are keyed by their path relative to TARGET, so a dataset and its buffered copy
//! share one lock. Changes to the tree (creating the buffer, making a placeholder, renames
//! into place, dropping stale buffered copies, an allowed rollback) happen under one tree
//! lock, planned first and then applied: a cleanup plans its steps here, an offer's
//! rollback or placeholder is planned by its answer (`place.rs`).

use crate::catalog::Catalog;
use log::{info, warn};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use zfsync_text::quoted;
use zfsync_zfs::{protect, Dataset, DatasetInfo, Zfs, MAX_NAME_LEN};

/// The user property that marks a placeholder: a filesystem the receiver made because the
/// source has a dataset there without snapshots, whose descendants have some and need a
/// parent. Only a value set on the dataset itself counts: its children inherit it.
pub const PLACEHOLDER: &str = zfsync_zfs::PLACEHOLDER_PROPERTY;

/// Whether `info` is a placeholder (see [`PLACEHOLDER`]): it carries the property itself.
/// Its listing says whether the mark may be there; only then is it asked for (see
/// [`local_mark`]).
pub fn is_placeholder(zfs: &Zfs, info: &DatasetInfo) -> zfsync_zfs::Result<bool> {
    local_mark(
        zfs,
        info,
        PLACEHOLDER,
        info.marks.placeholder.as_deref(),
        "on",
    )
}

/// Whether `info` carries `prop` = `value` set on itself. `listed` is the value its listing
/// shows: nothing there (the usual case) answers no without a zfs command. A value there
/// is confirmed with `zfs get -s local`, as a listing cannot tell a value set on the
/// dataset from one inherited or received, and may be older than the admin's `zfs
/// inherit` (a mark must never be used once cleared).
fn local_mark(
    zfs: &Zfs,
    info: &DatasetInfo,
    prop: &str,
    listed: Option<&str>,
    value: &str,
) -> zfsync_zfs::Result<bool> {
    if listed != Some(value) {
        return Ok(false);
    }
    Ok(zfs.get_local_value(&info.name, prop)?.as_deref() == Some(value))
}

/// Where an offered dataset is, or will be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    InPlace(Dataset),
    Buffered(Dataset),
}

impl Location {
    pub fn dataset(&self) -> &Dataset {
        match self {
            Location::InPlace(d) | Location::Buffered(d) => d,
        }
    }
}

pub struct Tree {
    pub target: Dataset,
    pub buffer: Dataset,
    /// What the datasets look like, for offers; every change below is recorded in it.
    pub catalog: Catalog,
    /// Locked datasets, each with whether its offer is finishing: its Result is sent,
    /// its bookkeeping (hold, read-only, pruning) not yet done.
    locked: Mutex<HashMap<String, bool>>,
    released: Condvar,
    /// Held for every change of the tree (see the module's doc).
    changing: Mutex<()>,
    /// Whether the buffer may hold something: set when a receive into it ends, cleared by
    /// a cleanup that left it empty.
    buffer_dirty: AtomicBool,
    /// Whether the buffer dataset is known to exist (see `ensure_buffer`).
    buffer_exists: AtomicBool,
}

/// Holds the lock of one dataset (by path relative to TARGET) until dropped.
pub struct DatasetLock<'a> {
    tree: &'a Tree,
    key: String,
}

impl DatasetLock<'_> {
    /// Marks the offer holding this lock as finishing: called right before its Result
    /// goes to the sender, whose cleanup request may come at once (see
    /// [`Tree::wait_finished`]).
    pub fn finishing(&self) {
        let mut set = self.tree.locked.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = set.get_mut(&self.key) {
            *f = true;
        }
    }
}

impl Drop for DatasetLock<'_> {
    fn drop(&mut self) {
        let mut set = self.tree.locked.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.key);
        self.tree.released.notify_all();
    }
}

/// The user property by which the backup host's admin allows one rollback of one
/// dataset: `zfs set zfsync:rollback=once DS`. Only a value set on the dataset itself
/// counts (not one inherited, nor one received in a stream), and the rollback clears it.
pub const ROLLBACK: &str = zfsync_zfs::ROLLBACK_PROPERTY;

/// Whether the admin allowed one rollback of `info` (see [`ROLLBACK`]), as listed and, where
/// the listing shows it, confirmed (see [`local_mark`]).
pub fn rollback_allowed_once(zfs: &Zfs, info: &DatasetInfo) -> zfsync_zfs::Result<bool> {
    local_mark(zfs, info, ROLLBACK, info.marks.rollback.as_deref(), "once")
}

/// An allowed rollback, decided before anything changes: `dataset` goes back to its
/// snapshot `to`, and its snapshots `destroying` (newer than `to`) go. Allowed by
/// `--allow-rollback`, or once, by [`ROLLBACK`] on the dataset (`once`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollback {
    pub dataset: Dataset,
    pub to: String,
    pub destroying: Vec<String>,
    pub once: bool,
}

impl Rollback {
    /// What it does, for the sender's summary: "rolled back to @s3 (destroying @a, @b;
    /// --allow-rollback)"; in a dry run, what it would do.
    pub fn describe(&self, dry_run: bool) -> String {
        let done = if dry_run {
            "would roll back"
        } else {
            "rolled back"
        };
        let destroyed = match self.destroying.as_slice() {
            [] => "no snapshot destroyed".to_string(),
            names => format!("destroying @{}", names.join(", @")),
        };
        format!(
            "{done} to @{} ({destroyed}; {})",
            self.to,
            self.allowed_by()
        )
    }

    /// What allowed it, as the admin set it.
    fn allowed_by(&self) -> &'static str {
        if self.once {
            "zfsync:rollback=once"
        } else {
            "--allow-rollback"
        }
    }
}

/// How a cleanup left one buffered copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Left {
    /// Renamed into place.
    Placed,
    /// Dropped: the real dataset holds its newest snapshot.
    Removed,
    /// Still in the buffer, and nothing under way will change that: its parent is
    /// missing, its receive never finished, or it is a stale copy kept for an operator.
    Waiting,
    /// Still in the buffer while a session works on it or on its parent: the next
    /// cleanup decides.
    Busy,
    Failed,
}

/// One buffered copy (or the buffer itself) in a cleanup's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanupEntry {
    /// The copy's dataset path relative to TARGET; none for the buffer itself, or for a
    /// copy whose name is not one zfsync gives.
    pub rel: Option<String>,
    pub left: Left,
    /// What an operator (or the sender) is told about it.
    pub note: Option<String>,
}

/// What one cleanup pass did, copy by copy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub entries: Vec<CleanupEntry>,
}

impl CleanupReport {
    fn add(&mut self, rel: Option<&str>, left: Left, note: Option<String>) {
        self.entries.push(CleanupEntry {
            rel: rel.map(String::from),
            left,
            note,
        });
    }

    pub fn count(&self, left: Left) -> u32 {
        self.entries.iter().filter(|e| e.left == left).count() as u32
    }

    pub fn notes(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter_map(|e| e.note.as_deref())
    }

    /// What a sender whose tree lands at `root_rel` is told: its own datasets' copies,
    /// and failures that concern no dataset in particular (the buffer could not be
    /// listed); not other trees' copies, nor a foreign dataset in the buffer.
    pub fn within(self, root_rel: &str) -> CleanupReport {
        let mine = |rel: &str| {
            root_rel.is_empty()
                || rel == root_rel
                || rel
                    .strip_prefix(root_rel)
                    .is_some_and(|r| r.starts_with('/'))
        };
        CleanupReport {
            entries: self
                .entries
                .into_iter()
                .filter(|e| match &e.rel {
                    Some(rel) => mine(rel),
                    None => e.left == Left::Failed,
                })
                .collect(),
        }
    }
}

/// One step of a cleanup, decided before anything is changed.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Place {
        from: Dataset,
        to: Dataset,
    },
    /// The real dataset exists and holds the buffered copy's newest snapshot.
    DropStale {
        copy: Dataset,
        real: Dataset,
    },
    /// The real dataset exists but lacks the copy's newest snapshot: keep it for a human.
    KeepStale {
        copy: Dataset,
        real: Dataset,
    },
    /// The real dataset's parent does not exist.
    Wait {
        copy: Dataset,
        real: Dataset,
        missing: Dataset,
    },
    /// A session is receiving the real dataset's parent.
    ParentBusy {
        copy: Dataset,
        real: Dataset,
        parent: Dataset,
    },
    Skip {
        copy: Dataset,
        why: String,
    },
}

impl Tree {
    pub fn new(target: Dataset, buffer: Dataset) -> Tree {
        Tree {
            target,
            buffer,
            catalog: Catalog::default(),
            locked: Mutex::new(HashMap::new()),
            released: Condvar::new(),
            changing: Mutex::new(()),
            // Unknown at start: the first cleanup looks.
            buffer_dirty: AtomicBool::new(true),
            buffer_exists: AtomicBool::new(false),
        }
    }

    /// Takes the lock of dataset `rel`, waiting up to `wait` for another session to finish.
    pub fn lock(&self, rel: &str, wait: Duration) -> Option<DatasetLock<'_>> {
        let mut set = self.wait_free(rel, wait)?;
        set.insert(rel.to_string(), false);
        Some(DatasetLock {
            tree: self,
            key: rel.to_string(),
        })
    }

    /// Waits up to `wait` until no session holds the lock of dataset `rel`; false if one
    /// still does.
    pub fn wait_unlocked(&self, rel: &str, wait: Duration) -> bool {
        self.wait_free(rel, wait).is_some()
    }

    /// Waits up to `wait` until no session holds the lock of a dataset at or below `rel`
    /// ("" for all of TARGET); false if one still does.
    pub fn wait_quiet(&self, rel: &str, wait: Duration) -> bool {
        self.wait_until(wait, |set| !set.keys().any(|k| at_or_below(k, rel)))
            .is_some()
    }

    /// Waits up to `wait` until no offer of a dataset at or below `rel` is finishing (see
    /// [`DatasetLock::finishing`]); false if one still is.
    pub fn wait_finished(&self, rel: &str, wait: Duration) -> bool {
        self.wait_until(wait, |set| {
            !set.iter()
                .any(|(k, finishing)| *finishing && at_or_below(k, rel))
        })
        .is_some()
    }

    /// The set of locked datasets, once `rel` is not in it (waiting up to `wait`).
    fn wait_free(
        &self,
        rel: &str,
        wait: Duration,
    ) -> Option<MutexGuard<'_, HashMap<String, bool>>> {
        self.wait_until(wait, |set| !set.contains_key(rel))
    }

    /// The set of locked datasets, once `done` says so of it (waiting up to `wait`).
    fn wait_until(
        &self,
        wait: Duration,
        done: impl Fn(&HashMap<String, bool>) -> bool,
    ) -> Option<MutexGuard<'_, HashMap<String, bool>>> {
        let deadline = Instant::now() + wait;
        let mut set = self.locked.lock().unwrap_or_else(|p| p.into_inner());
        while !done(&set) {
            let left = deadline.checked_duration_since(Instant::now())?;
            set = self
                .released
                .wait_timeout(set, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Some(set)
    }

    /// Whether a session holds the lock of dataset `rel`: it is being received, and a
    /// new one may be half there. Its children must not be put under it yet.
    pub fn is_locked(&self, rel: &str) -> bool {
        self.locked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(rel)
    }

    pub(crate) fn change_lock(&self) -> MutexGuard<'_, ()> {
        self.changing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The buffered copy's name for dataset `rel`: the hex of its path, so any path maps to
    /// one flat, valid, collision-free name. `None` if that name would exceed ZFS's limit
    /// (with room for a snapshot name) – the caller refuses clearly instead of cutting it.
    pub fn buffer_name(&self, rel: &str) -> Option<Dataset> {
        let name = format!("{}/{}", self.buffer, hex::encode(rel.as_bytes()));
        // Leave room for "@snapshot": ZFS counts the snapshot's full name too.
        if name.len() + 2 > MAX_NAME_LEN {
            return None;
        }
        Dataset::new(&name).ok()
    }

    /// Makes sure the buffer dataset exists, unmounted and unmountable.
    pub fn ensure_buffer(&self, zfs: &Zfs) -> zfsync_zfs::Result<()> {
        let _changing = self.change_lock();
        // Known to be there: made or seen by an earlier call (a cleanup that finds it
        // gone forgets it).
        if self.buffer_exists.load(Ordering::SeqCst) {
            return Ok(());
        }
        if zfs.exists(&self.buffer)? {
            self.buffer_exists.store(true, Ordering::SeqCst);
            return Ok(());
        }
        info!("creating buffer dataset={}", quoted(&self.buffer));
        let created = zfs.create(
            &self.buffer,
            false,
            &[("mountpoint", "none"), ("canmount", "off")],
        );
        self.catalog.touch(self.buffer.as_str());
        if created.is_ok() {
            self.buffer_exists.store(true, Ordering::SeqCst);
        }
        created
    }

    /// Makes a placeholder at `ds` under the tree's lock: a marked filesystem with no data,
    /// never mounted (`canmount=off`), with `mountpoint=none` for its children to inherit:
    /// zfs-fuse mounts what it receives wherever the mountpoint says. The caller holds the
    /// dataset's lock (`_held`) and has checked that nothing is there.
    pub fn make_placeholder(
        &self,
        zfs: &Zfs,
        _held: &DatasetLock<'_>,
        ds: &Dataset,
    ) -> zfsync_zfs::Result<()> {
        let _changing = self.change_lock();
        info!("making placeholder dataset={ds}");
        let mut props = vec![
            (PLACEHOLDER, "on"),
            ("canmount", "off"),
            ("mountpoint", "none"),
        ];
        // TARGET is read-only for everything below it to inherit (see `make_read_only`).
        if *ds == self.target {
            props.push(("readonly", "on"));
        }
        let made = zfs.create(ds, false, &props);
        self.catalog.touch(ds.as_str());
        if made.is_ok() {
            self.catalog.mark_present(ds.as_str());
        }
        made
    }

    /// After a full receive made `ds` (TARGET): `readonly=on` where `zfs recv -o` could not
    /// set it (zfs-fuse), for everything below to inherit. Best effort: a replica that is
    /// not read-only is still a replica.
    pub fn make_read_only(&self, zfs: &Zfs, ds: &Dataset) {
        if zfs.capabilities().recv_unmounted {
            return; // received with -o readonly=on
        }
        if let Err(e) = zfs.set(ds.as_str(), "readonly", "on") {
            warn!("cannot make the replica read-only dataset={ds} error={e}");
        }
    }

    /// Unmarks `ds`, a placeholder a full stream has just replaced: it is a replica now
    /// (`zfs recv -F` keeps the properties of the dataset it replaces). Best effort: a mark
    /// left on a dataset with snapshots is never read.
    pub fn clear_placeholder(&self, zfs: &Zfs, ds: &Dataset) {
        match zfs.inherit(ds.as_str(), PLACEHOLDER) {
            Ok(()) => info!("placeholder replaced by a replica dataset={ds}"),
            Err(e) => warn!("cannot clear {PLACEHOLDER} dataset={ds} error={e}"),
        }
    }

    /// Applies an allowed rollback (`zfs rollback -r`) under the tree's lock, and clears a
    /// one-time permission it used: the next divergence is refused again. The caller holds
    /// the dataset's lock (`_held`): no receive or cleanup touches it meanwhile.
    pub fn roll_back(
        &self,
        zfs: &Zfs,
        _held: &DatasetLock<'_>,
        rollback: &Rollback,
    ) -> zfsync_zfs::Result<()> {
        let _changing = self.change_lock();
        let Rollback {
            dataset,
            to,
            destroying,
            once,
        } = rollback;
        let by = rollback.allowed_by();
        warn!(
            "rolling back dataset={} to={} destroying={destroying:?} ({by})",
            quoted(dataset),
            quoted(to)
        );
        // Our own hold on what is to go (the newest one received) would make the rollback
        // fail; the operator asked for them to go.
        protect::release_for_rollback(zfs, dataset, destroying)?;
        let rolled = zfs.rollback(dataset, to, true);
        // After the change: a listing taken meanwhile must not speak for it.
        self.catalog.touch(dataset.as_str());
        rolled?;
        if *once {
            // Used: a permission left behind would allow the next divergence too. Failing
            // to clear it fails the offer, for the admin to look at.
            zfs.inherit(dataset.as_str(), ROLLBACK)?;
            info!("cleared {ROLLBACK}=once dataset={dataset}: its rollback is done");
        }
        Ok(())
    }

    /// Renames buffered datasets into place, parents first. Safe to run at any time and any
    /// number of times: every step is one atomic zfs rename, decided afresh each pass, and
    /// datasets locked by a running session are left for the next pass.
    pub fn cleanup(&self, zfs: &Zfs) -> CleanupReport {
        let _changing = self.change_lock();
        let report = self.cleanup_pass(zfs);
        let left = |l| report.count(l);
        if left(Left::Waiting) + left(Left::Busy) + left(Left::Failed) > 0 {
            self.buffer_dirty.store(true, Ordering::SeqCst);
        }
        report
    }

    /// Records that a receive into the buffer ended (whatever its outcome): the next
    /// cleanup looks at the buffer.
    pub fn mark_buffer_used(&self) {
        self.buffer_dirty.store(true, Ordering::SeqCst);
    }

    fn cleanup_pass(&self, zfs: &Zfs) -> CleanupReport {
        let mut report = CleanupReport::default();
        // Nothing received into the buffer since the last pass left it empty: no need to
        // list it (a cleanup runs after every connection).
        if !self.buffer_dirty.swap(false, Ordering::SeqCst) {
            return report;
        }
        let copies = match zfs.list_children(&self.buffer) {
            Ok(Some(c)) => c,
            Ok(None) => {
                // No buffer: nothing was ever buffered, or someone removed it.
                self.buffer_exists.store(false, Ordering::SeqCst);
                return report;
            }
            Err(e) => {
                let note = format!("cannot list buffer {}: {e}", self.buffer);
                report.add(None, Left::Failed, Some(note));
                return report;
            }
        };
        // Decode and order parents first: a path sorts after its ancestors by depth.
        let mut entries: Vec<(String, Dataset, DatasetInfo)> = Vec::new();
        for info in copies {
            let Ok(copy) = Dataset::new(&info.name) else {
                continue; // zfs listed it: it is a valid name
            };
            match hex::decode(copy.basename())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
            {
                Some(rel) if zfsync_zfs::check_relative_path(&rel).is_ok() && !rel.is_empty() => {
                    entries.push((rel, copy, info))
                }
                _ => {
                    let note = format!("{copy}: not a zfsync buffer name, left alone");
                    report.add(None, Left::Waiting, Some(note));
                }
            }
        }
        entries.sort_by_key(|(rel, _, _)| rel.matches('/').count());
        // Copies this pass leaves busy: their children are busy too, not waiting for a
        // parent that "does not exist" only because it is still in the buffer.
        let mut busy: HashSet<String> = HashSet::new();
        for (rel, copy, info) in entries {
            let Some(_lock) = self.lock(&rel, Duration::ZERO) else {
                let note = format!("{copy}: busy, left for the next cleanup");
                report.add(Some(&rel), Left::Busy, Some(note));
                busy.insert(rel);
                continue;
            };
            let step = match self.plan_step(zfs, &rel, copy, info, &busy) {
                Ok(s) => s,
                Err(e) => {
                    report.add(Some(&rel), Left::Failed, Some(e));
                    continue;
                }
            };
            let (left, note) = self.apply(zfs, step);
            if left == Left::Busy {
                busy.insert(rel.clone());
            }
            report.add(Some(&rel), left, note);
        }
        report
    }

    fn plan_step(
        &self,
        zfs: &Zfs,
        rel: &str,
        copy: Dataset,
        info: DatasetInfo,
        busy: &HashSet<String>,
    ) -> Result<Step, String> {
        let real = match self.target.join(rel) {
            Ok(r) => r,
            Err(e) => {
                return Ok(Step::Skip {
                    copy,
                    why: e.to_string(),
                })
            }
        };
        let real_snaps = zfs.list_snapshots(&real).map_err(|e| e.to_string())?;
        if let Some(real_snaps) = real_snaps {
            let held = match info.snapshots.last() {
                None => true,
                Some(newest) => real_snaps.iter().any(|s| s.guid == newest.guid),
            };
            return Ok(if held {
                Step::DropStale { copy, real }
            } else {
                Step::KeepStale { copy, real }
            });
        }
        // Only a finished receive goes into place. A copy without a snapshot, or with the
        // partial state of an interrupted receive, would stand in place as a dataset that is
        // no replica; the next offer of it resumes or redoes the receive into the buffer. A
        // placeholder has no snapshot by design, and goes into place like a replica.
        let unfinished = info.resume_token.is_some()
            || (info.snapshots.is_empty()
                && !is_placeholder(zfs, &info).map_err(|e| e.to_string())?);
        if unfinished {
            return Ok(Step::Skip {
                copy,
                why: "its receive has not finished (no snapshot yet, or partial state to resume); left for the next offer of it".into(),
            });
        }
        let parent = real.parent().expect("a path below TARGET has a parent");
        if self.is_locked(parent_rel(rel)) || busy.contains(parent_rel(rel)) {
            return Ok(Step::ParentBusy { copy, real, parent });
        }
        if !zfs.exists(&parent).map_err(|e| e.to_string())? {
            return Ok(Step::Wait {
                copy,
                real,
                missing: parent,
            });
        }
        Ok(Step::Place {
            from: copy,
            to: real,
        })
    }

    /// Applies one step: how it left the copy, and what to tell about it.
    fn apply(&self, zfs: &Zfs, step: Step) -> (Left, Option<String>) {
        match step {
            Step::Place { from, to } => {
                let renamed = zfs.rename(&from, &to);
                self.catalog.touch(from.as_str());
                self.catalog.touch(to.as_str());
                match renamed {
                    Ok(()) => {
                        self.catalog.mark_present(to.as_str());
                        info!("cleanup placed from={} to={}", quoted(&from), quoted(&to));
                        protect::hold_receiver_newest(zfs, &to);
                        (Left::Placed, None)
                    }
                    Err(e) => {
                        warn!(
                            "cleanup rename failed from={} to={} error={}",
                            quoted(&from),
                            quoted(&to),
                            quoted(&e)
                        );
                        (Left::Failed, Some(format!("rename {from} -> {to}: {e}")))
                    }
                }
            }
            Step::DropStale { copy, real } => {
                let destroyed = zfs.destroy_recursive(&copy);
                self.catalog.touch(copy.as_str());
                match destroyed {
                    Ok(()) => {
                        info!(
                            "cleanup dropped stale buffered copy={} real={} (real holds its newest snapshot)",
                            quoted(&copy),
                            quoted(&real)
                        );
                        (Left::Removed, None)
                    }
                    Err(e) => (
                        Left::Failed,
                        Some(format!("destroy stale copy {copy}: {e}")),
                    ),
                }
            }
            Step::KeepStale { copy, real } => {
                warn!(
                    "cleanup kept stale buffered copy={}: {} exists but lacks the copy's newest snapshot",
                    quoted(&copy),
                    quoted(&real)
                );
                let note = format!("{copy}: kept, {real} exists but lacks its newest snapshot");
                (Left::Waiting, Some(note))
            }
            Step::Wait {
                copy,
                real,
                missing,
            } => {
                let note = format!("{real} (in the buffer as {copy}): waiting for {missing}, its parent, which does not exist on the receiver");
                (Left::Waiting, Some(note))
            }
            Step::ParentBusy { copy, real, parent } => {
                let note = format!("{real} (in the buffer as {copy}): its parent {parent} is being received or is still in the buffer, left for the next cleanup");
                (Left::Busy, Some(note))
            }
            Step::Skip { copy, why } => (Left::Waiting, Some(format!("{copy}: left alone: {why}"))),
        }
    }
}

/// Whether path `key` is `rel` or below it ("" is TARGET, above everything).
fn at_or_below(key: &str, rel: &str) -> bool {
    rel.is_empty() || key == rel || key.strip_prefix(rel).is_some_and(|r| r.starts_with('/'))
}

/// Joins two relative paths ("" is the empty path).
pub fn join_rel(a: &str, b: &str) -> String {
    match (a, b) {
        (a, "") => a.to_string(),
        ("", b) => b.to_string(),
        (a, b) => format!("{a}/{b}"),
    }
}

/// The path of `rel`'s parent relative to TARGET ("" for TARGET itself).
pub fn parent_rel(rel: &str) -> &str {
    rel.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use zfsync_zfs::{Kind, Marks};

    /// A zfs that answers `zfs get` with `local` and writes each command it runs to
    /// `calls` in its directory (unique per test and process).
    fn scripted_zfs(test: &str, local: &str) -> (Zfs, PathBuf) {
        let name = format!("zfsync-tree-{}-{test}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("zfs");
        let calls = dir.join("calls");
        let script = format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\n[ \"$1\" = get ] && printf '%s' '{local}'\nexit 0\n",
            calls.display()
        );
        std::fs::write(&bin, script).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let zfs = Zfs::detect(&bin).unwrap();
        let _ = std::fs::remove_file(&calls);
        (zfs, calls)
    }

    fn listed(marks: Marks) -> DatasetInfo {
        DatasetInfo {
            name: "pool/t/a".into(),
            kind: Kind::Filesystem,
            snapshots: Vec::new(),
            bookmarks: Vec::new(),
            encrypted: false,
            resume_token: None,
            sync: None,
            marks,
        }
    }

    /// What `ask` answers about pool/t/a listed with `marks`, where `zfs get -s local`
    /// answers `local`, and the zfs commands it ran.
    fn ask(
        test: &str,
        marks: Marks,
        local: &str,
        ask: fn(&Zfs, &DatasetInfo) -> zfsync_zfs::Result<bool>,
    ) -> (bool, String) {
        let (zfs, log) = scripted_zfs(test, local);
        let got = ask(&zfs, &listed(marks)).unwrap();
        let ran = std::fs::read_to_string(&log).unwrap_or_default();
        std::fs::remove_dir_all(log.parent().unwrap()).unwrap();
        (got, ran)
    }

    // issue 13: the marks come from the receiver's listing; a zfs command only confirms
    // one the listing shows (set on the dataset itself, and not cleared since).
    #[test]
    fn a_mark_counts_only_when_listed_and_set_on_the_dataset_itself() {
        // (listed value, what `zfs get -s local` answers now, allowed, zfs commands)
        let cases = [
            (None, "once\n", false, 0),
            (Some("once"), "once\n", true, 1),
            // Inherited, received, or cleared since the listing.
            (Some("once"), "", false, 1),
            (Some("yes"), "yes\n", false, 0),
        ];
        for (i, (value, local, want, calls)) in cases.into_iter().enumerate() {
            let marks = Marks {
                rollback: value.map(String::from),
                placeholder: None,
            };
            let (got, ran) = ask(&format!("rollback{i}"), marks, local, rollback_allowed_once);
            let seen = (got, ran.lines().count());
            assert_eq!(seen, (want, calls), "{value:?} {local:?}");
            if calls > 0 {
                assert_eq!(ran, "get -H -s local -o value zfsync:rollback pool/t/a\n");
            }
        }
    }

    #[test]
    fn a_placeholder_is_one_when_listed_and_set_on_the_dataset_itself() {
        let cases = [
            (None, "on\n", false, 0),
            (Some("on"), "on\n", true, 1),
            // Inherited from a placeholder parent.
            (Some("on"), "", false, 1),
        ];
        for (i, (value, local, want, calls)) in cases.into_iter().enumerate() {
            let marks = Marks {
                rollback: None,
                placeholder: value.map(String::from),
            };
            let (got, ran) = ask(&format!("placeholder{i}"), marks, local, is_placeholder);
            let seen = (got, ran.lines().count());
            assert_eq!(seen, (want, calls), "{value:?} {local:?}");
        }
    }

    fn tree() -> Tree {
        Tree::new(
            Dataset::new("pool/t").unwrap(),
            Dataset::new("pool/t_zfsync_buffer").unwrap(),
        )
    }

    #[test]
    fn buffer_names_are_hex_of_the_path() {
        assert_eq!(
            tree().buffer_name("a/b").unwrap().as_str(),
            "pool/t_zfsync_buffer/612f62"
        );
    }

    #[test]
    fn too_long_buffer_name_is_none_not_cut() {
        let rel = "x".repeat(120);
        assert!(tree().buffer_name(&rel).is_none());
    }

    // issue 14 item 2: a sender is told about its own tree's copies in the buffer, and
    // about a buffer that could not be listed; not about another tree's, nor a dataset
    // in the buffer that zfsync did not put there.
    #[test]
    fn a_sender_is_told_about_its_own_tree() {
        let mut r = CleanupReport::default();
        r.add(Some("a/x"), Left::Waiting, Some("a/x".into()));
        r.add(Some("a"), Left::Placed, None);
        r.add(Some("ab/y"), Left::Waiting, Some("ab/y".into()));
        r.add(None, Left::Waiting, Some("foreign".into()));
        r.add(None, Left::Failed, Some("cannot list".into()));
        let told = |root: &str| {
            let r = r.clone().within(root);
            let notes: Vec<String> = r.notes().map(String::from).collect();
            (r.count(Left::Waiting), notes.join(" "))
        };
        assert_eq!(told("a"), (1, "a/x cannot list".into()));
        assert_eq!(told("a/x"), (1, "a/x cannot list".into()));
        assert_eq!(told("b"), (0, "cannot list".into()));
        assert_eq!(told(""), (2, "a/x ab/y cannot list".into()));
    }

    // issue 14 item 4: the sender's summary names every rollback and what it destroyed.
    #[test]
    fn a_rollback_says_what_it_destroys() {
        let rb = |destroying: &[&str], once| Rollback {
            dataset: Dataset::new("pool/t/a").unwrap(),
            to: "s3".into(),
            destroying: destroying.iter().map(|s| s.to_string()).collect(),
            once,
        };
        let cases = [
            (
                rb(&[], false),
                false,
                "rolled back to @s3 (no snapshot destroyed; --allow-rollback)",
            ),
            (
                rb(&["x", "y"], false),
                false,
                "rolled back to @s3 (destroying @x, @y; --allow-rollback)",
            ),
            (
                rb(&["x"], false),
                true,
                "would roll back to @s3 (destroying @x; --allow-rollback)",
            ),
            (
                rb(&[], true),
                false,
                "rolled back to @s3 (no snapshot destroyed; zfsync:rollback=once)",
            ),
        ];
        for (r, dry_run, want) in cases {
            assert_eq!(r.describe(dry_run), want);
        }
    }

    /// A legacy zfs (no `zfs version`, as zfs-fuse) whose buffer pool/t_zfsync_buffer
    /// holds finished copies of a and a/b, neither of which exists under pool/t; every
    /// command it runs is written to `calls`.
    fn buffer_of_a_and_a_b(test: &str) -> (Zfs, PathBuf) {
        let name = format!("zfsync-tree-{}-{test}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (bin, calls) = (dir.join("zfs"), dir.join("calls"));
        let mut rows = String::new();
        let b = "pool/t_zfsync_buffer";
        for (i, ds) in [b.to_string(), format!("{b}/61"), format!("{b}/612f62")]
            .iter()
            .enumerate()
        {
            for (prop, v) in [("type", "filesystem"), ("guid", "7"), ("createtxg", "5")] {
                rows.push_str(&format!("{ds}\t{prop}\t{v}\n"));
            }
            for prop in ["zfsync:sync", "zfsync:rollback", "zfsync:placeholder"] {
                rows.push_str(&format!("{ds}\t{prop}\t-\n"));
            }
            if i > 0 {
                let guid = 100 + i;
                for (prop, v) in [
                    ("type", "snapshot"),
                    ("guid", &guid.to_string()),
                    ("createtxg", "9"),
                ] {
                    rows.push_str(&format!("{ds}@s1\t{prop}\t{v}\n"));
                }
            }
        }
        std::fs::write(dir.join("rows"), rows).unwrap();
        let script = format!(
            "#!/bin/sh\necho \"$*\" >> '{calls}'\n\
             last=$(echo \"$*\" | sed 's/.* //')\n\
             case \"$*\" in\n\
             version) exit 2 ;;\n\
             *' {b}') cat '{rows}'; exit 0 ;;\n\
             'get -H -o value type '*) [ \"$last\" = pool/t ] || [ -e \"{dir}/$(echo $last | tr / _)\" ] && echo filesystem && exit 0 ;;\n\
             rename*) touch \"{dir}/$(echo $last | tr / _)\"; exit 0 ;;\n\
             esac\n\
             case \"$1\" in get) echo \"cannot open '$last': dataset does not exist\" >&2; exit 1 ;; esac\n\
             exit 0\n",
            dir = dir.display(),
            calls = calls.display(),
            rows = dir.join("rows").display(),
        );
        std::fs::write(&bin, script).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let zfs = Zfs::detect(&bin).unwrap();
        (zfs, calls)
    }

    // A new root still locked after its result (its hold, its readonly) while the
    // sender's cleanup runs: a, its child, is busy; a/b, whose parent a is still in the
    // buffer, is busy too, not waiting for a parent that "does not exist" (which the
    // sender counts as not done).
    #[test]
    fn children_of_a_copy_left_busy_are_busy_not_waiting() {
        let (zfs, calls) = buffer_of_a_and_a_b("busy");
        let t = tree();
        let root = t.lock("", Duration::ZERO).unwrap();
        let r = t.cleanup(&zfs);
        let left: Vec<_> = r.entries.iter().map(|e| (e.rel.clone(), e.left)).collect();
        let rel = |s: &str| Some(s.to_string());
        assert_eq!(
            left,
            [(rel("a"), Left::Busy), (rel("a/b"), Left::Busy)],
            "{:?}",
            r.notes().collect::<Vec<_>>()
        );
        // Once the root is free, the next cleanup places both, parents first.
        drop(root);
        let r = t.cleanup(&zfs);
        let ran = std::fs::read_to_string(&calls).unwrap();
        std::fs::remove_dir_all(calls.parent().unwrap()).unwrap();
        let left: Vec<_> = r.entries.iter().map(|e| (e.rel.clone(), e.left)).collect();
        assert_eq!(
            left,
            [(rel("a"), Left::Placed), (rel("a/b"), Left::Placed)],
            "{ran}"
        );
        let renames: Vec<_> = ran.lines().filter(|l| l.starts_with("rename")).collect();
        assert_eq!(
            renames,
            [
                "rename pool/t_zfsync_buffer/61 pool/t/a",
                "rename pool/t_zfsync_buffer/612f62 pool/t/a/b"
            ]
        );
    }

    #[test]
    fn only_finishing_offers_at_or_below_a_path_are_waited_for_as_finishing() {
        let t = tree();
        let streaming = t.lock("a/s", Duration::ZERO).unwrap();
        let finished = |rel| t.wait_finished(rel, Duration::ZERO);
        assert!(finished("a"), "a lock whose offer has not sent its Result");
        let done = t.lock("a/x", Duration::ZERO).unwrap();
        done.finishing();
        assert_eq!(
            [
                finished(""),
                finished("a"),
                finished("a/x"),
                finished("a/xy"),
                finished("b")
            ],
            [false, false, false, true, true]
        );
        // Released by another thread while one waits: the wait ends then, not at its limit.
        let waited = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                drop(done);
            });
            let started = Instant::now();
            assert!(t.wait_finished("a", Duration::from_secs(10)));
            started.elapsed()
        });
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert!(!t.wait_quiet("a", Duration::ZERO), "a/s is still locked");
        drop(streaming);
    }

    #[test]
    fn a_tree_is_quiet_when_nothing_at_or_below_it_is_locked() {
        let t = tree();
        let held = t.lock("a/x", Duration::ZERO).unwrap();
        let quiet = |rel| t.wait_quiet(rel, Duration::ZERO);
        assert_eq!(
            [
                quiet(""),
                quiet("a"),
                quiet("a/x"),
                quiet("a/xy"),
                quiet("b")
            ],
            [false, false, false, true, true]
        );
        drop(held);
        assert!(quiet("a"));
    }

    #[test]
    fn lock_excludes_and_releases() {
        let t = tree();
        let a = t.lock("a", Duration::ZERO).unwrap();
        assert!(t.lock("a", Duration::from_millis(20)).is_none());
        assert!(t.lock("b", Duration::ZERO).is_some());
        drop(a);
        assert!(t.lock("a", Duration::ZERO).is_some());
    }
}
