//! One connection: the greeting, then offers and cleanups until goodbye.
//!
//! A session never trusts what it reads: every dataset path is checked against ZFS naming
//! rules and joined under TARGET, every snapshot name is checked, and every read has the
//! configured timeout, so a silent or broken peer costs this one connection.

use crate::plan::{Decision, Matcher};
use crate::tree::{DatasetLock, Location};
use crate::{Error, Result, Shared};
use log::{debug, info, warn};
use std::io::{BufReader, BufWriter};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use zfsync_protocol::{auth, DatasetKind};
use zfsync_protocol::{
    Frame, FrameReader, FrameWriter, Message, MoveError, Outcome, Plan, Reason, VERSION,
};
use zfsync_zfs::{
    check_relative_path, check_snapshot_name, protect, Dataset, DatasetInfo, RecvOptions, Snapshot,
};

pub(crate) struct Session<'a> {
    shared: &'a Shared<'a>,
    peer: SocketAddr,
    busy: &'a AtomicBool,
    reader: FrameReader<BufReader<TcpStream>>,
    writer: FrameWriter<BufWriter<TcpStream>>,
    /// Where the sender's root lands, relative to TARGET ("" = TARGET).
    base: String,
    /// Whether the sent root's replica exists without being one (no snapshots): then its
    /// children are refused too, rather than grown inside a dataset that was refused.
    /// Looked up once per session, at the first child offered.
    root_not_replica: std::cell::OnceCell<Option<String>>,
}

/// What the receiver will do for an offer it accepted.
struct Accepted<'a> {
    location: Location,
    plan: Plan,
    force: bool,
    /// The snapshot that carries the receiver's hold before this receive, whence the hold
    /// moves to the new newest: the base of an incremental (after a rollback, the
    /// destination's newest is gone), the destination's newest for a resume.
    held_before: Option<String>,
    _lock: Option<DatasetLock<'a>>,
}

/// Ends a `zfs recv` whose stream was cut or refused: its input is closed (after what is
/// already queued), so ZFS sees a truncated stream and discards the partial receive, or
/// keeps its resume token; only one that does not end within `limit` is killed. Returns
/// once it is gone, so the dataset's lock is not released while a half-received dataset
/// is still visible (zfs-fuse shows it until its daemon has read the end of the pipe).
/// The caller closes the stream's pipe first: that is what ends the input.
fn end_cut_recv(proc: zfsync_zfs::ZfsProcess, limit: Duration) {
    let _ = proc.wait_or_kill(limit);
}

/// Joins two relative paths ("" is the empty path).
fn join_rel(a: &str, b: &str) -> String {
    match (a, b) {
        (a, "") => a.to_string(),
        ("", b) => b.to_string(),
        (a, b) => format!("{a}/{b}"),
    }
}

/// A refusal: reason and text for the sender.
type Refusal = (Reason, String);

impl<'a> Session<'a> {
    pub(crate) fn new(
        shared: &'a Shared<'a>,
        stream: TcpStream,
        peer: SocketAddr,
        busy: &'a AtomicBool,
    ) -> Result<Self> {
        zfsync_link::configure(&stream, shared.config.timeout)?;
        let reader = FrameReader::new(BufReader::with_capacity(256 << 10, stream.try_clone()?));
        let writer = FrameWriter::new(BufWriter::with_capacity(64 << 10, stream));
        Ok(Session {
            shared,
            peer,
            busy,
            reader,
            writer,
            base: String::new(),
            root_not_replica: std::cell::OnceCell::new(),
        })
    }

    pub(crate) fn run(mut self) -> Result<()> {
        // The whole greeting (and authentication) must finish within the timeout: a peer
        // that trickles a byte at a time must not hold a connection slot for ever.
        let watchdog = self.greeting_deadline()?;
        let greeted = self.greet();
        drop(watchdog);
        greeted?;
        // List this sender's side now, while it lists its own: its offers then cost no zfs
        // command. After the greeting's deadline: a big destination may take longer to
        // list than a greeting may (a zfs command's own bound is 5 x --timeout). A failure
        // shows again, with context, at the first offer.
        let tree = &self.shared.tree;
        if let Ok(base) = tree.target.join(&self.base) {
            let warmed =
                self.keeping_alive(|| tree.catalog.warm(self.shared.zfs, &base, &tree.buffer))?;
            if let Err(e) = warmed {
                debug!("catalog warm-up failed base={base} error={e}");
            }
        }
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                let _ = self.writer.send(&Message::Error {
                    reason: Reason::ShuttingDown,
                    text: "receiver is stopping".into(),
                });
                return Ok(());
            }
            let msg = match self.reader.read_message()? {
                None => {
                    debug!("peer closed peer={}", self.peer);
                    return Ok(());
                }
                Some(m) => m,
            };
            match msg {
                Message::Offer {
                    path,
                    kind,
                    count,
                    dry_run,
                } => {
                    self.busy.store(true, Ordering::SeqCst);
                    let r = self.offer(&path, kind, count, dry_run);
                    self.busy.store(false, Ordering::SeqCst);
                    r?;
                }
                Message::Cleanup => {
                    let r = self.shared.tree.cleanup(self.shared.zfs);
                    info!(
                        "cleanup peer={} placed={} removed={} waiting={} failed={}",
                        self.peer, r.placed, r.removed, r.waiting, r.failed
                    );
                    self.writer.send(&Message::CleanupDone {
                        placed: r.placed,
                        removed: r.removed,
                        waiting: r.waiting,
                        failed: r.failed,
                        text: r.notes.join("\n"),
                    })?;
                }
                Message::KeepAlive => {}
                Message::Bye => return Ok(()),
                Message::Error { reason, text } => {
                    return Err(Error::Peer(format!("{}: {text}", reason.as_str())));
                }
                other => return self.violation(&format!("unexpected {} message", other.name())),
            }
        }
    }

    fn violation<T>(&mut self, what: &str) -> Result<T> {
        let _ = self.writer.send(&Message::Error {
            reason: Reason::Protocol,
            text: what.to_string(),
        });
        Err(Error::Violation(what.to_string()))
    }

    /// Runs `work` while a thread sends KeepAlive every `--timeout`/3, so that a sender
    /// waiting for an answer does not give up while the receiver works on it (a listing of
    /// a big destination, a wait for a lock or a parent). Only between messages, never
    /// inside a stream: the thread has stopped, and with it its writing, when this returns,
    /// so no frame of the caller's can interleave with one of its.
    fn keeping_alive<T>(&self, work: impl FnOnce() -> T) -> Result<T> {
        let stream = self.writer.get_ref().get_ref().try_clone()?;
        let every = (self.shared.config.timeout / 3).max(Duration::from_millis(100));
        let (done, stop) = crossbeam_channel::bounded::<()>(0);
        Ok(std::thread::scope(|s| {
            s.spawn(move || {
                let mut w = FrameWriter::new(BufWriter::new(stream));
                while stop.recv_timeout(every) == Err(crossbeam_channel::RecvTimeoutError::Timeout)
                {
                    if w.send(&Message::KeepAlive).is_err() {
                        break;
                    }
                }
            });
            let out = work();
            drop(done);
            out
        }))
    }

    /// Shuts the connection down unless the returned sender is dropped within the timeout.
    fn greeting_deadline(&self) -> Result<crossbeam_channel::Sender<()>> {
        let stream = self.writer.get_ref().get_ref().try_clone()?;
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let timeout = self.shared.config.timeout;
        let peer = self.peer;
        std::thread::spawn(move || {
            if rx.recv_timeout(timeout) == Err(crossbeam_channel::RecvTimeoutError::Timeout) {
                warn!("greeting not finished in time peer={peer}: closing");
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        });
        Ok(tx)
    }

    fn greet(&mut self) -> Result<()> {
        let (version, agent, dest, client) = match self.reader.read_message()? {
            Some(Message::Hello {
                version,
                agent,
                dest,
                client,
            }) => (version, agent, dest, client),
            Some(other) => return self.violation(&format!("expected hello, got {}", other.name())),
            None => return Err(Error::Violation("closed before hello".into())),
        };
        if version != VERSION {
            let text = format!(
                "receiver speaks protocol version {VERSION}, sender {version}: upgrade one side"
            );
            return self.refuse_session(Reason::VersionMismatch, text);
        }
        let (subtree, proof) = if self.shared.config.keys.is_empty() {
            (String::new(), Vec::new())
        } else {
            match self.authenticate(&client, &dest)? {
                Some(ok) => ok,
                None => {
                    warn!("authentication failed peer={} client={client:?}", self.peer);
                    return self.refuse_session(Reason::Denied, "authentication failed".into());
                }
            }
        };
        let base = join_rel(&subtree, &dest);
        if let Err(e) = check_relative_path(&dest).and_then(|_| self.shared.tree.target.join(&base))
        {
            return self.refuse_session(
                Reason::InvalidPath,
                format!("destination path refused: {e}"),
            );
        }
        info!(
            "session start peer={} agent={:?} client={:?} base={:?}",
            self.peer, agent, client, base
        );
        self.base = base;
        self.writer.send(&Message::Welcome {
            version: VERSION,
            agent: format!("zfsync-recv {}", env!("CARGO_PKG_VERSION")),
            features: 0,
            proof,
        })?;
        Ok(())
    }

    /// Sends a session-ending error and returns it as this session's error.
    fn refuse_session(&mut self, reason: Reason, text: String) -> Result<()> {
        self.writer.send(&Message::Error {
            reason,
            text: text.clone(),
        })?;
        Err(Error::Violation(text))
    }

    /// Challenge-response with the client's key. Returns its subtree and the receiver's
    /// proof, or `None` when it failed. An unknown client name is challenged like a known
    /// one, so that the answer does not tell which names exist.
    fn authenticate(&mut self, client: &str, dest: &str) -> Result<Option<(String, Vec<u8>)>> {
        let key = self.shared.config.keys.iter().find(|k| k.name == client);
        let server_nonce = auth::nonce()?.to_vec();
        self.writer.send(&Message::Challenge {
            nonce: server_nonce.clone(),
        })?;
        let (client_nonce, mac) = match self.reader.read_message()? {
            Some(Message::Proof { nonce, mac }) => (nonce, mac),
            Some(other) => return self.violation(&format!("expected proof, got {}", other.name())),
            None => return Err(Error::Violation("closed before proof".into())),
        };
        let Some(key) = key else { return Ok(None) };
        if !auth::verify_client(
            &key.secret,
            &server_nonce,
            &client_nonce,
            client,
            dest,
            &mac,
        ) {
            return Ok(None);
        }
        let proof = auth::server_proof(&key.secret, &server_nonce, &client_nonce, client);
        Ok(Some((key.subtree.clone(), proof)))
    }

    /// One offered dataset: decide, answer, and receive the stream if one follows.
    fn offer(&mut self, path: &str, kind: DatasetKind, count: u32, dry_run: bool) -> Result<()> {
        let started = Instant::now();
        let rel = join_rel(&self.base, path);
        let is_root = path.is_empty();
        let located = self.keeping_alive(|| self.locate(path, &rel, is_root, dry_run))?;
        // Read every announced snapshot even when the offer is already refused: the
        // conversation must stay in step.
        let mut bad_name: Option<String> = None;
        // The oldest and newest offered: where a full or an incremental stream ends.
        let mut first: Option<Snapshot> = None;
        let mut last: Option<Snapshot> = None;
        let (decision, located) = {
            let dest_snaps: Vec<Snapshot> = match &located {
                Ok((_, Some(info), _)) => info.snapshots.clone(),
                _ => Vec::new(),
            };
            let mut matcher = Matcher::new(&dest_snaps);
            for _ in 0..count {
                match self.reader.read_message()? {
                    Some(Message::Snap(s)) => {
                        if bad_name.is_none() {
                            if let Err(e) = check_snapshot_name(&s.name) {
                                bad_name = Some(e.to_string());
                            }
                        }
                        let snap = Snapshot {
                            name: s.name,
                            guid: s.guid,
                            createtxg: s.createtxg,
                        };
                        if first.is_none() {
                            first = Some(snap.clone());
                        }
                        last = Some(snap.clone());
                        matcher.feed(snap);
                    }
                    Some(other) => {
                        return self.violation(&format!("expected snap, got {}", other.name()))
                    }
                    None => return Err(Error::Violation("closed inside an offer".into())),
                }
            }
            (matcher.decide(self.shared.config.allow_rollback), located)
        };
        let accepted = match (located, bad_name) {
            (Err(refusal), _) => Err(refusal),
            (Ok(_), Some(bad)) => {
                Err((Reason::InvalidPath, format!("snapshot name refused: {bad}")))
            }
            (Ok((location, existing, lock)), None) => {
                self.decide(location, existing, decision, count, dry_run, lock)
            }
        };
        let accepted = match accepted {
            Ok(a) => a,
            Err((reason, text)) => {
                info!(
                    "offer refused peer={} dataset={rel:?} reason={} text={text:?}",
                    self.peer,
                    reason.as_str()
                );
                self.writer
                    .send(&Message::Reply(Plan::Refused { reason, text }))?;
                return Ok(());
            }
        };
        // Issue 5: the buffer is created only for an accepted offer, so a refused one (bad
        // snapshot name, no snapshots) leaves the receiving pool untouched.
        if !dry_run && matches!(accepted.location, Location::Buffered(_)) {
            if let Err(e) = self.shared.tree.ensure_buffer(self.shared.zfs) {
                let (reason, text) = (Reason::ZfsFailed, e.to_string());
                self.writer
                    .send(&Message::Reply(Plan::Refused { reason, text }))?;
                return Ok(());
            }
        }
        self.writer.send(&Message::Reply(accepted.plan.clone()))?;
        let streams = matches!(
            accepted.plan,
            Plan::Full { .. } | Plan::Incremental { .. } | Plan::Resume { .. }
        );
        if dry_run || !streams {
            debug!(
                "offer answered peer={} dataset={rel:?} plan={:?} dry_run={dry_run}",
                self.peer, accepted.plan
            );
            return Ok(());
        }
        let ds = accepted.location.dataset().clone();
        let opts = RecvOptions {
            force: accepted.force,
            resumable: true,
            // Only a new filesystem can take the property; a volume cannot mount anyway.
            no_automount: matches!(accepted.plan, Plan::Full { .. })
                && kind == DatasetKind::Filesystem,
        };
        // What the stream ends with, by the plan's definition (PROTOCOL.md): a full stream
        // is of the oldest snapshot offered, an incremental runs to the newest. A resumed
        // stream ends wherever the interrupted one was going: that is read back.
        let ends_with = match accepted.plan {
            Plan::Full { .. } => first,
            Plan::Incremental { .. } => last,
            _ => None,
        };
        let outcome = self.receive(&ds, &opts, ends_with);
        // Whatever came of it (even a cut connection), the dataset is no longer what a
        // listing taken before now shows; this runs before the dataset's lock is released.
        self.shared.tree.catalog.touch(ds.as_str());
        if let Ok(Outcome::Done { .. }) = &outcome {
            self.shared.tree.catalog.mark_present(ds.as_str());
        }
        if matches!(accepted.location, Location::Buffered(_)) {
            self.shared.tree.mark_buffer_used();
        }
        let outcome = outcome?;
        if let (Outcome::Done { newest, .. }, Location::InPlace(_)) = (&outcome, &accepted.location)
        {
            protect::move_receiver_hold(
                self.shared.zfs,
                &ds,
                newest,
                accepted.held_before.as_deref(),
            );
        }
        match &outcome {
            Outcome::Done { bytes, newest, .. } => info!(
                "recv done peer={} dataset={} snap={} bytes={} secs={:.2}",
                self.peer,
                ds,
                newest,
                bytes,
                started.elapsed().as_secs_f64()
            ),
            Outcome::Failed { reason, text } => {
                warn!(
                    "recv failed peer={} dataset={} reason={} error={text:?}",
                    self.peer,
                    ds,
                    reason.as_str()
                )
            }
        }
        Ok(())
    }

    /// Where the offered dataset is, its snapshots there (if it exists), and its lock.
    #[allow(clippy::type_complexity)]
    fn locate(
        &self,
        path: &str,
        rel: &str,
        is_root: bool,
        dry_run: bool,
    ) -> std::result::Result<(Location, Option<DatasetInfo>, Option<DatasetLock<'a>>), Refusal>
    {
        let tree = &self.shared.tree;
        let zfs = self.shared.zfs;
        check_relative_path(path).map_err(|e| (Reason::InvalidPath, e.to_string()))?;
        let real = tree
            .target
            .join(rel)
            .map_err(|e| (Reason::InvalidPath, e.to_string()))?;
        let lock = if dry_run {
            None
        } else {
            let wait = (self.shared.config.timeout / 2).min(Duration::from_secs(10));
            Some(tree.lock(rel, wait).ok_or_else(|| {
                (
                    Reason::Busy,
                    format!("{real} is being received by another session"),
                )
            }))
            .transpose()?
        };
        let zerr = |e: zfsync_zfs::Error| (Reason::ZfsFailed, e.to_string());
        if !is_root && !self.shared.config.allow_overwrite {
            if let Some(why) = self.root_not_replica()? {
                return Err((Reason::NotReplica, why));
            }
        }
        let base = tree
            .target
            .join(&self.base)
            .map_err(|e| (Reason::InvalidPath, e.to_string()))?;
        let cat = &tree.catalog;
        if let Some(info) = cat.dataset(zfs, &base, &tree.buffer, &real).map_err(zerr)? {
            return Ok((Location::InPlace(real), Some(info), lock));
        }
        let buffered = tree.buffer_name(rel);
        if let Some(b) = &buffered {
            if let Some(info) = cat.dataset(zfs, &base, &tree.buffer, b).map_err(zerr)? {
                return Ok((Location::Buffered(b.clone()), Some(info), lock));
            }
        }
        // A parent that another session is receiving may be a half-received new dataset:
        // the child must not land under it. A small receive ends soon: waiting a little for
        // it costs less than a trip through the buffer and a rename. After that the child
        // waits in the buffer instead.
        let parent_busy = !is_root
            && !tree.wait_unlocked(crate::tree::parent_rel(rel), self.shared.config.parent_wait);
        let parent_exists = match real.parent() {
            Some(p) => cat.exists(zfs, &base, &tree.buffer, &p).map_err(zerr)?,
            None => true,
        };
        if parent_exists && !parent_busy {
            return Ok((Location::InPlace(real), None, lock));
        }
        let parent = real.parent().map(|p| p.to_string()).unwrap_or_default();
        if is_root {
            return Err((
                Reason::ParentMissing,
                format!(
                    "{parent}, the parent of the sent root {real}, does not exist on the receiver"
                ),
            ));
        }
        let Some(b) = buffered else {
            return Err((
                Reason::ParentMissing,
                format!("parent {parent} does not exist yet, and the buffered name for {real} would exceed ZFS's 255-byte limit: send again once the parent has arrived"),
            ));
        };
        // The buffer itself is created only once the offer is accepted (see `offer`).
        Ok((Location::Buffered(b), None, lock))
    }

    /// `Some(reason)` when the sent root's replica exists but has no snapshots.
    fn root_not_replica(&self) -> std::result::Result<Option<String>, Refusal> {
        if let Some(v) = self.root_not_replica.get() {
            return Ok(v.clone());
        }
        let base = self
            .shared
            .tree
            .target
            .join(&self.base)
            .map_err(|e| (Reason::InvalidPath, e.to_string()))?;
        let tree = &self.shared.tree;
        let zerr = |e: zfsync_zfs::Error| (Reason::ZfsFailed, e.to_string());
        let (zfs, cat) = (self.shared.zfs, &tree.catalog);
        match cat.listed(zfs, &base, &tree.buffer, &base).map_err(zerr)? {
            // A replica: zfsync's own changes never leave it without snapshots.
            Some(info) if !info.snapshots.is_empty() => {
                let _ = self.root_not_replica.set(None);
                return Ok(None);
            }
            // Not there when listed: a new root, perhaps arriving now. No verdict, and none
            // cached; children may wait in the buffer.
            None => return Ok(None),
            // There without snapshots: not a replica, unless it is a new root arriving.
            Some(_) => {}
        }
        // A root that another session is receiving right now shows no snapshot until the
        // receive ends (zfs-fuse shows the half-received dataset). A root offer being
        // answered holds the lock only briefly, and so does a small receive: wait for it as
        // for any parent (`--parent-wait`). A root still locked after that is being
        // received: no verdict yet, and none cached; its children go to the buffer
        // meanwhile.
        if !tree.wait_unlocked(&self.base, self.shared.config.parent_wait) {
            return Ok(None);
        }
        let v = match cat.dataset(zfs, &base, &tree.buffer, &base).map_err(zerr)? {
            Some(info) if info.snapshots.is_empty() && info.resume_token.is_none() && base.parent().is_some() => Some(format!(
                "{base}, where the sent root lands, exists but has no snapshots, so it is not a replica: its children are not received into it either (start zfsync-recv with --allow-overwrite to replace it)"
            )),
            _ => None,
        };
        let _ = self.root_not_replica.set(v.clone());
        Ok(v)
    }

    /// Turns the snapshot comparison into a plan, doing the one destructive step (an
    /// allowed rollback) before answering.
    fn decide(
        &self,
        location: Location,
        existing: Option<DatasetInfo>,
        decision: Decision,
        count: u32,
        dry_run: bool,
        lock: Option<DatasetLock<'a>>,
    ) -> std::result::Result<Accepted<'a>, Refusal> {
        let ds = location.dataset().clone();
        let cfg = self.shared.config;
        let plan_full = |force| Accepted {
            plan: Plan::Full {
                buffered: matches!(location, Location::Buffered(_)),
            },
            location: location.clone(),
            force,
            held_before: None,
            _lock: None,
        };
        if count == 0 {
            return Err((Reason::Protocol, "offer without snapshots".into()));
        }
        let held_before = existing
            .as_ref()
            .and_then(|i| i.snapshots.last())
            .map(|s| s.name.clone());
        let mut accepted = match existing {
            None => plan_full(false),
            // An interrupted resumable receive: finish it before anything else (the
            // destination accepts nothing else while it holds partial state).
            Some(DatasetInfo { resume_token: Some(token), .. }) => Accepted {
                plan: Plan::Resume { token },
                location,
                force: false,
                held_before,
                _lock: None,
            },
            Some(info) if info.snapshots.is_empty() => {
                if !cfg.allow_overwrite {
                    return Err((
                        Reason::NotReplica,
                        format!("{ds} exists but has no snapshots, so it was not made by a receive; nothing was changed (start zfsync-recv with --allow-overwrite to replace it)"),
                    ));
                }
                warn!("overwriting dataset={ds} (no snapshots, --allow-overwrite)");
                plan_full(true)
            }
            Some(_) => match decision {
                Decision::UpToDate { name } => Accepted {
                    plan: Plan::UpToDate { name },
                    location,
                    force: false,
                    held_before,
                    _lock: None,
                },
                Decision::Incremental { from, rollback, newer } => {
                    if rollback && !dry_run {
                        warn!("rolling back dataset={ds} to={} destroying={newer:?} (--allow-rollback)", from.name);
                        // Our own hold on what is to go (the newest one received) would
                        // make the rollback fail; the operator asked for them to go.
                        protect::release_for_rollback(self.shared.zfs, &ds, &newer)
                            .map_err(|e| (Reason::ZfsFailed, e.to_string()))?;
                        let rolled = self.shared.zfs.rollback(&ds, &from.name, true);
                        // After the change: a listing taken meanwhile must not speak for it.
                        self.shared.tree.catalog.touch(ds.as_str());
                        rolled.map_err(|e| (Reason::ZfsFailed, e.to_string()))?;
                    }
                    Accepted {
                        held_before: Some(from.name.clone()),
                        plan: Plan::Incremental { from_guid: from.guid, from_name: from.name },
                        location,
                        force: false,
                        _lock: None,
                    }
                }
                Decision::Diverged { common, newer } => {
                    return Err((
                        Reason::Diverged,
                        format!(
                            "{ds} has snapshots after the common snapshot {common} that the source does not have: {}; nothing was changed (start zfsync-recv with --allow-rollback to destroy them)",
                            newer.join(", ")
                        ),
                    ))
                }
                Decision::NoCommonSnapshot { dest_newest } => {
                    return Err((
                        Reason::NoCommonSnapshot,
                        format!("{ds} exists (newest snapshot {dest_newest}) but shares no snapshot GUID with the source; nothing was changed"),
                    ))
                }
                Decision::NothingOffered => return Err((Reason::Protocol, "offer without snapshots".into())),
            },
        };
        accepted._lock = lock;
        Ok(accepted)
    }

    /// Receives one stream into `ds` and sends the result. `ends_with` is the snapshot the
    /// stream ends with, when the plan says which (`None`: a resumed stream).
    fn receive(
        &mut self,
        ds: &Dataset,
        opts: &RecvOptions,
        ends_with: Option<Snapshot>,
    ) -> Result<Outcome> {
        let resuming = ends_with.is_none();
        let zfs = self.shared.zfs;
        let mut proc = match zfs.recv(ds, opts) {
            Ok(p) => p,
            Err(e) => {
                return self.fail_and_drain(Outcome::Failed {
                    reason: Reason::ZfsFailed,
                    text: e.to_string(),
                })
            }
        };
        let stdin = proc.take_stdin().expect("zfs recv has stdin");
        enum End {
            Complete,
            RecvDied(String),
            Aborted(String),
            Mismatch(u64),
        }
        let limit = self.shared.config.timeout;
        let mut total: u64 = 0;
        let end = loop {
            let frame = match self.reader.read_stream_frame() {
                Ok(Some(f)) => f,
                Ok(None) => {
                    drop(stdin);
                    end_cut_recv(proc, limit);
                    return Err(Error::Violation("closed inside a stream".into()));
                }
                Err(e) => {
                    drop(stdin);
                    end_cut_recv(proc, limit);
                    return Err(e.into());
                }
            };
            let msg = match frame {
                // The payload goes from the socket into zfs recv's pipe by splice. A zfs
                // recv that takes nothing for five times the timeout is stuck.
                Frame::Data(_) => match self.reader.move_data_to(stdin.as_fd(), limit * 5) {
                    Ok(n) => {
                        total += n as u64;
                        continue;
                    }
                    Err(MoveError::Local(e)) => break End::RecvDied(e.to_string()),
                    Err(MoveError::Network(e)) => {
                        drop(stdin);
                        end_cut_recv(proc, limit);
                        return Err(e.into());
                    }
                },
                Frame::Message(m) => m,
            };
            match msg {
                Message::End { bytes } if bytes == total => break End::Complete,
                Message::End { bytes } => break End::Mismatch(bytes),
                Message::Abort { text } => break End::Aborted(text),
                Message::KeepAlive => {}
                other => {
                    drop(stdin);
                    end_cut_recv(proc, limit);
                    return self.violation(&format!("unexpected {} inside a stream", other.name()));
                }
            }
        };
        drop(stdin);
        let outcome = match end {
            End::Complete => {
                // The input is complete and closed: zfs recv commits and exits. A generous
                // bound only so that a zfs that hangs cannot hold this session and the
                // dataset's lock for ever (the writer is joined after: it may be blocked
                // writing to a zfs recv that stopped reading).
                let finished = proc.wait_or_kill(self.shared.config.timeout * 5);
                match (finished, ends_with) {
                    // zfs recv exits 0 only once every snapshot of the stream is
                    // committed, each with the GUID the stream carries: no listing needed.
                    (Ok(_), Some(snap)) => Outcome::Done {
                        bytes: total,
                        newest: snap.name,
                        newest_guid: snap.guid,
                    },
                    (Ok(_), None) => self.verify(ds, total),
                    (Err(e), _) => {
                        let (reason, text) = recv_failure(&e);
                        Outcome::Failed { reason, text }
                    }
                }
            }
            End::RecvDied(why) => {
                let finished = proc.wait_or_kill(self.shared.config.timeout);
                let (reason, text) = match finished {
                    Ok(_) => (
                        Reason::ZfsFailed,
                        format!("zfs recv into {ds} ended before the stream did ({why})"),
                    ),
                    Err(e) => {
                        let (reason, text) = recv_failure(&e);
                        (reason, format!("{text} ({why})"))
                    }
                };
                if resuming {
                    // The token led nowhere: drop the partial state so the next offer
                    // falls back to a normal incremental.
                    self.discard_partial(ds);
                }
                return self.fail_and_drain(Outcome::Failed { reason, text });
            }
            End::Aborted(text) => {
                end_cut_recv(proc, self.shared.config.timeout);
                // The sender's stream is bad (its zfs send failed): partial state from it
                // is worth nothing. A cut connection, by contrast, keeps its resume token.
                self.discard_partial(ds);
                Outcome::Failed {
                    reason: Reason::StreamFailed,
                    text: format!("sender aborted the stream: {text}"),
                }
            }
            End::Mismatch(announced) => {
                end_cut_recv(proc, self.shared.config.timeout);
                self.discard_partial(ds);
                Outcome::Failed {
                    reason: Reason::StreamFailed,
                    text: format!("stream length mismatch: sender announced {announced} bytes, {total} arrived"),
                }
            }
        };
        self.writer.send(&Message::Result(outcome.clone()))?;
        Ok(outcome)
    }

    /// Drops the partial state of an interrupted resumable receive (`zfs recv -A`), if the
    /// ZFS keeps such state at all. Nothing else is touched: for an existing dataset that
    /// is only the unfinished stream, for a new one the unfinished dataset.
    fn discard_partial(&self, ds: &Dataset) {
        let zfs = self.shared.zfs;
        if !zfs.capabilities().resumable {
            return;
        }
        match zfs.dataset(ds) {
            Ok(Some(DatasetInfo {
                resume_token: Some(_),
                ..
            })) => match zfs.recv_abort(ds) {
                Ok(()) => info!("discarded partial receive dataset={ds}"),
                Err(e) => warn!("cannot discard partial receive dataset={ds} error={e}"),
            },
            Ok(_) => {}
            Err(e) => warn!("cannot check for partial receive dataset={ds} error={e}"),
        }
    }

    /// After a successful resumed receive, reads back what is newest in `ds` now.
    fn verify(&self, ds: &Dataset, total: u64) -> Outcome {
        match self.shared.zfs.list_snapshots(ds) {
            Ok(Some(snaps)) if !snaps.is_empty() => {
                let newest = snaps.last().unwrap();
                Outcome::Done {
                    bytes: total,
                    newest: newest.name.clone(),
                    newest_guid: newest.guid,
                }
            }
            Ok(_) => Outcome::Failed {
                reason: Reason::ZfsFailed,
                text: format!("zfs recv succeeded but {ds} has no snapshot"),
            },
            Err(e) => Outcome::Failed {
                reason: Reason::ZfsFailed,
                text: e.to_string(),
            },
        }
    }

    /// Sends a failure before the stream has ended, then reads and drops the rest of the
    /// stream (the sender stops as soon as it sees the result, and sends `Abort`).
    fn fail_and_drain(&mut self, outcome: Outcome) -> Result<Outcome> {
        self.writer.send(&Message::Result(outcome.clone()))?;
        loop {
            match self.reader.read_message()? {
                Some(Message::Data(_)) | Some(Message::KeepAlive) => {}
                Some(Message::End { .. }) | Some(Message::Abort { .. }) => return Ok(outcome),
                Some(other) => {
                    return self.violation(&format!("unexpected {} inside a stream", other.name()))
                }
                None => return Err(Error::Violation("closed inside a stream".into())),
            }
        }
    }
}

/// Why a `zfs recv` failed, for the sender. A destination changed since its newest
/// snapshot is divergence like a snapshot of its own (refused, nothing changed, healed by
/// `--allow-rollback`), not a malfunction of zfs.
fn recv_failure(e: &zfsync_zfs::Error) -> (Reason, String) {
    if e.kind() == zfsync_zfs::FailureKind::DestinationModified {
        let text = format!("{e}; nothing was changed (start zfsync-recv with --allow-rollback to discard the changes)");
        (Reason::Diverged, text)
    } else {
        (Reason::ZfsFailed, e.to_string())
    }
}
