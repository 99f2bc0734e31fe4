//! Stream data moved between pipes and a real loopback connection with `splice(2)`: the
//! bytes that come out of the far pipe are the bytes put into the near one, frames stay in
//! step with the control messages around them, and each kind of failure is reported on the
//! side where it happened.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd};
use std::time::{Duration, Instant};
use zfsync_protocol::{Error, Frame, FrameReader, FrameWriter, Message, MoveError};

/// A pipe: (read end, write end).
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills two descriptors, which we then own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

fn connected() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (a, b)
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A pipe whose read end a thread drains: (write end, the thread, which returns all bytes
/// once the write end is closed).
fn draining_pipe() -> (File, std::thread::JoinHandle<Vec<u8>>) {
    let (mut r, w) = pipe();
    let drain = std::thread::spawn(move || {
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        all
    });
    (w, drain)
}

/// Sends `data` as Data frames moved out of a pipe, as the sender does with `zfs send`'s
/// output: each frame is what the pipe holds when it is looked at.
fn send_through_pipe(w: &mut FrameWriter<BufWriter<TcpStream>>, data: Vec<u8>) {
    let len = data.len();
    let (r, mut wr) = pipe();
    // The pipe must hold a frame's bytes before they are moved: fill it from a thread.
    let filler = std::thread::spawn(move || wr.write_all(&data).unwrap());
    let mut moved = 0;
    while moved < len {
        let ready = zfsync_protocol::splice::readable_bytes(r.as_fd()).unwrap();
        if ready == 0 {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let n = ready.min(len - moved);
        w.move_data_from(r.as_fd(), n).unwrap();
        moved += n;
    }
    filler.join().unwrap();
}

#[test]
fn data_goes_pipe_to_socket_to_pipe_unchanged_between_control_messages() {
    let (a, b) = connected();
    let sizes = [1usize, 4095, 4096, 65_537, 300_000, 1 << 20];
    let sender = std::thread::spawn(move || {
        let mut w = FrameWriter::new(BufWriter::new(a));
        // A control message queued before a frame: it must go out first.
        w.write_message(&Message::KeepAlive).unwrap();
        for (i, &len) in sizes.iter().enumerate() {
            send_through_pipe(&mut w, pattern(len, i as u32));
        }
        w.send(&Message::End { bytes: 7 }).unwrap();
    });
    let mut reader = FrameReader::new(BufReader::new(b));
    let mut got = Vec::new();
    let (out_w, drain) = draining_pipe();
    // The first frame goes through the buffered path (a control message came before it).
    assert!(matches!(
        reader.read_frame().unwrap(),
        Some(Frame::Message(Message::KeepAlive))
    ));
    loop {
        match reader.read_stream_frame().unwrap() {
            Some(Frame::Data(len)) => {
                let n = reader
                    .move_data_to(out_w.as_fd(), Duration::from_secs(10))
                    .unwrap();
                assert_eq!(n, len);
                got.push(len);
            }
            Some(Frame::Message(Message::End { bytes: 7 })) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(out_w);
    sender.join().unwrap();
    let all = drain.join().unwrap();
    let want: Vec<u8> = sizes
        .iter()
        .enumerate()
        .flat_map(|(i, &len)| pattern(len, i as u32))
        .collect();
    assert_eq!(got.iter().sum::<usize>(), want.len());
    assert!(all == want, "payload bytes differ after the moves");
}

/// The receiver waits for stream bytes in batches (a socket low-water mark). A batch must
/// never ask for more than the frame still owes, and the mark must be gone before the next
/// control message is read: here the peer sends nothing more until it is answered, so
/// either mistake would leave the reader waiting for bytes that never come (a read timeout).
#[test]
fn a_frame_then_a_message_the_peer_waits_on_arrive_whole() {
    let (a, b) = connected();
    let sizes = [10usize, 100_000, 300_000, 1 << 20];
    let sender = std::thread::spawn(move || {
        let mut w = FrameWriter::new(BufWriter::new(a.try_clone().unwrap()));
        let mut answers = FrameReader::new(BufReader::new(a));
        for (i, &len) in sizes.iter().enumerate() {
            send_through_pipe(&mut w, pattern(len, 100 + i as u32));
            w.send(&Message::End { bytes: len as u64 }).unwrap();
            // Nothing more until the receiver answers.
            match answers.read_message().unwrap() {
                Some(Message::KeepAlive) => {}
                other => panic!("sender: unexpected {other:?}"),
            }
        }
    });
    let mut reader = FrameReader::new(BufReader::new(b.try_clone().unwrap()));
    let mut answer = FrameWriter::new(BufWriter::new(b));
    for (i, &len) in sizes.iter().enumerate() {
        let (out_w, drain) = draining_pipe();
        let mut moved = 0;
        while moved < len {
            match reader.read_stream_frame().unwrap() {
                Some(Frame::Data(_)) => {
                    moved += reader
                        .move_data_to(out_w.as_fd(), Duration::from_secs(10))
                        .unwrap();
                }
                other => panic!("receiver: unexpected {other:?}"),
            }
        }
        drop(out_w);
        assert!(
            drain.join().unwrap() == pattern(len, 100 + i as u32),
            "frame {i}: bytes differ"
        );
        match reader.read_stream_frame() {
            Ok(Some(Frame::Message(Message::End { bytes }))) => assert_eq!(bytes, len as u64),
            other => panic!("receiver, after {len} bytes: expected End, got {other:?}"),
        }
        answer.send(&Message::KeepAlive).unwrap();
    }
    sender.join().unwrap();
}

#[test]
fn a_frame_cut_short_is_a_network_error() {
    let (mut a, b) = connected();
    // A header for 10000 bytes, then 3000 of them, then the connection closes.
    let mut bytes = vec![0x20, 0, 0, 0x27, 0x10];
    bytes.extend(pattern(3000, 1));
    a.write_all(&bytes).unwrap();
    drop(a);
    let mut reader = FrameReader::new(BufReader::new(b));
    assert!(matches!(
        reader.read_stream_frame().unwrap(),
        Some(Frame::Data(10000))
    ));
    let (_r, w) = pipe();
    match reader.move_data_to(w.as_fd(), Duration::from_secs(5)) {
        Err(MoveError::Network(Error::Truncated { wanted, got })) => {
            assert_eq!((wanted, got), (10000, 3000))
        }
        other => panic!("expected a truncated frame, got {other:?}"),
    }
}

/// A 200,000-byte Data frame, then Bye, moved into `sink`, which fails with `errno`: a
/// local error, and the rest of the payload is skipped, no less and no more, so the next
/// message reads as it should.
fn local_error_keeps_the_connection_in_step(sink: BorrowedFd<'_>, errno: i32) {
    let (a, b) = connected();
    let mut w = FrameWriter::new(BufWriter::new(a));
    w.write_data(&pattern(200_000, 2)).unwrap();
    w.send(&Message::Bye).unwrap();
    let mut reader = FrameReader::new(BufReader::new(b));
    assert!(matches!(
        reader.read_stream_frame().unwrap(),
        Some(Frame::Data(200_000))
    ));
    match reader.move_data_to(sink, Duration::from_secs(5)) {
        Err(MoveError::Local(e)) => assert_eq!(e.raw_os_error(), Some(errno)),
        other => panic!("expected a local error, got {other:?}"),
    }
    assert!(matches!(reader.read_message().unwrap(), Some(Message::Bye)));
}

#[test]
fn a_pipe_whose_reader_is_gone_is_a_local_error_and_the_connection_stays_in_step() {
    let (r, wr) = pipe();
    drop(r);
    local_error_keeps_the_connection_in_step(wr.as_fd(), libc::EPIPE);
}

#[test]
fn a_failed_write_in_the_copying_fallback_keeps_the_connection_in_step() {
    // splice cannot move from a socket into a file that is not a pipe, so the payload is
    // copied; /dev/full refuses the first write, after its bytes left the socket.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    local_error_keeps_the_connection_in_step(full.as_fd(), libc::ENOSPC);
}

#[test]
fn a_pipe_nobody_reads_is_a_local_error_after_the_stall_limit() {
    let (a, b) = connected();
    let sender = std::thread::spawn(move || {
        let mut w = FrameWriter::new(BufWriter::new(a));
        // More than a default pipe holds (64 KiB).
        let _ = w.write_data(&pattern(1 << 20, 3));
        let _ = w.flush();
        std::thread::sleep(Duration::from_secs(3));
    });
    let mut reader = FrameReader::new(BufReader::new(b));
    assert!(matches!(
        reader.read_stream_frame().unwrap(),
        Some(Frame::Data(_))
    ));
    let (_r, w) = pipe(); // kept open, never read
    let started = Instant::now();
    match reader.move_data_to(w.as_fd(), Duration::from_millis(300)) {
        Err(MoveError::Local(e)) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut),
        other => panic!("expected a stall, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    sender.join().unwrap();
}

#[test]
fn a_data_frame_left_unmoved_is_skipped() {
    let (a, b) = connected();
    let mut w = FrameWriter::new(BufWriter::new(a));
    w.write_data(&pattern(100_000, 4)).unwrap();
    w.send(&Message::End { bytes: 100_000 }).unwrap();
    let mut reader = FrameReader::new(BufReader::new(b));
    assert!(matches!(
        reader.read_frame().unwrap(),
        Some(Frame::Data(100_000))
    ));
    assert!(matches!(
        reader.read_stream_frame().unwrap(),
        Some(Frame::Message(Message::End { bytes: 100_000 }))
    ));
}

/// A look at a frame's first bytes leaves them for the move: the pipe gets every byte,
/// whether the head was still in the socket or already in the reader's buffer.
#[test]
fn peeking_at_a_frames_head_leaves_it_to_be_moved() {
    for buffered in [false, true] {
        let (a, b) = connected();
        let frames = [pattern(300_000, 1), pattern(10, 2)];
        let sent = frames.clone();
        let sender = std::thread::spawn(move || {
            let mut w = FrameWriter::new(BufWriter::new(a));
            if buffered {
                // A message and the frame in one write: the reader buffers the frame's
                // head along with the message.
                w.write_message(&Message::KeepAlive).unwrap();
            }
            for f in sent {
                w.write_data(&f).unwrap();
            }
            w.send(&Message::End { bytes: 0 }).unwrap();
        });
        let mut reader = FrameReader::new(BufReader::new(b));
        if buffered {
            assert!(matches!(
                reader.read_frame().unwrap(),
                Some(Frame::Message(Message::KeepAlive))
            ));
            assert!(reader.has_buffered());
        }
        let (out_w, drain) = draining_pipe();
        for (i, f) in frames.iter().enumerate() {
            assert!(matches!(
                reader.read_stream_frame().unwrap(),
                Some(Frame::Data(_))
            ));
            let head = reader.peek_data(24).unwrap();
            assert_eq!(head, f[..24.min(f.len())], "frame {i}, buffered {buffered}");
            reader
                .move_data_to(out_w.as_fd(), Duration::from_secs(10))
                .unwrap();
        }
        assert!(matches!(
            reader.read_stream_frame().unwrap(),
            Some(Frame::Message(Message::End { .. }))
        ));
        drop(out_w);
        sender.join().unwrap();
        assert!(
            drain.join().unwrap() == frames.concat(),
            "buffered {buffered}"
        );
    }
}
