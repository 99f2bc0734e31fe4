//! Writes the seed corpus: `cargo run --example seeds -- DIR` creates
//! `DIR/<target>/seed-NN` for every fuzz target (scripts/fuzz does this before each run,
//! so the seeds always match the current encoder).

use std::fs;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let mut n = 0;
    for (i, (target, bytes)) in zfsync_fuzz::seeds().into_iter().enumerate() {
        let d = dir.join(target);
        fs::create_dir_all(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        let f = d.join(format!("seed-{i:02}"));
        fs::write(&f, bytes).unwrap_or_else(|e| panic!("write {}: {e}", f.display()));
        n += 1;
    }
    println!("wrote {n} seeds under {}", dir.display());
}
