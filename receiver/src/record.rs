//! What happened, written down as it happens: each connection's run and each answered
//! offer's attempt in the history store (`--state-dir`), and the live figures of this
//! process (counters, streams in flight) that `/metrics` and the status page show.
//!
//! It must not decide anything about an offer, and the history must never cost a
//! replication: a state disk that fails (cannot be opened, full, locked) is a warning in the
//! log, once per kind of failure until writing works again, and the receiver goes on
//! without history. A store that could not be opened is tried again at most once a minute.
//!
//! One connection to the store, behind a `Mutex`, serves every session. Each write is one
//! short insert or update, and SQLite lets only one writer at a time into a database
//! anyway, so connections of their own would wait for each other inside SQLite instead of
//! at the `Mutex`; one connection means one place that opens, migrates, trims and warns.
//! Readers (the HTTP threads) open read-only connections of their own, which WAL lets read
//! while a session writes.
//!
//! Rows of the receiver: role `recv`, job = TARGET (the receiver's id), dataset = the full
//! name the offer lands at (TARGET/PATH: the path relative to TARGET is the rest after
//! `TARGET/`), peer = the sender's IP address, `CLIENT@IP` when keys are used (no port: a
//! connection's port changes every time, and the history's per-dataset status is per peer).
//! One run per connection, begun with its first answered offer. Raw and compressed are what
//! the stream's first `DRR_BEGIN` record says, a compound stream's (`zfs send -I`) first
//! substream's (`zfs::StreamFlags`, read by the pump as the stream begins: the protocol
//! does not carry them); false when no stream came, or its head could
//! not be read (the store has no "unknown"). Dry runs change nothing and are not recorded.

use crate::Config;
use log::{info, warn};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use zfsync_history::{
    AttemptEnd, AttemptStart, DestroyedOrphan, Kind, Listing, Noted, Outcome as Recorded, Role,
    RunEnd, RunId, RunStart, SnapshotRef, Store,
};
use zfsync_protocol::{Outcome, Plan, Reason};
use zfsync_zfs::{Snapshot, StreamFlags};

/// How long a store that could not be opened is left alone before the next try.
const REOPEN_AFTER: Duration = Duration::from_secs(60);

/// How often old rows are trimmed (besides at start-up).
const TRIM_EVERY: i64 = 86_400;

/// The time now in unix seconds: `ZFSYNC_NOW` when set (checked at start-up), else the
/// system clock.
pub(crate) fn now() -> i64 {
    let t = zfsync_cli::now().unwrap_or_else(|_| SystemTime::now());
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The receiver's history and live figures, shared by every session and the HTTP threads.
pub(crate) struct History {
    /// The receiver's id: TARGET.
    pub(crate) job: String,
    pub(crate) dir: PathBuf,
    keep_days: u64,
    slot: Mutex<Slot>,
    /// The kinds of failure already warned about since writing last worked.
    warned: Mutex<BTreeSet<&'static str>>,
    pub(crate) live: Live,
}

struct Slot {
    store: Option<Store>,
    /// When to try opening again, after a failed open.
    retry_at: Option<Instant>,
    /// When old rows were last trimmed (unix seconds).
    trimmed: i64,
}

/// This process's own figures, from zero at start-up.
#[derive(Default)]
pub(crate) struct Live {
    /// Stream bytes of the receives that completed.
    pub(crate) bytes: AtomicU64,
    /// Receives that completed.
    pub(crate) datasets: AtomicU64,
    /// Snapshots pruned (none yet: the receiver does not prune).
    pub(crate) pruned: AtomicU64,
    failures: Mutex<BTreeMap<&'static str, u64>>,
    in_flight: Mutex<BTreeMap<u64, InFlight>>,
    next_stream: AtomicU64,
}

/// A stream being received now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InFlight {
    pub(crate) dataset: String,
    pub(crate) peer: String,
    pub(crate) kind: Kind,
    pub(crate) since: i64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking session must not take the history down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Live {
    /// Failures and refusals since start-up, by reason (`failure_reason`).
    pub(crate) fn failures(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.failures).clone()
    }

    /// The streams in flight, oldest first.
    pub(crate) fn in_flight(&self) -> Vec<InFlight> {
        lock(&self.in_flight).values().cloned().collect()
    }

    fn count_failure(&self, reason: &'static str) {
        *lock(&self.failures).entry(reason).or_default() += 1;
    }
}

impl History {
    /// Opens the store in `config.state_dir` and trims it; a store that cannot be opened is
    /// a warning, and the receiver runs without history until a later try succeeds.
    pub(crate) fn open(config: &Config) -> History {
        let h = History {
            job: config.target.to_string(),
            dir: config.state_dir.clone(),
            keep_days: config.history_days,
            slot: Mutex::new(Slot {
                store: None,
                retry_at: None,
                trimmed: i64::MIN,
            }),
            warned: Mutex::new(BTreeSet::new()),
            live: Live::default(),
        };
        h.with_store(|_| Ok(()));
        h
    }

    /// Runs `f` on the store (opened first if it is not, trimmed when due). A failure is
    /// warned about once per kind and gives `None`.
    fn with_store<T>(&self, f: impl FnOnce(&Store) -> zfsync_history::Result<T>) -> Option<T> {
        let mut slot = lock(&self.slot);
        if slot.store.is_none() {
            if slot.retry_at.is_some_and(|at| Instant::now() < at) {
                return None;
            }
            match Store::open(&self.dir) {
                Ok(s) => {
                    info!("history opened path={}", s.path().display());
                    slot.store = Some(s);
                    slot.retry_at = None;
                }
                Err(e) => {
                    slot.retry_at = Some(Instant::now() + REOPEN_AFTER);
                    drop(slot);
                    self.failed(&e);
                    return None;
                }
            }
        }
        let now = now();
        if now.saturating_sub(slot.trimmed) >= TRIM_EVERY {
            slot.trimmed = now;
            let store = slot.store.as_ref().expect("opened above");
            let older_than = now.saturating_sub((self.keep_days as i64).saturating_mul(86_400));
            match store.trim(older_than) {
                Ok(0) => {}
                Ok(n) => info!("history trimmed rows={n} days={}", self.keep_days),
                Err(e) => self.failed(&e),
            }
        }
        let result = f(slot.store.as_ref().expect("opened above"));
        drop(slot);
        match result {
            Ok(v) => {
                self.worked();
                Some(v)
            }
            Err(e) => {
                self.failed(&e);
                None
            }
        }
    }

    fn failed(&self, e: &zfsync_history::Error) {
        let kind = failure_kind(e);
        if lock(&self.warned).insert(kind) {
            warn!(
                "history: {kind}: {e}; receiving goes on without recording (said once until \
                 the history works again)"
            );
        } else {
            log::debug!("history: {kind}: {e}");
        }
    }

    fn worked(&self) {
        let mut warned = lock(&self.warned);
        if !warned.is_empty() {
            info!("history: recording works again");
            warned.clear();
        }
    }

    fn begin_run(&self, run: &RunStart) -> Option<RunId> {
        self.with_store(|s| s.begin_run(run))
    }

    /// Takes a sender's whole dataset list (see `Store::note_listing`, whose `job` this
    /// fills in), or `None` when the store fails.
    pub(crate) fn note_listing(&self, listing: Listing) -> Option<Noted> {
        self.with_store(|s| {
            s.note_listing(&Listing {
                job: &self.job,
                ..listing
            })
        })
    }

    /// Records an orphan destroyed at `now`, absent since `since`.
    pub(crate) fn orphan_destroyed(&self, client: &str, dataset: &str, since: i64, now: i64) {
        self.with_store(|s| {
            s.record_orphan_destroyed(&DestroyedOrphan {
                job: self.job.clone(),
                dataset: dataset.to_string(),
                client: client.to_string(),
                since,
                destroyed: now,
            })
        });
    }
}

/// Every reason a failure can have (`failure_reason` of each), so /metrics lists each
/// with 0 before it first happens.
pub(crate) const FAILURE_REASONS: [Option<Reason>; 14] = [
    None,
    Some(Reason::Diverged),
    Some(Reason::NoCommonSnapshot),
    Some(Reason::NotReplica),
    Some(Reason::InvalidPath),
    Some(Reason::Busy),
    Some(Reason::ParentMissing),
    Some(Reason::ZfsFailed),
    Some(Reason::Internal),
    Some(Reason::VersionMismatch),
    Some(Reason::Protocol),
    Some(Reason::ShuttingDown),
    Some(Reason::Denied),
    Some(Reason::StreamFailed),
];

/// Why a stream failed or an offer was refused, as the metrics' `reason` label says it:
/// the protocol's reason in snake case, or `connection` when the session broke.
pub(crate) fn failure_reason(reason: Option<Reason>) -> &'static str {
    match reason {
        None => "connection",
        Some(Reason::Diverged) => "diverged",
        Some(Reason::NoCommonSnapshot) => "no_common_snapshot",
        Some(Reason::NotReplica) => "not_replica",
        Some(Reason::InvalidPath) => "invalid_path",
        Some(Reason::Busy) => "busy",
        Some(Reason::ParentMissing) => "parent_missing",
        Some(Reason::ZfsFailed) => "zfs_failed",
        Some(Reason::Internal) => "internal",
        Some(Reason::VersionMismatch) => "version_mismatch",
        Some(Reason::Protocol) => "protocol",
        Some(Reason::ShuttingDown) => "shutting_down",
        Some(Reason::Denied) => "denied",
        Some(Reason::StreamFailed) => "stream_failed",
    }
}

/// Refusals are the receiver protecting what it has (or refusing a bad name); everything
/// else that did not work failed.
fn outcome_of(reason: Reason) -> Recorded {
    match reason {
        Reason::Diverged
        | Reason::NoCommonSnapshot
        | Reason::NotReplica
        | Reason::InvalidPath
        | Reason::Denied => Recorded::Refused,
        _ => Recorded::Failed,
    }
}

/// The kind of a store failure, for warning once per kind.
fn failure_kind(e: &zfsync_history::Error) -> &'static str {
    use rusqlite::ErrorCode;
    use zfsync_history::Error as E;
    match e {
        E::CreateDir { .. }
        | E::Open { .. }
        | E::Missing { .. }
        | E::TooNew { .. }
        | E::TooOld { .. }
        | E::Migrate { .. } => "cannot open the database",
        E::Sqlite { source, .. } => match source.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => "disk full",
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => "database locked",
            Some(ErrorCode::ReadOnly) => "read-only",
            Some(ErrorCode::SystemIoFailure) => "I/O error",
            _ => "write failed",
        },
        E::Lock { .. } => "cannot lock",
        E::UnknownRun { .. } | E::UnknownAttempt { .. } => "bookkeeping",
    }
}

fn snapshot_ref(s: &Snapshot) -> SnapshotRef {
    SnapshotRef {
        name: s.name.clone(),
        guid: s.guid,
    }
}

/// One connection's run: begun with its first answered offer, ended when the connection
/// is (on drop).
pub(crate) struct RunRecord<'a> {
    history: &'a History,
    started: i64,
    ip: IpAddr,
    client: Option<String>,
    run: Option<RunId>,
    begun: bool,
    done: u32,
    failed: u32,
    up_to_date: u32,
    offer: Option<Draft>,
}

/// What is known of the offer being answered.
struct Draft {
    dataset: String,
    started: i64,
    clock: Instant,
    offered_first: Option<SnapshotRef>,
    offered_last: Option<SnapshotRef>,
    answer: Option<Answer>,
    result: Option<Outcome>,
    stream: Option<u64>,
    /// What the stream's head said, once it began.
    flags: StreamFlags,
}

enum Answer {
    Refused(Reason, String),
    UpToDate,
    /// A parent without snapshots: a placeholder made, or one already there.
    Placeholder,
    Stream {
        kind: Kind,
        from: Option<SnapshotRef>,
    },
}

impl<'a> RunRecord<'a> {
    pub(crate) fn new(history: &'a History, ip: IpAddr) -> RunRecord<'a> {
        RunRecord {
            history,
            started: now(),
            ip,
            client: None,
            run: None,
            begun: false,
            done: 0,
            failed: 0,
            up_to_date: 0,
            offer: None,
        }
    }

    /// The client the greeting admitted with its key.
    pub(crate) fn admitted(&mut self, client: &str) {
        self.client = Some(client.to_owned());
    }

    /// The client's key name, "" without keys.
    pub(crate) fn client(&self) -> &str {
        self.client.as_deref().unwrap_or_default()
    }

    /// How the history names the sender: its IP address, `CLIENT@IP` with keys.
    pub(crate) fn peer(&self) -> String {
        match &self.client {
            Some(c) => format!("{c}@{}", self.ip),
            None => self.ip.to_string(),
        }
    }

    /// An offer of the dataset that lands at `dataset` (its full name) has arrived. A dry
    /// run is not recorded.
    pub(crate) fn offer(&mut self, dataset: String, dry_run: bool) {
        self.offer = (!dry_run).then(|| Draft {
            dataset,
            started: now(),
            clock: Instant::now(),
            offered_first: None,
            offered_last: None,
            answer: None,
            result: None,
            stream: None,
            flags: StreamFlags::default(),
        });
    }

    /// The oldest and newest snapshots the offer announced.
    pub(crate) fn offered(&mut self, first: Option<&Snapshot>, last: Option<&Snapshot>) {
        if let Some(d) = &mut self.offer {
            d.offered_first = first.map(snapshot_ref);
            d.offered_last = last.map(snapshot_ref);
        }
    }

    /// The answer sent; a stream that follows counts as in flight until the offer ends.
    pub(crate) fn answered(&mut self, plan: &Plan) {
        let peer = self.peer();
        let Some(d) = &mut self.offer else { return };
        let answer = match plan {
            Plan::Refused { reason, text } => Answer::Refused(*reason, text.clone()),
            Plan::UpToDate { .. } => Answer::UpToDate,
            Plan::Placeholder { .. } => Answer::Placeholder,
            Plan::Full { .. } => Answer::Stream {
                kind: Kind::Full,
                from: None,
            },
            Plan::Incremental {
                from_guid,
                from_name,
                ..
            } => Answer::Stream {
                kind: Kind::Incremental,
                from: Some(SnapshotRef {
                    name: from_name.clone(),
                    guid: *from_guid,
                }),
            },
            Plan::Resume { .. } => Answer::Stream {
                kind: Kind::Resume,
                from: None,
            },
        };
        if let Answer::Stream { kind, .. } = &answer {
            let live = &self.history.live;
            let id = live.next_stream.fetch_add(1, Ordering::Relaxed);
            lock(&live.in_flight).insert(
                id,
                InFlight {
                    dataset: d.dataset.clone(),
                    peer,
                    kind: *kind,
                    since: d.started,
                },
            );
            d.stream = Some(id);
        }
        d.answer = Some(answer);
    }

    /// The flags of the stream being received, from its first record.
    pub(crate) fn streamed(&mut self, flags: StreamFlags) {
        if let Some(d) = &mut self.offer {
            d.flags = flags;
        }
    }

    /// The result of the stream, as sent to the sender.
    pub(crate) fn received(&mut self, outcome: &Outcome) {
        if let Some(d) = &mut self.offer {
            d.result = Some(outcome.clone());
        }
    }

    /// The offer has ended, with the session's error if it broke: the attempt is written
    /// (if it was answered) and counted.
    pub(crate) fn ended(&mut self, error: Option<&dyn std::fmt::Display>) {
        let Some(d) = self.offer.take() else { return };
        let live = &self.history.live;
        if let Some(id) = d.stream {
            lock(&live.in_flight).remove(&id);
        }
        let Some(answer) = d.answer else { return };
        let (mut kind, mut from, mut to) = (None, None, d.offered_last.clone());
        let (outcome, bytes, error_text) = match answer {
            Answer::Refused(reason, text) => {
                live.count_failure(failure_reason(Some(reason)));
                (
                    outcome_of(reason),
                    0,
                    Some(format!("{}: {text}", failure_reason(Some(reason)))),
                )
            }
            Answer::UpToDate => (Recorded::UpToDate, 0, None),
            Answer::Placeholder => (Recorded::Skipped, 0, None),
            Answer::Stream { kind: k, from: f } => {
                kind = Some(k);
                from = f;
                // What a stream ends with by the plan: the oldest offered for a full one.
                if k == Kind::Full {
                    to = d.offered_first.clone();
                }
                match (&d.result, error) {
                    (
                        Some(Outcome::Done {
                            bytes,
                            newest,
                            newest_guid,
                        }),
                        _,
                    ) => {
                        to = Some(SnapshotRef {
                            name: newest.clone(),
                            guid: *newest_guid,
                        });
                        live.bytes.fetch_add(*bytes, Ordering::Relaxed);
                        live.datasets.fetch_add(1, Ordering::Relaxed);
                        (Recorded::Done, *bytes, None)
                    }
                    (Some(Outcome::Failed { reason, text }), _) => {
                        live.count_failure(failure_reason(Some(*reason)));
                        (
                            outcome_of(*reason),
                            0,
                            Some(format!("{}: {text}", failure_reason(Some(*reason)))),
                        )
                    }
                    (None, e) => {
                        live.count_failure(failure_reason(None));
                        let text = e.map_or_else(
                            || "the offer ended without a result".to_owned(),
                            |e| e.to_string(),
                        );
                        (Recorded::Failed, 0, Some(format!("connection: {text}")))
                    }
                }
            }
        };
        if kind == Some(Kind::Resume) && !matches!(d.result, Some(Outcome::Done { .. })) {
            // Where an unfinished resumed stream was going is not known here.
            to = None;
        }
        match outcome {
            Recorded::Done => self.done += 1,
            Recorded::UpToDate => self.up_to_date += 1,
            _ => self.failed += 1,
        }
        if !self.begun {
            self.begun = true;
            self.run = self.history.begin_run(&RunStart {
                role: Role::Recv,
                job: self.history.job.clone(),
                peer: self.peer(),
                started: self.started,
            });
        }
        let start = AttemptStart {
            run: self.run,
            role: Role::Recv,
            job: self.history.job.clone(),
            peer: self.peer(),
            dataset: d.dataset,
            kind,
            from,
            to,
            raw: d.flags.raw,
            compressed: d.flags.compressed,
            attempt: 1,
            started: d.started,
        };
        let end = AttemptEnd {
            ended: now(),
            outcome,
            bytes,
            seconds: d.clock.elapsed().as_secs_f64(),
            error: error_text,
        };
        self.history.with_store(|s| s.record_attempt(&start, &end));
    }
}

impl Drop for RunRecord<'_> {
    fn drop(&mut self) {
        self.ended(None);
        let Some(run) = self.run else { return };
        let end = RunEnd {
            ended: now(),
            done: self.done,
            failed: self.failed,
            up_to_date: self.up_to_date,
            exit_status: i32::from(self.failed > 0),
        };
        self.history.with_store(|s| s.end_run(run, &end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use zfsync_history::{AttemptQuery, RunQuery};

    struct Tmp(PathBuf);

    impl Tmp {
        fn new(name: &str) -> Tmp {
            let dir = std::env::temp_dir()
                .join(format!("zfsync-recv-record-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Tmp(dir)
        }
    }

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn history(dir: PathBuf) -> History {
        let argv: Vec<String> = ["--state-dir", dir.to_str().unwrap(), "tank/backup"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let Ok(zfsync_cli::Parsed::Run((config, _))) = crate::cli::config(&argv) else {
            panic!("config");
        };
        History::open(&config)
    }

    fn snap(name: &str, guid: u64) -> Snapshot {
        Snapshot {
            name: name.into(),
            guid,
            createtxg: 0,
        }
    }

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5));

    /// Runs one offer of `tank/backup/a` (s1 .. s2 offered) answered with `plan`, with the
    /// stream's `result` and the session's `error`.
    fn offer(run: &mut RunRecord, plan: Plan, result: Option<Outcome>, error: Option<&str>) {
        let error = error.map(str::to_owned);
        run.offer("tank/backup/a".into(), false);
        run.offered(Some(&snap("s1", 11)), Some(&snap("s2", 22)));
        run.answered(&plan);
        if let Some(r) = &result {
            run.received(r);
        }
        run.ended(error.as_ref().map(|e| e as &dyn std::fmt::Display));
    }

    // issue 17: the receiver's rows said raw and compressed false whatever came.
    #[test]
    fn the_streams_flags_are_recorded() {
        let tmp = Tmp::new("flags");
        let h = history(tmp.0.clone());
        let done = || Outcome::Done {
            bytes: 1,
            newest: "s2".into(),
            newest_guid: 22,
        };
        {
            let mut run = RunRecord::new(&h, IP);
            for flags in [
                StreamFlags {
                    raw: true,
                    compressed: false,
                },
                StreamFlags {
                    raw: false,
                    compressed: true,
                },
            ] {
                run.offer("tank/backup/a".into(), false);
                run.answered(&Plan::Full { buffered: false });
                run.streamed(flags);
                run.received(&done());
                run.ended(None);
            }
            // No stream, or a head that said nothing: false.
            offer(&mut run, Plan::Full { buffered: false }, Some(done()), None);
        }
        let store = Store::open_read_only(&tmp.0).unwrap();
        let mut got = store.attempts(&AttemptQuery::default()).unwrap();
        got.reverse();
        let flags: Vec<(bool, bool)> = got
            .iter()
            .map(|a| (a.start.raw, a.start.compressed))
            .collect();
        assert_eq!(flags, [(true, false), (false, true), (false, false)]);
    }

    #[test]
    fn each_answered_offer_is_one_attempt_of_the_connections_run() {
        let tmp = Tmp::new("attempts");
        let h = history(tmp.0.clone());
        {
            let mut run = RunRecord::new(&h, IP);
            run.admitted("fileserver");
            offer(
                &mut run,
                Plan::Incremental {
                    from_guid: 11,
                    from_name: "s1".into(),
                    rollback: String::new(),
                },
                Some(Outcome::Done {
                    bytes: 4096,
                    newest: "s2".into(),
                    newest_guid: 22,
                }),
                None,
            );
            offer(&mut run, Plan::UpToDate { name: "s2".into() }, None, None);
            offer(
                &mut run,
                Plan::Refused {
                    reason: Reason::Diverged,
                    text: "has @local".into(),
                },
                None,
                None,
            );
            offer(
                &mut run,
                Plan::Full { buffered: false },
                None,
                Some("closed inside a stream"),
            );
            // A dry run and an offer that was never answered leave nothing.
            run.offer("tank/backup/b".into(), true);
            run.answered(&Plan::Full { buffered: false });
            run.ended(None);
            run.offer("tank/backup/c".into(), false);
            run.ended(None);
            assert_eq!(h.live.in_flight(), []);
        }
        let store = Store::open_read_only(&tmp.0).unwrap();
        let mut got = store.attempts(&AttemptQuery::default()).unwrap();
        got.reverse();
        let rows: Vec<_> = got
            .iter()
            .map(|a| {
                let e = a.end.as_ref().unwrap();
                (
                    a.start.kind,
                    a.start.from.as_ref().map(|s| s.guid),
                    a.start.to.as_ref().map(|s| s.guid),
                    e.outcome,
                    e.bytes,
                    e.error.clone(),
                )
            })
            .collect();
        let want = vec![
            (
                Some(Kind::Incremental),
                Some(11),
                Some(22),
                Recorded::Done,
                4096,
                None,
            ),
            (None, None, Some(22), Recorded::UpToDate, 0, None),
            (
                None,
                None,
                Some(22),
                Recorded::Refused,
                0,
                Some("diverged: has @local".into()),
            ),
            (
                Some(Kind::Full),
                None,
                Some(11),
                Recorded::Failed,
                0,
                Some("connection: closed inside a stream".into()),
            ),
        ];
        assert_eq!(rows, want);
        for a in &got {
            assert_eq!(a.start.role, Role::Recv);
            assert_eq!(a.start.job, "tank/backup");
            assert_eq!(a.start.peer, "fileserver@10.0.0.5");
            assert_eq!(a.start.dataset, "tank/backup/a");
        }
        let runs = store.runs(&RunQuery::default()).unwrap();
        assert_eq!(runs.len(), 1);
        let end = runs[0]
            .end
            .as_ref()
            .expect("the run ended with the connection");
        assert_eq!(
            (end.done, end.up_to_date, end.failed, end.exit_status),
            (1, 1, 2, 1)
        );
        assert!(got.iter().all(|a| a.start.run == Some(runs[0].id)));
        assert_eq!(h.live.bytes.load(Ordering::Relaxed), 4096);
        assert_eq!(h.live.datasets.load(Ordering::Relaxed), 1);
        let failures: Vec<_> = h.live.failures().into_iter().collect();
        assert_eq!(failures, [("connection", 1), ("diverged", 1)]);
    }

    #[test]
    fn a_stream_is_in_flight_from_its_answer_to_its_end() {
        let tmp = Tmp::new("in-flight");
        let h = history(tmp.0.clone());
        let mut run = RunRecord::new(&h, IP);
        run.offer("tank/backup/a".into(), false);
        run.answered(&Plan::Full { buffered: true });
        let flying = h.live.in_flight();
        assert_eq!(flying.len(), 1);
        assert_eq!(flying[0].dataset, "tank/backup/a");
        assert_eq!(flying[0].peer, "10.0.0.5");
        assert_eq!(flying[0].kind, Kind::Full);
        drop(run);
        assert_eq!(h.live.in_flight(), []);
    }

    #[test]
    fn an_unusable_state_dir_costs_nothing_but_the_record() {
        let tmp = Tmp::new("unusable");
        let file = tmp.0.join("file");
        std::fs::write(&file, "").unwrap();
        let h = history(file.join("state"));
        let mut run = RunRecord::new(&h, IP);
        offer(&mut run, Plan::UpToDate { name: "s2".into() }, None, None);
        drop(run);
        // The figures of this process still count.
        assert_eq!(h.live.failures().len(), 0);
        assert_eq!(
            lock(&h.warned).iter().copied().collect::<Vec<_>>(),
            ["cannot open the database"]
        );
    }

    #[test]
    fn failure_reasons_are_snake_case() {
        for (reason, want) in [
            (None, "connection"),
            (Some(Reason::NoCommonSnapshot), "no_common_snapshot"),
            (Some(Reason::Diverged), "diverged"),
            (Some(Reason::StreamFailed), "stream_failed"),
        ] {
            assert_eq!(failure_reason(reason), want);
        }
    }
}
