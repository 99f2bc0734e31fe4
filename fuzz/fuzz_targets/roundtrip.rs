//! Fuzz target `roundtrip`: see `zfsync_fuzz::roundtrip` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zfsync_fuzz::roundtrip(data));
