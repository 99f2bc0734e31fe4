//! Fuzz target `decode`: see `zfsync_fuzz::decode` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zfsync_fuzz::decode(data));
