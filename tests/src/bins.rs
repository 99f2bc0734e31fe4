//! Where the workspace's built binaries and scripts are.
//!
//! Owns: `bin_dir` (`$ZFSYNC_BIN_DIR` or the workspace's `target/release`), the paths of
//! `zfsync-send`, `zfsync-recv` and `zfsync`, and of `scripts/NAME`. Must not: build anything (a
//! missing binary is a panic that says to run cargo build), or run what it finds.

use std::path::{Path, PathBuf};

/// The workspace root: the tests crate's parent directory.
fn workspace_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate lives inside the workspace")
}

/// Directory holding the release binaries: `$ZFSYNC_BIN_DIR`, or `target/release` of
/// this workspace.
pub fn bin_dir() -> PathBuf {
    match std::env::var_os("ZFSYNC_BIN_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_dir().join("target").join("release"),
    }
}

fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    if !path.is_file() {
        panic!(
            "{} not found: run cargo build --release first (or set ZFSYNC_BIN_DIR)",
            path.display()
        );
    }
    path
}

/// Path of the built `zfsync-send`; panics if it has not been built.
pub fn sender_bin() -> PathBuf {
    bin("zfsync-send")
}

/// Path of the built `zfsync-recv`; panics if it has not been built.
pub fn receiver_bin() -> PathBuf {
    bin("zfsync-recv")
}

/// Path of the built `zfsync` (the administration command); panics if it has not been
/// built.
pub fn admin_bin() -> PathBuf {
    bin("zfsync")
}

/// Path of `scripts/NAME` in this workspace (e.g. `script("zfsyncron")`); panics if it
/// does not exist.
pub fn script(name: &str) -> PathBuf {
    let path = workspace_dir().join("scripts").join(name);
    if !path.is_file() {
        panic!("{} not found", path.display());
    }
    path
}
