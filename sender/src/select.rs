//! What a run sends: which datasets of the listed tree ([`choose`]: `--exclude` patterns and
//! the user property `zfsync:sync`), which of their snapshots ([`SnapshotFilter`]:
//! `--include-snaps`, `--exclude-snaps`), what a dataset offers ([`Offer`]: those
//! snapshots, and the base bookmarks whose snapshots are gone) and in which incremental
//! steps ([`next_step`], [`Offer::next_step`]), with the globs ([`Pattern`]) they are
//! written in.
//!
//! Pure: it reads the listing it is given and the options, and decides. It runs no zfs
//! command, prints nothing and builds no jobs (that is [`crate::run`]).

use std::collections::HashMap;
use std::fmt;
use zfsync_zfs::protect::bookmark_base;
use zfsync_zfs::{
    check_component, check_relative_path, Dataset, DatasetInfo, Snapshot, SYNC_PROPERTY,
};

/// A glob over a dataset's path relative to the sent root (`--exclude`) or over a
/// snapshot's name: `*` matches any run of characters within one path component, `**` any
/// run across components (`/` included), `?` one character other than `/`; every other
/// character stands for itself. The whole path must match.
///
/// Hand-written rather than a glob crate's: ZFS names have no character classes or escapes
/// to support, and a crate's file-path rules (a leading `.`, a separator at the end) do
/// not apply to them. Matching is a table over pattern and name (at most 255 bytes each),
/// so no pattern can make it slow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Byte(u8),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**` (or more stars)
    Globstar,
}

impl Pattern {
    /// A pattern over paths relative to the sent root: with the wildcards read as letters
    /// it must be a valid relative dataset path (no leading `/`, no empty component).
    pub fn path(text: &str) -> Result<Pattern, String> {
        Pattern::checked(text, |t| check_relative_path(t).map_err(|e| e.why))
    }

    /// A pattern over snapshot names (the part after `@`): with the wildcards read as
    /// letters it must be a valid snapshot name.
    pub fn snapshot(text: &str) -> Result<Pattern, String> {
        Pattern::checked(text, |t| check_component(t).map_err(|e| e.why))
    }

    fn checked(
        text: &str,
        check: impl Fn(&str) -> Result<(), &'static str>,
    ) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("empty pattern".into());
        }
        check(&text.replace(['*', '?'], "x")).map_err(|why| format!("{text:?}: {why}"))?;
        let mut tokens = Vec::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let stars = bytes[i..].iter().take_while(|&&b| b == b'*').count();
            let token = match (stars, bytes[i]) {
                (0, b'?') => Token::One,
                (0, b) => Token::Byte(b),
                (1, _) => Token::Star,
                _ => Token::Globstar,
            };
            tokens.push(token);
            i += stars.max(1);
        }
        Ok(Pattern {
            text: text.to_string(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the whole of `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.as_bytes();
        // reach[j]: the tokens so far can match name[..j].
        let mut reach = vec![false; name.len() + 1];
        reach[0] = true;
        for token in &self.tokens {
            let mut next = vec![false; name.len() + 1];
            for j in 0..=name.len() {
                let prev = j.checked_sub(1).map(|k| (k, name[k]));
                next[j] = match (token, prev) {
                    (Token::Star, _) | (Token::Globstar, _) if reach[j] => true,
                    (Token::Star, Some((k, c))) => next[k] && c != b'/',
                    (Token::Globstar, Some((k, _))) => next[k],
                    (Token::One, Some((k, c))) => reach[k] && c != b'/',
                    (Token::Byte(b), Some((k, c))) => reach[k] && c == *b,
                    _ => false,
                };
            }
            reach = next;
        }
        reach[name.len()]
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Which snapshots a run offers and sends, by name (`--include-snaps`,
/// `--exclude-snaps`): one that matches an include pattern (or any, when there is none)
/// and no exclude pattern.
#[derive(Clone, Debug, Default)]
pub struct SnapshotFilter {
    pub include: Vec<Pattern>,
    pub exclude: Vec<Pattern>,
}

impl SnapshotFilter {
    /// Whether the snapshot named `name` (the part after `@`) is sent.
    pub fn keeps(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(name)))
            && !self.exclude.iter().any(|p| p.matches(name))
    }
}

/// What one dataset offers the receiver, oldest first (by createtxg): the snapshots the
/// filters keep and, for each of zfsync's base bookmarks (`zfsync-base-ID:SNAP`, of any
/// receiver id) whose snapshot is gone, an entry in that snapshot's name with the
/// bookmark's GUID and createtxg, which are its snapshot's. The receiver matches GUIDs,
/// so it finds its base there as it would the snapshot, and needs no word of bookmarks.
///
/// A bookmark can only start an incremental stream (`zfs send -i DS#BM DS@SNAP`): it is
/// never sent in full, nor is a stream sent up to it, nor can `-I` start from it.
pub(crate) struct Offer<'a> {
    /// The entries, oldest first.
    pub(crate) entries: Vec<Snapshot>,
    /// The entries only a bookmark stands for: GUID -> the bookmark's name (after `#`).
    bookmarks: HashMap<u64, String>,
    /// The dataset's snapshots, all of them, oldest first: what the steps are sent from.
    all: &'a [Snapshot],
    filter: &'a SnapshotFilter,
}

impl<'a> Offer<'a> {
    /// The offer of `info`, a dataset of the source's listing with its bookmarks.
    pub(crate) fn of(info: &'a DatasetInfo, filter: &'a SnapshotFilter) -> Offer<'a> {
        let mut entries: Vec<Snapshot> = info
            .snapshots
            .iter()
            .filter(|s| filter.keeps(&s.name))
            .cloned()
            .collect();
        let mut bookmarks: HashMap<u64, String> = HashMap::new();
        for b in &info.bookmarks {
            let Some((_, snap)) = bookmark_base(&b.name) else {
                continue;
            };
            let gone = !info.snapshots.iter().any(|s| s.guid == b.guid);
            // Two receivers' bookmarks of one snapshot: one entry.
            if gone && filter.keeps(snap) && !bookmarks.contains_key(&b.guid) {
                bookmarks.insert(b.guid, b.name.clone());
                entries.push(Snapshot {
                    name: snap.to_string(),
                    guid: b.guid,
                    createtxg: b.createtxg,
                });
            }
        }
        // Stable: snapshots taken in one transaction group keep the listing's order.
        entries.sort_by_key(|s| s.createtxg);
        Offer {
            entries,
            bookmarks,
            all: &info.snapshots,
            filter,
        }
    }

    /// The name (after `#`) of the bookmark the entry with GUID `guid` stands for, if only
    /// a bookmark does.
    pub(crate) fn bookmark(&self, guid: u64) -> Option<&str> {
        self.bookmarks.get(&guid).map(String::as_str)
    }

    /// Where in `entries` the newest snapshot is: the newest a delivery can end with.
    /// `None` if the filters keep none of the dataset's snapshots.
    pub(crate) fn newest_snapshot(&self) -> Option<usize> {
        self.entries
            .iter()
            .rposition(|s| !self.bookmarks.contains_key(&s.guid))
    }

    /// The next incremental stream from the entry with GUID `from`: from a snapshot as
    /// [`next_step`] says; from a bookmark, `-i` to the first kept snapshot after it,
    /// alone (a bookmark cannot start `-I`: the snapshots after that one follow in a
    /// stream of their own).
    pub(crate) fn next_step(&self, from: u64) -> Option<Step<'a>> {
        if !self.bookmarks.contains_key(&from) {
            return next_step(self.all, self.filter, from);
        }
        let txg = self.entries.iter().find(|s| s.guid == from)?.createtxg;
        let all: &'a [Snapshot] = self.all;
        all.iter()
            .find(|s| s.createtxg > txg && self.filter.keeps(&s.name))
            .map(|to| Step { to, snapshots: 1 })
    }
}

/// One incremental stream: the snapshot it ends with and how many sent snapshots it
/// carries. More than one only when none is skipped between (`zfs send -I`); otherwise
/// one, stepping over the skipped ones (`zfs send -i`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Step<'a> {
    pub(crate) to: &'a Snapshot,
    pub(crate) snapshots: usize,
}

/// The next incremental stream from the snapshot with GUID `from` among `all` (a
/// dataset's snapshots, oldest first), so that the receiver gets exactly the snapshots
/// `filter` keeps: every kept one up to the first skipped one, or, when a skipped one
/// follows `from` at once, the next kept one alone. `None` when `from` is not in `all` or
/// nothing kept follows it.
///
/// Without skipped snapshots that is one stream to the newest, as without a filter.
pub(crate) fn next_step<'a>(
    all: &'a [Snapshot],
    filter: &SnapshotFilter,
    from: u64,
) -> Option<Step<'a>> {
    let start = all.iter().position(|s| s.guid == from)? + 1;
    let after = &all[start..];
    let kept_run = after.iter().take_while(|s| filter.keeps(&s.name)).count();
    if kept_run > 0 {
        return Some(Step {
            to: &after[kept_run - 1],
            snapshots: kept_run,
        });
    }
    after
        .iter()
        .find(|s| filter.keeps(&s.name))
        .map(|to| Step { to, snapshots: 1 })
}

/// Why a dataset is left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// `--exclude PATTERN` matched the dataset (`on: None`) or the ancestor `on`, whose
    /// subtree it takes along.
    Pattern { pattern: String, on: Option<String> },
    /// `zfsync:sync=off`. `source` is zfs's word for where the value comes from ("local",
    /// "inherited from tank/data/tmp"), when it was asked for.
    Property { source: Option<String> },
}

/// A dataset left out of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Excluded {
    pub(crate) dataset: String,
    pub(crate) why: Why,
}

impl fmt::Display for Excluded {
    /// "tank/data/scratch (--exclude scratch)",
    /// "tank/data/tmp/x (zfsync:sync=off, inherited from tank/data/tmp)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", self.dataset)?;
        match &self.why {
            Why::Pattern { pattern, on: None } => write!(f, "--exclude {pattern}")?,
            Why::Pattern {
                pattern,
                on: Some(on),
            } => write!(f, "--exclude {pattern} matches {on}")?,
            Why::Property { source } => {
                write!(f, "{SYNC_PROPERTY}=off")?;
                match source.as_deref() {
                    None | Some("local") | Some("-") => {}
                    Some(s) => write!(f, ", {s}")?,
                }
            }
        }
        f.write_str(")")
    }
}

/// The datasets of a run, as [`choose`] sorts them.
#[derive(Debug, Default)]
pub(crate) struct Chosen {
    /// To be sent: each dataset's path relative to the sent root, and its listing.
    pub(crate) datasets: Vec<(String, DatasetInfo)>,
    /// Left out, parents first.
    pub(crate) excluded: Vec<Excluded>,
    /// Neither (name, why): a `zfsync:sync` value that is not `on` or `off` (guessing
    /// either way could be wrong, so such a dataset fails and the run says why), or a
    /// name that is not below the root.
    pub(crate) unreadable: Vec<(String, String)>,
    /// `--exclude` patterns that matched no dataset: most likely a typo, or a full name
    /// where a relative path was meant.
    pub(crate) unmatched: Vec<String>,
}

/// Sorts the listed `tree` below `root` (parents first) into datasets to send, left out,
/// and unreadable.
///
/// A pattern matches a dataset's path relative to `root`, never `root` itself, and takes
/// the subtree of what it matches along: `scratch` leaves out `scratch` and everything
/// below it; `containers/**` what is below `containers`, but not `containers`. A pattern
/// always wins over the property. `zfsync:sync=off` leaves a dataset out, and by
/// inheritance its subtree, but a child that sets `on` again is sent (ZFS user properties
/// inherit, so the listed value says it all).
pub(crate) fn choose(tree: Vec<DatasetInfo>, root: &Dataset, exclude: &[Pattern]) -> Chosen {
    let mut chosen = Chosen::default();
    let mut used = vec![false; exclude.len()];
    for info in tree {
        let rel = Dataset::new(&info.name)
            .ok()
            .and_then(|ds| ds.relative_to(root).map(String::from));
        let Some(rel) = rel else {
            // zfs listed it below the root: only a broken listing gets here.
            let why = format!("listed below {root}, but not a valid dataset name there");
            chosen.unreadable.push((info.name, why));
            continue;
        };
        if let Some((i, on)) = matching_pattern(&rel, exclude) {
            used[i] = true;
            let on = (on != rel).then(|| format!("{root}/{on}"));
            chosen.excluded.push(Excluded {
                dataset: info.name,
                why: Why::Pattern {
                    pattern: exclude[i].to_string(),
                    on,
                },
            });
            continue;
        }
        match info.sync.as_deref() {
            None | Some("on") => chosen.datasets.push((rel, info)),
            Some("off") => chosen.excluded.push(Excluded {
                dataset: info.name,
                why: Why::Property { source: None },
            }),
            Some(other) => {
                let why = format!("{SYNC_PROPERTY}={other:?}: expected on or off (or unset)");
                chosen.unreadable.push((info.name, why));
            }
        }
    }
    chosen.unmatched = exclude
        .iter()
        .zip(used)
        .filter(|(_, used)| !used)
        .map(|(p, _)| p.to_string())
        .collect();
    chosen
}

/// The first pattern that matches `rel` or one of its ancestors (shortest first), and
/// the path it matched.
fn matching_pattern<'r>(rel: &'r str, patterns: &[Pattern]) -> Option<(usize, &'r str)> {
    if rel.is_empty() {
        return None;
    }
    let ends = rel.match_indices('/').map(|(i, _)| i).chain([rel.len()]);
    for end in ends {
        let prefix = &rel[..end];
        if let Some(i) = patterns.iter().position(|p| p.matches(prefix)) {
            return Some((i, prefix));
        }
    }
    None
}

/// Fills in where each property exclusion's value comes from, from `(name, source)`
/// pairs as `zfs get -o name,source` prints them.
pub(crate) fn add_sources(excluded: &mut [Excluded], sources: &[(String, String)]) {
    for e in excluded {
        if let Why::Property { source } = &mut e.why {
            *source = sources
                .iter()
                .find(|(name, _)| *name == e.dataset)
                .map(|(_, s)| s.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zfsync_zfs::{Bookmark, Kind, Snapshot};

    #[test]
    fn path_patterns_match_as_documented() {
        let cases: &[(&str, &str, bool)] = &[
            ("scratch", "scratch", true),
            ("scratch", "scratch2", false),
            ("scratch", "a/scratch", false),
            ("scr*", "scratch", true),
            ("scr*", "scr", true),
            ("*", "a", true),
            ("*", "a/b", false),
            ("*/cache", "a/cache", true),
            ("*/cache", "cache", false),
            ("*/cache", "a/b/cache", false),
            ("**/cache", "a/b/cache", true),
            ("**/cache", "cache", false),
            ("**cache", "cache", true),
            ("containers/**", "containers/a", true),
            ("containers/**", "containers/a/b", true),
            ("containers/**", "containers", false),
            ("a/**/z", "a/z", false),
            ("a/**/z", "a/b/z", true),
            ("a/**/z", "a/b/c/z", true),
            ("a/***", "a/b/c", true),
            ("?", "a", true),
            ("?", "ab", false),
            ("a?b", "a/b", false),
            ("a?b", "a.b", true),
            ("*.*", "v1.2", true),
            ("*x*y", "axbxcy", true),
            ("*x*y", "axbxc", false),
            ("vm disk", "vm disk", true),
        ];
        for &(pattern, name, want) in cases {
            let p = Pattern::path(pattern).unwrap();
            assert_eq!(p.matches(name), want, "{pattern:?} on {name:?}");
        }
    }

    #[test]
    fn matching_stays_fast_on_patterns_made_to_backtrack() {
        let p = Pattern::path(&"*a".repeat(60)).unwrap();
        let name = "a".repeat(59) + "b";
        let t = std::time::Instant::now();
        assert!(!p.matches(&name));
        assert!(t.elapsed() < std::time::Duration::from_millis(100));
    }

    /// A filter of include and exclude patterns given as text.
    fn filter(include: &[&str], exclude: &[&str]) -> SnapshotFilter {
        let patterns = |texts: &[&str]| -> Vec<Pattern> {
            texts
                .iter()
                .map(|t| Pattern::snapshot(t).unwrap())
                .collect()
        };
        SnapshotFilter {
            include: patterns(include),
            exclude: patterns(exclude),
        }
    }

    #[test]
    fn a_snapshot_is_kept_if_any_include_and_no_exclude_matches() {
        let cases: &[(&[&str], &[&str], &str, bool)] = &[
            (&[], &[], "before-upgrade", true),
            (&["zfsync_*"], &[], "zfsync_2026-11-22_1200_H", true),
            (&["zfsync_*"], &[], "before-upgrade", false),
            (&["zfsync_*", "weekly-?"], &[], "weekly-1", true),
            (&[], &["before-*"], "before-upgrade", false),
            (&[], &["before-*"], "zfsync_1", true),
            (&["zfsync_*"], &["*_S"], "zfsync_2026-11-22_1200_S", false),
            (&["zfsync_*"], &["*_S"], "zfsync_2026-11-22_1200_H", true),
        ];
        for &(include, exclude, name, want) in cases {
            let f = filter(include, exclude);
            assert_eq!(f.keeps(name), want, "{include:?} {exclude:?} {name:?}");
        }
    }

    /// Snapshots named by the words of `names`, GUIDs 1, 2, ... in order.
    fn snaps(names: &str) -> Vec<Snapshot> {
        names
            .split_whitespace()
            .zip(1..)
            .map(|(name, guid)| Snapshot {
                name: name.into(),
                guid,
                createtxg: guid,
            })
            .collect()
    }

    #[test]
    fn steps_go_round_the_snapshots_left_out() {
        // Kept: the ones starting with "z"; "m..." are manual ones, left out.
        let keep_z = filter(&["z*"], &[]);
        // (snapshots, base, the step's end and snapshots)
        type Case<'a> = (&'a str, &'a str, Option<(&'a str, usize)>);
        let cases: &[Case] = &[
            // No filter at work: one -I stream to the newest, or -i for one snapshot.
            ("z1 z2 z3 z4", "z1", Some(("z4", 3))),
            ("z1 z2", "z1", Some(("z2", 1))),
            // A manual snapshot right after the base: -i over it to the next kept one.
            ("z1 m1 z2 z3", "z1", Some(("z2", 1))),
            ("z1 m1 m2 z2", "z1", Some(("z2", 1))),
            // Kept ones up to the first skipped one: -I, the rest in a later step.
            ("z1 z2 z3 m1 z4", "z1", Some(("z3", 2))),
            ("z1 z2 z3 m1 z4", "z3", Some(("z4", 1))),
            // Nothing kept after the base, or a base that is not there.
            ("z1 m1", "z1", None),
            ("z1 z2", "m9", None),
        ];
        for &(names, from, want) in cases {
            let all = snaps(names);
            let from_guid = all.iter().find(|s| s.name == from).map_or(99, |s| s.guid);
            let got =
                next_step(&all, &keep_z, from_guid).map(|s| (s.to.name.as_str(), s.snapshots));
            assert_eq!(got, want, "{names:?} from {from}");
        }
    }

    /// A dataset with the snapshots of `names` (as [`snaps`]; an "x" is one destroyed,
    /// whose GUID no other takes) and the bookmarks `bookmarks`: (name, GUID), each with
    /// its snapshot's createtxg, the GUID's.
    fn with_bookmarks(names: &str, bookmarks: &[(&str, u64)]) -> DatasetInfo {
        let mut snapshots = snaps(names);
        snapshots.retain(|s| s.name != "x");
        DatasetInfo {
            snapshots,
            bookmarks: bookmarks
                .iter()
                .map(|&(name, guid)| Bookmark {
                    name: name.into(),
                    guid,
                    createtxg: guid,
                })
                .collect(),
            ..ds("", None)
        }
    }

    /// An offer's entries as "name:guid" words, with "#" before those of bookmarks.
    fn entries(offer: &Offer) -> String {
        let word = |s: &Snapshot| match offer.bookmark(s.guid) {
            Some(_) => format!("#{}:{}", s.name, s.guid),
            None => format!("{}:{}", s.name, s.guid),
        };
        offer.entries.iter().map(word).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn a_bookmark_is_offered_only_when_its_snapshot_is_gone() {
        let none = filter(&[], &[]);
        // (snapshots with GUIDs 1.., bookmarks, the filter keeps only "s*"?, offered)
        type Case<'a> = (&'a str, &'a [(&'a str, u64)], bool, &'a str);
        let cases: &[Case] = &[
            // The snapshot is there: the bookmark adds nothing.
            ("s1 s2", &[("zfsync-base-bk:s2", 2)], false, "s1:1 s2:2"),
            // Gone: the bookmark stands for it, in its place by createtxg.
            (
                "s1 x s3",
                &[("zfsync-base-bk:s2", 2)],
                false,
                "s1:1 #s2:2 s3:3",
            ),
            // Oldest or newest.
            ("x s2", &[("zfsync-base-bk:s1", 1)], false, "#s1:1 s2:2"),
            ("s1 x", &[("zfsync-base-bk:s2", 2)], false, "s1:1 #s2:2"),
            // Two receivers' bookmarks of one snapshot: one entry.
            (
                "s1 x s3",
                &[("zfsync-base-a:s2", 2), ("zfsync-base-b:s2", 2)],
                false,
                "s1:1 #s2:2 s3:3",
            ),
            // Not zfsync's: nothing says which snapshot it was made from.
            ("s1 x s3", &[("before-upgrade", 2)], false, "s1:1 s3:3"),
            // The snapshot filters apply to the bookmark's snapshot name.
            ("s1 x s3", &[("zfsync-base-bk:m2", 2)], true, "s1:1 s3:3"),
        ];
        for &(names, bookmarks, only_s, want) in cases {
            let info = with_bookmarks(names, bookmarks);
            let keep_s = filter(&["s*"], &[]);
            let offer = Offer::of(&info, if only_s { &keep_s } else { &none });
            assert_eq!(entries(&offer), want, "{names:?} {bookmarks:?}");
        }
    }

    #[test]
    fn a_step_from_a_bookmark_is_one_snapshot() {
        let (none, keep_s) = (filter(&[], &[]), filter(&["s*"], &[]));
        let info = with_bookmarks("s1 x s3 m4 s5 s6", &[("zfsync-base-bk:s2", 2)]);
        let step = |f, from| {
            Offer::of(&info, f)
                .next_step(from)
                .map(|s| (s.to.name.clone(), s.snapshots))
        };
        // From the bookmark: -i to the next snapshot kept, then -I from there as ever.
        assert_eq!(step(&none, 2), Some(("s3".into(), 1)));
        assert_eq!(step(&none, 3), Some(("s6".into(), 3)));
        assert_eq!(step(&keep_s, 3), Some(("s5".into(), 1)));
        // From a snapshot before the bookmark: -I over it (zfs sends what is there).
        assert_eq!(step(&none, 1), Some(("s6".into(), 4)));
        let offer = Offer::of(&info, &none);
        assert_eq!(offer.newest_snapshot(), Some(offer.entries.len() - 1));
        assert_eq!(offer.bookmark(2), Some("zfsync-base-bk:s2"));
        assert_eq!(offer.bookmark(3), None);
    }

    #[test]
    fn a_bookmark_newer_than_every_snapshot_ends_no_delivery() {
        let info = with_bookmarks("s1 x", &[("zfsync-base-bk:s2", 2)]);
        let none = filter(&[], &[]);
        let offer = Offer::of(&info, &none);
        assert_eq!(entries(&offer), "s1:1 #s2:2");
        assert_eq!(offer.newest_snapshot(), Some(0));
        assert_eq!(offer.next_step(2), None);
        assert_eq!(offer.next_step(1), None);
    }

    #[test]
    fn patterns_that_no_name_can_match_are_refused() {
        for (bad, why) in [
            ("", "empty pattern"),
            ("/scratch", "absolute path"),
            ("a//b", "empty component"),
            ("a/", "empty component"),
            ("a@b", "'@'"),
            ("a[bc]", "not allowed"),
        ] {
            let e = Pattern::path(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(Pattern::snapshot("zfsync_*").is_ok());
        assert!(Pattern::snapshot("a/b").is_err());
        assert!(Pattern::snapshot("@zfsync_*").is_err());
    }

    /// A listed dataset `root/rel` with one snapshot and `zfsync:sync` = `sync`.
    fn ds(rel: &str, sync: Option<&str>) -> DatasetInfo {
        DatasetInfo {
            name: if rel.is_empty() {
                "tank/data".into()
            } else {
                format!("tank/data/{rel}")
            },
            kind: Kind::Filesystem,
            snapshots: vec![Snapshot {
                name: "s1".into(),
                guid: 1,
                createtxg: 1,
            }],
            bookmarks: Vec::new(),
            encrypted: false,
            resume_token: None,
            sync: sync.map(String::from),
            marks: Default::default(),
        }
    }

    /// The relative paths `choose` sends, and the exclusions it prints.
    fn chosen(tree: Vec<DatasetInfo>, exclude: &[&str]) -> (Vec<String>, Vec<String>) {
        let exclude: Vec<Pattern> = exclude.iter().map(|p| Pattern::path(p).unwrap()).collect();
        let root = Dataset::new("tank/data").unwrap();
        let c = choose(tree, &root, &exclude);
        let sent = c.datasets.into_iter().map(|(rel, _)| rel).collect();
        (sent, c.excluded.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn a_pattern_leaves_out_what_it_matches_and_the_subtree() {
        let tree = || {
            vec![
                ds("", None),
                ds("scratch", None),
                ds("scratch/x", Some("on")),
                ds("home", None),
                ds("home/cache", None),
                ds("home/cache/deep", None),
                ds("vms", None),
                ds("vms/a", None),
            ]
        };
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (
                &[],
                &[
                    "",
                    "scratch",
                    "scratch/x",
                    "home",
                    "home/cache",
                    "home/cache/deep",
                    "vms",
                    "vms/a",
                ],
                &[],
            ),
            // The subtree goes along, even a child that sets zfsync:sync=on.
            (
                &["scratch"],
                &["", "home", "home/cache", "home/cache/deep", "vms", "vms/a"],
                &[
                    "tank/data/scratch (--exclude scratch)",
                    "tank/data/scratch/x (--exclude scratch matches tank/data/scratch)",
                ],
            ),
            (
                &["*/cache", "vms/**"],
                &["", "scratch", "scratch/x", "home", "vms"],
                &[
                    "tank/data/home/cache (--exclude */cache)",
                    "tank/data/home/cache/deep (--exclude */cache matches tank/data/home/cache)",
                    "tank/data/vms/a (--exclude vms/**)",
                ],
            ),
            // Patterns never match the sent root itself.
            (
                &["*"],
                &[""],
                &[
                    "tank/data/scratch (--exclude *)",
                    "tank/data/scratch/x (--exclude * matches tank/data/scratch)",
                    "tank/data/home (--exclude *)",
                    "tank/data/home/cache (--exclude * matches tank/data/home)",
                    "tank/data/home/cache/deep (--exclude * matches tank/data/home)",
                    "tank/data/vms (--exclude *)",
                    "tank/data/vms/a (--exclude * matches tank/data/vms)",
                ],
            ),
        ];
        for &(exclude, sent, excluded) in cases {
            let (got_sent, got_excluded) = chosen(tree(), exclude);
            assert_eq!(got_sent, sent, "{exclude:?}");
            assert_eq!(got_excluded, excluded, "{exclude:?}");
        }
    }

    #[test]
    fn zfsync_sync_off_leaves_out_the_subtree_that_inherits_it() {
        // As listed: the value is inherited down to a child that sets it again.
        let tree = vec![
            ds("", None),
            ds("tmp", Some("off")),
            ds("tmp/x", Some("off")),
            ds("tmp/keep", Some("on")),
            ds("tmp/keep/y", Some("on")),
            ds("home", Some("on")),
        ];
        let (sent, excluded) = chosen(tree, &[]);
        assert_eq!(sent, ["", "tmp/keep", "tmp/keep/y", "home"]);
        assert_eq!(
            excluded,
            [
                "tank/data/tmp (zfsync:sync=off)",
                "tank/data/tmp/x (zfsync:sync=off)"
            ]
        );
    }

    #[test]
    fn a_value_neither_on_nor_off_is_reported_not_guessed() {
        let root = Dataset::new("tank/data").unwrap();
        let c = choose(vec![ds("", None), ds("a", Some("no"))], &root, &[]);
        assert_eq!(c.datasets.len(), 1);
        assert_eq!(
            c.unreadable,
            [(
                "tank/data/a".to_string(),
                "zfsync:sync=\"no\": expected on or off (or unset)".to_string()
            )]
        );
    }

    #[test]
    fn patterns_that_matched_nothing_are_named() {
        let root = Dataset::new("tank/data").unwrap();
        let exclude = [
            Pattern::path("a").unwrap(),
            Pattern::path("tank/data/a").unwrap(),
        ];
        let c = choose(vec![ds("", None), ds("a", None)], &root, &exclude);
        assert_eq!(c.unmatched, ["tank/data/a"]);
    }

    #[test]
    fn the_dry_run_names_where_an_inherited_value_comes_from() {
        let root = Dataset::new("tank/data").unwrap();
        let tree = vec![
            ds("", None),
            ds("tmp", Some("off")),
            ds("tmp/x", Some("off")),
        ];
        let mut c = choose(tree, &root, &[]);
        let sources = [
            ("tank/data".to_string(), "-".to_string()),
            ("tank/data/tmp".to_string(), "local".to_string()),
            (
                "tank/data/tmp/x".to_string(),
                "inherited from tank/data/tmp".to_string(),
            ),
        ];
        add_sources(&mut c.excluded, &sources);
        let lines: Vec<String> = c.excluded.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            lines,
            [
                "tank/data/tmp (zfsync:sync=off)",
                "tank/data/tmp/x (zfsync:sync=off, inherited from tank/data/tmp)"
            ]
        );
    }
}
