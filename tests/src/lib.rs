//! Integration-test harness: real zfsync binaries against real ZFS pools on file vdevs.
//!
//! Owns, one module a job, everything re-exported here so that a test needs only
//! `use zfsync_tests::*`:
//! - `bins`: where the built binaries and `scripts/` are;
//! - `scratch`: `TEST_ROOT`, unique names, temp dirs;
//! - `zfs_cmd`: running `zfs`/`zpool`, one mounting command at a time;
//! - `process`: exit statuses, signals, waiting with a deadline, a process's children;
//! - `pool`: throw-away pools (`Pool`) and the clean-up of stale ones;
//! - `datasets`: creating datasets, snapshots and files;
//! - `inspect`: reading names, snapshot GUIDs and files without touching the datasets;
//! - `receiver`: a receiver process guard (`Receiver`);
//! - `sender`: a sender runner (`send`, `run_at`, `SendOutput`), its summary table, and a
//!   sender in the background (`BgSender`);
//! - `proxy`: a cutting, stalling, recording TCP proxy for fault tests.
//!
//! Does not own: any zfsync logic. The harness drives the binaries from the outside as a
//! user would, so a test passing here means the shipped commands work; it never links the
//! sender or receiver libraries.
//!
//! Everything here panics on failure with the command, its exit status and its stderr:
//! these are test helpers, and a panic with the raw text is the most useful report. Only
//! the `Drop` impls never panic (a panic while unwinding aborts the whole test binary);
//! they report on stderr instead.
//!
//! Environment:
//! - `ZFSYNC_BIN_DIR`: where `zfsync-send`, `zfsync-recv` and `zfsync` are (default: the
//!   workspace's `target/release`).
//! - `ZFSYNC_ZFS`, `ZFSYNC_ZPOOL`: the `zfs` and `zpool` commands (default: from PATH).

mod bins;
mod datasets;
mod inspect;
mod pool;
mod process;
mod proxy;
mod receiver;
mod scratch;
mod sender;
mod zfs_cmd;

pub use bins::{admin_bin, bin_dir, receiver_bin, script, sender_bin};
pub use datasets::{
    create, data_and_kid, mountpoint, random_bytes, snapshot, snapshot_tree, write_file,
    write_file_unmounted, zfsync_name_at,
};
pub use inspect::{
    exists, files_of, list_datasets, property, snapshot_guids, tree_snapshots, try_tree_snapshots,
};
pub use pool::{destroy_pool, Pool, DEFAULT_POOL_SIZE};
pub use process::{child_pids, describe_status, signal, SIGKILL};
pub use proxy::{Proxy, ProxyRecord};
pub use receiver::{free_port, Receiver, LISTEN_TIMEOUT};
pub use scratch::{temp_dir, TEST_ROOT};
pub use sender::{run_at, run_with_timeout, send, BgSender, SendOutput, SummaryRow, SEND_TIMEOUT};
pub use zfs_cmd::{zfs, zfs_bin, zfs_retry_busy, zfs_try, zpool, zpool_bin, zpool_try};
