//! ZFS names: what a dataset path or snapshot name may look like.
//!
//! The receiver runs every name that arrives from the network through these checks before
//! it reaches a zfs command line, so they follow OpenZFS's `zfs_namecheck.c` and are, if
//! anything, stricter: a name refused here is refused with the reason, never cut or mended.

use std::fmt;

/// ZFS's limit for a full dataset or snapshot name (`ZFS_MAX_DATASET_NAME_LEN` is 256 with
/// the terminating NUL).
pub const MAX_NAME_LEN: usize = 255;

/// A checked full dataset name (`pool/a/b`): no `@`, no `#`, every component valid.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dataset(String);

impl Dataset {
    pub fn new(name: &str) -> Result<Dataset, NameError> {
        check_dataset_name(name)?;
        Ok(Dataset(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This dataset joined with a relative path ("" = itself), checked as a whole (the
    /// result may be too long even if both parts are fine).
    pub fn join(&self, rel: &str) -> Result<Dataset, NameError> {
        check_relative_path(rel)?;
        if rel.is_empty() {
            return Ok(self.clone());
        }
        Dataset::new(&format!("{}/{}", self.0, rel))
    }

    /// The parent dataset, or `None` for a pool's root dataset.
    pub fn parent(&self) -> Option<Dataset> {
        self.0.rfind('/').map(|i| Dataset(self.0[..i].to_string()))
    }

    /// The last component.
    pub fn basename(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// Whether `self` is `other` or lies below it.
    pub fn is_within(&self, other: &Dataset) -> bool {
        self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes()[other.0.len()] == b'/')
    }

    /// The path of `self` relative to `base` ("" when equal), if it lies within it.
    pub fn relative_to(&self, base: &Dataset) -> Option<&str> {
        if self.0 == base.0 {
            Some("")
        } else if self.is_within(base) {
            Some(&self.0[base.0.len() + 1..])
        } else {
            None
        }
    }

    /// Full name of snapshot `snap` of this dataset.
    pub fn snapshot(&self, snap: &str) -> String {
        format!("{}@{}", self.0, snap)
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a name was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameError {
    pub name: String,
    pub why: &'static str,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid name {:?}: {}", self.name, self.why)
    }
}

impl std::error::Error for NameError {}

fn err(name: &str, why: &'static str) -> NameError {
    NameError {
        name: name.chars().take(300).collect(),
        why,
    }
}

/// The characters ZFS allows in a name component.
fn valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | ' ')
}

/// One component of a dataset path, or a snapshot name.
pub fn check_component(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(err(name, "empty component"));
    }
    if name == "." || name == ".." {
        return Err(err(name, "'.' and '..' are not names"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(err(name, "longer than 255 bytes"));
    }
    if let Some(c) = name.chars().find(|c| !valid_char(*c)) {
        return Err(err(
            name,
            match c {
                '@' => "'@' is only for snapshots",
                '#' => "'#' is only for bookmarks",
                '%' => "'%' is reserved for ZFS's internal datasets",
                '/' => "'/' separates components",
                c if c.is_control() => "control character",
                _ => "character not allowed by ZFS (allowed: letters, digits, - _ . : and space)",
            },
        ));
    }
    Ok(())
}

/// A full dataset name: `pool[/component]*`, within ZFS's length limit.
pub fn check_dataset_name(name: &str) -> Result<(), NameError> {
    if name.len() > MAX_NAME_LEN {
        return Err(err(name, "longer than ZFS's limit of 255 bytes"));
    }
    if name.starts_with('/') {
        return Err(err(name, "absolute paths are not dataset names"));
    }
    for c in name.split('/') {
        check_component(c)?;
    }
    Ok(())
}

/// A path relative to some dataset: "" (the dataset itself) or components joined by `/`.
pub fn check_relative_path(rel: &str) -> Result<(), NameError> {
    if rel.is_empty() {
        return Ok(());
    }
    if rel.starts_with('/') {
        return Err(err(rel, "absolute path where a relative one is expected"));
    }
    if rel.len() > MAX_NAME_LEN {
        return Err(err(rel, "longer than ZFS's limit of 255 bytes"));
    }
    for c in rel.split('/') {
        check_component(c)?;
    }
    Ok(())
}

/// A snapshot name (the part after `@`).
pub fn check_snapshot_name(name: &str) -> Result<(), NameError> {
    check_component(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let ok = [
            "",
            "a",
            "a/b",
            "home/alice smith",
            "x:y.z-1_2",
            "deep/er/still",
        ];
        for p in ok {
            assert!(check_relative_path(p).is_ok(), "{p:?} should pass");
        }
        let bad = [
            ("..", "'.' and '..'"),
            ("a/../b", "'.' and '..'"),
            ("/abs", "absolute"),
            ("a//b", "empty"),
            ("a/", "empty"),
            ("a@s", "'@'"),
            ("a#b", "'#'"),
            ("a%recv", "'%'"),
            ("a\nb", "control"),
            ("a\0b", "control"),
            ("caf\u{e9}", "not allowed"),
            ("a;rm -rf", "not allowed"),
            ("-o", ""), // allowed by ZFS as a component; see next test
        ];
        for (p, why) in bad.iter().filter(|(_, w)| !w.is_empty()) {
            let e = check_relative_path(p).unwrap_err();
            assert!(e.why.contains(why), "{p:?}: {e}");
        }
    }

    #[test]
    fn dash_component_stays_inside_its_argument() {
        // "-o" is a valid component; it is harmless because it never stands alone on a
        // zfs command line: it is always joined under the receiver's target.
        let t = Dataset::new("pool/t").unwrap();
        assert_eq!(t.join("-o").unwrap().as_str(), "pool/t/-o");
    }

    #[test]
    fn length_limit_counts_the_whole_name() {
        let t = Dataset::new("pool/target").unwrap();
        let rel = "a".repeat(255 - "pool/target/".len());
        assert!(t.join(&rel).is_ok());
        let rel = "a".repeat(256 - "pool/target/".len());
        assert!(t.join(&rel).unwrap_err().why.contains("255"));
    }

    #[test]
    fn relations() {
        let t = Dataset::new("pool/t").unwrap();
        let c = Dataset::new("pool/t/a/b").unwrap();
        assert!(c.is_within(&t));
        assert!(!Dataset::new("pool/tt").unwrap().is_within(&t));
        assert_eq!(c.relative_to(&t), Some("a/b"));
        assert_eq!(t.relative_to(&t), Some(""));
        assert_eq!(c.parent().unwrap().as_str(), "pool/t/a");
        assert_eq!(Dataset::new("pool").unwrap().parent(), None);
        assert_eq!(c.basename(), "b");
    }
}
