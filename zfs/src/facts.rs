//! Facts about datasets and snapshots that their lifecycle needs and replication does not:
//! each snapshot's creation time and hold count (`userrefs`), and each dataset's bytes
//! `written` since its newest snapshot. Read with `zfs get -Hp`, which both CLI families
//! have, in one command for a whole tree ([`args`], [`parse`]).
//!
//! A listing of its own, apart from [`crate::listing`]: replication never pays for these
//! properties (`written` costs zfs a walk of each dataset's dead list). This module runs
//! nothing: `Zfs` runs the command line built here.

use crate::get;
use crate::listing::{assemble, number, Kind};
use crate::Result;

/// One snapshot's lifecycle facts; `name` is the part after `@`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFacts {
    pub name: String,
    /// What orders a dataset's snapshots (0 if unknown).
    pub createtxg: u64,
    /// Unix seconds.
    pub creation: Option<i64>,
    /// How many holds it has (`zfs holds`): a held snapshot cannot be destroyed.
    pub userrefs: u64,
}

/// A filesystem or volume with its snapshots, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetFacts {
    pub name: String,
    pub kind: Kind,
    /// Bytes written since its newest snapshot; `None` unless asked for and the ZFS has
    /// the property (see `Capabilities::written`).
    pub written: Option<u64>,
    pub snapshots: Vec<SnapshotFacts>,
}

/// The zfs arguments that read the facts of `names` (and everything below them with
/// `recursive`), with `written` only if `written`.
pub(crate) fn args(written: bool, recursive: bool, names: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["get".into(), "-Hp".into()];
    if recursive {
        args.push("-r".into());
    }
    args.extend(["-o".into(), get::FIELDS.into()]);
    let mut props = "type,createtxg,creation,userrefs".to_string();
    if written {
        props.push_str(",written");
    }
    args.push(props);
    args.extend(names.iter().map(|n| n.to_string()));
    args
}

/// Everything `zfs get` said of one name.
#[derive(Default)]
struct Row {
    kind: String,
    createtxg: Option<u64>,
    creation: Option<i64>,
    userrefs: Option<u64>,
    written: Option<u64>,
}

/// The rows of `zfs get -Hp -o name,property,value`, by name, in the order names first
/// appear. `cmd` is the command line, for errors.
fn rows(cmd: &str, out: &str) -> Result<Vec<(String, Row)>> {
    get::by_name(cmd, out, |row: &mut Row, prop, value| {
        let number = |v: &str| number(v).map_err(|why| format!("{prop} {why}"));
        match prop {
            "type" => row.kind = value.to_string(),
            "createtxg" => row.createtxg = number(value)?,
            "creation" => row.creation = number(value)?.and_then(|n| i64::try_from(n).ok()),
            "userrefs" => row.userrefs = number(value)?,
            "written" => row.written = number(value)?,
            _ => {}
        }
        Ok(())
    })
}

fn snapshot(name: &str, row: &Row) -> SnapshotFacts {
    SnapshotFacts {
        name: name.to_string(),
        createtxg: row.createtxg.unwrap_or(0),
        creation: row.creation,
        userrefs: row.userrefs.unwrap_or(0),
    }
}

/// The datasets in the output of a recursive [`args`] command, parents before children,
/// snapshots by createtxg. Bookmarks and snapshots of datasets not listed are left out.
pub(crate) fn parse(cmd: &str, out: &str) -> Result<Vec<DatasetFacts>> {
    let mut datasets: Vec<DatasetFacts> = Vec::new();
    let mut snaps: Vec<(String, SnapshotFacts)> = Vec::new();
    for (name, row) in rows(cmd, out)? {
        let kind = match row.kind.as_str() {
            "filesystem" => Kind::Filesystem,
            "volume" => Kind::Volume,
            "snapshot" => {
                if let Some((ds, snap)) = name.split_once('@') {
                    snaps.push((ds.to_string(), snapshot(snap, &row)));
                }
                continue;
            }
            _ => continue,
        };
        datasets.push(DatasetFacts {
            name,
            kind,
            written: row.written,
            snapshots: Vec::new(),
        });
    }
    assemble(
        &mut datasets,
        snaps,
        |d| &d.name,
        |d| &mut d.snapshots,
        |s| s.createtxg,
    );
    Ok(datasets)
}

/// The snapshots (full names) in the output of an [`args`] command for snapshot names.
pub(crate) fn parse_snapshots(cmd: &str, out: &str) -> Result<Vec<(String, SnapshotFacts)>> {
    Ok(rows(cmd, out)?
        .into_iter()
        .filter_map(|(name, row)| {
            let snap = name.split_once('@')?.1.to_string();
            let facts = snapshot(&snap, &row);
            Some((name, facts))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_for_a_tree_and_for_names() {
        assert_eq!(
            args(false, true, &["p/a"]),
            [
                "get",
                "-Hp",
                "-r",
                "-o",
                "name,property,value",
                "type,createtxg,creation,userrefs",
                "p/a"
            ]
        );
        assert_eq!(
            args(true, false, &["p/a@s", "p/b@s"])[2..],
            [
                "-o",
                "name,property,value",
                "type,createtxg,creation,userrefs,written",
                "p/a@s",
                "p/b@s"
            ]
        );
    }

    #[test]
    fn a_tree_from_zfs_fuse() {
        // Verbatim shape of zfs-fuse's output (a dataset's userrefs is "-").
        let out = "p/a\ttype\tfilesystem\np/a\tcreatetxg\t7\np/a\tcreation\t1796173867\n\
                   p/a\tuserrefs\t-\n\
                   p/a@s2\ttype\tsnapshot\np/a@s2\tcreatetxg\t25\np/a@s2\tcreation\t1796173884\n\
                   p/a@s2\tuserrefs\t1\n\
                   p/a@s1\ttype\tsnapshot\np/a@s1\tcreatetxg\t17\np/a@s1\tcreation\t1796173868\n\
                   p/a@s1\tuserrefs\t0\n\
                   p/a/v\ttype\tvolume\np/a/v\tcreatetxg\t9\n";
        let tree = parse("t", out).unwrap();
        assert_eq!(tree.len(), 2);
        assert_eq!(tree[0].name, "p/a");
        assert_eq!(tree[0].written, None);
        assert_eq!(
            tree[0].snapshots,
            [
                SnapshotFacts {
                    name: "s1".into(),
                    createtxg: 17,
                    creation: Some(1796173868),
                    userrefs: 0
                },
                SnapshotFacts {
                    name: "s2".into(),
                    createtxg: 25,
                    creation: Some(1796173884),
                    userrefs: 1
                },
            ]
        );
        assert_eq!(tree[1].kind, Kind::Volume);
    }

    #[test]
    fn written_and_bookmarks_from_openzfs() {
        let out = "p/a\ttype\tfilesystem\np/a\twritten\t4096\n\
                   p/a#bm\ttype\tbookmark\np/a#bm\tcreatetxg\t5\n\
                   p/a@s\ttype\tsnapshot\np/a@s\twritten\t8192\n";
        let tree = parse("t", out).unwrap();
        assert_eq!(tree.len(), 1);
        assert_eq!(tree[0].written, Some(4096));
        assert_eq!(tree[0].snapshots.len(), 1);
    }

    #[test]
    fn snapshots_by_full_name() {
        let out = "p/a@s\tuserrefs\t2\np/a@s\tcreation\t10\np/b@t\tuserrefs\t0\n";
        let snaps = parse_snapshots("t", out).unwrap();
        let names: Vec<(&str, &str, u64)> = snaps
            .iter()
            .map(|(full, s)| (full.as_str(), s.name.as_str(), s.userrefs))
            .collect();
        assert_eq!(names, [("p/a@s", "s", 2), ("p/b@t", "t", 0)]);
    }

    #[test]
    fn malformed_output_is_refused() {
        for out in ["p/a\ttype\n", "p/a@s\tuserrefs\tmany\n"] {
            assert!(parse("t", out).is_err(), "{out:?}");
        }
    }
}
