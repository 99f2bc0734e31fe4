//! The words zfsync shows people, where every crate needs the same ones: an I/O error as
//! lowercase words without its OS error number ([`io_error`]), a byte count in SI units
//! ([`size`]), values in `key=value` log lines quoted when they need it ([`quoted`]), and
//! text made safe to put into HTML ([`html::escape`]).
//!
//! It owns wording only: it does no I/O, knows no zfsync type and depends on nothing, so
//! the lowest crates (protocol, zfs, link) can use it too.

pub mod html;
mod io_words;
mod quote;
mod size;

pub use io_words::{io_error, IoWords};
pub use quote::{quoted, Quoted};
pub use size::size;
