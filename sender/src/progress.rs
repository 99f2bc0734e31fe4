//! Progress of the streams in flight. On a terminal (stderr, without `-q`): a bar per
//! stream with its bytes against the stream's expected size, its rate and time left, and a
//! total line; off a terminal: a log line per stream every minute,
//! `progress dataset=... bytes=... of=... rate=...` (info, so shown with `-v`).
//!
//! The expected size is zfs's own estimate (`zfs send -nvP`, OpenZFS), or where there is
//! none the snapshot's `referenced` for a full stream, shown with a `~`; an incremental
//! stream on zfs-fuse has none and shows its bytes only. A bar never shows more than 100%:
//! a stream that outgrows its estimate switches to "bytes sent" ([`view`]). The estimate
//! costs a zfs command, so off a terminal it is asked for only when the first log line is
//! due.
//!
//! The pump reports bytes with one call, [`sent`], which goes to the stream its worker
//! thread is pumping: the thread's [`Shown`] guard, set by `replicate.rs` around a stream.
//! This module must not change what is sent or fail a stream: progress that goes wrong
//! shows less, nothing more.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use log::{debug, info};
use std::cell::RefCell;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zfsync_zfs::{SendOptions, SendSize, Zfs};

/// How often a stream off a terminal gets a log line.
const LOG_EVERY: Duration = Duration::from_secs(60);

thread_local! {
    /// The stream this worker thread is pumping, if it is shown.
    static CURRENT: RefCell<Option<Arc<Stream>>> = const { RefCell::new(None) };
}

/// `n` more bytes of the current thread's stream went out. The pump's one hook.
pub(crate) fn sent(n: u64) {
    CURRENT.with(|current| {
        if let Some(stream) = current.borrow().as_ref() {
            stream.add(n);
        }
    });
}

/// How a run shows progress.
pub(crate) struct Meter {
    bars: Option<Arc<Bars>>,
}

/// The bars on a terminal: one per stream above a total.
struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    /// The total's length: the streams' expected sizes, or their bytes where more.
    total_len: AtomicU64,
    /// Some stream's size is approximate.
    total_approximate: AtomicBool,
    /// Some stream's size is unknown: the total shows bytes sent only.
    total_unknown: AtomicBool,
}

impl Meter {
    /// Bars when stderr is a terminal and not `quiet`, else log lines.
    pub(crate) fn new(quiet: bool) -> Meter {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let total = multi.add(ProgressBar::new(0));
            total.set_prefix("total");
            total.set_style(style(&View::Sent(0), true));
            Arc::new(Bars {
                multi,
                total,
                total_len: AtomicU64::new(0),
                total_approximate: AtomicBool::new(false),
                total_unknown: AtomicBool::new(false),
            })
        });
        Meter { bars }
    }

    /// Shows the stream of `dataset` that this thread is about to pump, until the guard
    /// is dropped. `estimate` is asked for its expected size when that is first needed:
    /// at once for a bar, when the first log line is due otherwise.
    pub(crate) fn stream(&self, dataset: &str, estimate: Estimate) -> Shown {
        let (estimate, size, bar) = match &self.bars {
            Some(bars) => {
                let size = estimate.ask();
                // Styled before it is added: a bar is drawn as soon as it is there.
                let bar = ProgressBar::hidden()
                    .with_style(style(&view(0, size), false))
                    .with_prefix(dataset.to_string());
                let bar = bars.multi.insert_before(&bars.total, bar);
                bars.grow_total(size);
                (None, size, Some(bar))
            }
            None => (Some(estimate), None, None),
        };
        let stream = Arc::new(Stream {
            dataset: dataset.to_string(),
            bytes: AtomicU64::new(0),
            started: Instant::now(),
            state: Mutex::new(StreamState {
                estimate,
                size,
                logged: Instant::now(),
                view: None,
            }),
            bar,
            bars: self.bars.clone(),
        });
        stream.redraw();
        CURRENT.with(|c| *c.borrow_mut() = Some(stream.clone()));
        Shown { stream }
    }
}

impl Bars {
    /// Adds a stream's expected size (or more bytes than it expected) to the total.
    fn grow_total(&self, by: Option<SendSize>) {
        let by = match by {
            Some(size) => size,
            None => {
                self.total_unknown.store(true, Ordering::Relaxed);
                SendSize {
                    bytes: 0,
                    approximate: true,
                }
            }
        };
        let len = self.total_len.fetch_add(by.bytes, Ordering::Relaxed) + by.bytes;
        if by.approximate {
            self.total_approximate.store(true, Ordering::Relaxed);
        }
        self.total.set_length(len);
        let size = (!self.total_unknown.load(Ordering::Relaxed)).then(|| SendSize {
            bytes: len,
            approximate: self.total_approximate.load(Ordering::Relaxed),
        });
        self.total
            .set_style(style(&view(self.total.position(), size), true));
    }
}

/// What a stream's expected size is asked of, and how.
pub(crate) enum Estimate {
    Send {
        zfs: Zfs,
        snapshot: String,
        opts: SendOptions,
    },
    Resume {
        zfs: Zfs,
        token: String,
    },
}

impl Estimate {
    /// The size of `zfs send` of `snapshot` with `opts`.
    pub(crate) fn send(zfs: &Zfs, snapshot: &str, opts: &SendOptions) -> Estimate {
        Estimate::Send {
            zfs: zfs.clone(),
            snapshot: snapshot.to_string(),
            opts: opts.clone(),
        }
    }

    /// The size of `zfs send -t token`.
    pub(crate) fn resume(zfs: &Zfs, token: &str) -> Estimate {
        Estimate::Resume {
            zfs: zfs.clone(),
            token: token.to_string(),
        }
    }

    fn ask(self) -> Option<SendSize> {
        let size = match self {
            Estimate::Send {
                zfs,
                snapshot,
                opts,
            } => zfs.send_size(&snapshot, &opts),
            Estimate::Resume { zfs, token } => zfs.resume_size(&token),
        };
        size.unwrap_or_else(|e| {
            debug!("no estimate of the stream's size: {e}");
            None
        })
    }
}

/// One stream in flight.
struct Stream {
    dataset: String,
    bytes: AtomicU64,
    started: Instant,
    state: Mutex<StreamState>,
    /// Its bar and the meter's, on a terminal.
    bar: Option<ProgressBar>,
    bars: Option<Arc<Bars>>,
}

struct StreamState {
    /// Not asked yet.
    estimate: Option<Estimate>,
    size: Option<SendSize>,
    /// When the last log line (or the start) was.
    logged: Instant,
    /// What the bar shows now, to restyle it only when that changes kind.
    view: Option<ViewKind>,
}

impl Stream {
    fn lock(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The expected size, asked for the first time it is needed.
    fn size(&self) -> Option<SendSize> {
        let mut state = self.lock();
        if let Some(estimate) = state.estimate.take() {
            state.size = estimate.ask();
        }
        state.size
    }

    fn add(&self, n: u64) {
        let bytes = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bars) = &self.bars {
            // The total grows by what a stream sends beyond its expected size.
            if let Some(expected) = self.lock().size {
                let over = bytes.saturating_sub(expected.bytes.max(bytes - n));
                if over > 0 {
                    bars.grow_total(Some(SendSize {
                        bytes: over,
                        approximate: true,
                    }));
                }
            }
            bars.total.inc(n);
            self.redraw();
            return;
        }
        if self.lock().logged.elapsed() < LOG_EVERY {
            return;
        }
        let size = self.size();
        self.lock().logged = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let of = match size {
            Some(s) if s.approximate => format!("~{}", s.bytes),
            Some(s) => s.bytes.to_string(),
            None => "unknown".into(),
        };
        info!(
            "progress dataset={} bytes={bytes} of={of} rate={:.0}",
            self.dataset,
            bytes as f64 / secs
        );
    }

    /// Brings the bar up to date: position, and its style when what it shows changes.
    fn redraw(&self) {
        let Some(bar) = &self.bar else { return };
        let bytes = self.bytes.load(Ordering::Relaxed);
        let mut state = self.lock();
        let v = view(bytes, state.size);
        if state.view != Some(v.kind()) {
            state.view = Some(v.kind());
            bar.set_style(style(&v, false));
        }
        drop(state);
        match v {
            View::Fraction { done, of, .. } => {
                bar.set_length(of);
                bar.set_position(done);
            }
            View::Sent(sent) => bar.set_position(sent),
        }
    }
}

/// Shows a stream while it lives; dropped when the stream ends.
pub(crate) struct Shown {
    stream: Arc<Stream>,
}

impl Drop for Shown {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
        if let (Some(bar), Some(bars)) = (&self.stream.bar, &self.stream.bars) {
            bar.finish_and_clear();
            bars.multi.remove(bar);
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if let Some(bars) = &self.bars {
            bars.total.finish_and_clear();
        }
    }
}

/// What a line shows of `sent` bytes against an expected `size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum View {
    /// `done` of `of`, never more than all of it.
    Fraction {
        done: u64,
        of: u64,
        approximate: bool,
    },
    /// Bytes sent only: no expected size, or the stream outgrew it.
    Sent(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ViewKind {
    Exact,
    Approximate,
    Sent,
}

impl View {
    fn kind(&self) -> ViewKind {
        match self {
            View::Fraction {
                approximate: false, ..
            } => ViewKind::Exact,
            View::Fraction { .. } => ViewKind::Approximate,
            View::Sent(_) => ViewKind::Sent,
        }
    }

    /// The percent done, at most 100; none without a fraction.
    #[cfg(test)]
    pub(crate) fn percent(&self) -> Option<u64> {
        match *self {
            View::Fraction { done, of, .. } if of > 0 => Some(done * 100 / of),
            View::Fraction { .. } => Some(100),
            View::Sent(_) => None,
        }
    }
}

/// The view of `sent` bytes against `size`: a fraction while the stream is within it,
/// bytes sent once it is exceeded or when there is none.
pub(crate) fn view(sent: u64, size: Option<SendSize>) -> View {
    match size {
        Some(s) if sent <= s.bytes => View::Fraction {
            done: sent,
            of: s.bytes,
            approximate: s.approximate,
        },
        _ => View::Sent(sent),
    }
}

/// The bar's look for a view: a bar with `~` before an approximate size, or bytes only;
/// the total's name in bold.
fn style(v: &View, total: bool) -> ProgressStyle {
    let name = match total {
        true => "{prefix:>24.bold}",
        false => "{prefix:>24}",
    };
    let template = match v.kind() {
        ViewKind::Exact => {
            format!("{name} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} {{eta}} left")
        }
        ViewKind::Approximate => {
            format!("{name} [{{bar:30}}] {{bytes}}/~{{total_bytes}} {{binary_bytes_per_sec}} ~{{eta}} left")
        }
        ViewKind::Sent => format!("{name} {{bytes}} sent {{binary_bytes_per_sec}}"),
    };
    ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(bytes: u64, approximate: bool) -> Option<SendSize> {
        Some(SendSize { bytes, approximate })
    }

    #[test]
    fn the_bar_never_shows_more_than_all_of_the_estimate() {
        for estimate in [0, 1, 1000, 1 << 30] {
            for approximate in [false, true] {
                for sent in [0, estimate / 2, estimate, estimate + 1, estimate * 3 + 7] {
                    let v = view(sent, size(estimate, approximate));
                    if let Some(p) = v.percent() {
                        assert!(p <= 100, "{sent} of {estimate}: {p}%");
                    }
                    if let View::Fraction { done, of, .. } = v {
                        assert!(done <= of, "{sent} of {estimate}: {v:?}");
                    }
                    if sent > estimate {
                        assert_eq!(v, View::Sent(sent), "{sent} of {estimate}");
                    }
                }
            }
        }
    }

    #[test]
    fn views_by_estimate() {
        assert_eq!(view(5, None), View::Sent(5));
        assert_eq!(
            view(5, size(10, true)),
            View::Fraction {
                done: 5,
                of: 10,
                approximate: true
            }
        );
        assert_eq!(view(5, size(10, false)).percent(), Some(50));
        assert_eq!(view(11, size(10, false)).percent(), None);
    }

    #[test]
    fn bytes_go_to_the_stream_of_the_thread_that_pumps_it() {
        let meter = Meter { bars: None };
        // Off a terminal the estimate is asked for only when a log line is due: never here.
        let estimate = Estimate::Resume {
            zfs: Zfs::detect("true").expect("true runs"),
            token: String::new(),
        };
        let shown = meter.stream("tank/a", estimate);
        sent(10);
        sent(5);
        let other = std::thread::spawn(|| sent(1000));
        other.join().unwrap();
        assert_eq!(shown.stream.bytes.load(Ordering::Relaxed), 15);
        drop(shown);
        sent(7); // no stream: nothing happens
        CURRENT.with(|c| assert!(c.borrow().is_none()));
    }
}
