//! One receiver per target: a lock file that names TARGET, held with `flock(2)` for the
//! life of the process.
//!
//! The kernel drops an flock when its process dies, however it dies, so a receiver killed
//! with SIGKILL or lost in a crash never leaves a stale lock, and the next start (or a
//! restart by systemd) takes it at once. The file keeps the holder's pid, for the message
//! a second receiver prints.
//!
//! Owns: the lock file's name and the flock. Does not own: anything about ZFS; two
//! receivers of the same target on two hosts (different pools) are not its business.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The directory for receivers' lock files: `/run/lock` where it exists (a tmpfs, empty
/// after a reboot), else `/var/run`, else `/tmp`.
pub fn default_lock_dir() -> PathBuf {
    ["/run/lock", "/var/run", "/tmp"]
        .iter()
        .map(PathBuf::from)
        .find(|d| d.is_dir())
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// `zfsync-recv.<TARGET, percent-encoded>.lock`: one name per target, and two targets
/// never share one (`a/b` and `a_b` differ).
pub fn lock_file_name(target: &str) -> String {
    let mut name = String::from("zfsync-recv.");
    for b in target.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_' {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name.push_str(".lock");
    name
}

/// The target's lock, held until dropped (or the process ends).
#[derive(Debug)]
pub struct TargetLock {
    _file: File,
    pub path: PathBuf,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another live process holds it; its pid if the file names one.
    Held {
        path: PathBuf,
        pid: Option<u32>,
    },
    Io {
        path: PathBuf,
        error: io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { path, pid } => {
                let who = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
                write!(
                    f,
                    "another zfsync-recv{who} already serves this target (lock {}): two receivers must not own one target; stop the other one, or give this one another TARGET",
                    path.display()
                )
            }
            LockError::Io { path, error } => write!(
                f,
                "cannot use the lock file {}: {} (is its directory writable?)",
                path.display(),
                zfsync_text::IoWords(error)
            ),
        }
    }
}

/// Takes the lock of `target` in `dir`, without waiting.
pub fn claim(dir: &Path, target: &str) -> Result<TargetLock, LockError> {
    let path = dir.join(lock_file_name(target));
    let io_err = |error| LockError::Io {
        path: path.clone(),
        error,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err)?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(LockError::Held {
                path,
                pid: text.trim().parse().ok(),
            });
        }
        return Err(io_err(e));
    }
    file.set_len(0).map_err(io_err)?;
    file.rewind().map_err(io_err)?;
    writeln!(file, "{}", std::process::id()).map_err(io_err)?;
    Ok(TargetLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("zfsync-owner-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn names_are_one_per_target() {
        assert_eq!(
            lock_file_name("backup/hosts/a"),
            "zfsync-recv.backup%2Fhosts%2Fa.lock"
        );
        assert_ne!(lock_file_name("a/b"), lock_file_name("a_b"));
        assert_ne!(lock_file_name("a/b"), lock_file_name("a%2Fb"));
    }

    #[test]
    fn a_second_claim_is_refused_with_the_holders_pid() {
        let d = dir("second");
        let _first = claim(&d, "pool/t").unwrap();
        match claim(&d, "pool/t") {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        // Another target is free.
        claim(&d, "pool/u").unwrap();
    }

    #[test]
    fn a_dropped_lock_can_be_taken_again() {
        let d = dir("again");
        drop(claim(&d, "pool/t").unwrap());
        claim(&d, "pool/t").unwrap();
    }
}
