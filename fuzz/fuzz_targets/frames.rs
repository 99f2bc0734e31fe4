//! Fuzz target `frames`: see `zfsync_fuzz::frames` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zfsync_fuzz::frames(data));
