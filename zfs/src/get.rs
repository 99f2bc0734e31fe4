//! The output of `zfs get -Hp -o name,property,value`, which both CLI families have: one
//! line per property of each name. Owns splitting its lines and grouping them by name;
//! which properties are asked for, and what they mean, is the callers' (`listing`, `facts`,
//! `Zfs::get_local`). Runs nothing.

use crate::{Error, Result};
use std::collections::HashMap;

/// The `-o` of such a command: the fields of each line.
pub(crate) const FIELDS: &str = "name,property,value";

/// The `(name, property, value)` of each line of `out`; `cmd` is the command line, for
/// errors.
pub(crate) fn lines<'a>(cmd: &str, out: &'a str) -> Result<Vec<(&'a str, &'a str, &'a str)>> {
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|line| fields(cmd, line))
        .collect()
}

/// The lines of `out` gathered by name, in the order names first appear: `store` puts one
/// property's value into its name's `R`, or says why the value is refused.
pub(crate) fn by_name<R: Default>(
    cmd: &str,
    out: &str,
    mut store: impl FnMut(&mut R, &str, &str) -> std::result::Result<(), String>,
) -> Result<Vec<(String, R)>> {
    let mut rows: Vec<(String, R)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let (name, prop, value) = fields(cmd, line)?;
        let i = *index.entry(name).or_insert_with(|| {
            rows.push((name.to_string(), R::default()));
            rows.len() - 1
        });
        store(&mut rows[i].1, prop, value).map_err(|why| parse_error(cmd, line, why))?;
    }
    Ok(rows)
}

fn fields<'a>(cmd: &str, line: &'a str) -> Result<(&'a str, &'a str, &'a str)> {
    match line.split('\t').collect::<Vec<_>>()[..] {
        [name, prop, value] => Ok((name, prop, value)),
        _ => Err(parse_error(cmd, line, "expected 3 fields".into())),
    }
}

fn parse_error(cmd: &str, line: &str, why: String) -> Error {
    Error::Parse {
        cmd: cmd.into(),
        line: line.into(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_gathered_by_name_in_order_of_appearance() {
        let out = "p/b\ta\t1\np/a\ta\t2\n\np/b\tb\t3\n";
        let rows = by_name("t", out, |r: &mut Vec<String>, prop, value| {
            r.push(format!("{prop}={value}"));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            rows,
            [
                ("p/b".to_string(), vec!["a=1".to_string(), "b=3".into()]),
                ("p/a".to_string(), vec!["a=2".to_string()]),
            ]
        );
    }

    #[test]
    fn a_bad_line_or_value_names_the_line() {
        for (out, why) in [("p/a\ta\n", "expected 3 fields"), ("p/a\tx\t1\n", "no x")] {
            let err = by_name("zfs get", out, |_: &mut (), prop, _| match prop {
                "x" => Err("no x".into()),
                _ => Ok(()),
            })
            .unwrap_err();
            assert!(
                matches!(&err, Error::Parse { cmd, line, why: w }
                    if cmd == "zfs get" && line == out.trim_end() && w == why),
                "{err:?}"
            );
        }
    }
}
