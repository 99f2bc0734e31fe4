//! `zfsync check health` and `zfsync check capacity`: the pools that hold the data and
//! its replicas.
//!
//! - health: ONLINE is OK, DEGRADED a warning, FAULTED, UNAVAIL, REMOVED, OFFLINE or
//!   SUSPENDED critical; data errors (`zpool status`: lost or damaged data) are critical
//!   whatever the state, device errors that redundancy repaired (or a status message on
//!   an ONLINE pool) a warning until `zpool clear`.
//! - capacity: the percent allocated against the thresholds.
//!
//! A pool asked for by name that is not there is critical. Pure: the caller runs zpool.

use super::verdict::{count, Family, Metric, Status, Verdict};
use super::Thresholds;
use zfsync_zfs::{PoolInfo, PoolStatus};

static HEALTH: Family = Family {
    name: "zfsync_pool_health",
    help: "Pool health as judged: 0 OK, 1 WARNING, 2 CRITICAL.",
    unit: "",
};
static ERRORS: Family = Family {
    name: "zfsync_pool_device_errors",
    help:
        "Read, write and checksum errors counted on the pool's devices since the last zpool clear.",
    unit: "",
};
static CAPACITY: Family = Family {
    name: "zfsync_pool_capacity_percent",
    help: "Percent of the pool allocated.",
    unit: "%",
};

/// The pools of `list` named in `names` (all of them when empty), and a problem for
/// each name not there.
fn chosen<'a>(v: &mut Verdict, list: &'a [PoolInfo], names: &[String]) -> Vec<&'a PoolInfo> {
    for missing in names.iter().filter(|n| !list.iter().any(|p| &p.name == *n)) {
        v.problem(
            Status::Critical,
            format!("{missing}: no such pool (not imported?)"),
        );
    }
    list.iter()
        .filter(|p| names.is_empty() || names.contains(&p.name))
        .collect()
}

/// The health verdict on the pools `names` of `list`, with `unhealthy` what `zpool
/// status -x` said.
pub fn health(list: &[PoolInfo], unhealthy: &[PoolStatus], names: &[String]) -> Verdict {
    let mut v = Verdict::new("health");
    let pools = chosen(&mut v, list, names);
    for pool in &pools {
        let mut status = match pool.health.as_str() {
            "ONLINE" => Status::Ok,
            "DEGRADED" => Status::Warning,
            _ => Status::Critical,
        };
        let mut why = vec![format!("state {}", pool.health)];
        let details = unhealthy.iter().find(|s| s.name == pool.name);
        let errors = details.map_or(0, PoolStatus::error_count);
        if let Some(d) = details {
            if d.has_data_errors() {
                status = status.max(Status::Critical);
                why.push(format!(
                    "data errors: {}",
                    d.errors.as_deref().unwrap_or_default()
                ));
            } else if status == Status::Ok {
                // ONLINE, yet zpool has something to say: repaired device errors.
                status = Status::Warning;
            }
            if errors > 0 {
                let bad: Vec<String> = d
                    .devices
                    .iter()
                    .filter(|dev| dev.read + dev.write + dev.cksum > 0 && dev.name != d.name)
                    .map(|dev| {
                        format!(
                            "{} {} read, {} write, {} checksum",
                            dev.name, dev.read, dev.write, dev.cksum
                        )
                    })
                    .collect();
                why.push(format!("device errors: {}", bad.join("; ")));
            }
            if let Some(s) = &d.status {
                why.push(s.clone());
            }
        }
        let labels = [("pool", pool.name.clone())];
        let judged = Thresholds {
            warning: 0,
            critical: 1,
        };
        let code = i64::from(status.code());
        v.metrics
            .push(Metric::new(&HEALTH, &labels, code, Some(judged)));
        let errors = i64::try_from(errors).unwrap_or(i64::MAX);
        v.metrics.push(Metric::new(&ERRORS, &labels, errors, None));
        if status != Status::Ok {
            v.problem(status, format!("{}: {}", pool.name, why.join("; ")));
        }
    }
    let total = pools.len()
        + v.problems
            .iter()
            .filter(|p| p.text.contains("no such pool"))
            .count();
    if v.problems.is_empty() {
        v.summary = match pools.len() {
            0 => {
                v.status = Status::Unknown;
                "no pool imported".into()
            }
            n => format!("{} ONLINE without errors", count(n, "pool")),
        };
    } else {
        v.summarise_problems(total, "pool");
    }
    v
}

/// The capacity verdict on the pools `names` of `list`, thresholds in percent.
pub fn capacity(list: &[PoolInfo], names: &[String], limits: Thresholds) -> Verdict {
    let mut v = Verdict::new("capacity");
    let pools = chosen(&mut v, list, names);
    let mut fullest: Option<(u32, &str)> = None;
    for pool in &pools {
        let Some(percent) = pool.capacity else {
            v.problem(
                Status::Unknown,
                format!("{}: no capacity known (state {})", pool.name, pool.health),
            );
            continue;
        };
        let labels = [("pool", pool.name.clone())];
        v.metrics.push(Metric::new(
            &CAPACITY,
            &labels,
            i64::from(percent),
            Some(limits),
        ));
        if fullest.map_or(true, |(f, _)| percent > f) {
            fullest = Some((percent, &pool.name));
        }
        let status = Status::of(i64::from(percent), limits.warning, limits.critical);
        if status != Status::Ok {
            v.problem(
                status,
                format!(
                    "{}: {percent}% full (warning {}%, critical {}%)",
                    pool.name, limits.warning, limits.critical
                ),
            );
        }
    }
    if v.problems.is_empty() {
        v.summary = match fullest {
            Some((percent, name)) => format!(
                "{}, the fullest {name} at {percent}% (warning {}%, critical {}%)",
                count(pools.len(), "pool"),
                limits.warning,
                limits.critical
            ),
            None => {
                v.status = Status::Unknown;
                "no pool imported".into()
            }
        };
    } else {
        v.summarise_problems(pools.len().max(names.len()), "pool");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use zfsync_zfs::DeviceErrors;

    fn pool(name: &str, health: &str, capacity: Option<u32>) -> PoolInfo {
        PoolInfo {
            name: name.into(),
            health: health.into(),
            capacity,
        }
    }

    fn details(name: &str, cksum: u64, errors: &str) -> PoolStatus {
        PoolStatus {
            name: name.into(),
            state: "ONLINE".into(),
            status: Some("One or more devices has experienced an unrecoverable error.".into()),
            errors: Some(errors.into()),
            devices: vec![
                DeviceErrors {
                    name: name.into(),
                    state: "ONLINE".into(),
                    read: 0,
                    write: 0,
                    cksum: 0,
                },
                DeviceErrors {
                    name: "/dev/sdb".into(),
                    state: "ONLINE".into(),
                    read: 0,
                    write: 0,
                    cksum,
                },
            ],
        }
    }

    #[test]
    fn health_by_state() {
        for (state, want) in [
            ("ONLINE", Status::Ok),
            ("DEGRADED", Status::Warning),
            ("FAULTED", Status::Critical),
            ("UNAVAIL", Status::Critical),
            ("REMOVED", Status::Critical),
            ("SUSPENDED", Status::Critical),
        ] {
            let v = health(&[pool("tank", state, Some(1))], &[], &[]);
            assert_eq!(v.status, want, "{state}");
        }
    }

    #[test]
    fn repaired_errors_warn_and_data_errors_are_critical() {
        let list = [
            pool("tank", "ONLINE", Some(1)),
            pool("other", "ONLINE", Some(1)),
        ];
        let repaired = details("tank", 463, "No known data errors");
        let v = health(&list, &[repaired], &["tank".into()]);
        assert_eq!(v.status, Status::Warning);
        assert_eq!(
            v.problems[0].text,
            "tank: state ONLINE; device errors: /dev/sdb 0 read, 0 write, 463 checksum; \
             One or more devices has experienced an unrecoverable error."
        );
        let lost = details("tank", 870, "320 data errors, use '-v' for a list");
        let v = health(&list, &[lost], &[]);
        assert_eq!(v.status, Status::Critical);
        assert!(v
            .summary
            .starts_with("1 critical of 2 pools: tank: state ONLINE; data errors: 320"));
    }

    #[test]
    fn a_pool_asked_for_that_is_not_there_is_critical() {
        let v = health(&[pool("tank", "ONLINE", Some(1))], &[], &["gone".into()]);
        assert_eq!(v.status, Status::Critical);
        assert_eq!(v.problems[0].text, "gone: no such pool (not imported?)");
        let v = capacity(
            &[],
            &["gone".into()],
            Thresholds {
                warning: 80,
                critical: 90,
            },
        );
        assert_eq!(v.status, Status::Critical);
    }

    #[test]
    fn capacity_thresholds() {
        let limits = Thresholds {
            warning: 80,
            critical: 90,
        };
        let list = [
            pool("a", "ONLINE", Some(50)),
            pool("b", "ONLINE", Some(85)),
            pool("c", "ONLINE", Some(95)),
            pool("d", "FAULTED", None),
        ];
        let v = capacity(&list[..1], &[], limits);
        assert_eq!(
            (v.status, v.summary.as_str()),
            (
                Status::Ok,
                "1 pool, the fullest a at 50% (warning 80%, critical 90%)"
            )
        );
        let statuses = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            capacity(&list, &names, limits).status
        };
        assert_eq!(statuses(&["b"]), Status::Warning);
        assert_eq!(statuses(&["c"]), Status::Critical);
        assert_eq!(statuses(&["d"]), Status::Unknown);
        assert_eq!(statuses(&[]), Status::Critical);
    }
}
