//! A running `zfsync-recv`, stopped on drop.
//!
//! Owns: `Receiver` (start on 127.0.0.1:0 or on a fixed port, wait for its `listening on`
//! line, keep its stderr in a log file, give it a state directory of its own unless the
//! test names one, stop it with SIGTERM then SIGKILL) and `free_port`. Must not: panic in `Drop` (a panic while unwinding aborts the whole test
//! binary; it prints the receiver's log instead), or leave the process unreaped.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::bins::receiver_bin;
use crate::process::{describe_status, terminate, wait_timeout};
use crate::scratch::temp_dir;

/// How long `Receiver::start` waits for the `listening on` line.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `zfsync-recv`, stopped on drop (SIGTERM, then SIGKILL after 10 s).
pub struct Receiver {
    child: Child,
    addr: String,
    log: PathBuf,
    dir: PathBuf,
    /// The `--state-dir` the harness chose (removed with the receiver), if it chose one.
    state_dir: Option<PathBuf>,
    status: Option<ExitStatus>,
}

/// `extra_args` with `--state-dir DIR` (a new temporary directory) in front, unless they
/// name a state directory already: tests never write the host's /var/lib/zfsync.
fn with_state_dir(extra_args: &[&str]) -> (Vec<String>, Option<PathBuf>) {
    let mut args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
    if extra_args.contains(&"--state-dir") {
        return (args, None);
    }
    let dir = temp_dir("recvstate");
    let path = dir.to_str().expect("temporary paths are UTF-8").to_string();
    args.splice(0..0, ["--state-dir".to_string(), path]);
    (args, Some(dir))
}

/// Writes an executable script `path` holding `text`.
fn write_script(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let mut perm = fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    fs::set_permissions(path, perm).unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

impl Receiver {
    /// Starts `zfsync-recv -l 127.0.0.1:0 EXTRA... TARGET` and waits for its
    /// `listening on 127.0.0.1:PORT` line.
    pub fn start(target: &str, extra_args: &[&str]) -> Receiver {
        let (args, state) = with_state_dir(extra_args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut r = Receiver::spawn(&receiver_bin(), target, &args);
        r.state_dir = state;
        r
    }

    /// `start`, but listening on 127.0.0.1:`port` (see `free_port`), so that a receiver
    /// can be restarted, or started late, on an address a sender is already using.
    pub fn start_on(port: u16, target: &str, extra_args: &[&str]) -> Receiver {
        // `spawn` passes `-l 127.0.0.1:0` first; a wrapper swaps it for the fixed port and
        // execs the receiver, so the pid is the receiver's own.
        let dir = temp_dir("recvport");
        let wrapper = dir.join("zfsync-recv");
        let real = receiver_bin();
        let text = format!(
            "#!/bin/sh\nshift 2\nexec '{}' -l 127.0.0.1:{port} \"$@\"\n",
            real.to_str().expect("binary path is UTF-8")
        );
        write_script(&wrapper, &text);
        let (args, state) = with_state_dir(extra_args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut r = Receiver::spawn(&wrapper, target, &args);
        r.state_dir = state;
        r
    }

    /// `start` with its clock at `now` (unix seconds, `ZFSYNC_NOW`): a wrapper sets it
    /// and execs the receiver, so the pid is the receiver's own. Give `--state-dir` in
    /// `extra_args` to keep its history across receivers at different times.
    pub fn start_at(now: u64, target: &str, extra_args: &[&str]) -> Receiver {
        let dir = temp_dir("recvclock");
        let wrapper = dir.join("zfsync-recv");
        let text = format!(
            "#!/bin/sh\nZFSYNC_NOW={now} exec '{}' \"$@\"\n",
            receiver_bin().display()
        );
        write_script(&wrapper, &text);
        let (args, state) = with_state_dir(extra_args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut r = Receiver::spawn(&wrapper, target, &args);
        r.state_dir = state;
        r
    }

    /// `start` with another program in place of `zfsync-recv`: for the harness's own
    /// tests, and for wrapping the receiver (strace, a fault injector).
    pub fn spawn(program: &Path, target: &str, extra_args: &[&str]) -> Receiver {
        let dir = temp_dir("recv");
        let log = dir.join("stderr.log");
        let log_file =
            fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let mut child = Command::new(program)
            .arg("-l")
            .arg("127.0.0.1:0")
            .args(extra_args)
            .arg(target)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));

        // The line is read on a thread so the wait can time out. The thread then keeps
        // draining stdout, so a receiver that prints more never blocks on a full pipe.
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let mut r = Receiver {
            child,
            addr: String::new(),
            log,
            dir,
            state_dir: None,
            status: None,
        };
        let line = match rx.recv_timeout(LISTEN_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => r.fail(&format!("reading its stdout: {e}")),
            Err(mpsc::RecvTimeoutError::Timeout) => r.fail(&format!(
                "no 'listening on' line within {}s",
                LISTEN_TIMEOUT.as_secs()
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => r.fail("reader thread died"),
        };
        let addr = line
            .trim_end_matches(['\n', '\r'])
            .strip_prefix("listening on ")
            .map(str::to_string);
        match addr {
            Some(a) if a.parse::<std::net::SocketAddr>().is_ok() => r.addr = a,
            // EOF gives an empty line: the receiver exited before binding.
            _ => r.fail(&format!(
                "expected 'listening on ADDR:PORT' on stdout, got {line:?}"
            )),
        }
        r
    }

    /// Stops the receiver and panics with everything known about it.
    fn fail(&mut self, what: &str) -> ! {
        let status = self.stop();
        panic!(
            "receiver {:?}: {what} ({})\n--- receiver stderr ---\n{}",
            self.child.id(),
            describe_status(status),
            self.log()
        );
    }

    /// The address it listens on, `127.0.0.1:PORT`: the sender's HOST:PORT argument.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// Process id, e.g. to kill it uncleanly in a test.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the receiver has written to stderr so far.
    pub fn log(&self) -> String {
        match fs::read(&self.log) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => format!("<cannot read {}: {e}>", self.log.display()),
        }
    }

    /// Path of the stderr log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Sends SIGTERM, waits up to 10 s, then SIGKILLs; returns the exit status.
    /// Idempotent: later calls return the first status.
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let status = match self.child.try_wait() {
            Ok(Some(status)) => status,
            _ => {
                terminate(self.child.id());
                match wait_timeout(&mut self.child, Duration::from_secs(10)) {
                    Some(status) => status,
                    None => {
                        eprintln!(
                            "harness: receiver {} ignored SIGTERM for 10s; killing it",
                            self.child.id()
                        );
                        let _ = self.child.kill();
                        self.child
                            .wait()
                            .unwrap_or_else(|_| ExitStatus::from_raw(9))
                    }
                }
            }
        };
        self.status = Some(status);
        status
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            // libtest shows a failed test's captured output: put the receiver's side of
            // the story there, and keep the log for a closer look.
            eprintln!(
                "--- receiver stderr ({}) ---\n{}--- end receiver stderr ---",
                self.log.display(),
                self.log()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
            if let Some(d) = &self.state_dir {
                let _ = fs::remove_dir_all(d);
            }
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released):
/// for a receiver that must come up on an address the sender already knows.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
    l.local_addr()
        .expect("bound listener has an address")
        .port()
}
