//! Which jobs are running: a process recording a run of a job holds that job's lock, an
//! `flock` on a file beside the database, for as long as it runs. The kernel drops the lock
//! when the process ends, however it ends, so a free lock means that no process of the job
//! is alive, and its unfinished runs were interrupted.
//!
//! This module owns the lock files (`DIR/history.ROLE.JOB.lock`) and nothing else: what an
//! interrupted run becomes is the store's ([`Store::interrupt_runs`](crate::Store::interrupt_runs)).
//! A lock file is never removed: it is tiny and reused by every run of its job, and
//! deleting one while another process opens it would let two processes hold "the" lock.

use crate::error::{Error, Result};
use crate::record::Role;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock of one job, held until dropped (or the process ends).
#[derive(Debug)]
pub struct JobLock {
    _file: File,
}

impl JobLock {
    /// Takes the lock of `role`'s `job` in the state directory `dir` without waiting:
    /// `None` if another live process holds it (a run of the same job is going on).
    pub fn try_acquire(dir: &Path, role: Role, job: &str) -> Result<Option<JobLock>> {
        let path = path(dir, role, job);
        let lock_err = |source| Error::Lock {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(lock_err)?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(Some(JobLock { _file: file })),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(lock_err(e)),
        }
    }

    /// Whether a live process holds the lock of `role`'s `job` in `dir`. Creates nothing:
    /// a job that never took its lock there is not running. The look takes a shared lock
    /// for a moment, so a writer starting at that instant may find the lock taken (it
    /// then only leaves older runs to be closed by a later run).
    pub fn is_held(dir: &Path, role: Role, job: &str) -> bool {
        let Ok(file) = File::open(path(dir, role, job)) else {
            return false;
        };
        matches!(
            flock(&file, libc::LOCK_SH | libc::LOCK_NB),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }
}

/// `DIR/history.ROLE.JOB.lock`, the job's bytes other than `A-Z a-z 0-9 . - _` as `_`: a
/// job id may be `HOST:PORT` or `[V6]:PORT`. Two jobs that differ only there share a
/// lock, which costs only the closing of interrupted runs while the other one runs.
fn path(dir: &Path, role: Role, job: &str) -> PathBuf {
    let name: String = job
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    dir.join(format!("history.{}.{name}.lock", role.as_str()))
}

fn flock(file: &File, operation: i32) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor this function borrows; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    #[test]
    fn a_held_lock_is_seen_and_refused_until_dropped() {
        let tmp = TempDir::new("lock");
        let dir = tmp.path();
        assert!(!JobLock::is_held(dir, Role::Send, "backup:7611"));
        let held = JobLock::try_acquire(dir, Role::Send, "backup:7611")
            .unwrap()
            .expect("free");
        assert!(JobLock::is_held(dir, Role::Send, "backup:7611"));
        // flock locks belong to the open file: a second open in this process conflicts
        // as another process's would.
        assert!(JobLock::try_acquire(dir, Role::Send, "backup:7611")
            .unwrap()
            .is_none());
        // Another job, or the other role, is another lock.
        assert!(!JobLock::is_held(dir, Role::Send, "nightly"));
        assert!(!JobLock::is_held(dir, Role::Recv, "backup:7611"));
        drop(held);
        assert!(!JobLock::is_held(dir, Role::Send, "backup:7611"));
        assert!(JobLock::try_acquire(dir, Role::Send, "backup:7611")
            .unwrap()
            .is_some());
    }

    #[test]
    fn job_ids_become_file_names() {
        let dir = Path::new("/s");
        for (job, want) in [
            ("backup:7611", "/s/history.send.backup_7611.lock"),
            ("[fd00::2]:7611", "/s/history.send._fd00__2__7611.lock"),
            ("bk-1.a_b", "/s/history.send.bk-1.a_b.lock"),
            ("../x", "/s/history.send..._x.lock"),
        ] {
            assert_eq!(path(dir, Role::Send, job), Path::new(want), "{job}");
        }
    }

    #[test]
    fn a_directory_that_cannot_hold_the_lock_is_an_error() {
        let tmp = TempDir::new("lock-missing");
        let err = JobLock::try_acquire(&tmp.path().join("nope"), Role::Send, "j").unwrap_err();
        assert!(matches!(err, Error::Lock { .. }), "{err:?}");
    }
}
