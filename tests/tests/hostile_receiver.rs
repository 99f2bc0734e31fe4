//! A real `zfsync-send` on real zfs-fuse pools against a receiver that breaks the
//! protocol's promises: it names a base the source does not have, claims to be up to date
//! with a snapshot that is not the newest, says "done" before the stream has ended, or
//! counts the stream's bytes wrong. The scripted receiver is written here with the protocol
//! crate, so each test says exactly what it answers.
//!
//! The sender must fail exactly the dataset that was lied about, with a note that says
//! why, and go on with the others on a connection still in step: the test's receiver
//! checks that what follows each bad answer is what the protocol says must follow.

mod common;

use common::assert_final;
use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zfsync_protocol::{Frame, FrameReader, FrameWriter, Message, Outcome, Plan, Reason, VERSION};
use zfsync_tests::*;

/// What the scripted receiver answers to the offer of one dataset (by offered path).
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Up to date with the offered newest snapshot: the truth for a replica.
    UpToDate,
    /// Incremental from a GUID the source does not have. The sender must abort the stream
    /// it was asked for and take the Result, not offer its next dataset.
    UnknownBase,
    /// Up to date, naming a snapshot that is not the offered newest.
    UpToDateWithAnother,
    /// Full, then "done" as soon as the first Data frame arrives.
    DoneBeforeTheEnd,
    /// Full, then "done" with one byte more than arrived.
    WrongByteCount,
}

type Log = Arc<Mutex<Vec<String>>>;

/// What the scripted receiver answers to a cleanup request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cleanup {
    /// Nothing to do.
    Done,
    /// An error: the receiver is stopping.
    Stopping,
}

/// Starts the scripted receiver; returns its address and the log of what it saw after
/// each bad answer ("PATH: WHAT").
fn scripted_receiver(answers: BTreeMap<String, Answer>, cleanup: Cleanup) -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap().to_string();
    let log: Log = Arc::default();
    let l = log.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (answers, log) = (answers.clone(), l.clone());
            std::thread::spawn(move || {
                let _ = serve(conn, &answers, cleanup, &log);
            });
        }
    });
    (addr, log)
}

fn serve(
    conn: TcpStream,
    answers: &BTreeMap<String, Answer>,
    cleanup: Cleanup,
    log: &Log,
) -> zfsync_protocol::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut r = FrameReader::new(BufReader::new(conn.try_clone()?));
    let mut w = FrameWriter::new(BufWriter::new(conn));
    let note = |s: String| log.lock().unwrap().push(s);
    loop {
        let Some(msg) = r.read_message()? else {
            return Ok(());
        };
        match msg {
            Message::Hello { .. } => w.send(&Message::Welcome {
                version: VERSION,
                agent: "scripted receiver".into(),
                features: 0,
                proof: Vec::new(),
            })?,
            Message::KeepAlive | Message::Root { .. } => {}
            Message::Cleanup if cleanup == Cleanup::Stopping => w.send(&Message::Error {
                reason: Reason::ShuttingDown,
                text: "receiver is stopping".into(),
            })?,
            Message::Cleanup => w.send(&Message::CleanupDone {
                placed: 0,
                removed: 0,
                waiting: 0,
                failed: 0,
                text: String::new(),
            })?,
            Message::Bye => return Ok(()),
            Message::Offer { path, count, .. } => {
                let mut snaps = Vec::new();
                for _ in 0..count {
                    match r.read_message()? {
                        Some(Message::Snap(s)) => snaps.push(s),
                        other => panic!("{path}: expected a snap, got {other:?}"),
                    }
                }
                let newest = snaps.last().expect("offers have snapshots").clone();
                let answer = answers.get(&path).copied().unwrap_or(Answer::UpToDate);
                match answer {
                    Answer::UpToDate => w.send(&Message::Reply(Plan::UpToDate {
                        name: newest.name.clone(),
                    }))?,
                    Answer::UpToDateWithAnother => w.send(&Message::Reply(Plan::UpToDate {
                        name: format!("{}-elsewhere", newest.name),
                    }))?,
                    Answer::UnknownBase => {
                        w.send(&Message::Reply(Plan::Incremental {
                            from_guid: 1,
                            from_name: "nowhere".into(),
                            rollback: String::new(),
                        }))?;
                        let next = r.read_frame()?;
                        note(format!("{path}: {}", frame_name(&next)));
                        if let Some(Frame::Message(Message::Abort { .. })) = next {
                            w.send(&Message::Result(Outcome::Failed {
                                reason: Reason::StreamFailed,
                                text: "sender aborted the stream".into(),
                            }))?;
                        } else {
                            return Ok(()); // out of step: hang up, as the receiver does
                        }
                    }
                    Answer::DoneBeforeTheEnd => {
                        w.send(&Message::Reply(Plan::Full { buffered: false }))?;
                        let first = r.read_frame()?;
                        assert!(matches!(first, Some(Frame::Data(_))), "{path}: {first:?}");
                        w.send(&Message::Result(Outcome::Done {
                            bytes: 0,
                            newest: snaps[0].name.clone(),
                            newest_guid: snaps[0].guid,
                        }))?;
                        // Until the sender ends its side, which it must do with Abort.
                        loop {
                            match r.read_frame()? {
                                Some(Frame::Data(_)) | Some(Frame::Message(Message::KeepAlive)) => {
                                }
                                other => {
                                    note(format!("{path}: {}", frame_name(&other)));
                                    break;
                                }
                            }
                        }
                    }
                    Answer::WrongByteCount => {
                        w.send(&Message::Reply(Plan::Full { buffered: false }))?;
                        let mut got = 0u64;
                        loop {
                            match r.read_frame()? {
                                Some(Frame::Data(n)) => got += n as u64,
                                Some(Frame::Message(Message::KeepAlive)) => {}
                                Some(Frame::Message(Message::End { bytes })) => {
                                    assert_eq!(bytes, got, "{path}: the sender's own count");
                                    break;
                                }
                                other => panic!("{path}: expected data or end, got {other:?}"),
                            }
                        }
                        w.send(&Message::Result(Outcome::Done {
                            bytes: got + 1,
                            newest: snaps[0].name.clone(),
                            newest_guid: snaps[0].guid,
                        }))?;
                    }
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn frame_name(f: &Option<Frame>) -> String {
    match f {
        None => "closed".into(),
        Some(Frame::Data(_)) => "data".into(),
        Some(Frame::Message(m)) => m.name().to_string(),
    }
}

#[test]
fn lies_of_a_receiver_fail_only_their_dataset_and_the_connection_stays_in_step() {
    let src = Pool::new("liars");
    let root = src.ds("data");
    create(&root);
    let children = ["a", "b", "c", "d", "e"];
    for c in children {
        create(&format!("{root}/{c}"));
        write_file(&format!("{root}/{c}"), "f", &random_bytes(64 << 10, 7));
    }
    // c's stream is far more than a pipe holds, so zfs send is still writing when the
    // early "done" arrives.
    write_file(&format!("{root}/c"), "big", &random_bytes(16 << 20, 8));
    snapshot_tree(&root, "s1");
    snapshot_tree(&root, "s2");
    let answers: BTreeMap<String, Answer> = [
        ("a", Answer::UnknownBase),
        ("b", Answer::UpToDateWithAnother),
        ("c", Answer::DoneBeforeTheEnd),
        ("d", Answer::WrongByteCount),
        ("e", Answer::UpToDate),
    ]
    .into_iter()
    .map(|(p, a)| (p.to_string(), a))
    .collect();
    let (addr, log) = scripted_receiver(answers, Cleanup::Done);

    // One worker: the datasets are offered one after another on one connection (a new
    // one only after the sender drops it), so each answer's aftermath is in order.
    let zfs = zfs_bin();
    let out = run_with_timeout(
        &sender_bin(),
        &[
            "-t",
            "1",
            "--retries",
            "0",
            "--timeout",
            "10",
            "--zfs",
            &zfs,
            &root,
            &addr,
        ],
        Duration::from_secs(60),
    );
    out.assert_status(1);
    let rows = out.rows();
    let row = |c: &str| rows[&format!("{root}/{c}")].clone();
    assert_eq!(rows[&root].outcome, "up-to-date", "{}", out.stdout);
    let expect = [
        ("a", "which this run did not offer"),
        (
            "b",
            "says up to date with @s2-elsewhere, but the newest snapshot offered is @s2",
        ),
        ("c", "done before the stream ended"),
        ("d", "bytes received of the"),
    ];
    for (c, why) in expect {
        let r = row(c);
        assert_eq!(r.outcome, "failed", "{c}: {}", out.stdout);
        assert!(r.note.contains(why), "{c}: {:?} lacks {why:?}", r.note);
    }
    // The last one, after all of that, is answered and taken as it should be.
    assert_eq!(row("e").outcome, "up-to-date", "{}", out.stdout);
    assert_final(&out, 6, 0, 4);
    // What the sender did right after each bad answer: Abort, not its next offer. The
    // scripted receiver notes c's after draining c's stream, which may end after the
    // sender's exit.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = log.lock().unwrap().clone();
    assert_eq!(log, vec!["a: abort".to_string(), "c: abort".to_string()]);
}

// issue 15 item 4: the receiver stops before the cleanup request of a run whose datasets
// were all done. That is a warning on stderr (none with -q), in words, and exit 0: the
// datasets are where the run put them, and the receiver places buffered ones after every
// connection anyway. Not a line on stdout, and not the receiver's internal names.
#[test]
fn a_failed_cleanup_request_of_a_good_run_is_a_warning_in_words() {
    let src = Pool::new("cleanw");
    let root = src.ds("data");
    create(&root);
    snapshot_tree(&root, "s1");
    let (addr, _) = scripted_receiver(BTreeMap::new(), Cleanup::Stopping);
    let zfs = zfs_bin();
    for quiet in [false, true] {
        let mut args = vec!["--zfs", zfs.as_str(), root.as_str(), addr.as_str()];
        if quiet {
            args.insert(0, "-q");
        }
        let out = run_with_timeout(&sender_bin(), &args, Duration::from_secs(60));
        out.assert_ok();
        assert!(!out.stdout.contains("cleanup"), "{}", out.stdout);
        let want = if quiet {
            ""
        } else {
            "zfsync-send: warning: cleanup request failed: shutting down: receiver is stopping\n"
        };
        assert_eq!(out.stderr, want, "quiet={quiet}");
        assert_final(&out, 1, 0, 0);
    }
}
