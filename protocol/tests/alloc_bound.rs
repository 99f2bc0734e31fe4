//! Hostile input never makes the frame reader allocate more than the protocol's limits.
//!
//! This test binary installs a counting global allocator that records, per thread, the
//! largest single allocation made while a check runs. A header announcing 4 GiB must cost
//! nothing; a frame at its limit costs at most the limit (plus, for a decoded string, a
//! copy of at most that field's limit).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Cursor, Read};
use zfsync_protocol::{FrameReader, Message, MAX_CONTROL, MAX_DATA};

struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: the allocator also runs while a thread's locals are torn down.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The largest single allocation `f` makes on this thread.
fn largest_allocation(f: impl FnOnce()) -> usize {
    LARGEST.with(|l| l.set(0));
    f();
    LARGEST.with(|l| l.get())
}

fn known_kinds() -> Vec<u8> {
    (0..=255u8)
        .filter(|&k| {
            !matches!(
                Message::decode(k, vec![]),
                Err(zfsync_protocol::Error::UnknownKind(_))
            )
        })
        .collect()
}

fn header(kind: u8, len: u32) -> Vec<u8> {
    let mut h = vec![kind];
    h.extend_from_slice(&len.to_be_bytes());
    h
}

#[test]
fn an_announced_length_over_the_limit_allocates_nothing_big() {
    for kind in known_kinds() {
        for len in [MAX_DATA as u32 + 1, 1 << 31, u32::MAX] {
            let src = Cursor::new(header(kind, len)).chain(io::repeat(b'x'));
            let big = largest_allocation(|| {
                let res = FrameReader::new(src).read_message();
                assert!(res.is_err());
            });
            // The error's own text is the largest thing made.
            assert!(
                big < 4096,
                "kind {kind:#04x} len {len}: allocated {big} bytes"
            );
        }
    }
}

#[test]
fn a_frame_at_its_limit_allocates_at_most_the_limit() {
    for kind in known_kinds() {
        let limit = if kind == 0x20 { MAX_DATA } else { MAX_CONTROL };
        for fill in [0u8, 0xff, b'a'] {
            // A string field of ~64 KiB length prefix (0xffff, 0x6161, 0) then fill: the
            // decoder refuses it or copies at most its field limit.
            let src = Cursor::new(header(kind, limit as u32)).chain(io::repeat(fill));
            let big = largest_allocation(|| {
                let _ = FrameReader::new(src).read_message();
            });
            assert!(
                big <= limit,
                "kind {kind:#04x} fill {fill:#04x}: allocated {big} bytes, limit {limit}"
            );
            if kind == 0x20 {
                // The counter works: a whole data frame is one buffer of its size.
                assert_eq!(big, MAX_DATA);
            }
        }
    }
}

#[test]
fn a_peer_that_stops_mid_frame_costs_at_most_the_announced_length() {
    // The payload buffer is sized by the (checked) announced length, not by what arrives.
    for kind in known_kinds() {
        let limit = if kind == 0x20 { MAX_DATA } else { MAX_CONTROL };
        let mut bytes = header(kind, limit as u32);
        bytes.extend_from_slice(&[7; 100]);
        let big = largest_allocation(|| {
            assert!(FrameReader::new(Cursor::new(bytes)).read_message().is_err());
        });
        assert!(big <= limit, "kind {kind:#04x}: allocated {big} bytes");
    }
}
