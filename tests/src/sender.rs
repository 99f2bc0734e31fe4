//! Running a command to completion, and reading what `zfsync-send` printed.
//!
//! Owns: `send` (the built sender, killed after `SEND_TIMEOUT`), `run_with_timeout` for
//! any program (the sender with a shorter limit, scripts, fakes) and `run_at` for one with
//! `ZFSYNC_NOW` set, `SendOutput` with its status checks, parsing the sender's summary
//! table (`SummaryRow`), and a sender in the background (`BgSender`) for a test to watch
//! and kill. Must not: leave a child running past its timeout, or read a pipe on the
//! waiting thread (a child that fills the other pipe would block forever).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::bins::sender_bin;
use crate::process::{signal, wait_timeout, SIGKILL};
use crate::scratch::temp_dir;

/// How long `send` lets the sender run before killing it.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(300);

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct SendOutput {
    /// Exit code; 128+N if killed by signal N.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl SendOutput {
    /// Panics, showing both outputs, unless the command exited 0.
    pub fn assert_ok(&self) -> &Self {
        self.assert_status(0)
    }

    /// Panics, showing both outputs, unless the command exited with `status`.
    pub fn assert_status(&self, status: i32) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected exit status\n--- stdout ---\n{}--- stderr ---\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The summary table on stdout, by source dataset name. Panics (showing the output)
    /// if there is no table: a test that reads rows expects one.
    pub fn rows(&self) -> BTreeMap<String, SummaryRow> {
        let mut lines = self.stdout.lines();
        if !lines.by_ref().any(|l| l.starts_with("DATASET ")) {
            panic!(
                "no summary table on stdout\n--- stdout ---\n{}--- stderr ---\n{}",
                self.stdout, self.stderr
            );
        }
        let mut rows = BTreeMap::new();
        for line in lines {
            // Rows end at the cleanup note or the closing line, neither of which starts
            // with a dataset name followed by a known outcome.
            let Some((ds, rest)) = first_field(line) else {
                continue;
            };
            let f: Vec<&str> = std::iter::once("").chain(rest.split_whitespace()).collect();
            let Some(first) = f.get(1) else {
                continue;
            };
            let known = ["sent", "up-to-date", "no-snapshots", "would-send", "failed"];
            // "refused (REASON IN WORDS)" takes the words up to the closing parenthesis.
            let words = if known.contains(first) {
                1
            } else if *first == "refused" && f.get(2).is_some_and(|w| w.starts_with('(')) {
                match f[2..].iter().position(|w| w.ends_with(')')) {
                    Some(i) => i + 2,
                    None => continue,
                }
            } else {
                continue;
            };
            let Some(Ok(bytes)) = f.get(1 + words).map(|b| b.parse()) else {
                continue;
            };
            rows.insert(
                ds,
                SummaryRow {
                    outcome: f[1..1 + words].join(" "),
                    bytes,
                    note: f.get(3 + words..).map(|n| n.join(" ")).unwrap_or_default(),
                },
            );
        }
        rows
    }

    /// The outcome of dataset `ds` in the summary; panics (showing the output) if absent.
    pub fn outcome(&self, ds: &str) -> String {
        match self.rows().remove(ds) {
            Some(row) => row.outcome,
            None => panic!(
                "{ds} is not in the summary\n--- stdout ---\n{}--- stderr ---\n{}",
                self.stdout, self.stderr
            ),
        }
    }

    /// The closing `zfsync-send: N datasets, ...` line; panics if there is none.
    pub fn final_line(&self) -> &str {
        self.stdout
            .lines()
            .rev()
            .find(|l| l.starts_with("zfsync-send: "))
            .unwrap_or_else(|| {
                panic!(
                    "no closing zfsync-send line\n--- stdout ---\n{}--- stderr ---\n{}",
                    self.stdout, self.stderr
                )
            })
    }
}

/// One row of `zfsync-send`'s summary table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    /// `sent`, `up-to-date`, `no-snapshots`, `would-send`, `refused (REASON)`, `failed`.
    pub outcome: String,
    pub bytes: u64,
    pub note: String,
}

/// Runs `zfsync-send ARGS` to completion (killed, and the test failed, after 300 s).
pub fn send(args: &[&str]) -> SendOutput {
    run_with_timeout(&sender_bin(), args, SEND_TIMEOUT)
}

/// Runs `program ARGS` with stdin closed, collecting stdout and stderr; kills it and
/// panics (with what it printed) if it runs longer than `timeout`.
pub fn run_with_timeout<S: AsRef<OsStr>>(
    program: &Path,
    args: &[S],
    timeout: Duration,
) -> SendOutput {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    // One reader thread per pipe: a child that fills the pipe we are not reading would
    // block forever.
    let readers: Vec<_> = [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ]
    .into_iter()
    .map(|mut pipe| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
    .collect();
    let status = wait_timeout(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut outs = readers.into_iter().map(|h| h.join().unwrap_or_default());
    let (stdout, stderr) = (
        outs.next().unwrap_or_default(),
        outs.next().unwrap_or_default(),
    );
    let Some(status) = status else {
        panic!(
            "{} {}: still running after {}s, killed\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
            program.display(),
            args.iter().map(|a| a.as_ref().to_string_lossy()).collect::<Vec<_>>().join(" "),
            timeout.as_secs()
        );
    };
    let status = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => -1,
    };
    SendOutput {
        status,
        stdout,
        stderr,
    }
}

/// `env ZFSYNC_NOW=NOW PROGRAM ARGS...` to completion, as `run_with_timeout`: the clock
/// of every zfsync tool at `now` (unix seconds).
pub fn run_at(now: u64, program: &Path, args: &[&str], timeout: Duration) -> SendOutput {
    let now = format!("ZFSYNC_NOW={now}");
    let program = program.display().to_string();
    let mut argv: Vec<&str> = vec![&now, &program];
    argv.extend(args);
    run_with_timeout(Path::new("/usr/bin/env"), &argv, timeout)
}

/// A `zfsync-send` running in the background, its output going to files, so a test can
/// watch its log and kill it at a chosen moment. Killed (SIGKILL) on drop if still
/// running.
pub struct BgSender {
    child: Child,
    dir: PathBuf,
}

impl BgSender {
    /// `zfsync-send ARGS` with the environment variables `env` added.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> BgSender {
        let dir = temp_dir("bgsend");
        let out = fs::File::create(dir.join("stdout")).expect("create stdout file");
        let err = fs::File::create(dir.join("stderr")).expect("create stderr file");
        let child = Command::new(sender_bin())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("run zfsync-send");
        BgSender { child, dir }
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(self.dir.join("stdout")).unwrap_or_default()
    }

    /// Waits until its log holds `needle` (true) or it exits or `limit` passes (false).
    pub fn wait_log(&mut self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.stderr().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline || matches!(self.child.try_wait(), Ok(Some(_))) {
                return self.stderr().contains(needle);
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Whether it has exited already.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGKILL (if still running) and reap; returns whether the kill found it running.
    pub fn kill(&mut self) -> bool {
        let running = !self.exited();
        if running {
            signal(self.child.id(), SIGKILL);
        }
        let _ = self.child.wait();
        running
    }

    /// Waits for it to exit (panics after `limit`) and returns its output.
    pub fn finish(mut self, limit: Duration) -> SendOutput {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                break st;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "sender still running after {}s\n--- stdout ---\n{}--- stderr ---\n{}",
                    limit.as_secs(),
                    self.stdout(),
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        SendOutput {
            status: status.code().unwrap_or(-1),
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for BgSender {
    fn drop(&mut self) {
        if !self.exited() {
            signal(self.child.id(), SIGKILL);
            let _ = self.child.wait();
        }
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The first white-space separated field of `line` and the rest: a dataset name as the
/// summary prints it, bare, or in double quotes with `\"` and `\\` escaped when it holds a
/// space (`"tank/My Documents"`).
fn first_field(line: &str) -> Option<(String, &str)> {
    let line = line.trim_start();
    let Some(quoted) = line.strip_prefix('"') else {
        let end = line.find(char::is_whitespace).unwrap_or(line.len());
        return (end > 0).then(|| (line[..end].to_string(), &line[end..]));
    };
    let mut field = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((field, &quoted[i + 1..])),
            '\\' => field.push(chars.next()?.1),
            c => field.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(stdout: &str) -> SendOutput {
        SendOutput {
            status: 0,
            stdout: stdout.to_string(),
            stderr: String::new(),
        }
    }

    /// Shaped as `zfsync-send` prints it: a header, one row a dataset (the note may hold
    /// spaces), a cleanup note, the closing line.
    const SUMMARY: &str = "\
DATASET        OUTCOME                          BYTES      SECS  NOTE
tank/data      sent                           1048576      0.52  3 snapshots
tank/data/a    up-to-date                           0      0.01
tank/data/b    refused (no common snapshot)         0      0.02  no snapshot in common
tank/data/d    refused (diverged)                   0      0.02  destination has newer snapshots
tank/data/c    failed                               0      0.10  zfs recv: exit 1
\"tank/My Docs\" up-to-date                           0      0.01  @s1
removed 2 stale buffered copies
zfsync-send: 6 datasets, 1 sent, 3 failed, 1048576 bytes
";

    #[test]
    fn rows_reads_each_dataset_of_the_table() {
        let rows = output(SUMMARY).rows();
        let got: Vec<(&str, &str, u64, &str)> = rows
            .iter()
            .map(|(ds, r)| (ds.as_str(), r.outcome.as_str(), r.bytes, r.note.as_str()))
            .collect();
        let want = vec![
            ("tank/My Docs", "up-to-date", 0, "@s1"),
            ("tank/data", "sent", 1048576, "3 snapshots"),
            ("tank/data/a", "up-to-date", 0, ""),
            (
                "tank/data/b",
                "refused (no common snapshot)",
                0,
                "no snapshot in common",
            ),
            ("tank/data/c", "failed", 0, "zfs recv: exit 1"),
            (
                "tank/data/d",
                "refused (diverged)",
                0,
                "destination has newer snapshots",
            ),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn outcome_and_final_line() {
        let out = output(SUMMARY);
        assert_eq!(out.outcome("tank/data/d"), "refused (diverged)");
        assert_eq!(
            out.final_line(),
            "zfsync-send: 6 datasets, 1 sent, 3 failed, 1048576 bytes"
        );
    }

    #[test]
    #[should_panic(expected = "no summary table")]
    fn rows_panics_without_a_table() {
        output("zfsync-send: 0 datasets, 0 sent, 0 failed, 0 bytes\n").rows();
    }

    #[test]
    #[should_panic(expected = "is not in the summary")]
    fn outcome_panics_for_a_dataset_not_listed() {
        output(SUMMARY).outcome("tank/other");
    }
}
