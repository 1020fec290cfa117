//! Whether the agent was recording through the period (AU-2, AU-12).
//!
//! While it runs, the agent writes a signed manifest entry at least every
//! `audit.roll_seconds`: a closed file, or a heartbeat when there was
//! nothing to close; and a `heartbeat` row every `audit.heartbeat_seconds`
//! (a row like any other here: it proves recording; of no exchange kind,
//! it is no client request in AC-3, AU-3 or AU-10). So a stretch of the
//! period longer than the allowed gap with neither a manifest entry nor a
//! row is time the trail cannot account for: the agent was stopped,
//! killed, or its entries were removed.

use std::{collections::BTreeMap, path::Path};

use crate::audit::{chain::Entry, schema::AuditRow};

/// A stretch of the period with no manifest entry and no row of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stretch {
    /// The host that recorded nothing.
    pub host: String,
    /// The last sign of recording before it (or the period's start).
    pub from_us: i64,
    /// The next sign of recording (or the end of what was judged).
    pub to_us: i64,
    /// Whether the host's last lifecycle row before it was `agent_stop`.
    pub stopped: bool,
}

/// What the manifest and rows show about recording in the period.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    /// Hosts with a manifest entry or row in the period.
    pub hosts: Vec<String>,
    /// Hosts of the directory with nothing in the period, and their last
    /// sign of recording (they are not judged: retired or never started).
    pub idle_hosts: Vec<(String, Option<i64>)>,
    /// Manifest entries written in the period (all hosts).
    pub entries: usize,
    /// Stretches longer than the allowed gap.
    pub stretches: Vec<Stretch>,
    /// The end of what was judged: the period's end, or the report's time
    /// when the period has not ended yet.
    pub judged_to_us: i64,
}

/// The times each host's manifest entries vouch for: when each entry was
/// written, and the first and last event of its file. Entries that do not
/// parse are left out (`audit verify` names them).
pub fn entry_times(audit_dir: &Path) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let Ok(hosts) = std::fs::read_dir(audit_dir.join("manifest")) else {
        return out;
    };
    for host in hosts.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
        let name = host.file_name().unwrap_or_default().to_string_lossy();
        let times = out.entry(name.into_owned()).or_default();
        let Ok(files) = std::fs::read_dir(&host) else {
            continue;
        };
        for file in files.flatten().map(|e| e.path()) {
            if file.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let Some(e) = std::fs::read(&file)
                .ok()
                .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
            else {
                continue;
            };
            times.push(e.written_us);
            times.extend(e.sealed.first_event_us);
            times.extend(e.sealed.last_event_us);
        }
    }
    out
}

/// The stretches of `[from_us, min(to_us, now_us))` longer than
/// `max_gap_us` in which a host with any sign of recording in the period
/// shows none. `entries`: [`entry_times`]; `rows`: the period's rows.
pub fn coverage(
    (from_us, to_us): (i64, i64),
    now_us: i64,
    max_gap_us: i64,
    entries: &BTreeMap<String, Vec<i64>>,
    rows: &[AuditRow],
) -> Coverage {
    let end = to_us.min(now_us).max(from_us);
    let mut points: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut lifecycle: BTreeMap<&str, Vec<(i64, bool)>> = BTreeMap::new();
    let mut cov = Coverage {
        judged_to_us: end,
        ..Coverage::default()
    };
    for (host, times) in entries {
        points.entry(host).or_default().extend(times);
        cov.entries += times.iter().filter(|t| (from_us..end).contains(*t)).count();
    }
    for r in rows {
        points.entry(&r.host).or_default().push(r.event_time_us);
        if matches!(r.kind.as_str(), "agent_start" | "agent_stop") {
            let stop = r.kind == "agent_stop";
            lifecycle
                .entry(&r.host)
                .or_default()
                .push((r.event_time_us, stop));
        }
    }
    for (host, mut times) in points {
        times.sort_unstable();
        let inside: Vec<i64> = times
            .iter()
            .copied()
            .filter(|t| (from_us..end).contains(t))
            .collect();
        if inside.is_empty() {
            let last = times.iter().copied().filter(|t| *t < from_us).max();
            cov.idle_hosts.push((host.to_string(), last));
            continue;
        }
        cov.hosts.push(host.to_string());
        let marks = lifecycle.get(host).map(Vec::as_slice).unwrap_or_default();
        let bounds = std::iter::once(from_us)
            .chain(inside)
            .chain(std::iter::once(end));
        let mut prev = None;
        for t in bounds {
            if let Some(a) = prev
                && t - a > max_gap_us
            {
                cov.stretches.push(Stretch {
                    host: host.to_string(),
                    from_us: a,
                    to_us: t,
                    stopped: stopped_at(marks, a),
                });
            }
            prev = Some(t);
        }
    }
    cov
}

/// Whether the last of `marks` (time, is a stop) at or before `t` is a stop.
fn stopped_at(marks: &[(i64, bool)], t: i64) -> bool {
    marks
        .iter()
        .filter(|(at, _)| *at <= t)
        .max_by_key(|(at, _)| *at)
        .is_some_and(|(_, stop)| *stop)
}
