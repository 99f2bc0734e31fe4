//! What a run reports: how each dataset ended, and the summary table printed from it.
//!
//! It owns the summary's exact text (tests and scripts read it) and does no replication.

use std::io;
use zfsync_protocol::Reason;
use zfsync_text::{quoted, size};

/// How one dataset ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Snapshots were sent.
    Sent,
    UpToDate,
    /// The dataset has no snapshot: nothing to send, not an error.
    NoSnapshots,
    /// Dry run: what would be sent.
    WouldSend,
    Refused(Reason),
    Failed,
}

impl Status {
    pub fn is_ok(&self) -> bool {
        matches!(
            self,
            Status::Sent | Status::UpToDate | Status::NoSnapshots | Status::WouldSend
        )
    }

    pub fn label(&self) -> String {
        match self {
            Status::Sent => "sent".into(),
            Status::UpToDate => "up-to-date".into(),
            Status::NoSnapshots => "no-snapshots".into(),
            Status::WouldSend => "would-send".into(),
            Status::Refused(r) => format!("refused ({})", r.words()),
            Status::Failed => "failed".into(),
        }
    }
}

/// A snapshot by name and GUID: the name says which to a person, the GUID which it is
/// (a name can be reused for another snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRef {
    /// The snapshot's name (after `@`); for a snapshot gone on the source whose bookmark
    /// stood for it, `#` and the bookmark's name (no snapshot name holds `#`).
    pub name: String,
    pub guid: u64,
}

impl SnapshotRef {
    /// The bookmark `name` (after `#`) standing for the snapshot with GUID `guid`.
    pub fn bookmark(name: &str, guid: u64) -> SnapshotRef {
        SnapshotRef {
            name: format!("#{name}"),
            guid,
        }
    }

    /// Whether a bookmark stands for the snapshot (it is gone on the source).
    pub fn is_bookmark(&self) -> bool {
        self.name.starts_with('#')
    }

    /// "@s1", or "#zfsync-base-bk:s1" for a bookmark.
    pub fn shown(&self) -> String {
        match self.is_bookmark() {
            true => self.name.clone(),
            false => format!("@{}", self.name),
        }
    }
}

/// What a stream holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// A whole snapshot (`zfs send SNAP`): the dataset was new on the receiver.
    Full,
    /// The changes after a snapshot both sides have (`-i`, or `-I` with the snapshots
    /// between).
    Incremental,
    /// The rest of an interrupted stream (`zfs send -t TOKEN`).
    Resume,
}

/// One stream of a dataset's session: sent, or in a dry run one that would be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    pub kind: StreamKind,
    /// The snapshot an incremental starts from (or the one the incremental a resume
    /// continues started from); none for a full stream.
    pub from: Option<SnapshotRef>,
    /// The snapshot the stream ends with.
    pub to: SnapshotRef,
    /// Snapshots the stream carries: more than one for `-I`.
    pub snapshots: usize,
    /// Encrypted blocks sent as they are on disk (`-w`): the receiver gets no plaintext.
    pub raw: bool,
    /// Compressed blocks sent compressed (`-c`). Unknown for a resume: it keeps the flags
    /// of the interrupted stream, which its token holds.
    pub compressed: Option<bool>,
    /// A full stream received into the receiver's buffer: its parent was not there yet.
    pub buffered: bool,
    /// A resume: bytes the receiver already had.
    pub saved: u64,
    /// Bytes of the stream sent (0 in a dry run).
    pub bytes: u64,
    /// Why it failed: zfs's or the receiver's text.
    pub failed: Option<String>,
}

/// What the receiver did for a dataset without snapshots, offered because its descendants
/// have some and need a parent there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parent {
    /// It made a placeholder; in its buffer when `buffered` (its own parent was not there).
    Made { buffered: bool },
    /// It would make one (a dry run).
    WouldMake,
    /// A dataset is there already.
    Exists,
}

/// A step of a dataset's session, in the order they happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Stream(Stream),
    /// A resume token the receiver offered that was not used: why (the receiver drops
    /// its partial state, and the next offer starts afresh).
    TokenDiscarded(String),
    /// The answer to an offer without snapshots.
    Parent(Parent),
    /// The receiver rolled the destination back before an incremental: its account of
    /// it (to which snapshot, destroying which).
    RolledBack(String),
}

/// What one dataset's replication delivered, and how it ended: the record a run keeps of
/// each dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub status: Status,
    /// What was streamed (or would be, in a dry run).
    pub steps: Vec<Step>,
    /// The snapshot newest on the receiver once the delivery reached it (sent or up to
    /// date); none otherwise.
    pub newest: Option<SnapshotRef>,
    /// Why it failed or was refused: the receiver's, zfs's or this side's text.
    pub error: Option<String>,
    pub seconds: f64,
    /// How many times the dataset was tried: 1 without retries, 0 if never.
    pub attempts: u32,
    /// The tries that failed, oldest first: the last one too when the delivery failed on
    /// a try (its `error` is then that try's `what`).
    pub failed_tries: Vec<Attempt>,
}

/// A try of a dataset that failed: how far it got and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first try.
    pub number: u32,
    /// Stream bytes sent in this try.
    pub sent: u64,
    /// Of them, bytes the receiver confirmed (streams it reported done).
    pub confirmed: u64,
    /// How it ended, in words: "cut after 180 MB (connection reset by peer)".
    pub what: String,
}

impl Attempt {
    /// A try that ended with `why`, after `sent` bytes of which `confirmed` arrived for
    /// sure. `cut`: it broke off (a connection or stream error), rather than ending with
    /// the receiver's verdict, so the bytes say how far it got.
    pub(crate) fn new(number: u32, sent: u64, confirmed: u64, why: String, cut: bool) -> Attempt {
        let what = match (cut && sent > 0, confirmed) {
            (false, _) => why,
            (true, 0) => format!("cut after {} ({why})", size(sent)),
            (true, c) => format!("cut after {}, {} confirmed ({why})", size(sent), size(c)),
        };
        Attempt {
            number,
            sent,
            confirmed,
            what,
        }
    }
}

impl Delivery {
    /// A delivery that ended with `status` and has nothing else to say yet.
    pub fn new(status: Status) -> Delivery {
        Delivery {
            status,
            steps: Vec::new(),
            newest: None,
            error: None,
            seconds: 0.0,
            attempts: 0,
            failed_tries: Vec::new(),
        }
    }

    /// A failure before anything could be recorded.
    pub fn failed(error: impl Into<String>) -> Delivery {
        Delivery {
            error: Some(error.into()),
            ..Delivery::new(Status::Failed)
        }
    }

    pub fn streams(&self) -> impl Iterator<Item = &Stream> {
        self.steps.iter().filter_map(|s| match s {
            Step::Stream(s) => Some(s),
            Step::TokenDiscarded(_) | Step::Parent(_) | Step::RolledBack(_) => None,
        })
    }

    /// How the delivery began: the kind of its first stream; none if nothing was streamed.
    pub fn kind(&self) -> Option<StreamKind> {
        self.streams().next().map(|s| s.kind)
    }

    /// The snapshot the delivery started from: none for a full stream or no stream.
    pub fn from(&self) -> Option<&SnapshotRef> {
        self.streams().next().and_then(|s| s.from.as_ref())
    }

    pub fn bytes(&self) -> u64 {
        self.streams().map(|s| s.bytes).sum()
    }

    /// The summary's BYTES: what was streamed, or for a dataset not done, what was sent in
    /// all its tries.
    pub fn bytes_sent(&self) -> u64 {
        if self.status.is_ok() || self.failed_tries.is_empty() {
            return self.bytes();
        }
        self.failed_tries.iter().map(|t| t.sent).sum()
    }

    /// Whether something of this dataset went into the receiver's buffer.
    pub fn buffered(&self) -> bool {
        self.steps.iter().any(|s| match s {
            Step::Stream(s) => s.buffered,
            Step::Parent(p) => *p == Parent::Made { buffered: true },
            Step::TokenDiscarded(_) | Step::RolledBack(_) => false,
        })
    }

    /// The summary's note: the error if there is one (with the tries before it), else
    /// what was streamed, in order.
    pub fn note(&self) -> String {
        if let Some(e) = &self.error {
            return self.failure(e);
        }
        if self.status == Status::UpToDate {
            return self
                .newest
                .as_ref()
                .map(SnapshotRef::shown)
                .unwrap_or_default();
        }
        if self.status == Status::WouldSend {
            // A dry run would roll back if the receiver says so, then send one stream, or a
            // full one and the incremental after it.
            let mut parts: Vec<String> = self
                .steps
                .iter()
                .filter_map(|s| match s {
                    Step::RolledBack(what) => Some(what.clone()),
                    _ => None,
                })
                .collect();
            let mut streams = self.streams();
            let mut note = streams.next().map(Stream::describe).unwrap_or_default();
            for s in streams {
                note.push_str(&format!(", then {}", s.range()));
            }
            parts.push(note);
            return parts.join(", ");
        }
        let steps = self.steps.iter().map(|step| match step {
            Step::Stream(s) => s.describe(),
            Step::TokenDiscarded(why) => format!("{why}, token discarded"),
            Step::Parent(p) => p.describe().to_string(),
            Step::RolledBack(what) => what.clone(),
        });
        steps.collect::<Vec<_>>().join(", ")
    }
}

impl Delivery {
    /// The note of a delivery that ended with `error`: "3 attempts: 1 cut after 180 MB
    /// (connection reset by peer), 2 connection refused, 3 connection refused"; the error
    /// alone for a single try.
    fn failure(&self, error: &str) -> String {
        let tries = &self.failed_tries;
        let history = || {
            let each = tries.iter().map(|t| format!("{} {}", t.number, t.what));
            each.collect::<Vec<_>>().join(", ")
        };
        let ended_on_a_try = tries.last().is_some_and(|t| t.what == error);
        match tries.len() {
            0 => error.to_string(),
            1 if ended_on_a_try && self.attempts <= 1 => error.to_string(),
            _ if ended_on_a_try => format!("{} attempts: {}", self.attempts, history()),
            1 => format!("{error}; before: attempt {}", history()),
            _ => format!("{error}; before: attempts {}", history()),
        }
    }
}

impl Parent {
    fn describe(&self) -> &'static str {
        match self {
            Parent::Made { buffered: false } => "placeholder made on the receiver",
            Parent::Made { buffered: true } => {
                "placeholder made in the receiver's buffer (parent not there yet)"
            }
            Parent::WouldMake => "would make a placeholder on the receiver",
            Parent::Exists => "exists on the receiver",
        }
    }
}

impl Stream {
    /// "full @s1", "incremental @s1..@s3 (2 snapshots)", "resumed (N bytes saved)",
    /// "resume failed (WHY), token discarded".
    pub(crate) fn describe(&self) -> String {
        match (self.kind, &self.failed) {
            (StreamKind::Resume, Some(why)) => format!("resume failed ({why}), token discarded"),
            (StreamKind::Resume, None) => format!("resumed ({} bytes saved)", self.saved),
            (StreamKind::Full, _) if self.buffered => {
                format!("full @{} (buffered: parent not there yet)", self.to.name)
            }
            (StreamKind::Full, _) => format!("full @{}", self.to.name),
            (StreamKind::Incremental, _) => format!("incremental {}", self.range()),
        }
    }

    /// "@s1..@s3 (2 snapshots)", "#zfsync-base-bk:s1..@s3 (1 snapshot)".
    fn range(&self) -> String {
        let from = self.from.as_ref().map_or("@".into(), SnapshotRef::shown);
        let n = self.snapshots;
        let s = if n == 1 { "" } else { "s" };
        format!("{from}..@{} ({n} snapshot{s})", self.to.name)
    }
}

/// The report of one dataset.
#[derive(Clone, Debug)]
pub struct Report {
    pub dataset: String,
    pub delivery: Delivery,
}

/// The outcome of a whole run.
#[derive(Debug)]
pub struct RunReport {
    pub datasets: Vec<Report>,
    /// Datasets left out and why, in a dry run: "tank/data/scratch (--exclude scratch)".
    pub excluded: Vec<String>,
    /// What went wrong without costing any dataset (a cleanup request that failed): for
    /// stderr, not the summary, and no reason for a non-zero exit.
    pub warnings: Vec<String>,
    /// Why the run stopped before every dataset was tried (its `--deadline` passed).
    pub stopped: Option<String>,
    /// The receiver's cleanup, if it was asked for and answered (or why it was not).
    pub cleanup: Option<String>,
    /// Datasets of this tree the receiver's cleanup left in its buffer (waiting for a
    /// parent, or failed to place): received, but not in place. When the cleanup request
    /// failed, the datasets this run put in the buffer.
    pub waiting: u32,
}

impl RunReport {
    /// Every dataset done, and none of them left waiting in the receiver's buffer.
    pub fn all_ok(&self) -> bool {
        self.waiting == 0 && self.datasets.iter().all(|r| r.delivery.status.is_ok())
    }
}

/// The receiver's answer to a cleanup request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CleanupDone {
    pub placed: u32,
    pub removed: u32,
    pub waiting: u32,
    pub failed: u32,
    /// What the receiver has to say about the datasets waiting or failed.
    pub text: String,
}

impl CleanupDone {
    /// The summary's line for it; none when the cleanup had nothing to do.
    pub(crate) fn line(&self) -> Option<String> {
        let CleanupDone {
            placed,
            removed,
            waiting,
            failed,
            text,
        } = self;
        if placed + removed + waiting + failed == 0 {
            return None;
        }
        let mut s = format!("receiver cleanup: {placed} placed, {removed} stale copies removed, {waiting} waiting, {failed} failed");
        if !text.is_empty() {
            s.push_str(":\n  ");
            s.push_str(&text.replace('\n', "\n  "));
        }
        Some(s)
    }
}

/// Prints the summary table and the closing line.
pub fn print_summary(report: &RunReport, quiet: bool, out: &mut dyn io::Write) -> io::Result<()> {
    // A name with a space (`tank/My Documents`, which ZFS allows) is quoted as in the
    // logs, so that the first column stays one field for whoever reads the table.
    let names: Vec<String> = report
        .datasets
        .iter()
        .map(|r| quoted(&r.dataset).to_string())
        .collect();
    let width = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(7)
        .max(7);
    if !quiet {
        writeln!(
            out,
            "{:<width$}  {:<28}  {:>14}  {:>8}  NOTE",
            "DATASET", "OUTCOME", "BYTES", "SECS"
        )?;
        for (r, name) in report.datasets.iter().zip(&names) {
            writeln!(
                out,
                "{:<width$}  {:<28}  {:>14}  {:>8.2}  {}",
                name,
                r.delivery.status.label(),
                r.delivery.bytes_sent(),
                r.delivery.seconds,
                r.delivery.note().replace('\n', " ")
            )?;
        }
    }
    if !quiet {
        for e in &report.excluded {
            writeln!(out, "excluded: {e}")?;
        }
    }
    if let Some(c) = &report.cleanup {
        writeln!(out, "{c}")?;
    }
    let status = || report.datasets.iter().map(|r| &r.delivery.status);
    let failed = status().filter(|s| !s.is_ok()).count();
    let sent = status().filter(|s| **s == Status::Sent).count();
    let bytes: u64 = report
        .datasets
        .iter()
        .map(|r| r.delivery.bytes_sent())
        .sum();
    let waiting = match report.waiting {
        0 => String::new(),
        n => format!(", {n} waiting in the receiver's buffer (see above)"),
    };
    writeln!(
        out,
        "zfsync-send: {} datasets, {sent} sent, {failed} failed, {bytes} bytes{waiting}",
        report.datasets.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(name: &str, guid: u64) -> SnapshotRef {
        SnapshotRef {
            name: name.into(),
            guid,
        }
    }

    /// A stream from `@from` (or full when empty) to `@to`, of `bytes`.
    fn stream(kind: StreamKind, from: &str, to: &str, snapshots: usize, bytes: u64) -> Stream {
        Stream {
            kind,
            from: (!from.is_empty()).then(|| snap(from, 1)),
            to: snap(to, 3),
            snapshots,
            raw: false,
            compressed: Some(true),
            buffered: false,
            saved: 0,
            bytes,
            failed: None,
        }
    }

    fn full(to: &str, bytes: u64) -> Step {
        Step::Stream(stream(StreamKind::Full, "", to, 1, bytes))
    }

    fn incremental(from: &str, to: &str, n: usize, bytes: u64) -> Step {
        Step::Stream(stream(StreamKind::Incremental, from, to, n, bytes))
    }

    fn delivery(status: Status, steps: Vec<Step>, error: Option<&str>) -> Delivery {
        Delivery {
            steps,
            newest: Some(snap("s3", 3)),
            error: error.map(String::from),
            ..Delivery::new(status)
        }
    }

    #[test]
    fn the_note_says_what_was_streamed_in_order() {
        let buffered = Step::Stream(Stream {
            buffered: true,
            ..stream(StreamKind::Full, "", "s1", 1, 10)
        });
        let resumed = Step::Stream(Stream {
            saved: 4096,
            ..stream(StreamKind::Resume, "s1", "s2", 1, 10)
        });
        let resume_failed = Step::Stream(Stream {
            failed: Some("stale".into()),
            ..stream(StreamKind::Resume, "s1", "s2", 1, 10)
        });
        let refused = Step::TokenDiscarded("resume refused (it names no snapshot)".into());
        use Status::*;
        let cases: Vec<(Delivery, &str)> = vec![
            (delivery(UpToDate, vec![], None), "@s3"),
            (
                delivery(Sent, vec![full("s1", 5), incremental("s1", "s3", 2, 7)], None),
                "full @s1, incremental @s1..@s3 (2 snapshots)",
            ),
            (
                delivery(Sent, vec![buffered.clone()], None),
                "full @s1 (buffered: parent not there yet)",
            ),
            // From a base only a bookmark kept on the source: -i from it, then -I.
            (
                delivery(
                    Sent,
                    vec![
                        incremental("#zfsync-base-bk:s1", "s2", 1, 5),
                        incremental("s2", "s3", 2, 7),
                    ],
                    None,
                ),
                "incremental #zfsync-base-bk:s1..@s2 (1 snapshot), incremental @s2..@s3 (2 snapshots)",
            ),
            (
                Delivery {
                    newest: Some(SnapshotRef::bookmark("zfsync-base-bk:s3", 3)),
                    ..delivery(UpToDate, vec![], None)
                },
                "#zfsync-base-bk:s3",
            ),
            (
                delivery(Sent, vec![resumed, incremental("s2", "s3", 1, 1)], None),
                "resumed (4096 bytes saved), incremental @s2..@s3 (1 snapshot)",
            ),
            (
                delivery(Sent, vec![resume_failed, incremental("s1", "s3", 2, 1)], None),
                "resume failed (stale), token discarded, incremental @s1..@s3 (2 snapshots)",
            ),
            (
                delivery(Sent, vec![refused.clone(), incremental("s2", "s3", 1, 1)], None),
                "resume refused (it names no snapshot), token discarded, incremental @s2..@s3 (1 snapshot)",
            ),
            (
                delivery(Sent, vec![refused.clone()], None),
                "resume refused (it names no snapshot), token discarded",
            ),
            // A dry run: what would be sent, and after a full stream the incremental.
            (
                delivery(WouldSend, vec![full("s1", 0), incremental("s1", "s3", 2, 0)], None),
                "full @s1, then @s1..@s3 (2 snapshots)",
            ),
            (
                delivery(WouldSend, vec![buffered, incremental("s1", "s3", 2, 0)], None),
                "full @s1 (buffered: parent not there yet), then @s1..@s3 (2 snapshots)",
            ),
            (
                delivery(WouldSend, vec![refused, incremental("s2", "s3", 1, 0)], None),
                "incremental @s2..@s3 (1 snapshot)",
            ),
            (
                delivery(Failed, vec![full("s1", 5)], Some("receiver's newest is foreign")),
                "receiver's newest is foreign",
            ),
            (
                delivery(Refused(Reason::Diverged), vec![], Some("diverged at @s2")),
                "diverged at @s2",
            ),
            (Delivery::new(NoSnapshots), ""),
            // issue 14 item 4: a rollback the receiver made is named.
            (
                delivery(
                    Sent,
                    vec![
                        Step::RolledBack("rolled back to @s2 (destroying @x; --allow-rollback)".into()),
                        incremental("s2", "s3", 1, 1),
                    ],
                    None,
                ),
                "rolled back to @s2 (destroying @x; --allow-rollback), incremental @s2..@s3 (1 snapshot)",
            ),
            (
                delivery(
                    WouldSend,
                    vec![
                        Step::RolledBack("would roll back to @s2 (destroying @x; --allow-rollback)".into()),
                        incremental("s2", "s3", 1, 0),
                    ],
                    None,
                ),
                "would roll back to @s2 (destroying @x; --allow-rollback), incremental @s2..@s3 (1 snapshot)",
            ),
            // issue 14 item 2: a parent without snapshots, made a placeholder or there.
            (
                delivery(NoSnapshots, vec![Step::Parent(Parent::Made { buffered: false })], None),
                "placeholder made on the receiver",
            ),
            (
                delivery(NoSnapshots, vec![Step::Parent(Parent::Exists)], None),
                "exists on the receiver",
            ),
            (
                delivery(NoSnapshots, vec![Step::Parent(Parent::WouldMake)], None),
                "would make a placeholder on the receiver",
            ),
        ];
        for (d, want) in cases {
            assert_eq!(d.note(), want, "{d:?}");
        }
    }

    #[test]
    fn a_try_that_broke_off_says_how_far_it_got() {
        let cases = [
            (
                180_000_000,
                0,
                true,
                "cut after 180 MB (connection reset by peer)",
            ),
            (
                192_000_000,
                12_000_000,
                true,
                "cut after 192 MB, 12 MB confirmed (connection reset by peer)",
            ),
            // Nothing sent: the error alone.
            (0, 0, true, "connection reset by peer"),
            // The receiver's verdict, not a cut: its text alone.
            (5_000_000, 0, false, "connection reset by peer"),
        ];
        for (sent, confirmed, cut, want) in cases {
            let why = "connection reset by peer".to_string();
            let a = Attempt::new(1, sent, confirmed, why, cut);
            assert_eq!(a.what, want);
            assert_eq!((a.sent, a.confirmed), (sent, confirmed));
        }
    }

    #[test]
    fn a_failed_row_keeps_every_try() {
        let refused = "cannot reach h:7611: connection refused (is zfsync-recv running there?)";
        let tries = vec![
            Attempt::new(1, 180_000_000, 0, "connection reset by peer".into(), true),
            Attempt::new(2, 0, 0, refused.into(), true),
            Attempt::new(3, 0, 0, refused.into(), true),
        ];
        let failed = |tries: &[Attempt], attempts, error: &str| Delivery {
            attempts,
            failed_tries: tries.to_vec(),
            ..Delivery::failed(error)
        };
        let d = failed(&tries, 3, refused);
        assert_eq!(
            d.note(),
            format!("3 attempts: 1 cut after 180 MB (connection reset by peer), 2 {refused}, 3 {refused}")
        );
        assert_eq!(d.bytes_sent(), 180_000_000);
        let d = failed(&tries[..1], 1, &tries[0].what);
        assert_eq!(d.note(), "cut after 180 MB (connection reset by peer)");
        assert_eq!(d.bytes_sent(), 180_000_000);
        // Not tried again (the run's deadline passed): the tries before it follow.
        let d = failed(
            &tries[..1],
            1,
            "not started: the run's --deadline of 4 s passed",
        );
        assert_eq!(
            d.note(),
            "not started: the run's --deadline of 4 s passed; before: attempt 1 cut after 180 MB (connection reset by peer)"
        );
        // A delivery that got through keeps its own note and bytes.
        let d = Delivery {
            failed_tries: tries,
            attempts: 4,
            ..delivery(Status::Sent, vec![full("s1", 5)], None)
        };
        assert_eq!((d.note().as_str(), d.bytes_sent()), ("full @s1", 5));
    }

    #[test]
    fn a_delivery_says_how_it_began_and_what_it_cost() {
        let d = delivery(
            Status::Sent,
            vec![full("s1", 5), incremental("s1", "s3", 2, 7)],
            None,
        );
        assert_eq!(
            (d.kind(), d.from(), d.bytes()),
            (Some(StreamKind::Full), None, 12)
        );
        let d = delivery(Status::Sent, vec![incremental("s1", "s3", 2, 7)], None);
        let from = snap("s1", 1);
        assert_eq!(
            (d.kind(), d.from(), d.bytes()),
            (Some(StreamKind::Incremental), Some(&from), 7)
        );
        let d = delivery(Status::UpToDate, vec![], None);
        assert_eq!((d.kind(), d.from(), d.bytes()), (None, None, 0));
    }

    #[test]
    fn the_cleanup_line_is_there_only_when_the_cleanup_did_something() {
        let done = |placed, failed, text: &str| CleanupDone {
            placed,
            removed: 0,
            waiting: 0,
            failed,
            text: text.into(),
        };
        assert_eq!(done(0, 0, "").line(), None);
        assert_eq!(
            done(2, 0, "").line().as_deref(),
            Some("receiver cleanup: 2 placed, 0 stale copies removed, 0 waiting, 0 failed")
        );
        assert_eq!(
            done(0, 1, "a: gone\nb: busy").line().as_deref(),
            Some("receiver cleanup: 0 placed, 0 stale copies removed, 0 waiting, 1 failed:\n  a: gone\n  b: busy")
        );
    }

    #[test]
    fn the_summary_is_a_table_and_a_closing_line() {
        let report = |dataset: &str, delivery: Delivery| Report {
            dataset: dataset.into(),
            delivery: Delivery {
                seconds: 1.234,
                ..delivery
            },
        };
        let run = RunReport {
            datasets: vec![
                report(
                    "tank/data",
                    delivery(
                        Status::Sent,
                        vec![full("s1", 5), incremental("s1", "s3", 2, 7)],
                        None,
                    ),
                ),
                report("tank/data/a", delivery(Status::UpToDate, vec![], None)),
                report(
                    "tank/data/b",
                    delivery(Status::Failed, vec![full("s1", 3)], Some("two\nlines")),
                ),
                report("tank/data/c", Delivery::new(Status::NoSnapshots)),
            ],
            excluded: vec!["tank/data/tmp (zfsync:sync=off)".into()],
            cleanup: Some("receiver cleanup: 1 placed".into()),
            warnings: vec![],
            stopped: None,
            waiting: 0,
        };
        let printed = |quiet| {
            let mut out = Vec::new();
            print_summary(&run, quiet, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let closing = "receiver cleanup: 1 placed\n\
                       zfsync-send: 4 datasets, 1 sent, 1 failed, 15 bytes\n";
        assert_eq!(
            printed(false),
            "DATASET      OUTCOME                                BYTES      SECS  NOTE\n\
             tank/data    sent                                      12      1.23  full @s1, incremental @s1..@s3 (2 snapshots)\n\
             tank/data/a  up-to-date                                 0      1.23  @s3\n\
             tank/data/b  failed                                     3      1.23  two lines\n\
             tank/data/c  no-snapshots                               0      1.23  \n\
             excluded: tank/data/tmp (zfsync:sync=off)\n"
                .to_string()
                + closing
        );
        assert_eq!(printed(true), closing);
    }

    #[test]
    fn a_name_with_a_space_is_one_quoted_field_of_the_table() {
        let run = RunReport {
            datasets: ["tank/My Documents", "tank/a"]
                .map(|dataset| Report {
                    dataset: dataset.into(),
                    delivery: delivery(Status::UpToDate, vec![], None),
                })
                .to_vec(),
            excluded: vec![],
            cleanup: None,
            warnings: vec![],
            stopped: None,
            waiting: 0,
        };
        let mut out = Vec::new();
        print_summary(&run, false, &mut out).unwrap();
        let printed = String::from_utf8(out).unwrap();
        let rows: Vec<&str> = printed.lines().skip(1).take(2).collect();
        assert_eq!(
            rows,
            [
                "\"tank/My Documents\"  up-to-date                                 0      0.00  @s3",
                "tank/a               up-to-date                                 0      0.00  @s3",
            ]
        );
    }

    // issue 14 item 2: a run whose datasets wait in the receiver's buffer is not done,
    // and says so.
    #[test]
    fn datasets_left_waiting_fail_the_run() {
        let run = |waiting| RunReport {
            datasets: vec![Report {
                dataset: "tank/data/a".into(),
                delivery: delivery(Status::Sent, vec![full("s1", 5)], None),
            }],
            excluded: vec![],
            cleanup: None,
            warnings: vec![],
            stopped: None,
            waiting,
        };
        assert!(run(0).all_ok());
        assert!(!run(2).all_ok());
        let mut out = Vec::new();
        print_summary(&run(2), true, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "zfsync-send: 1 datasets, 1 sent, 0 failed, 5 bytes, 2 waiting in the receiver's buffer (see above)\n"
        );
    }
}
