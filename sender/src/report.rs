//! What a run reports: how each dataset ended, and the summary table printed from it.
//!
//! It owns the summary's exact text (tests and scripts read it) and does no replication.

use std::io;
use zfsync_protocol::Reason;

/// How one dataset ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Snapshots were sent; the note says which.
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
            Status::Refused(r) => format!("refused:{}", r.as_str()),
            Status::Failed => "failed".into(),
        }
    }
}

/// The report of one dataset.
#[derive(Clone, Debug)]
pub struct Report {
    pub dataset: String,
    pub status: Status,
    pub bytes: u64,
    pub secs: f64,
    pub note: String,
}

/// The outcome of a whole run.
#[derive(Debug)]
pub struct RunReport {
    pub datasets: Vec<Report>,
    /// The receiver's cleanup, if it was asked for and answered.
    pub cleanup: Option<String>,
}

impl RunReport {
    pub fn all_ok(&self) -> bool {
        self.datasets.iter().all(|r| r.status.is_ok())
    }
}

/// Prints the summary table and the closing line.
pub fn print_summary(report: &RunReport, quiet: bool, out: &mut dyn io::Write) -> io::Result<()> {
    let width = report
        .datasets
        .iter()
        .map(|r| r.dataset.len())
        .max()
        .unwrap_or(7)
        .max(7);
    if !quiet {
        writeln!(
            out,
            "{:<width$}  {:<22}  {:>14}  {:>8}  NOTE",
            "DATASET", "OUTCOME", "BYTES", "SECS"
        )?;
        for r in &report.datasets {
            writeln!(
                out,
                "{:<width$}  {:<22}  {:>14}  {:>8.2}  {}",
                r.dataset,
                r.status.label(),
                r.bytes,
                r.secs,
                r.note.replace('\n', " ")
            )?;
        }
    }
    if let Some(c) = &report.cleanup {
        writeln!(out, "{c}")?;
    }
    let failed = report.datasets.iter().filter(|r| !r.status.is_ok()).count();
    let sent = report
        .datasets
        .iter()
        .filter(|r| r.status == Status::Sent)
        .count();
    let bytes: u64 = report.datasets.iter().map(|r| r.bytes).sum();
    writeln!(
        out,
        "zfsync-send: {} datasets, {sent} sent, {failed} failed, {bytes} bytes",
        report.datasets.len()
    )
}
