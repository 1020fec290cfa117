//! Access and identity controls (AC-3, AC-6, IA-2, IA-3), from the exchange
//! rows of the period. The audit controls are in `records.rs` and
//! `seal.rs`, SC-8 in `wire.rs`.

use std::collections::{BTreeMap, BTreeSet};

use super::{judge::Tally, nist::*};
use crate::audit::schema::AuditRow;

/// AC-3's rule, as printed under its status.
pub const AC3_RULE: &str = "Met when every client request allowed, or denied by policy, in the period was decided by a loaded Cedar policy (policy_version set); not met when none was; partial in between; not assessed without such requests.";
/// AC-6's rule.
pub const AC6_RULE: &str = "Met when every tools/call allowed in the period was permitted by a loaded policy (policy_version set: default deny, so each tool was granted); not met when none was (every caller could call every tool); partial in between; not assessed without tool calls.";
/// IA-2's rule.
pub const IA2_RULE: &str = "Met when every exchange row (refusals before identification aside) carries a verified identity (auth_method oidc, mtls, or process: a same-host process the kernel identified and an [identity.process] rule admitted, a non-person entity); not met when all are anonymous; partial in between; not assessed without such rows.";

const LOAD_POLICY: &str = "load a policy: list Cedar files in [policy] files (anything no policy permits is then denied; examples in deploy/policy/examples)";

/// A client request a policy decided, or should have: allowed, released
/// by an approval, or denied by the policy stage. Refusals by the stages
/// before it (identity, TLS, routing) never reached a policy.
fn policy_judged(r: &AuditRow) -> bool {
    is_client_request(r)
        && (matches!(r.decision.as_deref(), Some("allow" | "approval"))
            || r.decided_by.as_deref() == Some("policy"))
}

pub(super) fn ac3(ex: &[&AuditRow]) -> Control {
    let decisions = count(ex.iter().map(|r| r.decision.as_deref().unwrap_or("(none)")));
    let n = |k: &str| decisions.get(k).copied().unwrap_or(0);
    let mut by_method: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    for r in ex {
        let slot = match r.decision.as_deref() {
            Some("allow") => 0,
            Some("deny") => 1,
            Some("approval") => 2,
            _ => continue,
        };
        by_method
            .entry(r.method.clone().unwrap_or_else(|| "(no method)".into()))
            .or_default()[slot] += 1;
    }
    let mut rules = BTreeMap::new();
    for r in ex.iter().filter(|r| is_deny(r)) {
        if r.rule_ids.is_empty() {
            let why = match r.decided_by.as_deref() {
                Some("policy") | None => "(default deny: no policy permits)".to_string(),
                Some(stage) => format!("({stage} stage)"),
            };
            *rules.entry(why).or_insert(0) += 1;
        }
        for id in &r.rule_ids {
            *rules.entry(id.clone()).or_insert(0) += 1;
        }
    }
    let t = Tally::of(ex.iter().copied().filter(|r| policy_judged(r)), |r| {
        r.policy_version.is_some()
    });
    let gaps = t
        .gap(
            "client requests",
            "were decided without a loaded policy (allowed by default)",
            "direction = 'client_to_server' AND (decision IN ('allow', 'approval') OR decided_by = 'policy') AND policy_version IS NULL",
            LOAD_POLICY,
        )
        .into_iter()
        .collect();
    Control {
        id: "AC-3",
        title: "Access enforcement",
        asks: "Every access to a resource is allowed or refused according to an approved authorization policy.",
        how: "Each MCP request is judged by the Cedar policy before it reaches the server (default deny, refused calls never arrive); the verdict, the determining policy ids and the policy version go into the request's audit row.",
        status: t.status(),
        rule: AC3_RULE,
        verdict: format!(
            "{} of {} client requests decided by a loaded policy",
            t.judged - t.short.len(),
            t.judged
        ),
        gaps,
        facts: vec![
            fact("Allowed", n("allow")),
            fact("Denied", n("deny")),
            fact("Released by a human approval", n("approval")),
            fact("Without a decision (e.g. unpaired answers)", n("(none)")),
        ],
        tables: vec![
            Table {
                caption: "Decisions by method".into(),
                head: vec!["method", "allow", "deny", "approval"],
                rows: by_method
                    .into_iter()
                    .map(|(m, c)| vec![m, c[0].to_string(), c[1].to_string(), c[2].to_string()])
                    .collect(),
            },
            count_table("Denials by policy rule", "rule_id", rules),
        ],
        samples_caption: "Denied requests".into(),
        samples: samples(ex.iter().copied().filter(|r| is_deny(r))),
        note: None,
    }
}

pub(super) fn ac6(rows: &[AuditRow], ex: &[&AuditRow]) -> Control {
    let who = by_subject(ex);
    let subjects = who.len();
    let mut note = Some(
        "Per-caller filtering of tools/list answers is not a row of its own; it is shown by the tools each subject called."
            .to_string(),
    );
    if subjects > MAX_TABLE_ROWS {
        note = Some(format!(
            "{} The table lists the first {MAX_TABLE_ROWS} of {subjects} subjects.",
            note.unwrap_or_default()
        ));
    }
    let steps = |r: &&AuditRow| r.kind.starts_with("approval_") || r.kind.starts_with("grant_");
    let approvals = count(rows.iter().filter(steps).map(|r| r.kind.as_str()));
    let released = ex
        .iter()
        .filter(|r| r.decision.as_deref() == Some("approval"))
        .count();
    let step_rows: Vec<&AuditRow> = rows.iter().filter(steps).collect();
    let t = Tally::of(
        ex.iter().copied().filter(|r| {
            policy_judged(r)
                && r.method.as_deref() == Some("tools/call")
                && r.decision.as_deref() != Some("deny")
        }),
        |r| r.policy_version.is_some(),
    );
    let gaps = t
        .gap(
            "allowed tool calls",
            "were not decided by any policy: their callers could call every tool",
            "method = 'tools/call' AND decision IN ('allow', 'approval') AND policy_version IS NULL",
            "load a policy that permits each group only the tools its work needs ([policy] files)",
        )
        .into_iter()
        .collect();
    let sample_rows = if step_rows.is_empty() {
        samples(ex.iter().copied().filter(|r| r.tool_name.is_some()))
    } else {
        samples(step_rows.iter().copied())
    };
    Control {
        id: "AC-6",
        title: "Least privilege",
        asks: "Users and the processes acting for them get only the access their tasks need.",
        how: "Policies permit tools per identity and group, and each caller's tools/list is filtered to what it may call; risky calls wait for a human approval and temporary grants expire by themselves, every step an audit row.",
        status: t.status(),
        rule: AC6_RULE,
        verdict: format!(
            "{} of {} allowed tool calls permitted by a loaded policy",
            t.judged - t.short.len(),
            t.judged
        ),
        gaps,
        facts: vec![
            fact("Distinct subjects", subjects),
            fact("Approval and grant rows", approvals.values().sum::<usize>()),
            fact("Calls released by an approval", released),
        ],
        tables: vec![
            per_subject_table(&who),
            count_table("Approval and grant steps", "kind", approvals),
        ],
        samples_caption: if step_rows.is_empty() {
            "Tool calls (no approval or grant rows in the period)".into()
        } else {
            "Approval and grant rows".into()
        },
        samples: sample_rows,
        note,
    }
}

/// What one subject did in the period (AC-6).
#[derive(Default)]
struct Who {
    auth: BTreeSet<String>,
    groups: BTreeSet<String>,
    allowed: BTreeSet<String>,
    denied: BTreeSet<String>,
    calls: usize,
}

/// The exchange rows' subjects, each with how it authenticated, its
/// groups, and the tools it was allowed and denied.
fn by_subject(ex: &[&AuditRow]) -> BTreeMap<String, Who> {
    let mut who: BTreeMap<String, Who> = BTreeMap::new();
    for r in ex {
        let Some(s) = &r.subject else { continue };
        let w = who.entry(s.clone()).or_default();
        w.auth.extend(r.auth_method.clone());
        w.groups.extend(r.groups.iter().cloned());
        if let Some(t) = &r.tool_name {
            w.calls += 1;
            match r.decision.as_deref() {
                Some("deny") => w.denied.insert(t.clone()),
                _ => w.allowed.insert(t.clone()),
            };
        }
    }
    who
}

/// The first `MAX_TABLE_ROWS` subjects, one row each.
fn per_subject_table(who: &BTreeMap<String, Who>) -> Table {
    let join = |s: &BTreeSet<String>| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    };
    Table {
        caption: "Tools per subject".into(),
        head: vec![
            "subject",
            "auth",
            "groups",
            "tool calls",
            "tools called",
            "tools denied",
        ],
        rows: who
            .iter()
            .take(MAX_TABLE_ROWS)
            .map(|(s, w)| {
                vec![
                    s.clone(),
                    join(&w.auth),
                    join(&w.groups),
                    w.calls.to_string(),
                    join(&w.allowed),
                    join(&w.denied),
                ]
            })
            .collect(),
    }
}

pub(super) fn ia2(ex: &[&AuditRow]) -> Control {
    let methods = count(
        ex.iter()
            .filter(|r| !is_auth_refusal(r))
            .map(|r| r.auth_method.as_deref().unwrap_or("(none)")),
    );
    let refused: Vec<&AuditRow> = ex.iter().copied().filter(|r| is_auth_refusal(r)).collect();
    let mut reasons: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for r in &refused {
        let code = r.error_code.map_or("-".into(), |c| c.to_string());
        *reasons.entry((code, auth_refusal_meaning(r))).or_insert(0) += 1;
    }
    let subjects: BTreeSet<&str> = ex.iter().filter_map(|r| r.subject.as_deref()).collect();
    let t = Tally::of(ex.iter().copied().filter(|r| !before_identity(r)), |r| {
        r.subject.is_some() && matches!(r.auth_method.as_deref(), Some("oidc" | "mtls" | "process"))
    });
    let by_process: BTreeSet<&str> = ex
        .iter()
        .filter(|r| r.auth_method.as_deref() == Some("process"))
        .filter_map(|r| r.subject.as_deref())
        .collect();
    let gaps = t
        .gap(
            "exchange rows",
            "carry no verified identity (anonymous)",
            "kind IN (exchange kinds) AND (auth_method = 'anonymous' OR auth_method IS NULL) AND NOT refused before identification",
            "add [[identity.oidc]] (or [identity.mtls]) and set [identity] allow_anonymous = false",
        )
        .into_iter()
        .collect();
    Control {
        id: "IA-2",
        title: "Identification and authentication",
        asks: "Users are uniquely identified and authenticated before they can act.",
        how: "Every request must carry a verified OIDC bearer token or mTLS client certificate, or come from a process on this host that the kernel identified and an [identity.process] rule admits (anonymous callers only where explicitly allowed); a request without one is refused with 401 or 403 and recorded.",
        status: t.status(),
        rule: IA2_RULE,
        verdict: t.held("exchange rows carry a verified identity"),
        gaps,
        facts: vec![
            fact("Distinct subjects", subjects.len()),
            fact("Refused authentications", refused.len()),
            fact(
                "Anonymous exchange rows",
                methods.get("anonymous").copied().unwrap_or(0),
            ),
            fact(
                "Non-person callers authenticated by process (distinct subjects)",
                by_process.len(),
            ),
        ],
        tables: vec![
            count_table("Exchange rows by auth_method", "auth_method", methods),
            Table {
                caption: "Refused authentications by error code".into(),
                head: vec!["error_code", "meaning", "rows"],
                rows: reasons
                    .into_iter()
                    .map(|((c, m), n)| vec![c, m.to_string(), n.to_string()])
                    .collect(),
            },
        ],
        samples_caption: "Refused authentications".into(),
        samples: samples(refused.into_iter()),
        note: None,
    }
}

/// IA-3's rule.
pub const IA3_RULE: &str = "Met when every exchange row from a process on this host (src_addr loopback, or process_pid set) carries the kernel's record of the process that opened the connection (process_pid, process_uid, process_exe and process_cgroup): the process is identified by the kernel, not by its own word; not met when none does; partial in between; not assessed without such rows (remote callers only).";

/// A row whose client is a process on this host: a loopback source, or
/// one the kernel recorded.
fn from_this_host(r: &AuditRow) -> bool {
    r.process_pid.is_some()
        || r.src_addr
            .as_deref()
            .and_then(|a| a.parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| ip.to_canonical().is_loopback())
}

pub(super) fn ia3(ex: &[&AuditRow]) -> Control {
    let local: Vec<&AuditRow> = ex.iter().copied().filter(|r| from_this_host(r)).collect();
    let t = Tally::of(local.iter().copied(), |r| {
        r.process_pid.is_some()
            && r.process_uid.is_some()
            && r.process_exe.is_some()
            && r.process_cgroup.is_some()
    });
    let units = count(
        local
            .iter()
            .map(|r| r.process_unit.as_deref().unwrap_or("(none)")),
    );
    let names: Vec<String> = local
        .iter()
        .map(|r| match (&r.process_user, r.process_uid) {
            (Some(u), _) => u.clone(),
            (None, Some(uid)) => format!("uid {uid}"),
            (None, None) => "(no record)".into(),
        })
        .collect();
    let users = count(names.iter().map(String::as_str));
    let gaps = t
        .gap(
            "exchange rows from this host",
            "carry no complete kernel record of their process",
            "(src_addr is loopback OR process_pid IS NOT NULL) AND (process_pid, process_uid, process_exe or process_cgroup IS NULL)",
            "run an agent with the kernel's connection capture (`mcp-interceptor doctor` says whether the kernel supports its hooks); rows written before it lack the process columns, and a process that exits before its connection is accepted leaves its exe unresolved",
        )
        .into_iter()
        .collect();
    Control {
        id: "IA-3",
        title: "Device identification and authentication",
        asks: "Devices and processes acting on the system are uniquely identified and authenticated before they connect.",
        how: "For every connection a process on this host opens to a steered port, the kernel records at connect time the process (PID and start time, uid, cgroup, executable by inode); [identity.process] rules name callers by those facts, and every row carries them (process_* columns).",
        status: t.status(),
        rule: IA3_RULE,
        verdict: t.held("exchange rows from this host carry the kernel's record of their process"),
        gaps,
        facts: vec![
            fact("Exchange rows from this host", local.len()),
            fact("Exchange rows from remote hosts", ex.len() - local.len()),
        ],
        tables: vec![
            count_table(
                "Same-host exchange rows by systemd unit",
                "process_unit",
                units,
            ),
            count_table("Same-host exchange rows by user", "process_user", users),
        ],
        samples_caption: "Same-host exchange rows".into(),
        samples: samples(local.into_iter()),
        note: None,
    }
}
