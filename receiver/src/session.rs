//! One connection: the greeting, the sender's word on its root's snapshots, then offers
//! and cleanups until goodbye. The session's parts live beside it by job: `greet.rs`
//! (admitting the sender), `place.rs` (where an offered dataset lands and what is
//! answered), `offer.rs` (one offer's exchange) and `pump.rs` (a stream into `zfs recv`).
//!
//! A session never trusts what it reads: every dataset path is checked against ZFS naming
//! rules and joined under TARGET, every snapshot name is checked, and every read has the
//! configured timeout, so a silent or broken peer costs this one connection.

use crate::orphans;
use crate::place::Refusal;
use crate::record::RunRecord;
use crate::tree::join_rel;
use crate::tree::Left;
use crate::{Error, Result, Shared};
use log::{debug, info, warn};
use std::cell::OnceCell;
use std::collections::HashSet;
use std::io::{BufReader, BufWriter};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use zfsync_protocol::{FrameReader, FrameWriter, Message, Reason, MAX_LISTED};
use zfsync_text::quoted;
use zfsync_zfs::{check_relative_path, Dataset};

/// Runs a session on a connection until it ends, then cleans up the buffer (what the
/// session left there may be placeable now). The connection may come from anywhere: its
/// socket options are set here. `busy` is set while the session works on an offer.
pub(crate) fn run_session<'a>(
    shared: &'a Shared<'a>,
    stream: TcpStream,
    peer: SocketAddr,
    busy: &'a AtomicBool,
) {
    let result = Session::new(shared, stream, peer, busy).and_then(|s| s.run());
    match result {
        Ok(()) => info!("session end peer={}", quoted(peer)),
        Err(e) => warn!("session end peer={} error={}", quoted(peer), quoted(e)),
    }
    shared.clean_up("connection end");
}

pub(crate) struct Session<'a> {
    pub(crate) shared: &'a Shared<'a>,
    pub(crate) peer: SocketAddr,
    pub(crate) busy: &'a AtomicBool,
    pub(crate) reader: FrameReader<BufReader<TcpStream>>,
    pub(crate) writer: FrameWriter<BufWriter<TcpStream>>,
    /// Where the sender's root dataset lands, relative to TARGET ("" = TARGET itself):
    /// the destination it asked for, below its client's subtree when keys are used. Set by
    /// the greeting; every offered path is below it.
    pub(crate) root_rel: String,
    /// `root_rel` under TARGET: the sent root's replica.
    pub(crate) root: Dataset,
    /// The GUIDs of the sender's root's snapshots, as it announced them (`Message::Root`)
    /// before its first offer: what its root's replica is judged by.
    pub(crate) root_guids: Option<HashSet<u64>>,
    /// Why the sent root's children are refused, once known: its replica exists without
    /// being one of this sender's root, and children are not grown inside a dataset that
    /// was refused (see `place.rs`). Judged once per session, at the first child offered.
    pub(crate) root_verdict: OnceCell<Option<Refusal>>,
    /// This connection's run and its offers, as the history records them.
    pub(crate) record: RunRecord<'a>,
    /// The sender's dataset list (`Message::Listed`) as far as it has come, and whether
    /// its last frame has: what the cleanup counts absent replicas by (`orphans.rs`),
    /// if the root is accepted.
    listed: HashSet<String>,
    listed_whole: bool,
}

impl<'a> Session<'a> {
    fn new(
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
            root_rel: String::new(),
            root: shared.tree.target.clone(),
            root_guids: None,
            root_verdict: OnceCell::new(),
            record: RunRecord::new(&shared.history, peer.ip()),
            listed: HashSet::new(),
            listed_whole: false,
        })
    }

    fn run(mut self) -> Result<()> {
        self.greet()?;
        // List this sender's side now, while it lists its own: its offers then cost no zfs
        // command. After the greeting's deadline: a big destination may take longer to
        // list than a greeting may (a zfs command's own bound is 5 x --timeout). A failure
        // shows again, with context, at the first offer.
        let tree = &self.shared.tree;
        let root = &self.root;
        let warmed =
            self.keeping_alive(|| tree.catalog.warm(self.shared.zfs, root, &tree.buffer))?;
        if let Err(e) = warmed {
            debug!(
                "catalog warm-up failed base={} error={}",
                quoted(root),
                quoted(e)
            );
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
                    debug!("peer closed peer={}", quoted(self.peer));
                    return Ok(());
                }
                Some(m) => m,
            };
            match msg {
                Message::Root { guids } => {
                    if self.root_guids.is_some() {
                        return self.violation("root announced twice");
                    }
                    self.root_guids = Some(guids.into_iter().collect());
                }
                Message::Offer {
                    path,
                    kind,
                    count,
                    dry_run,
                } => {
                    // A child is judged by its root's snapshots, whichever connection
                    // carries the root's own offer, and whenever.
                    if self.root_guids.is_none() {
                        return self.violation("expected root, got offer");
                    }
                    self.busy.store(true, Ordering::SeqCst);
                    let lands_at = match join_rel(&self.root_rel, &path) {
                        rel if rel.is_empty() => self.shared.tree.target.to_string(),
                        rel => format!("{}/{rel}", self.shared.tree.target),
                    };
                    self.record.offer(lands_at, dry_run);
                    let r = self.offer(&path, kind, count, dry_run);
                    self.record
                        .ended(r.as_ref().err().map(|e| e as &dyn std::fmt::Display));
                    self.busy.store(false, Ordering::SeqCst);
                    r?;
                }
                Message::Listed { paths, last } => {
                    if self.listed_whole {
                        return self.violation("dataset list sent twice");
                    }
                    if self.listed.len() + paths.len() > MAX_LISTED {
                        return self
                            .violation(&format!("dataset list of more than {MAX_LISTED} paths"));
                    }
                    for p in paths {
                        // A path names a dataset below the root, valid once joined there.
                        let checked = check_relative_path(&p).and_then(|_| self.root.join(&p));
                        let why = match checked {
                            _ if p.is_empty() => "the root itself is not listed".to_string(),
                            Err(e) => e.to_string(),
                            Ok(_) => {
                                self.listed.insert(p);
                                continue;
                            }
                        };
                        return self
                            .violation(&format!("dataset list: path {}: {why}", quoted(&p)));
                    }
                    self.listed_whole = last;
                }
                Message::Cleanup => {
                    // The sender's datasets are done, but an offer may still hold its lock
                    // after its Result (the receiver's hold, read-only, pruning), longer
                    // than --parent-wait on a busy host: wait for those up to --timeout,
                    // or their copies in the buffer are left "busy" until another
                    // connection ends. Any other offer below the root (an overlapping run's
                    // stream), up to --parent-wait. KeepAlives hold the sender meanwhile.
                    let (tree, config) = (&self.shared.tree, &self.shared.config);
                    self.keeping_alive(|| {
                        tree.wait_finished(&self.root_rel, config.timeout);
                        tree.wait_quiet(&self.root_rel, config.parent_wait)
                    })?;
                    // The sender is told about its own tree's copies: another tree's, or
                    // one a session is still working on, is no reason for its run to fail.
                    let r = self.shared.tree.cleanup(self.shared.zfs);
                    let r = r.within(&self.root_rel);
                    let left = |l| r.count(l);
                    info!(
                        "cleanup peer={} placed={} removed={} waiting={} busy={} failed={}",
                        quoted(self.peer),
                        left(Left::Placed),
                        left(Left::Removed),
                        left(Left::Waiting),
                        left(Left::Busy),
                        left(Left::Failed)
                    );
                    // A list speaks for the replicas below a root only once the root is
                    // this sender's: announced, and accepted as a replica of it.
                    let counts = self.listed_whole
                        && self.root_guids.is_some()
                        && self.keeping_alive(|| self.root_accepted())?;
                    if counts {
                        let (client, listed) = (self.record.client().to_string(), &self.listed);
                        self.keeping_alive(|| {
                            orphans::after_run(
                                self.shared,
                                &client,
                                &self.root_rel,
                                &self.root,
                                listed,
                            )
                        })?;
                    } else if self.listed_whole {
                        warn!(
                            "dataset list of a session whose root is not accepted peer={} \
                             base={}: not counted",
                            quoted(self.peer),
                            quoted(&self.root)
                        );
                    } else if !self.listed.is_empty() {
                        warn!(
                            "dataset list without its last frame peer={}: not counted",
                            quoted(self.peer)
                        );
                    }
                    self.listed.clear();
                    // A later Cleanup counts only a list sent after this one.
                    self.listed_whole = false;
                    let told = r.entries.iter().filter(|e| e.left != Left::Busy);
                    self.writer.send(&Message::CleanupDone {
                        placed: left(Left::Placed),
                        removed: left(Left::Removed),
                        waiting: left(Left::Waiting),
                        failed: left(Left::Failed),
                        text: told
                            .filter_map(|e| e.note.as_deref())
                            .collect::<Vec<_>>()
                            .join("\n"),
                    })?;
                }
                Message::KeepAlive => {}
                Message::Bye => return Ok(()),
                Message::Error { reason, text } => {
                    return Err(Error::Peer(format!("{}: {text}", reason.words())));
                }
                other => return self.violation(&format!("unexpected {} message", other.name())),
            }
        }
    }

    /// Notes that the offer of `path` (below the root) delivered its dataset: received,
    /// resumed, up to date, or a placeholder (what `orphans.rs` may later count absent).
    pub(crate) fn delivered(&self, path: &str) {
        let client = self.record.client();
        self.shared.delivered.note(client, &self.root_rel, path);
    }

    pub(crate) fn violation<T>(&mut self, what: &str) -> Result<T> {
        let _ = self.writer.send(&Message::Error {
            reason: Reason::Protocol,
            text: what.to_string(),
        });
        Err(Error::Violation(what.to_string()))
    }

    /// Runs `work` while a thread sends KeepAlive every `--timeout`/3, but at least every
    /// 300 ms (the sender's own timeout, 1 s at the least, may be shorter than ours),
    /// so that a sender
    /// waiting for an answer does not give up while the receiver works on it (a listing of
    /// a big destination, a wait for a lock or a parent). Only between messages, never
    /// inside a stream: the thread has stopped, and with it its writing, when this returns,
    /// so no frame of the caller's can interleave with one of its.
    pub(crate) fn keeping_alive<T>(&self, work: impl FnOnce() -> T) -> Result<T> {
        let stream = self.writer.get_ref().get_ref().try_clone()?;
        let every = (self.shared.config.timeout / 3)
            .clamp(Duration::from_millis(100), Duration::from_millis(300));
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
}
