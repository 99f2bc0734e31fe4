//! Listings: which properties a listing of a dataset tree asks zfs for, and how its output
//! becomes [`DatasetInfo`]s, parents before children, snapshots (and bookmarks, where
//! asked for) oldest first.
//!
//! Both CLI families are read here: OpenZFS's `zfs list -Hp` (one line per dataset) and,
//! for the legacy CLI whose `zfs list` abbreviates numbers, `zfs get -Hp` (one line per
//! property). One table, [`COLUMNS`], says what is asked for and how each value is read in
//! both. This module runs nothing: `Zfs` runs the command line built here.

use crate::get;
use crate::{Error, Result};
use std::collections::HashMap;

/// Dataset types we replicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Filesystem,
    Volume,
}

/// A snapshot: the part of its name after `@`, its GUID (what identifies it across pools)
/// and its creation transaction group (what orders it; 0 if unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub name: String,
    pub guid: u64,
    pub createtxg: u64,
}

/// A bookmark: the part of its name after `#`, and the GUID and createtxg of the snapshot
/// it was made from (a bookmark has its snapshot's, and outlives it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bookmark {
    pub name: String,
    pub guid: u64,
    pub createtxg: u64,
}

/// A filesystem or volume with its snapshots, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetInfo {
    pub name: String,
    pub kind: Kind,
    pub snapshots: Vec<Snapshot>,
    /// Its bookmarks, oldest first: only in a listing that asks for them (a source's, on
    /// a ZFS with bookmarks); empty otherwise.
    pub bookmarks: Vec<Bookmark>,
    /// Encrypted (OpenZFS native encryption): sent raw, so it stays encrypted.
    pub encrypted: bool,
    /// The token of an interrupted resumable receive into this dataset (OpenZFS).
    pub resume_token: Option<String>,
    /// The user property [`SYNC_PROPERTY`], set here or inherited (`None`: unset). What it
    /// means is the sender's business.
    pub sync: Option<String>,
    /// The receiver's marks on it, as listed.
    pub marks: Marks,
}

/// The values of the user properties [`ROLLBACK_PROPERTY`] and [`PLACEHOLDER_PROPERTY`]
/// as a listing shows them (`None`: unset), for the receiver to read without a zfs command
/// per dataset. A listing cannot tell a value set on the dataset itself from one inherited
/// or received, and only the first counts: a value here says the mark may be set, and
/// `zfs get -s local` settles it; no value says it is not (as of the listing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    pub rollback: Option<String>,
    pub placeholder: Option<String>,
}

/// The user property that says whether zfsync-send sends a dataset (`on`, `off`). A user
/// property inherits like any other, so every dataset's listing carries its value.
pub const SYNC_PROPERTY: &str = "zfsync:sync";

/// The user property by which a receiver's admin allows one rollback of a dataset
/// (`once`); what it means is the receiver's business.
pub const ROLLBACK_PROPERTY: &str = "zfsync:rollback";

/// The user property that marks a dataset the receiver made as a placeholder parent
/// (`on`); what it means is the receiver's business.
pub const PLACEHOLDER_PROPERTY: &str = "zfsync:placeholder";

/// One property a listing asks for.
struct Column {
    /// Its zfs name.
    prop: &'static str,
    /// Whether the legacy listing (`zfs get`, which prints the name in a field of its own)
    /// asks for it: zfs-fuse has neither `encryption` nor `receive_resume_token`.
    legacy: bool,
    /// Whether only a receiver's listing asks for it (not [`Of::Source`]): each property
    /// asked for costs zfs-fuse's `zfs get` time (two more took ~20 % more on a tree of 211
    /// datasets), and a source has no use for the receiver's marks.
    marks: bool,
    /// Stores its value in a row; `Err` says why the value is refused.
    store: fn(&mut Row, &str) -> std::result::Result<(), String>,
}

/// What a listing asks for, in the order of `zfs list -o`: a line of its output has exactly
/// one field per entry. A new property is one entry here (and its field in [`Row`]).
const COLUMNS: &[Column] = &[
    Column {
        prop: "name",
        legacy: false,
        marks: false,
        store: |r, v| {
            r.name = v.into();
            Ok(())
        },
    },
    Column {
        prop: "type",
        legacy: true,
        marks: false,
        store: |r, v| {
            r.kind = v.into();
            Ok(())
        },
    },
    Column {
        prop: "guid",
        legacy: true,
        marks: false,
        store: |r, v| {
            r.guid = number(v)?;
            Ok(())
        },
    },
    Column {
        prop: "createtxg",
        legacy: true,
        marks: false,
        store: |r, v| {
            r.createtxg = number(v)?;
            Ok(())
        },
    },
    Column {
        prop: "encryption",
        legacy: false,
        marks: false,
        store: |r, v| {
            r.encryption = text(v);
            Ok(())
        },
    },
    Column {
        prop: "receive_resume_token",
        legacy: false,
        marks: false,
        store: |r, v| {
            r.resume_token = text(v);
            Ok(())
        },
    },
    // zfs-fuse's `zfs get` prints user properties as OpenZFS's `zfs list` does: the value,
    // inherited or not, and "-" where unset.
    Column {
        prop: SYNC_PROPERTY,
        legacy: true,
        marks: false,
        store: |r, v| {
            r.sync = text(v);
            Ok(())
        },
    },
    Column {
        prop: ROLLBACK_PROPERTY,
        legacy: true,
        marks: true,
        store: |r, v| {
            r.marks.rollback = text(v);
            Ok(())
        },
    },
    Column {
        prop: PLACEHOLDER_PROPERTY,
        legacy: true,
        marks: true,
        store: |r, v| {
            r.marks.placeholder = text(v);
            Ok(())
        },
    },
];

/// Whose listing it is, which decides what it asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Of {
    /// A source's: with `bookmarks`, its bookmarks too (OpenZFS only); not the receiver's
    /// marks.
    Source { bookmarks: bool },
    /// A receiver's: with its marks ([`Marks`]).
    Receiver,
}

impl Of {
    /// The columns this listing asks for, legacy or not, in [`COLUMNS`]' order.
    fn columns(self, legacy: bool) -> impl Iterator<Item = &'static Column> {
        COLUMNS
            .iter()
            .filter(move |c| (!legacy || c.legacy) && (!c.marks || self == Of::Receiver))
    }
}

/// The zfs arguments that list `root` and what lies below it, `depth` levels deep (`None`:
/// all of it), datasets and snapshots, with what `of` asks for: `zfs list -Hp` where the
/// CLI has it (`parsable`), `zfs get -Hp` otherwise (whose ZFS, zfs-fuse, has no
/// bookmarks: they are for `parsable` only).
pub(crate) fn args(parsable: bool, depth: Option<u32>, root: &str, of: Of) -> Vec<String> {
    let props = |legacy: bool| {
        of.columns(legacy)
            .map(|c| c.prop)
            .collect::<Vec<_>>()
            .join(",")
    };
    let bookmarks = matches!(of, Of::Source { bookmarks: true });
    let types = match bookmarks {
        true => "filesystem,volume,snapshot,bookmark",
        false => "filesystem,volume,snapshot",
    };
    let mut args: Vec<String> = if parsable {
        ["list", "-Hp", "-t", types, "-o"].map(String::from).into()
    } else {
        ["get", "-Hp", "-o", get::FIELDS].map(String::from).into()
    };
    if parsable {
        args.push(props(false));
    }
    match depth {
        Some(d) => args.extend(["-d".to_string(), d.to_string()]),
        None => args.push("-r".into()),
    }
    if !parsable {
        args.push(props(true));
    }
    args.push(root.into());
    args
}

/// The datasets in the output of the command [`args`] built for `of`; `cmd` is its
/// command line, for errors.
pub(crate) fn parse(parsable: bool, of: Of, cmd: &str, out: &str) -> Result<Vec<DatasetInfo>> {
    let rows = if parsable {
        parse_list_rows(of, cmd, out)?
    } else {
        parse_get_rows(of, cmd, out)?
    };
    build_tree(cmd, rows)
}

/// One line of a listing (a dataset, snapshot or bookmark), as [`COLUMNS`] fill it in.
#[derive(Debug, Default)]
struct Row {
    name: String,
    kind: String,
    guid: Option<u64>,
    createtxg: Option<u64>,
    encryption: Option<String>,
    resume_token: Option<String>,
    sync: Option<String>,
    marks: Marks,
}

/// A number, or `None` for zfs's "-" (no value).
pub(crate) fn number(v: &str) -> std::result::Result<Option<u64>, String> {
    if v == "-" {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| format!("{v:?} is not a number"))
}

/// A text, or `None` for zfs's "-" or nothing.
fn text(v: &str) -> Option<String> {
    (v != "-" && !v.is_empty()).then(|| v.to_string())
}

/// Stores `value` of `column` in `row`; `line` is the output line it comes from.
fn store(cmd: &str, line: &str, column: &Column, row: &mut Row, value: &str) -> Result<()> {
    (column.store)(row, value).map_err(|why| Error::Parse {
        cmd: cmd.into(),
        line: line.into(),
        why,
    })
}

/// `zfs list -Hp -o` with the [`COLUMNS`] `of` asks for: one row per line, one
/// tab-separated field per column.
fn parse_list_rows(of: Of, cmd: &str, out: &str) -> Result<Vec<Row>> {
    let columns: Vec<&Column> = of.columns(false).collect();
    let mut rows = Vec::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != columns.len() {
            return Err(Error::Parse {
                cmd: cmd.into(),
                line: line.into(),
                why: format!("expected {} fields", columns.len()),
            });
        }
        let mut row = Row::default();
        for (column, value) in columns.iter().zip(f) {
            store(cmd, line, column, &mut row, value)?;
        }
        rows.push(row);
    }
    Ok(rows)
}

/// `zfs get -Hp -o name,property,value` with the legacy [`COLUMNS`] `of` asks for: one line
/// per property, the lines of one dataset together.
fn parse_get_rows(of: Of, cmd: &str, out: &str) -> Result<Vec<Row>> {
    let rows = get::by_name(cmd, out, |row: &mut Row, prop, value| {
        match of.columns(true).find(|c| c.prop == prop) {
            Some(column) => (column.store)(row, value),
            None => Ok(()),
        }
    })?;
    Ok(rows
        .into_iter()
        .map(|(name, row)| Row { name, ..row })
        .collect())
}

/// Groups rows into datasets with their snapshots and bookmarks, parents first, snapshots
/// and bookmarks by createtxg.
fn build_tree(cmd: &str, rows: Vec<Row>) -> Result<Vec<DatasetInfo>> {
    let mut datasets: Vec<DatasetInfo> = Vec::new();
    let mut snaps: Vec<(String, Snapshot)> = Vec::new();
    let mut bookmarks: Vec<(String, Bookmark)> = Vec::new();
    for row in rows {
        let bad = |why: &str| Error::Parse {
            cmd: cmd.into(),
            line: row.name.clone(),
            why: why.into(),
        };
        match row.kind.as_str() {
            "filesystem" | "volume" => {
                let kind = if row.kind == "volume" {
                    Kind::Volume
                } else {
                    Kind::Filesystem
                };
                datasets.push(DatasetInfo {
                    name: row.name,
                    kind,
                    snapshots: Vec::new(),
                    bookmarks: Vec::new(),
                    encrypted: row.encryption.is_some_and(|e| e != "off"),
                    resume_token: row.resume_token,
                    sync: row.sync,
                    marks: row.marks,
                });
            }
            "snapshot" | "bookmark" => {
                let (what, sep) = match row.kind.as_str() {
                    "snapshot" => ("snapshot", '@'),
                    _ => ("bookmark", '#'),
                };
                let (ds, name) = row
                    .name
                    .split_once(sep)
                    .ok_or_else(|| bad(&format!("{what} without '{sep}'")))?;
                let guid = row
                    .guid
                    .ok_or_else(|| bad(&format!("{what} without guid")))?;
                let (ds, name) = (ds.to_string(), name.to_string());
                // A bookmark has the GUID and createtxg of the snapshot it was made from.
                let createtxg = row.createtxg.unwrap_or(0);
                match sep {
                    '@' => snaps.push((
                        ds,
                        Snapshot {
                            name,
                            guid,
                            createtxg,
                        },
                    )),
                    _ => bookmarks.push((
                        ds,
                        Bookmark {
                            name,
                            guid,
                            createtxg,
                        },
                    )),
                }
            }
            _ => {} // anything newer: not ours to replicate
        }
    }
    assemble(
        &mut datasets,
        snaps,
        |d| &d.name,
        |d| &mut d.snapshots,
        |s| s.createtxg,
    );
    assemble(
        &mut datasets,
        bookmarks,
        |d| &d.name,
        |d| &mut d.bookmarks,
        |b| b.createtxg,
    );
    Ok(datasets)
}

/// The last step of reading a listing of any kind: each `(dataset, snapshot)` of `snaps`
/// goes to its dataset (snapshots of datasets not listed are dropped), each dataset's
/// snapshots in `txg` order, the datasets parents first.
pub(crate) fn assemble<D, S>(
    datasets: &mut [D],
    snaps: Vec<(String, S)>,
    name: fn(&D) -> &String,
    snapshots: fn(&mut D) -> &mut Vec<S>,
    txg: fn(&S) -> u64,
) {
    let index: HashMap<String, usize> = datasets
        .iter()
        .enumerate()
        .map(|(i, d)| (name(d).clone(), i))
        .collect();
    for (ds, snap) in snaps {
        if let Some(&i) = index.get(&ds) {
            snapshots(&mut datasets[i]).push(snap);
        }
    }
    for d in datasets.iter_mut() {
        snapshots(d).sort_by_key(txg);
    }
    // Component-wise order puts every parent before its children.
    datasets.sort_by(|a, b| name(a).split('/').cmp(name(b).split('/')));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_rows_from_zfs_fuse() {
        // Verbatim shape of zfs-fuse's
        // `zfs get -Hp -r -o name,property,value type,guid,createtxg,zfsync:sync,..`.
        let out = "p/a\ttype\tfilesystem\np/a\tguid\t16371779888081111003\np/a\tcreatetxg\t7\n\
                   p/a\tzfsync:sync\t-\np/a\tzfsync:rollback\tonce\np/a\tzfsync:placeholder\t-\n\
                   p/a@s2\ttype\tsnapshot\np/a@s2\tguid\t2\np/a@s2\tcreatetxg\t20\n\
                   p/a@s1\ttype\tsnapshot\np/a@s1\tguid\t1\np/a@s1\tcreatetxg\t16\n\
                   p/a/b\ttype\tvolume\np/a/b\tguid\t8\np/a/b\tcreatetxg\t8\n\
                   p/a/b\tzfsync:sync\toff\np/a/b\tzfsync:rollback\t-\n\
                   p/a/b\tzfsync:placeholder\ton\n";
        let tree = build_tree("t", parse_get_rows(Of::Receiver, "t", out).unwrap()).unwrap();
        assert_eq!(tree.len(), 2);
        assert_eq!(tree[0].name, "p/a");
        let names: Vec<_> = tree[0]
            .snapshots
            .iter()
            .map(|s| (s.name.as_str(), s.guid))
            .collect();
        assert_eq!(names, [("s1", 1), ("s2", 2)]);
        assert_eq!(tree[1].kind, Kind::Volume);
        assert_eq!(
            (tree[0].sync.as_deref(), tree[1].sync.as_deref()),
            (None, Some("off"))
        );
        let marks = |rollback: Option<&str>, placeholder: Option<&str>| Marks {
            rollback: rollback.map(String::from),
            placeholder: placeholder.map(String::from),
        };
        assert_eq!(tree[0].marks, marks(Some("once"), None));
        assert_eq!(tree[1].marks, marks(None, Some("on")));
    }

    #[test]
    fn list_rows_from_openzfs() {
        let out = "p/a/b\tfilesystem\t9\t30\taes-256-gcm\t-\ton\tonce\t-\n\
                   p/a\tfilesystem\t3\t5\toff\t1-abc\t-\t-\ton\n\
                   p/a@x\tsnapshot\t11\t6\t-\t-\t-\t-\t-\n\
                   p/a#bm\tbookmark\t11\t6\t-\t-\t-\t-\t-\n";
        let tree = build_tree("t", parse_list_rows(Of::Receiver, "t", out).unwrap()).unwrap();
        let names: Vec<_> = tree.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["p/a", "p/a/b"]);
        assert_eq!(tree[0].snapshots.len(), 1);
        let bookmark = Bookmark {
            name: "bm".into(),
            guid: 11,
            createtxg: 6,
        };
        assert_eq!(tree[0].bookmarks, [bookmark]);
        assert_eq!(tree[0].resume_token.as_deref(), Some("1-abc"));
        assert!(!tree[0].encrypted);
        assert!(tree[1].encrypted);
        assert_eq!(
            (tree[0].sync.as_deref(), tree[1].sync.as_deref()),
            (None, Some("on"))
        );
        assert_eq!(
            (
                tree[0].marks.rollback.as_deref(),
                tree[0].marks.placeholder.as_deref()
            ),
            (None, Some("on"))
        );
        assert_eq!(
            (
                tree[1].marks.rollback.as_deref(),
                tree[1].marks.placeholder.as_deref()
            ),
            (Some("once"), None)
        );
    }

    #[test]
    fn abbreviated_numbers_are_refused() {
        // zfs-fuse's `zfs list` prints "9.75E" for a GUID: never parse that as data.
        assert!(parse_list_rows(
            Of::Receiver,
            "t",
            "p/a@x\tsnapshot\t9.75E\t6\t-\t-\t-\t-\t-\n"
        )
        .is_err());
    }

    #[test]
    fn parents_sort_before_children() {
        let out = "p/a-b\tfilesystem\t1\t1\toff\t-\t-\t-\t-\n\
                   p/a/c\tfilesystem\t2\t2\toff\t-\t-\t-\t-\n\
                   p/a\tfilesystem\t3\t3\toff\t-\t-\t-\t-\n";
        let tree = build_tree("t", parse_list_rows(Of::Receiver, "t", out).unwrap()).unwrap();
        let names: Vec<_> = tree.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["p/a", "p/a/c", "p/a-b"]);
    }

    #[test]
    fn openzfs_listing_asks_for_every_column() {
        assert_eq!(
            args(true, None, "p/a", Of::Receiver),
            [
                "list",
                "-Hp",
                "-t",
                "filesystem,volume,snapshot",
                "-o",
                "name,type,guid,createtxg,encryption,receive_resume_token,zfsync:sync,\
                 zfsync:rollback,zfsync:placeholder",
                "-r",
                "p/a"
            ]
        );
        assert_eq!(
            args(true, Some(2), "p/a", Of::Receiver)[6..],
            ["-d", "2", "p/a"]
        );
        // A source's listing: its bookmarks in the same command.
        let source = Of::Source { bookmarks: true };
        assert_eq!(
            args(true, None, "p/a", source)[3],
            "filesystem,volume,snapshot,bookmark"
        );
    }

    #[test]
    fn legacy_listing_asks_for_the_columns_zfs_fuse_has() {
        assert_eq!(
            args(false, Some(1), "p/a", Of::Receiver),
            [
                "get",
                "-Hp",
                "-o",
                "name,property,value",
                "-d",
                "1",
                "type,guid,createtxg,zfsync:sync,zfsync:rollback,zfsync:placeholder",
                "p/a"
            ]
        );
        assert_eq!(
            args(false, None, "p/a", Of::Receiver)[4..],
            [
                "-r",
                "type,guid,createtxg,zfsync:sync,zfsync:rollback,zfsync:placeholder",
                "p/a"
            ]
        );
    }

    #[test]
    fn a_line_with_a_field_too_few_or_too_many_is_refused() {
        for line in [
            "p/a\tfilesystem\t3\t5\toff\t-\t-\t-\n",
            "p/a\tfilesystem\t3\t5\toff\t-\t-\t-\t-\tx\n",
        ] {
            match parse_list_rows(Of::Receiver, "t", line) {
                Err(Error::Parse { why, .. }) => assert_eq!(why, "expected 9 fields"),
                other => panic!("{line:?}: {other:?}"),
            }
        }
    }

    // issue 13: the receiver's marks cost a source's listing nothing (each property makes
    // zfs-fuse's zfs get slower), and its lines are read without them.
    #[test]
    fn a_source_listing_leaves_the_marks_out() {
        let source = Of::Source { bookmarks: false };
        assert_eq!(
            args(true, None, "p/a", source)[5],
            "name,type,guid,createtxg,encryption,receive_resume_token,zfsync:sync"
        );
        assert_eq!(
            args(false, None, "p/a", source)[4..],
            ["-r", "type,guid,createtxg,zfsync:sync", "p/a"]
        );
        let out = "p/a\tfilesystem\t3\t5\toff\t-\toff\n";
        let tree = build_tree("t", parse_list_rows(source, "t", out).unwrap()).unwrap();
        assert_eq!(tree[0].sync.as_deref(), Some("off"));
        assert_eq!(tree[0].marks, Marks::default());
        // A legacy listing's mark line, were there one, is not read into a source's.
        let out = "p/a\ttype\tfilesystem\np/a\tzfsync:rollback\tonce\n";
        let tree = build_tree("t", parse_get_rows(source, "t", out).unwrap()).unwrap();
        assert_eq!(tree[0].marks, Marks::default());
    }
}
