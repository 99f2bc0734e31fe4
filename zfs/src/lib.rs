//! The one place in zfsync that runs `zfs` (and `zpool`, for monitoring: [`Zpool`]).
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
//! This file holds [`Zfs`] and its commands. The modules beside it run nothing of their
//! own: they say what a version can do, which columns a listing asks for, and read what
//! zfs prints (listings, snapshot lifecycle facts, resume tokens, error texts, the head of
//! a send stream: [`StreamFlags`]); [`protect`] moves zfsync's marks, holds and bookmarks
//! on base snapshots through `Zfs`'s commands.
//!
//! This crate does not decide anything about replication (which snapshot to send, where to
//! receive): that is the sender's and receiver's business.

mod capabilities;
mod error;
mod estimate;
mod facts;
mod get;
mod listing;
use listing::Of;
mod name;
mod process;
pub mod protect;
mod stream;
mod token;
mod zpool;

pub use capabilities::Capabilities;
pub use error::{Error, FailureKind, Result};
pub use estimate::SendSize;
pub use facts::{DatasetFacts, SnapshotFacts};
pub use listing::{
    Bookmark, DatasetInfo, Kind, Marks, Snapshot, PLACEHOLDER_PROPERTY, ROLLBACK_PROPERTY,
    SYNC_PROPERTY,
};
pub use name::{
    check_component, check_dataset_name, check_relative_path, check_snapshot_name, Dataset,
    NameError, MAX_NAME_LEN,
};
pub use process::ZfsProcess;
pub use stream::{flags_head_len, stream_head, StreamFlags, StreamHead, STREAM_HEAD};
pub use token::TokenInfo;
pub use zpool::{DeviceErrors, PoolInfo, PoolStatus, Zpool};

use log::debug;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Properties a received stream may not set (`zfs recv -x`, where the ZFS has it): they
/// would decide where the backup host mounts the data or whom it shares it with, or make
/// a replica writable (a write, even a mount that updates access times, breaks the next
/// incremental; `readonly` is the receiver's to set).
pub const RECV_EXCLUDED: [&str; 5] = ["mountpoint", "canmount", "sharenfs", "sharesmb", "readonly"];

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
    /// `-p`: the dataset's properties go with the stream.
    pub props: bool,
}

/// Options of `zfs recv`.
#[derive(Clone, Debug, Default)]
pub struct RecvOptions {
    /// `-F`: roll back / overwrite. Only ever set when the receiver's operator allowed it.
    pub force: bool,
    /// `-o canmount=noauto` (OpenZFS, new filesystems): a received filesystem never mounts
    /// itself later over the backup host's own paths.
    pub no_automount: bool,
    /// `-o readonly=on` (OpenZFS; elsewhere the caller sets it after the receive): for
    /// the replica's root, whose children inherit it.
    pub read_only: bool,
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
            Ok(out) => Capabilities::from_version_output(&out),
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
    /// A receiver's listing: each dataset with its [`Marks`].
    pub fn list_tree(&self, root: &Dataset) -> Result<Vec<DatasetInfo>> {
        self.list(root, None, Of::Receiver)
    }

    /// [`Zfs::list_tree`] for a source: with each dataset's bookmarks, where the ZFS has
    /// them ([`Capabilities::bookmarks`]), and without the receiver's [`Marks`] (left
    /// empty); still one zfs command.
    pub fn list_source_tree(&self, root: &Dataset) -> Result<Vec<DatasetInfo>> {
        let bookmarks = self.caps.bookmarks && self.caps.list_parsable;
        self.list(root, None, Of::Source { bookmarks })
    }

    /// The snapshots of one dataset, oldest first, or `None` if it does not exist.
    pub fn list_snapshots(&self, ds: &Dataset) -> Result<Option<Vec<Snapshot>>> {
        Ok(self.dataset(ds)?.map(|d| d.snapshots))
    }

    /// One dataset with its snapshots (and resume token, and [`Marks`]), or `None` if it
    /// does not exist.
    pub fn dataset(&self, ds: &Dataset) -> Result<Option<DatasetInfo>> {
        match self.list(ds, Some(1), Of::Receiver) {
            Ok(list) => Ok(list.into_iter().find(|d| d.name == ds.as_str())),
            Err(e) if e.kind() == FailureKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The direct children (filesystems and volumes) of `ds`, each with its snapshots,
    /// resume token and [`Marks`], or `None` if `ds` does not exist.
    pub fn list_children(&self, ds: &Dataset) -> Result<Option<Vec<DatasetInfo>>> {
        match self.list(ds, Some(2), Of::Receiver) {
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

    fn list(&self, root: &Dataset, depth: Option<u32>, of: Of) -> Result<Vec<DatasetInfo>> {
        let parsable = self.caps.list_parsable;
        let args = listing::args(parsable, depth, root.as_str(), of);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.output(&args)?;
        listing::parse(parsable, of, &self.command_line(&args), &out)
    }

    /// Starts `zfs send` of `snapshot` (full name), writing the stream to the process's
    /// stdout.
    pub fn send(&self, snapshot: &str, opts: &SendOptions) -> Result<ZfsProcess> {
        self.spawn(&self.send_args(snapshot, opts), false, true)
    }

    /// The arguments of `zfs send` for `send`: the flags asked for that this ZFS has.
    fn send_args<'a>(&self, snapshot: &'a str, opts: &'a SendOptions) -> Vec<&'a str> {
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
        if opts.props {
            args.push("-p");
        }
        if let Some(from) = &opts.from {
            args.extend([if opts.intermediates { "-I" } else { "-i" }, from.as_str()]);
        }
        args.push(snapshot);
        args
    }

    /// What `send` of `snapshot` with `opts` is expected to carry: `zfs send -nvP` where
    /// the ZFS has it (OpenZFS), else for a full stream the snapshot's `referenced`
    /// (approximate); `None` for an incremental one without a dry run.
    pub fn send_size(&self, snapshot: &str, opts: &SendOptions) -> Result<Option<SendSize>> {
        if self.caps.send_dry_run {
            let mut args = self.send_args(snapshot, opts);
            args.insert(1, "-nvP");
            return self.dry_run_size(&args, &self.command_line(&args));
        }
        if opts.from.is_some() {
            return Ok(None);
        }
        let out = self.output(&["get", "-Hp", "-o", "value", "referenced", snapshot])?;
        Ok(out.trim().parse().ok().map(|bytes| SendSize {
            bytes,
            approximate: true,
        }))
    }

    /// What `send_resume` of `token` is expected to carry (`zfs send -nvP -t`).
    pub fn resume_size(&self, token: &str) -> Result<Option<SendSize>> {
        if !self.caps.send_dry_run {
            return Ok(None);
        }
        let shown = self.command_line(&["send", "-nvP", "-t", "TOKEN"]);
        self.dry_run_size(&["send", "-nvP", "-t", token], &shown)
    }

    fn dry_run_size(&self, args: &[&str], shown: &str) -> Result<Option<SendSize>> {
        let (stdout, stderr) = self.capture(args, shown)?;
        let out = format!("{}\n{stderr}", String::from_utf8_lossy(&stdout));
        Ok(estimate::parse_dry_run(&out).map(|bytes| SendSize {
            bytes,
            approximate: false,
        }))
    }

    /// Starts `zfs recv` into `target`, reading the stream from the process's stdin.
    /// Received datasets are not mounted where the ZFS allows it (`-u`).
    pub fn recv(&self, target: &Dataset, opts: &RecvOptions) -> Result<ZfsProcess> {
        self.spawn(&recv_args(&self.caps, target, opts), true, false)
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

    /// `zfs destroy -r DS`. Used only on zfsync's own buffer datasets and on the orphans
    /// a receiver's `--orphans-after` destroys.
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
        Ok(self
            .get_local(root, &[prop])?
            .into_iter()
            .map(|(name, _, value)| (name, value))
            .collect())
    }

    /// `(name, property, value)` of the properties `props` (`["all"]`: every one) set
    /// locally on `root` and everything below it, snapshots included, in one command.
    /// See [`Zfs::get_local_recursive`].
    pub fn get_local(
        &self,
        root: &Dataset,
        props: &[&str],
    ) -> Result<Vec<(String, String, String)>> {
        let props = props.join(",");
        let args = [
            "get",
            "-Hp",
            "-r",
            "-s",
            "local",
            "-o",
            get::FIELDS,
            &props,
            root.as_str(),
        ];
        let out = self.output(&args)?;
        let lines = get::lines(&self.command_line(&args), &out)?;
        Ok(lines
            .into_iter()
            .map(|(name, prop, value)| (name.into(), prop.into(), value.into()))
            .collect())
    }

    /// `(name, source)` of one property for `root` and everything below it, snapshots
    /// included: where each value comes from, as zfs words it ("local", "inherited from
    /// tank/data", "-" for none).
    pub fn get_sources_recursive(
        &self,
        root: &Dataset,
        prop: &str,
    ) -> Result<Vec<(String, String)>> {
        let args = ["get", "-H", "-r", "-o", "name,source", prop, root.as_str()];
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

    /// `root` and every filesystem and volume below it with their snapshots' creation
    /// times and holds, and with `written` each dataset's bytes written since its newest
    /// snapshot (where the ZFS has the property, else `None`). One zfs command. Fails with
    /// [`FailureKind::NotFound`] if `root` does not exist.
    pub fn lifecycle_tree(&self, root: &Dataset, written: bool) -> Result<Vec<DatasetFacts>> {
        let args = facts::args(written && self.caps.written, true, &[root.as_str()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.output(&args)?;
        facts::parse(&self.command_line(&args), &out)
    }

    /// The creation times and holds of the snapshots `names` (full names), in one zfs
    /// command; a snapshot that does not exist fails it.
    pub fn snapshot_facts(&self, names: &[String]) -> Result<Vec<(String, SnapshotFacts)>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let args = facts::args(false, false, &names);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.output(&args)?;
        facts::parse_snapshots(&self.command_line(&args), &out)
    }

    /// `zfs snapshot [-r] NAME...`: every name (`DATASET@SNAP`) at once. More than one
    /// name needs [`Capabilities::snapshot_many`]; `recursive` takes each name's dataset
    /// and everything below it, all in the same instant.
    pub fn snapshot(&self, names: &[String], recursive: bool) -> Result<()> {
        let mut args = vec!["snapshot"];
        if recursive {
            args.push("-r");
        }
        args.extend(names.iter().map(String::as_str));
        self.output(&args).map(drop)
    }

    /// `zfs destroy DS@SNAP`: one snapshot, never a dataset (the name is checked). A held
    /// snapshot, or one with clones, is refused by zfs.
    pub fn destroy_snapshot(&self, ds: &Dataset, snap: &str) -> Result<()> {
        check_snapshot_name(snap)?;
        self.output(&["destroy", &ds.snapshot(snap)]).map(drop)
    }

    /// The value of `prop` on `name` (`zfs get -H -o value`), wherever it comes from.
    pub fn get(&self, name: &str, prop: &str) -> Result<String> {
        let out = self.output(&["get", "-H", "-o", "value", prop, name])?;
        Ok(out.trim_end_matches('\n').to_string())
    }

    /// The value of `prop` set on `name` itself (`zfs get -H -s local`), or `None` when
    /// it is not set there: a user property set on a parent shows on its children as
    /// inherited, and that does not count.
    pub fn get_local_value(&self, name: &str, prop: &str) -> Result<Option<String>> {
        let out = self.output(&["get", "-H", "-s", "local", "-o", "value", prop, name])?;
        let value = out.trim_end_matches('\n');
        Ok((!value.is_empty()).then(|| value.to_string()))
    }

    /// `zfs bookmark DS@SNAP DS#NAME`: a bookmark `name` of `snapshot` (full name). A
    /// bookmark of that name that exists already fails it (`bookmark exists`), whichever
    /// snapshot it was made from.
    pub fn bookmark(&self, snapshot: &str, name: &str) -> Result<()> {
        check_component(name)?;
        let (ds, _) = snapshot.split_once('@').unwrap_or((snapshot, ""));
        self.output(&["bookmark", snapshot, &format!("{ds}#{name}")])
            .map(drop)
    }

    /// `zfs destroy DS#NAME`: one bookmark, never a dataset or snapshot (the name is
    /// checked). A bookmark that is not there is fine: the goal is that it is gone.
    pub fn destroy_bookmark(&self, ds: &str, name: &str) -> Result<()> {
        check_component(name)?;
        match self.output(&["destroy", &format!("{ds}#{name}")]) {
            Err(e) if e.kind() == FailureKind::NotFound => Ok(()),
            r => r.map(drop),
        }
    }

    /// `zfs inherit PROP NAME`: clears a local (user) property.
    pub fn inherit(&self, name: &str, prop: &str) -> Result<()> {
        self.output(&["inherit", prop, name]).map(drop)
    }
}

/// The arguments of `zfs recv` into `target` with `opts`, as far as `caps` allow.
fn recv_args<'a>(caps: &Capabilities, target: &'a Dataset, opts: &RecvOptions) -> Vec<&'a str> {
    let mut args = vec!["recv"];
    if caps.recv_unmounted {
        args.push("-u");
    }
    if opts.force {
        args.push("-F");
    }
    if opts.resumable && caps.resumable {
        args.push("-s");
    }
    // `-o` came with `-u` and `-x` (OpenZFS); a property is given one of them at most.
    if opts.no_automount && caps.recv_unmounted {
        args.extend(["-o", "canmount=noauto"]);
    }
    if opts.read_only && caps.recv_unmounted {
        args.extend(["-o", "readonly=on"]);
    }
    if caps.recv_exclude {
        // The stream comes from the network: properties in it (a `send -p` or `-R`
        // stream) must not decide where anything mounts or what is shared on this host,
        // nor make a replica writable.
        for p in RECV_EXCLUDED {
            let set = (opts.no_automount && p == "canmount") || (opts.read_only && p == "readonly");
            if !set {
                args.extend(["-x", p]);
            }
        }
    }
    args.push(target.as_str());
    args
}

/// Asks for a 1 MiB pipe buffer; failing that (an old kernel, a lower limit), keeps the
/// default.
fn grow_pipe(fd: std::os::fd::RawFd) {
    // SAFETY: fcntl on a pipe fd we own; no memory is passed.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zfs(caps: Capabilities) -> Zfs {
        Zfs {
            bin: "zfs".into(),
            caps,
            limit: None,
        }
    }

    #[test]
    fn a_send_carries_properties_only_when_asked() {
        let mut opts = SendOptions {
            from: Some("@s1".into()),
            compressed: true,
            ..SendOptions::default()
        };
        let openzfs = zfs(Capabilities::openzfs("2.2.0"));
        assert_eq!(
            openzfs.send_args("p/a@s2", &opts).join(" "),
            "send -c -i @s1 p/a@s2"
        );
        opts.props = true;
        assert_eq!(
            openzfs.send_args("p/a@s2", &opts).join(" "),
            "send -c -p -i @s1 p/a@s2"
        );
        let legacy = zfs(Capabilities::legacy());
        assert_eq!(
            legacy.send_args("p/a@s2", &opts).join(" "),
            "send -p -i @s1 p/a@s2"
        );
    }

    fn args(caps: Capabilities, opts: RecvOptions) -> String {
        let target = Dataset::new("pool/t").unwrap();
        recv_args(&caps, &target, &opts).join(" ")
    }

    // issue 14 item 4: no stream can make a replica writable on OpenZFS (`-x readonly`),
    // and the replica's root is received read-only (`-o readonly=on`, not `-x` too).
    #[test]
    fn recv_keeps_the_streams_properties_out_where_it_can() {
        let cases = [
            (
                Capabilities::openzfs("2.3.2"),
                RecvOptions::default(),
                "recv -u -x mountpoint -x canmount -x sharenfs -x sharesmb -x readonly pool/t",
            ),
            (
                Capabilities::openzfs("2.3.2"),
                RecvOptions {
                    force: true,
                    resumable: true,
                    no_automount: true,
                    read_only: true,
                },
                "recv -u -F -s -o canmount=noauto -o readonly=on -x mountpoint -x sharenfs -x sharesmb pool/t",
            ),
            (
                Capabilities::legacy(),
                RecvOptions {
                    force: true,
                    resumable: true,
                    no_automount: true,
                    read_only: true,
                },
                "recv -F pool/t",
            ),
        ];
        for (caps, opts, want) in cases {
            assert_eq!(args(caps, opts), want);
        }
    }
}
