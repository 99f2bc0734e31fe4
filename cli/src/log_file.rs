//! The `-o FILE` log: appended to, and reopened by name after a SIGHUP, as logrotate
//! expects (rename the file, send SIGHUP, new lines go to a new file at the old path).
//! Knows nothing of log records: `env_logger` writes whole lines through [`LogWriter`].

use crate::signals;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The open log file and the path to open again.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl LogFile {
    /// Opens (creates, appends to) `path`.
    pub fn open(path: &Path) -> io::Result<LogFile> {
        Ok(LogFile {
            path: path.to_path_buf(),
            file: Mutex::new(append(path)?),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reopens the file by its path if a SIGHUP came since the last check. Called before
    /// every write, and at once by the thread that handles signals, so a file renamed
    /// away gets no more lines even when nothing is logged for a while.
    pub fn reopen_if_asked(&self) {
        drop(self.checked());
    }

    /// The file to write to, reopened first if a SIGHUP asked for it. When it cannot be
    /// reopened the old file stays in use (a log line is better kept than lost) and
    /// stderr says why; the next SIGHUP tries again.
    fn checked(&self) -> MutexGuard<'_, File> {
        // A panic elsewhere while writing leaves a file that is still fine to write to.
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if signals::take_reopen() {
            match append(&self.path) {
                Ok(f) => *file = f,
                Err(e) => {
                    let _ = writeln!(
                        io::stderr(),
                        "cannot reopen log file {}: {}; logging on to the file it replaced",
                        self.path.display(),
                        zfsync_text::IoWords(&e)
                    );
                }
            }
        }
        file
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// What `env_logger` writes to: a shared [`LogFile`], so the signal thread can reach it.
pub struct LogWriter(pub Arc<LogFile>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.checked().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.checked().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_sighup_moves_new_lines_to_a_new_file_at_the_old_path() {
        let dir = std::env::temp_dir().join(format!("zfsync-cli-log-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("z.log");
        let rotated = dir.join("z.log.1");
        let log = Arc::new(LogFile::open(&path).unwrap());
        let mut w = LogWriter(log.clone());
        w.write_all(b"one\n").unwrap();
        fs::rename(&path, &rotated).unwrap();
        w.write_all(b"two\n").unwrap();
        signals::ask_reopen();
        log.reopen_if_asked();
        assert_eq!(fs::read_to_string(&path).unwrap(), "", "reopened at once");
        w.write_all(b"three\n").unwrap();
        assert_eq!(fs::read_to_string(&rotated).unwrap(), "one\ntwo\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), "three\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
