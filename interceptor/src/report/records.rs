//! The audit record controls: AU-2 (which events are logged), AU-3 (what
//! each record holds) and AU-12 (records generated without gaps). AU-2 and
//! AU-12 are judged on [`Coverage`]: whether the trail accounts for the
//! whole period.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    coverage::{Coverage, Stretch},
    fmt_time,
    judge::{Tally, setting_gap},
    nist::*,
};
use crate::audit::{schema::AuditRow, wal::hour_of};

/// AU-2's rule, as printed under its status.
pub const AU2_RULE: &str = "Met when the logged events cover the whole period: no stretch longer than the allowed gap (twice audit.roll_seconds) without a signed manifest entry or a row, on any recording host; partial when there is one (the agent stopped after agent_stop, or killed, or entries removed); not met when the period has no entry at all.";
/// AU-3's rule.
pub const AU3_RULE: &str = "Met when every exchange row records what (kind, and method), when, where (host, dst_addr), the source (src_addr, and for a process on this host its uid and executable: process_uid, process_exe), the outcome, who (subject) and, for tools/call, the tool (method and subject are not asked of refusals before identification, which answer before reading the request); not met when no row has them all; partial in between; not assessed without exchange rows.";
/// AU-12's rule.
pub const AU12_RULE: &str = "Met when every recording host generated records through the whole period: no stretch longer than the allowed gap (twice audit.roll_seconds) without a signed manifest entry or a row; partial when there is one, named as after agent_stop (stopped) or without any entry (killed, or entries removed); not met when no host recorded anything.";

/// How many stretches a gap names before "and N more".
const SHOWN_STRETCHES: usize = 10;

pub(super) fn au2(rows: &[AuditRow], cov: &Coverage, max_gap_us: i64) -> Control {
    let (status, verdict, gaps) = continuity(cov, max_gap_us);
    let kinds = count(rows.iter().map(|r| r.kind.as_str()));
    let unseen: Vec<&str> = ALL_KINDS
        .iter()
        .copied()
        .filter(|k| !kinds.contains_key(*k))
        .collect();
    let mut firsts: Vec<&AuditRow> = Vec::new();
    for r in rows {
        if !firsts.iter().any(|f| f.kind == r.kind) {
            firsts.push(r);
        }
    }
    Control {
        id: "AU-2",
        title: "Event logging",
        asks: "The organization decides which events must be logged, and the system logs those events.",
        how: "The agent records every MCP exchange, denial and refusal, notification, connection, agent start and stop, policy load, tool definition change, approval and grant step as one row; the kinds are listed in deploy/athena/README.md.",
        status,
        rule: AU2_RULE,
        verdict,
        gaps,
        facts: vec![
            fact("Rows in the period", rows.len()),
            fact("Event kinds recorded", kinds.len()),
            fact(
                "Kinds defined but not seen in the period",
                if unseen.is_empty() {
                    "none".to_string()
                } else {
                    unseen.join(", ")
                },
            ),
        ],
        tables: vec![count_table("Rows by event kind", "kind", kinds)],
        samples_caption: "The first row of each kind".into(),
        samples: samples(firsts.into_iter()),
        note: None,
    }
}

/// One content AU-3 asks of exchange rows: its name, its column(s), the
/// rows it applies to and whether a row has it.
type Content = (
    &'static str,
    &'static str,
    fn(&AuditRow) -> bool,
    fn(&AuditRow) -> bool,
);

const CONTENTS: &[Content] = &[
    (
        "what (type of event)",
        "kind",
        |_| true,
        |r| !r.kind.is_empty(),
    ),
    // A refusal before identification answers before the body is read.
    (
        "what (operation)",
        "method",
        |r| !before_identity(r),
        |r| r.method.is_some(),
    ),
    ("when", "event_time", |_| true, |r| r.event_time_us != 0),
    (
        "where",
        "host, dst_addr",
        |_| true,
        |r| !r.host.is_empty() && r.dst_addr.is_some(),
    ),
    ("source", "src_addr", |_| true, |r| r.src_addr.is_some()),
    // The kernel recorded a process on this host: which user ran what.
    (
        "source process (same-host rows)",
        "process_uid, process_exe",
        |r| r.process_pid.is_some(),
        |r| r.process_uid.is_some() && r.process_exe.is_some(),
    ),
    (
        "outcome",
        "decision / http_status / error_code",
        |_| true,
        |r| r.decision.is_some() || r.http_status.is_some() || r.error_code.is_some(),
    ),
    (
        "identity",
        "subject",
        |r| !before_identity(r),
        |r| r.subject.is_some(),
    ),
    (
        "tool (tools/call rows)",
        "tool_name",
        |r| r.method.as_deref() == Some("tools/call"),
        |r| r.tool_name.is_some(),
    ),
];

pub(super) fn au3(ex: &[&AuditRow]) -> Control {
    let total = ex.len();
    let calls: Vec<&AuditRow> = ex
        .iter()
        .copied()
        .filter(|r| r.method.as_deref() == Some("tools/call"))
        .collect();
    let refused = ex.iter().filter(|r| before_identity(r)).count();
    let complete = |r: &AuditRow| {
        CONTENTS
            .iter()
            .all(|(_, _, applies, has)| !applies(r) || has(r))
    };
    let all = Tally::of(ex.iter().copied(), complete);
    let mut filled = Vec::new();
    let mut gaps = Vec::new();
    for (what, cols, applies, has) in CONTENTS {
        let t = Tally::of(ex.iter().copied().filter(|r| applies(r)), has);
        let n = t.judged - t.short.len();
        filled.push(vec![
            what.to_string(),
            cols.to_string(),
            n.to_string(),
            t.judged.to_string(),
            pct(n, t.judged),
        ]);
        gaps.extend(t.gap(
            "exchange rows",
            &format!("lack {what} ({cols})"),
            &format!("{cols} IS NULL"),
            "upgrade the agent: it fills every content column; older rows or rows from another writer lack some",
        ));
    }
    Control {
        id: "AU-3",
        title: "Content of audit records",
        asks: "Each record says what happened, when and where, from which source, with what outcome, and who was involved.",
        how: "Every exchange row carries the event kind and JSON-RPC method, the event time (microseconds, UTC), the host and destination, the client address, the decision, HTTP status and error code, the verified subject and the tool, resource or prompt.",
        status: all.status(),
        rule: AU3_RULE,
        verdict: format!(
            "{} of {} exchange rows hold every content",
            all.judged - all.short.len(),
            all.judged
        ),
        gaps,
        facts: vec![
            fact("Exchange rows", total),
            fact("tools/call rows", calls.len()),
            fact(
                "Refused before identification (no subject by design)",
                refused,
            ),
        ],
        tables: vec![Table {
            caption: "Columns filled on exchange rows".into(),
            head: vec!["content", "column(s)", "filled", "rows", "share"],
            rows: filled,
        }],
        samples_caption: "Tool calls".into(),
        samples: samples(calls.into_iter()),
        note: Some(format!(
            "Exchange rows are those of kind {}.",
            EXCHANGE_KINDS.join(", ")
        )),
    }
}

pub(super) fn au12(rows: &[AuditRow], cov: &Coverage, max_gap_us: i64) -> Control {
    let (status, verdict, gaps) = continuity(cov, max_gap_us);
    let n = |k: &str| rows.iter().filter(|r| r.kind == k).count();
    let mut hours: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in rows {
        *hours.entry(hour_of(r.event_time_us)).or_insert(0) += 1;
    }
    let (caption, head, table_rows) = if hours.len() > 48 {
        let mut days: BTreeMap<String, usize> = BTreeMap::new();
        for ((d, _), c) in &hours {
            *days.entry(d.clone()).or_insert(0) += c;
        }
        (
            "Rows per day (UTC)",
            vec!["dt", "rows"],
            days.into_iter()
                .map(|(d, c)| vec![d, c.to_string()])
                .collect(),
        )
    } else {
        (
            "Rows per hour (UTC)",
            vec!["dt", "hour", "rows"],
            hours
                .iter()
                .map(|((d, h), c)| vec![d.clone(), h.clone(), c.to_string()])
                .collect(),
        )
    };
    let hosts: BTreeSet<&str> = rows.iter().map(|r| r.host.as_str()).collect();
    Control {
        id: "AU-12",
        title: "Audit record generation",
        asks: "Every component in scope generates the audit records of AU-2, continuously and without gaps.",
        how: "The agent writes each event to a crash-safe WAL before the response is released, converts it to Parquet, and writes a signed heartbeat entry in idle periods so a deleted hour is a visible hole; its own start and stop are rows.",
        status,
        rule: AU12_RULE,
        verdict,
        gaps,
        facts: vec![
            fact("agent_start rows", n("agent_start")),
            fact("agent_stop rows", n("agent_stop")),
            fact("policy_loaded rows", n("policy_loaded")),
            fact(
                "Recording hosts",
                hosts.into_iter().collect::<Vec<_>>().join(", "),
            ),
            fact("Hours with rows", hours.len()),
            fact("Signed manifest entries written in the period", cov.entries),
            fact("Allowed gap (seconds)", max_gap_us / 1_000_000),
            fact("Judged up to", fmt_time(cov.judged_to_us)),
        ],
        tables: vec![
            Table {
                caption: caption.into(),
                head,
                rows: table_rows,
            },
            stretch_table(cov),
        ],
        samples_caption: "Agent lifecycle rows".into(),
        samples: samples(rows.iter().filter(|r| {
            matches!(
                r.kind.as_str(),
                "agent_start" | "agent_stop" | "policy_loaded"
            )
        })),
        note: None,
    }
}

/// AU-2 and AU-12's status from the coverage: not met without any sign
/// of recording, partial for each stretch without one, else met.
fn continuity(cov: &Coverage, max_gap_us: i64) -> (Status, String, Vec<Gap>) {
    let secs = max_gap_us / 1_000_000;
    if cov.hosts.is_empty() {
        let gap = setting_gap(
            "no signed manifest entry and no row in the period: nothing was recorded",
            &format!("the whole period, up to {}", fmt_time(cov.judged_to_us)),
            "run the agent with [audit] enabled through the period, or report on a period it ran",
        );
        return (
            Status::NotMet,
            "no host recorded anything in the period".into(),
            vec![gap],
        );
    }
    let (stopped, silent): (Vec<&Stretch>, Vec<&Stretch>) =
        cov.stretches.iter().partition(|s| s.stopped);
    let mut gaps = Vec::new();
    if !stopped.is_empty() {
        gaps.push(setting_gap(
            format!(
                "{} after agent_stop with no agent_start within {secs} s: the agent was stopped",
                stretches(&stopped)
            ),
            &list(&stopped),
            "keep the agent running through the period (its systemd unit restarts it), or report on the period it ran",
        ));
    }
    if !silent.is_empty() {
        gaps.push(setting_gap(
            format!(
                "{} without any signed manifest entry or row: the agent was killed or not running, or entries were removed",
                stretches(&silent)
            ),
            &list(&silent),
            "find why the agent stopped recording (journalctl -u mcp-interceptor) and check `mcp-interceptor audit verify` for removed entries",
        ));
    }
    let verdict = format!(
        "{} host(s) recording; {} stretch(es) longer than {secs} s without an entry or row",
        cov.hosts.len(),
        cov.stretches.len()
    );
    let status = if gaps.is_empty() {
        Status::Met
    } else {
        Status::Partial
    };
    (status, verdict, gaps)
}

/// "2 stretches (75 s in all)".
fn stretches(s: &[&Stretch]) -> String {
    let secs: i64 = s.iter().map(|s| (s.to_us - s.from_us) / 1_000_000).sum();
    format!(
        "{} stretch{} ({secs} s in all)",
        s.len(),
        if s.len() == 1 { "" } else { "es" }
    )
}

/// The stretches as "host: from to to (n s)", the first few.
fn list(s: &[&Stretch]) -> String {
    let mut parts: Vec<String> = s
        .iter()
        .take(SHOWN_STRETCHES)
        .map(|s| {
            format!(
                "{}: {} to {} ({} s)",
                s.host,
                fmt_time(s.from_us),
                fmt_time(s.to_us),
                (s.to_us - s.from_us) / 1_000_000
            )
        })
        .collect();
    if s.len() > SHOWN_STRETCHES {
        parts.push(format!("and {} more", s.len() - SHOWN_STRETCHES));
    }
    parts.join("; ")
}

fn stretch_table(cov: &Coverage) -> Table {
    let mut rows: Vec<Vec<String>> = cov
        .stretches
        .iter()
        .take(MAX_TABLE_ROWS)
        .map(|s| {
            vec![
                s.host.clone(),
                fmt_time(s.from_us),
                fmt_time(s.to_us),
                ((s.to_us - s.from_us) / 1_000_000).to_string(),
                if s.stopped {
                    "agent stopped"
                } else {
                    "no entry"
                }
                .to_string(),
            ]
        })
        .collect();
    rows.extend(cov.idle_hosts.iter().map(|(h, last)| {
        vec![
            h.clone(),
            last.map_or("-".into(), fmt_time),
            "(not judged: nothing in the period)".into(),
            "-".into(),
            "idle host".into(),
        ]
    }));
    Table {
        caption: "Stretches without a manifest entry or row".into(),
        head: vec!["host", "from", "to", "seconds", "why"],
        rows,
    }
}
