//! The one place in zfsync that runs `zfs`.
//!
//! [`Zfs`] knows the path of the zfs binary (a value, never a global, so tests can run side
//! by side with different binaries) and what the installed ZFS can do ([`Capabilities`],
//! detected once). Every zfs command line is built here and logged at debug level when it
//! starts and ends. Nothing else in zfsync runs `Command::new("zfs")`.
//!
//! Two families are supported:
//! - OpenZFS 0.8 and later (`zfs version` answers): `zfs list -Hp`, `recv -u`, resumable
//!   receive, bookmarks, holds, compressed/large-block/embedded/raw sends.
//! - Older ZFS without `zfs version`, chiefly zfs-fuse (pool version 23): `zfs list`
//!   abbreviates numbers ("9.75E" for a GUID) and has no `-p`, so listings go through
//!   `zfs get -Hp`; `recv` has no `-u`; `zfs send` of a missing snapshot exits 0 with only a
//!   warning (callers must treat an empty stream as a failure).
//!
//! This crate does not decide anything about replication (which snapshot to send, where to
//! receive): that is the sender's and receiver's business.

mod name;
mod process;
pub mod protect;

pub use name::{
    check_component, check_dataset_name, check_relative_path, check_snapshot_name, Dataset,
    NameError, MAX_NAME_LEN,
};
pub use process::ZfsProcess;

use log::debug;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Properties a received stream may not set (`zfs recv -x`, where `-u` is there too):
/// they would decide where the backup host mounts the data or whom it shares it with.
pub const RECV_EXCLUDED: [&str; 4] = ["mountpoint", "canmount", "sharenfs", "sharesmb"];

/// What the installed ZFS can do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Human-readable description, e.g. "OpenZFS 2.3.2" or "legacy ZFS (zfs-fuse)".
    pub flavor: String,
    /// `zfs list -p` (exact numbers from `zfs list`).
    pub list_parsable: bool,
    /// `zfs recv -u` (do not mount what was received).
    pub recv_unmounted: bool,
    /// `zfs recv -s` and `zfs send -t` (resumable streams).
    pub resumable: bool,
    /// Bookmarks (`zfs bookmark`, `send -i #bm`).
    pub bookmarks: bool,
    /// `zfs hold` / `zfs release` that work.
    pub holds: bool,
    /// `zfs send -c`, `-L`, `-e`.
    pub send_compressed: bool,
    /// `zfs send -w` (raw, for encrypted datasets).
    pub send_raw: bool,
}

impl Capabilities {
    /// The oldest CLI we support: zfs-fuse's (pool version 23).
    pub fn legacy() -> Capabilities {
        Capabilities {
            flavor: "legacy ZFS without 'zfs version' (zfs-fuse or similar)".into(),
            list_parsable: false,
            recv_unmounted: false,
            resumable: false,
            bookmarks: false,
            holds: false,
            send_compressed: false,
            send_raw: false,
        }
    }

    /// OpenZFS of the given version (0.8 introduced `zfs version`, raw sends, and is the
    /// oldest we tell apart from the legacy CLI).
    pub fn openzfs(version: &str) -> Capabilities {
        Capabilities {
            flavor: format!("OpenZFS {version}"),
            list_parsable: true,
            recv_unmounted: true,
            resumable: true,
            bookmarks: true,
            holds: true,
            send_compressed: true,
            send_raw: true,
        }
    }
}

/// What kind of failure a zfs command reported, recognised from its stderr. The raw text is
/// always kept beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    NotFound,
    /// "destination ... has been modified since most recent snapshot"
    DestinationModified,
    /// "most recent snapshot of ... does not match incremental source", "destination has
    /// snapshots", "destination ... exists"
    DestinationMismatch,
    NoSpace,
    Other,
}

/// Errors of this crate.
#[derive(Debug)]
pub enum Error {
    /// The zfs binary could not be started.
    Spawn { cmd: String, source: io::Error },
    /// A zfs command exited non-zero.
    Failed {
        cmd: String,
        status: String,
        stderr: String,
        kind: FailureKind,
    },
    /// A zfs command's output was not what we expect.
    Parse {
        cmd: String,
        line: String,
        why: String,
    },
    /// A name was refused before any command ran.
    Name(NameError),
    /// Reading or writing a zfs pipe failed.
    Io { what: String, source: io::Error },
}

impl Error {
    pub fn kind(&self) -> FailureKind {
        match self {
            Error::Failed { kind, .. } => *kind,
            _ => FailureKind::Other,
        }
    }

    /// The stderr text of a failed command, or the error's own text.
    pub fn detail(&self) -> String {
        match self {
            Error::Failed { stderr, .. } => stderr.clone(),
            e => e.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Spawn { cmd, source } => write!(f, "{cmd}: cannot run: {source}"),
            Error::Failed {
                cmd,
                status,
                stderr,
                ..
            } => write!(f, "{cmd}: {status}: {stderr}"),
            Error::Parse { cmd, line, why } => {
                write!(f, "{cmd}: unexpected output {line:?}: {why}")
            }
            Error::Name(e) => e.fmt(f),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<NameError> for Error {
    fn from(e: NameError) -> Self {
        Error::Name(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Recognises the zfs error texts that callers act on.
pub(crate) fn classify(stderr: &str) -> FailureKind {
    // zfs wraps long messages over lines: compare with the white space folded.
    let s = stderr
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    if s.contains("does not exist") {
        FailureKind::NotFound
    } else if s.contains("has been modified") {
        FailureKind::DestinationModified
    } else if s.contains("does not match incremental source")
        || s.contains("destination has snapshots")
        || (s.contains("destination") && s.contains("exists"))
    {
        FailureKind::DestinationMismatch
    } else if s.contains("out of space") || s.contains("no space") {
        FailureKind::NoSpace
    } else {
        FailureKind::Other
    }
}

/// Dataset types we replicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Filesystem,
    Volume,
}

/// A snapshot: the part of its name after `@`, its GUID (what identifies it across pools)
/// and its creation transaction group (what orders it; 0 if unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub name: String,
    pub guid: u64,
    pub createtxg: u64,
}

/// A filesystem or volume with its snapshots, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetInfo {
    pub name: String,
    pub kind: Kind,
    pub snapshots: Vec<Snapshot>,
    /// Encrypted (OpenZFS native encryption): sent raw, so it stays encrypted.
    pub encrypted: bool,
    /// The token of an interrupted resumable receive into this dataset (OpenZFS).
    pub resume_token: Option<String>,
}

/// The contents of a resume token, as `zfs send -nv -t` prints them (an nvlist: one
/// `key = value` per line, numbers in hex; a flag such as `rawok` may print without a
/// value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenInfo {
    /// The snapshot the stream ends with, by full name.
    pub toname: Option<String>,
    pub toguid: Option<u64>,
    /// The base of an incremental stream.
    pub fromguid: Option<u64>,
    /// Bytes already received.
    pub bytes: Option<u64>,
    /// The stream would be sent raw (`-w`): encrypted datasets stay encrypted.
    pub rawok: bool,
}

impl TokenInfo {
    /// Reads the printed contents. A key that appears twice is refused: a string value in
    /// a crafted token could print as lines of its own, and only the real key must count.
    pub fn parse(text: &str) -> std::result::Result<TokenInfo, String> {
        let num = |v: &str| match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => v.parse().ok(),
        };
        let mut t = TokenInfo::default();
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            let line = line.trim();
            let (key, value) = match line.split_once(" = ") {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (line, None),
            };
            let known = ["toname", "toguid", "fromguid", "bytes", "rawok"];
            if known.contains(&key) && !seen.insert(key) {
                return Err(format!("its contents name {key} twice"));
            }
            match (key, value) {
                ("toname", Some(v)) => t.toname = Some(v.to_string()),
                ("toguid", Some(v)) => t.toguid = num(v),
                ("fromguid", Some(v)) => t.fromguid = num(v),
                ("bytes", Some(v)) => t.bytes = num(v),
                ("rawok", None) => t.rawok = true,
                ("rawok", Some(v)) => t.rawok = v != "0",
                _ => {}
            }
        }
        Ok(t)
    }
}

/// Options of `zfs send`, each used only where the capabilities allow.
#[derive(Clone, Debug, Default)]
pub struct SendOptions {
    /// Send from this snapshot (full name or `@name`).
    pub from: Option<String>,
    /// With `from`: every snapshot in between too (`-I`). Without, only the delta to the
    /// snapshot sent (`-i`): the same stream when none lies between, and zfs need not walk
    /// the dataset's snapshots to find out (on zfs-fuse with 10 snapshots, 17 ms against
    /// 3 ms a send).
    pub intermediates: bool,
    pub compressed: bool,
    pub large_blocks: bool,
    pub embedded: bool,
    pub raw: bool,
}

/// Options of `zfs recv`.
#[derive(Clone, Debug, Default)]
pub struct RecvOptions {
    /// `-F`: roll back / overwrite. Only ever set when the receiver's operator allowed it.
    pub force: bool,
    /// `-o canmount=noauto` (OpenZFS, new filesystems): a received filesystem never mounts
    /// itself later over the backup host's own paths.
    pub no_automount: bool,
    /// `-s`: leave a resume token when interrupted.
    pub resumable: bool,
}

/// The zfs command-line tool, with the capabilities of the ZFS behind it.
#[derive(Clone, Debug)]
pub struct Zfs {
    bin: PathBuf,
    caps: Capabilities,
    /// A zfs command that runs to completion here (listing, get, hold, rename...) and takes
    /// longer is killed and fails: a hung zfs must not hold what waits on it for ever.
    limit: Option<Duration>,
}

impl Zfs {
    /// Asks the zfs binary what it is (`zfs version`) and derives its capabilities.
    pub fn detect(bin: impl Into<PathBuf>) -> Result<Zfs> {
        let mut zfs = Zfs {
            bin: bin.into(),
            caps: Capabilities::legacy(),
            limit: None,
        };
        let caps = match zfs.output(&["version"]) {
            Ok(out) => {
                // "zfs-2.3.2-2~bpo12+2\nzfs-kmod-2.3.2-2~bpo12+2"
                let first = out.lines().next().unwrap_or("").trim();
                let version = first.strip_prefix("zfs-").unwrap_or(first);
                Capabilities::openzfs(version.split('-').next().unwrap_or(version))
            }
            Err(Error::Spawn { cmd, source }) => return Err(Error::Spawn { cmd, source }),
            // No 'zfs version': an old CLI. No further probe: one that lists the pools
            // fails whenever any pool on the machine is being destroyed at that moment,
            // and a zfs that does not work says so at the first real command anyway.
            Err(_) => Capabilities::legacy(),
        };
        debug!("zfs capabilities bin={} {:?}", zfs.bin.display(), caps);
        zfs.caps = caps;
        Ok(zfs)
    }

    /// A `Zfs` with given capabilities (tests, or to force the legacy code paths).
    pub fn with_capabilities(bin: impl Into<PathBuf>, caps: Capabilities) -> Zfs {
        Zfs {
            bin: bin.into(),
            caps,
            limit: None,
        }
    }

    /// Kills a zfs command run to completion (not `send` or `recv`, whose callers watch
    /// them) that takes longer than `limit`.
    pub fn with_limit(mut self, limit: Duration) -> Zfs {
        self.limit = Some(limit);
        self
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn command_line(&self, args: &[&str]) -> String {
        let mut s = self.bin.display().to_string();
        for a in args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    /// Runs a zfs command to completion and returns its stdout.
    fn output(&self, args: &[&str]) -> Result<String> {
        let (stdout, _) = self.capture(args, &self.command_line(args))?;
        String::from_utf8(stdout).map_err(|_| Error::Parse {
            cmd: self.command_line(args),
            line: String::new(),
            why: "output is not UTF-8".into(),
        })
    }

    /// Runs a zfs command to completion: stdout and stderr, or the failure. `shown` is the
    /// command line for logs and errors (a resume token is long and says nothing there).
    fn capture(&self, args: &[&str], shown: &str) -> Result<(Vec<u8>, String)> {
        let mut proc = self.spawn_shown(args, shown, false, true)?;
        // stdout drained while we wait (ZfsProcess drains stderr): a long listing must not
        // block on a full pipe.
        let out = proc.take_stdout().map(|mut p| {
            std::thread::spawn(move || {
                let mut all = Vec::new();
                let _ = p.read_to_end(&mut all);
                all
            })
        });
        let finished = match self.limit {
            Some(limit) => proc.wait_or_kill(limit),
            None => proc.wait(),
        };
        let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
        finished.map(|stderr| (stdout, stderr))
    }

    fn spawn(&self, args: &[&str], stdin: bool, stdout: bool) -> Result<ZfsProcess> {
        self.spawn_shown(args, &self.command_line(args), stdin, stdout)
    }

    /// [`Zfs::spawn`], with `shown` as the command line in logs and errors.
    fn spawn_shown(
        &self,
        args: &[&str],
        shown: &str,
        stdin: bool,
        stdout: bool,
    ) -> Result<ZfsProcess> {
        let cmd = shown.to_string();
        debug!("zfs start cmd={cmd:?}");
        let child = Command::new(&self.bin)
            .args(args)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(if stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Spawn {
                cmd: cmd.clone(),
                source: e,
            })?;
        // zfs send and recv move data in bursts: a 1 MiB pipe (Linux's default ceiling
        // for unprivileged F_SETPIPE_SZ) instead of 64 KiB lets each side run longer
        // without waiting for the other, and costs fewer wake-ups. Best effort.
        if let Some(out) = &child.stdout {
            grow_pipe(out.as_raw_fd());
        }
        if let Some(inp) = &child.stdin {
            grow_pipe(inp.as_raw_fd());
        }
        Ok(ZfsProcess::new(cmd, child))
    }

    /// `root` and every filesystem and volume below it, parents before children, each with
    /// its snapshots oldest first. One zfs command for the whole tree. Fails with
    /// [`FailureKind::NotFound`] if `root` does not exist.
    pub fn list_tree(&self, root: &Dataset) -> Result<Vec<DatasetInfo>> {
        self.list(root, None)
    }

    /// The snapshots of one dataset, oldest first, or `None` if it does not exist.
    pub fn list_snapshots(&self, ds: &Dataset) -> Result<Option<Vec<Snapshot>>> {
        Ok(self.dataset(ds)?.map(|d| d.snapshots))
    }

    /// One dataset with its snapshots (and resume token), or `None` if it does not exist.
    pub fn dataset(&self, ds: &Dataset) -> Result<Option<DatasetInfo>> {
        match self.list(ds, Some(1)) {
            Ok(list) => Ok(list.into_iter().find(|d| d.name == ds.as_str())),
            Err(e) if e.kind() == FailureKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The direct children (filesystems and volumes) of `ds`, each with its snapshots and
    /// resume token, or `None` if `ds` does not exist.
    pub fn list_children(&self, ds: &Dataset) -> Result<Option<Vec<DatasetInfo>>> {
        match self.list(ds, Some(2)) {
            Ok(list) => Ok(Some(
                list.into_iter()
                    .filter(|d| {
                        d.name
                            .strip_prefix(ds.as_str())
                            .and_then(|r| r.strip_prefix('/'))
                            .is_some_and(|r| !r.is_empty() && !r.contains('/'))
                    })
                    .collect(),
            )),
            Err(e) if e.kind() == FailureKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether a dataset exists.
    pub fn exists(&self, ds: &Dataset) -> Result<bool> {
        match self.output(&["get", "-H", "-o", "value", "type", ds.as_str()]) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == FailureKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn list(&self, root: &Dataset, depth: Option<u32>) -> Result<Vec<DatasetInfo>> {
        let depth_s = depth.map(|d| d.to_string());
        let mut args: Vec<&str> = Vec::new();
        if self.caps.list_parsable {
            args.extend([
                "list",
                "-Hp",
                "-t",
                "filesystem,volume,snapshot",
                "-o",
                "name,type,guid,createtxg,encryption,receive_resume_token",
            ]);
        } else {
            args.extend(["get", "-Hp", "-o", "name,property,value"]);
        }
        match &depth_s {
            Some(d) => args.extend(["-d", d.as_str()]),
            None => args.push("-r"),
        }
        if !self.caps.list_parsable {
            args.push("type,guid,createtxg");
        }
        args.push(root.as_str());
        let out = self.output(&args)?;
        let cmd = self.command_line(&args);
        let rows = if self.caps.list_parsable {
            parse_list_rows(&cmd, &out)?
        } else {
            parse_get_rows(&cmd, &out)?
        };
        build_tree(&cmd, rows)
    }

    /// Starts `zfs send` of `snapshot` (full name), writing the stream to the process's
    /// stdout.
    pub fn send(&self, snapshot: &str, opts: &SendOptions) -> Result<ZfsProcess> {
        let mut args = vec!["send"];
        if self.caps.send_compressed {
            if opts.compressed {
                args.push("-c");
            }
            if opts.large_blocks {
                args.push("-L");
            }
            if opts.embedded {
                args.push("-e");
            }
        }
        if opts.raw && self.caps.send_raw {
            args.push("-w");
        }
        if let Some(from) = &opts.from {
            args.extend([if opts.intermediates { "-I" } else { "-i" }, from.as_str()]);
        }
        args.push(snapshot);
        self.spawn(&args, false, true)
    }

    /// Starts `zfs recv` into `target`, reading the stream from the process's stdin.
    /// Received datasets are not mounted where the ZFS allows it (`-u`).
    pub fn recv(&self, target: &Dataset, opts: &RecvOptions) -> Result<ZfsProcess> {
        let mut args = vec!["recv"];
        if self.caps.recv_unmounted {
            args.push("-u");
        }
        if opts.force {
            args.push("-F");
        }
        if opts.resumable && self.caps.resumable {
            args.push("-s");
        }
        if opts.no_automount && self.caps.recv_unmounted {
            args.extend(["-o", "canmount=noauto"]);
        }
        if self.caps.recv_unmounted {
            // The stream comes from the network: properties in it (a `send -p` or `-R`
            // stream) must not decide where anything mounts or what is shared on this host.
            for p in RECV_EXCLUDED {
                if !(opts.no_automount && p == "canmount") {
                    args.extend(["-x", p]);
                }
            }
        }
        args.push(target.as_str());
        self.spawn(&args, true, false)
    }

    /// Starts `zfs send -t TOKEN`: the rest of an interrupted stream. The token carries
    /// the original stream's flags.
    pub fn send_resume(&self, token: &str) -> Result<ZfsProcess> {
        self.spawn(&["send", "-t", token], false, true)
    }

    /// What a resume token would send (`zfs send -nv -t TOKEN`): the snapshot, the base,
    /// the bytes already received and whether the stream would be raw. A token comes from
    /// the receiver: check it before resuming.
    pub fn resume_token_info(&self, token: &str) -> Result<TokenInfo> {
        let shown = self.command_line(&["send", "-nv", "-t", "TOKEN"]);
        let (stdout, stderr) = self.capture(&["send", "-nv", "-t", token], &shown)?;
        // The token's contents go to stdout or stderr depending on the version.
        TokenInfo::parse(&format!("{}\n{stderr}", String::from_utf8_lossy(&stdout))).map_err(
            |why| Error::Parse {
                cmd: shown,
                line: String::new(),
                why,
            },
        )
    }

    /// `zfs recv -A DS`: discards the partial state of an interrupted resumable receive.
    pub fn recv_abort(&self, ds: &Dataset) -> Result<()> {
        self.output(&["recv", "-A", ds.as_str()]).map(drop)
    }

    /// `zfs hold TAG SNAP`; an existing hold with that tag is fine.
    pub fn hold(&self, snapshot: &str, tag: &str) -> Result<()> {
        match self.output(&["hold", tag, snapshot]) {
            Err(Error::Failed { stderr, .. }) if stderr.contains("tag already exists") => Ok(()),
            r => r.map(drop),
        }
    }

    /// `zfs release TAG SNAP`; a hold that is not there (or a snapshot that is gone) is
    /// fine: the goal is that it is not held.
    pub fn release(&self, snapshot: &str, tag: &str) -> Result<()> {
        match self.output(&["release", tag, snapshot]) {
            Err(Error::Failed { stderr, kind, .. })
                if kind == FailureKind::NotFound || stderr.contains("no such tag") =>
            {
                Ok(())
            }
            r => r.map(drop),
        }
    }

    /// `zfs rename FROM TO` (TO's parent must exist).
    pub fn rename(&self, from: &Dataset, to: &Dataset) -> Result<()> {
        self.output(&["rename", from.as_str(), to.as_str()])
            .map(drop)
    }

    /// `zfs create [-p] [-o k=v]... DS`.
    pub fn create(&self, ds: &Dataset, parents: bool, props: &[(&str, &str)]) -> Result<()> {
        let props: Vec<String> = props.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["create"];
        if parents {
            args.push("-p");
        }
        for p in &props {
            args.extend(["-o", p.as_str()]);
        }
        args.push(ds.as_str());
        self.output(&args).map(drop)
    }

    /// `zfs rollback [-r] DS@SNAP`: with `destroy_newer`, snapshots newer than SNAP are
    /// destroyed. Only called when the receiver's operator allowed it.
    pub fn rollback(&self, ds: &Dataset, snap: &str, destroy_newer: bool) -> Result<()> {
        let full = ds.snapshot(snap);
        let mut args = vec!["rollback"];
        if destroy_newer {
            args.push("-r");
        }
        args.push(&full);
        self.output(&args).map(drop)
    }

    /// `zfs destroy -r DS`. Used only on zfsync's own buffer datasets.
    pub fn destroy_recursive(&self, ds: &Dataset) -> Result<()> {
        self.output(&["destroy", "-r", ds.as_str()]).map(drop)
    }

    /// `zfs set PROP=VALUE DS`.
    pub fn set(&self, ds: &str, prop: &str, value: &str) -> Result<()> {
        self.output(&["set", &format!("{prop}={value}"), ds])
            .map(drop)
    }

    /// `(name, value)` of one property for `root` and everything below it, snapshots
    /// included, in one command (`zfs get -Hp -r -s local`): only values set on the
    /// dataset or snapshot itself, not inherited ones (a user property set on a
    /// filesystem would otherwise show on every snapshot below it).
    pub fn get_local_recursive(&self, root: &Dataset, prop: &str) -> Result<Vec<(String, String)>> {
        let args = [
            "get",
            "-Hp",
            "-r",
            "-s",
            "local",
            "-o",
            "name,value",
            prop,
            root.as_str(),
        ];
        let out = self.output(&args)?;
        out.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split_once('\t')
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .ok_or_else(|| Error::Parse {
                        cmd: self.command_line(&args),
                        line: l.into(),
                        why: "expected 2 fields".into(),
                    })
            })
            .collect()
    }

    /// `zfs inherit PROP NAME`: clears a local (user) property.
    pub fn inherit(&self, name: &str, prop: &str) -> Result<()> {
        self.output(&["inherit", prop, name]).map(drop)
    }

    /// The value of one property, exactly (`zfs get -Hp`); `None` if the dataset does not
    /// exist.
    pub fn get(&self, ds: &str, prop: &str) -> Result<Option<String>> {
        match self.output(&["get", "-Hp", "-o", "value", prop, ds]) {
            Ok(out) => Ok(Some(out.trim_end_matches('\n').to_string())),
            Err(e) if e.kind() == FailureKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Asks for a 1 MiB pipe buffer; failing that (an old kernel, a lower limit), keeps the
/// default.
fn grow_pipe(fd: std::os::fd::RawFd) {
    // SAFETY: fcntl on a pipe fd we own; no memory is passed.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20);
    }
}

/// One row of a listing: name, type, guid, createtxg.
#[derive(Debug, Default)]
struct Row {
    name: String,
    kind: String,
    guid: Option<u64>,
    createtxg: Option<u64>,
    encryption: Option<String>,
    resume_token: Option<String>,
}

fn parse_num(cmd: &str, line: &str, v: &str) -> Result<Option<u64>> {
    if v == "-" {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| Error::Parse {
        cmd: cmd.into(),
        line: line.into(),
        why: format!("{v:?} is not a number"),
    })
}

/// `zfs list -Hp -o name,type,guid,createtxg`: one row per line, tab-separated.
fn parse_list_rows(cmd: &str, out: &str) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 6 {
            return Err(Error::Parse {
                cmd: cmd.into(),
                line: line.into(),
                why: "expected 6 fields".into(),
            });
        }
        let text = |v: &str| (v != "-" && !v.is_empty()).then(|| v.to_string());
        rows.push(Row {
            name: f[0].into(),
            kind: f[1].into(),
            guid: parse_num(cmd, line, f[2])?,
            createtxg: parse_num(cmd, line, f[3])?,
            encryption: text(f[4]),
            resume_token: text(f[5]),
        });
    }
    Ok(rows)
}

/// `zfs get -Hp -o name,property,value type,guid,createtxg`: one line per property, the
/// lines of one dataset together.
fn parse_get_rows(cmd: &str, out: &str) -> Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 3 {
            return Err(Error::Parse {
                cmd: cmd.into(),
                line: line.into(),
                why: "expected 3 fields".into(),
            });
        }
        let i = *index.entry(f[0].to_string()).or_insert_with(|| {
            rows.push(Row {
                name: f[0].into(),
                ..Row::default()
            });
            rows.len() - 1
        });
        match f[1] {
            "type" => rows[i].kind = f[2].into(),
            "guid" => rows[i].guid = parse_num(cmd, line, f[2])?,
            "createtxg" => rows[i].createtxg = parse_num(cmd, line, f[2])?,
            _ => {}
        }
    }
    Ok(rows)
}

/// Groups rows into datasets with their snapshots, parents first, snapshots by createtxg.
fn build_tree(cmd: &str, rows: Vec<Row>) -> Result<Vec<DatasetInfo>> {
    let mut datasets: Vec<DatasetInfo> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut snaps: Vec<(String, Snapshot)> = Vec::new();
    for row in rows {
        let bad = |why: &str| Error::Parse {
            cmd: cmd.into(),
            line: row.name.clone(),
            why: why.into(),
        };
        match row.kind.as_str() {
            "filesystem" | "volume" => {
                let kind = if row.kind == "volume" {
                    Kind::Volume
                } else {
                    Kind::Filesystem
                };
                index.insert(row.name.clone(), datasets.len());
                datasets.push(DatasetInfo {
                    name: row.name,
                    kind,
                    snapshots: Vec::new(),
                    encrypted: row.encryption.is_some_and(|e| e != "off"),
                    resume_token: row.resume_token,
                });
            }
            "snapshot" => {
                let (ds, snap) = row
                    .name
                    .split_once('@')
                    .ok_or_else(|| bad("snapshot without '@'"))?;
                let guid = row.guid.ok_or_else(|| bad("snapshot without guid"))?;
                snaps.push((
                    ds.to_string(),
                    Snapshot {
                        name: snap.to_string(),
                        guid,
                        createtxg: row.createtxg.unwrap_or(0),
                    },
                ));
            }
            _ => {} // bookmarks and anything newer: not ours to replicate
        }
    }
    for (ds, snap) in snaps {
        if let Some(&i) = index.get(&ds) {
            datasets[i].snapshots.push(snap);
        }
    }
    for d in &mut datasets {
        d.snapshots.sort_by_key(|s| s.createtxg);
    }
    // Component-wise order puts every parent before its children.
    datasets.sort_by(|a, b| a.name.split('/').cmp(b.name.split('/')));
    Ok(datasets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_rows_from_zfs_fuse() {
        // Verbatim shape of zfs-fuse's `zfs get -Hp -r -o name,property,value type,guid,createtxg`.
        let out = "p/a\ttype\tfilesystem\np/a\tguid\t16371779888081111003\np/a\tcreatetxg\t7\n\
                   p/a@s2\ttype\tsnapshot\np/a@s2\tguid\t2\np/a@s2\tcreatetxg\t20\n\
                   p/a@s1\ttype\tsnapshot\np/a@s1\tguid\t1\np/a@s1\tcreatetxg\t16\n\
                   p/a/b\ttype\tvolume\np/a/b\tguid\t8\np/a/b\tcreatetxg\t8\n";
        let tree = build_tree("t", parse_get_rows("t", out).unwrap()).unwrap();
        assert_eq!(tree.len(), 2);
        assert_eq!(tree[0].name, "p/a");
        let names: Vec<_> = tree[0]
            .snapshots
            .iter()
            .map(|s| (s.name.as_str(), s.guid))
            .collect();
        assert_eq!(names, [("s1", 1), ("s2", 2)]);
        assert_eq!(tree[1].kind, Kind::Volume);
    }

    #[test]
    fn list_rows_from_openzfs() {
        let out = "p/a/b\tfilesystem\t9\t30\taes-256-gcm\t-\np/a\tfilesystem\t3\t5\toff\t1-abc\n\
                   p/a@x\tsnapshot\t11\t6\t-\t-\np/a#bm\tbookmark\t11\t6\t-\t-\n";
        let tree = build_tree("t", parse_list_rows("t", out).unwrap()).unwrap();
        let names: Vec<_> = tree.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["p/a", "p/a/b"]);
        assert_eq!(tree[0].snapshots.len(), 1);
        assert_eq!(tree[0].resume_token.as_deref(), Some("1-abc"));
        assert!(!tree[0].encrypted);
        assert!(tree[1].encrypted);
    }

    #[test]
    fn abbreviated_numbers_are_refused() {
        // zfs-fuse's `zfs list` prints "9.75E" for a GUID: never parse that as data.
        assert!(parse_list_rows("t", "p/a@x\tsnapshot\t9.75E\t6\t-\t-\n").is_err());
    }

    #[test]
    fn parents_sort_before_children() {
        let out = "p/a-b\tfilesystem\t1\t1\toff\t-\np/a/c\tfilesystem\t2\t2\toff\t-\np/a\tfilesystem\t3\t3\toff\t-\n";
        let tree = build_tree("t", parse_list_rows("t", out).unwrap()).unwrap();
        let names: Vec<_> = tree.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["p/a", "p/a/c", "p/a-b"]);
    }

    #[test]
    fn resume_token_contents_are_read() {
        let text = "resume token contents:\nnvlist version: 0\n\tfromguid = 0x10\n\tobject = 0x2\n\toffset = 0x0\n\tbytes = 0x1f40\n\ttoguid = 0xc29ab1e6d5bcf52f\n\ttoname = tank/data@s2\n\tcompressok = 1\n\trawok = 1\nsend from tank/data@s1 estimated size is 1M\n";
        let t = TokenInfo::parse(text).unwrap();
        assert_eq!(t.toname.as_deref(), Some("tank/data@s2"));
        assert_eq!(t.toguid, Some(0xc29ab1e6d5bcf52f));
        assert_eq!(t.fromguid, Some(0x10));
        assert_eq!(t.bytes, Some(8000));
        assert!(t.rawok);
        // A flag printed without a value; no base; no rawok at all.
        assert!(TokenInfo::parse("\trawok\n").unwrap().rawok);
        let t = TokenInfo::parse("\ttoname = tank/data@s1\n\tembedok = 1\n").unwrap();
        assert!(!t.rawok);
        assert_eq!(t.fromguid, None);
        assert_eq!(t.toguid, None);
        // A second toname (a crafted string value printed as a line) is refused.
        let crafted = "\ttoname = other/ds@x\n\tnote = a\n\ttoname = tank/data@s2\n";
        assert!(TokenInfo::parse(crafted)
            .unwrap_err()
            .contains("toname twice"));
    }

    #[test]
    fn stderr_is_classified() {
        assert_eq!(
            classify("cannot open 'p/x': dataset does not exist"),
            FailureKind::NotFound
        );
        assert_eq!(
            classify("cannot receive incremental stream: destination p/x has been modified\nsince most recent snapshot"),
            FailureKind::DestinationModified
        );
        assert_eq!(classify("cannot receive incremental stream: most recent snapshot of p/x does not\nmatch incremental source"), FailureKind::DestinationMismatch);
        assert_eq!(
            classify("cannot receive new filesystem stream: destination 'p/x' exists"),
            FailureKind::DestinationMismatch
        );
        assert_eq!(
            classify("cannot receive: out of space"),
            FailureKind::NoSpace
        );
        assert_eq!(classify("something else"), FailureKind::Other);
    }
}
