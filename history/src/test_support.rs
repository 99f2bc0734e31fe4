//! Helpers for this crate's unit tests: a temporary directory that removes itself, and
//! attempts built from a few values.

use crate::record::{
    Attempt, AttemptEnd, AttemptId, AttemptStart, Kind, Outcome, Role, RunId, SnapshotRef,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("zfsync-history-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The start of an incremental send of `dataset` from s1 (GUID 11) to s2 (GUID 22), in
/// run 1, job "nightly", to backup:9000.
pub fn start(dataset: &str, started: i64) -> AttemptStart {
    AttemptStart {
        run: Some(RunId(1)),
        role: Role::Send,
        job: "nightly".into(),
        peer: "backup:9000".into(),
        dataset: dataset.into(),
        kind: Some(Kind::Incremental),
        from: Some(SnapshotRef {
            name: "s1".into(),
            guid: 11,
        }),
        to: Some(SnapshotRef {
            name: "s2".into(),
            guid: 22,
        }),
        raw: false,
        compressed: true,
        attempt: 1,
        started,
    }
}

/// The end, 10 s after `started`, with `outcome` (by name), 4096 bytes in 1.5 s.
pub fn end(started: i64, outcome: &str) -> AttemptEnd {
    AttemptEnd {
        ended: started + 10,
        outcome: Outcome::parse(outcome).expect("an outcome name"),
        bytes: 4096,
        seconds: 1.5,
        error: None,
    }
}

pub fn finished(id: i64, dataset: &str, started: i64, outcome: &str) -> Attempt {
    Attempt {
        id: AttemptId(id),
        start: start(dataset, started),
        end: Some(end(started, outcome)),
    }
}

pub fn in_flight(id: i64, dataset: &str, started: i64) -> Attempt {
    Attempt {
        id: AttemptId(id),
        start: start(dataset, started),
        end: None,
    }
}
