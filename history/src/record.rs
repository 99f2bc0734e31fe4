//! The plain values the history stores and returns: runs, attempts, the filters of a query
//! and a dataset's summary.
//!
//! This module owns the vocabulary (role, kind, outcome) and its spelling in the database and
//! in output; it knows nothing of SQL. Times are unix seconds chosen by the caller.

/// Which side recorded a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// `zfsync-send`.
    Send,
    /// `zfsync-recv`.
    Recv,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Send, Role::Recv];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Send => "send",
            Role::Recv => "recv",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What kind of stream an attempt sent or received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Full,
    Incremental,
    /// A resumed receive (`zfs send -t TOKEN`).
    Resume,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Full, Kind::Incremental, Kind::Resume];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Incremental => "incremental",
            Kind::Resume => "resume",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How a finished attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The stream was sent or received.
    Done,
    /// The receiver already had the newest snapshot: nothing to send.
    UpToDate,
    /// The receiver refused (diverged, no common snapshot, ...): the reason is the error text.
    Refused,
    /// Something broke: the error text says what.
    Failed,
    /// Not tried, and not an error (e.g. a dataset with no snapshot).
    Skipped,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Done,
        Outcome::UpToDate,
        Outcome::Refused,
        Outcome::Failed,
        Outcome::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::UpToDate => "up-to-date",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The replica holds the snapshot the attempt was about: it counts as the last success.
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Done | Outcome::UpToDate)
    }

    /// Counts in "failures since the last success". Skipped is neither a success nor a
    /// failure.
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Refused | Outcome::Failed)
    }
}

/// A snapshot as the history names it: the part after `@`, and its GUID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRef {
    pub name: String,
    pub guid: u64,
}

/// The id of a run row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RunId(pub i64);

/// The id of an attempt row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttemptId(pub i64);

/// What is known when a run starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunStart {
    pub role: Role,
    /// The sender's job id, or the receiver's id.
    pub job: String,
    /// The receiver's address (sender side) or the sender's (receiver side).
    pub peer: String,
    pub started: i64,
}

/// What is known when a run ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunEnd {
    pub ended: i64,
    pub done: u32,
    pub failed: u32,
    pub up_to_date: u32,
    /// The process's exit status (0 all done, 1 some dataset failed, ...).
    pub exit_status: i32,
}

/// A run as stored: `end` is `None` while it runs (or if its process died).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub id: RunId,
    pub start: RunStart,
    pub end: Option<RunEnd>,
}

/// What is known when one dataset's attempt starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptStart {
    /// The run it belongs to; `None` if there is none (e.g. its `begin_run` failed).
    pub run: Option<RunId>,
    pub role: Role,
    /// The sender's job id, or the receiver's id.
    pub job: String,
    pub peer: String,
    pub dataset: String,
    /// `None` when no stream was planned (up to date, refused, skipped).
    pub kind: Option<Kind>,
    /// The incremental base; `None` for a full stream.
    pub from: Option<SnapshotRef>,
    /// The newest snapshot the attempt sends (or found up to date); `None` for a dataset
    /// with no snapshot.
    pub to: Option<SnapshotRef>,
    pub raw: bool,
    pub compressed: bool,
    /// 1 for the first try of this dataset in a run, 2 for the first retry, ...
    pub attempt: u32,
    pub started: i64,
}

/// What is known when one dataset's attempt ends.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptEnd {
    pub ended: i64,
    pub outcome: Outcome,
    /// Stream bytes moved.
    pub bytes: u64,
    /// Time the stream took (finer than `ended - started`).
    pub seconds: f64,
    pub error: Option<String>,
}

/// What an attempt turned out to stream, known only once it ends: a sender learns the
/// kind and base from the receiver's answer, after the attempt has started (see
/// [`Store::finish_attempt_with`](crate::Store::finish_attempt_with)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Streamed {
    pub kind: Option<Kind>,
    pub from: Option<SnapshotRef>,
    pub to: Option<SnapshotRef>,
    pub raw: bool,
    pub compressed: bool,
}

/// An attempt as stored: `end` is `None` while it is in flight.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    pub id: AttemptId,
    pub start: AttemptStart,
    pub end: Option<AttemptEnd>,
}

/// Filters for [`Store::attempts`](crate::Store::attempts); `None` matches everything.
/// Results are newest first (by start time), at most `limit` of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttemptQuery {
    /// Started at or after this time.
    pub since: Option<i64>,
    /// Started before this time.
    pub until: Option<i64>,
    pub dataset: Option<String>,
    pub role: Option<Role>,
    pub peer: Option<String>,
    pub job: Option<String>,
    /// Finished with this outcome (in-flight attempts never match).
    pub outcome: Option<Outcome>,
    pub limit: Option<usize>,
}

/// Filters for [`Store::runs`](crate::Store::runs); `None` matches everything.
/// Results are newest first (by start time), at most `limit` of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunQuery {
    /// Started at or after this time.
    pub since: Option<i64>,
    /// Started before this time.
    pub until: Option<i64>,
    pub role: Option<Role>,
    pub peer: Option<String>,
    pub job: Option<String>,
    pub limit: Option<usize>,
}

/// One day's received or sent bytes (see [`Store::bytes_per_day`](crate::Store::bytes_per_day)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayTotal {
    /// UTC days since 1970-01-01 (unix seconds / 86400).
    pub day: i64,
    pub bytes: u64,
    /// How many streams (attempts done) the bytes came in.
    pub streams: u64,
}

/// Where one dataset stands with one peer, from one side's point of view.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetStatus {
    pub dataset: String,
    pub peer: String,
    pub role: Role,
    /// The newest attempt (by start time), finished or not.
    pub last: Attempt,
    /// The newest attempt is unfinished. A process killed mid-attempt leaves such a row
    /// behind until the dataset's next attempt: compare `last.start.started` with now.
    pub in_flight: bool,
    /// The newest attempt whose outcome [is a success](Outcome::is_success): its end time
    /// and its `to` snapshot.
    pub last_success: Option<Attempt>,
    /// The newest attempt whose outcome [is a failure](Outcome::is_failure): its error text.
    pub last_failure: Option<Attempt>,
    /// Failures started after the last success (all of them if there was none), counted
    /// in what [`Store::trim`](crate::Store::trim) kept.
    pub failures_since_success: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("SEND"), None);
    }

    #[test]
    fn kind_names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("incr"), None);
    }

    #[test]
    fn outcome_names_round_trip() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(Outcome::parse("sent"), None);
    }

    #[test]
    fn outcomes_are_success_failure_or_neither() {
        let cases = [
            (Outcome::Done, true, false),
            (Outcome::UpToDate, true, false),
            (Outcome::Refused, false, true),
            (Outcome::Failed, false, true),
            (Outcome::Skipped, false, false),
        ];
        for (o, success, failure) in cases {
            assert_eq!(
                (o.is_success(), o.is_failure()),
                (success, failure),
                "{o:?}"
            );
        }
    }
}
