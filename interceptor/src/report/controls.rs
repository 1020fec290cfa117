//! The evidence of each control, from the rows of the period.

use std::collections::{BTreeMap, BTreeSet};

use super::{Loaded, nist::*};
use crate::audit::{schema::AuditRow, wal::hour_of};

pub(super) fn status_for(n: usize) -> Status {
    if n > 0 {
        Status::Evidence
    } else {
        Status::Limited
    }
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
    Control {
        id: "AC-3",
        title: "Access enforcement",
        asks: "Every access to a resource is allowed or refused according to an approved authorization policy.",
        how: "Each MCP request is judged by the Cedar policy before it reaches the server (default deny, refused calls never arrive); the verdict, the determining policy ids and the policy version go into the request's audit row.",
        status: status_for(n("allow") + n("deny") + n("approval")),
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
        status: status_for(subjects),
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

pub(super) fn au2(rows: &[AuditRow]) -> Control {
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
        status: status_for(rows.len()),
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

pub(super) fn au3(ex: &[&AuditRow]) -> Control {
    let total = ex.len();
    let calls: Vec<&&AuditRow> = ex
        .iter()
        .filter(|r| r.method.as_deref() == Some("tools/call"))
        .collect();
    let refused = ex.iter().filter(|r| is_auth_refusal(r)).count();
    Control {
        id: "AU-3",
        title: "Content of audit records",
        asks: "Each record says what happened, when and where, from which source, with what outcome, and who was involved.",
        how: "Every exchange row carries the event kind and JSON-RPC method, the event time (microseconds, UTC), the host and destination, the client address, the decision, HTTP status and error code, the verified subject and the tool, resource or prompt.",
        status: status_for(total),
        facts: vec![
            fact("Exchange rows", total),
            fact("tools/call rows", calls.len()),
            fact(
                "Refused before identification (no subject by design)",
                refused,
            ),
        ],
        tables: vec![columns_filled(ex, &calls)],
        samples_caption: "Tool calls".into(),
        samples: samples(calls.iter().map(|r| **r)),
        note: Some(format!(
            "Exchange rows are those of kind {}.",
            EXCHANGE_KINDS.join(", ")
        )),
    }
}

/// How many exchange rows fill the columns of each content AU-3 asks
/// for (the tool: of the tools/call rows, `calls`).
fn columns_filled(ex: &[&AuditRow], calls: &[&&AuditRow]) -> Table {
    let total = ex.len();
    let filled = |f: &dyn Fn(&AuditRow) -> bool| ex.iter().filter(|r| f(r)).count();
    let with_tool = calls.iter().filter(|r| r.tool_name.is_some()).count();
    let line = |what: &str, cols: &str, n: usize, d: usize| {
        vec![
            what.to_string(),
            cols.to_string(),
            n.to_string(),
            d.to_string(),
            pct(n, d),
        ]
    };
    let outcome =
        |r: &AuditRow| r.decision.is_some() || r.http_status.is_some() || r.error_code.is_some();
    Table {
        caption: "Columns filled on exchange rows".into(),
        head: vec!["content", "column(s)", "filled", "rows", "share"],
        rows: vec![
            line(
                "what (type of event)",
                "kind",
                filled(&|r| !r.kind.is_empty()),
                total,
            ),
            line(
                "what (operation)",
                "method",
                filled(&|r| r.method.is_some()),
                total,
            ),
            line(
                "when",
                "event_time",
                filled(&|r| r.event_time_us != 0),
                total,
            ),
            line(
                "where",
                "host, dst_addr",
                filled(&|r| !r.host.is_empty() && r.dst_addr.is_some()),
                total,
            ),
            line(
                "source",
                "src_addr",
                filled(&|r| r.src_addr.is_some()),
                total,
            ),
            line(
                "outcome",
                "decision / http_status / error_code",
                filled(&outcome),
                total,
            ),
            line(
                "identity",
                "subject",
                filled(&|r| r.subject.is_some()),
                total,
            ),
            line(
                "tool (tools/call rows)",
                "tool_name",
                with_tool,
                calls.len(),
            ),
        ],
    }
}

pub(super) fn au9(
    verify: &Verify,
    keys: &[Key],
    (private, files): (usize, usize),
    loaded: &Loaded,
) -> Control {
    let mut facts = match verify {
        Verify::Intact(r) => vec![
            fact(
                "audit verify",
                "ok: chain and signatures intact, every file matches its entry",
            ),
            fact("Hosts", r.hosts.join(", ")),
            fact("Signed manifest entries", r.entries),
            fact("Data files covered", r.files),
            fact("Rows in signed files (whole directory)", r.rows),
        ],
        Verify::Broken(b) => vec![fact("audit verify", format!("FAIL: {b}"))],
    };
    facts.push(fact(
        "Files of the period not readable by other users",
        of(private, files),
    ));
    facts.push(fact(
        "WAL segments not yet in signed files",
        loaded.pending_wal_segments,
    ));
    Control {
        id: "AU-9",
        title: "Protection of audit information",
        asks: "Audit records and tools are protected from unauthorized reading, change and deletion.",
        how: "Files are written once (0640 in 0750 directories) and each closed file gets an Ed25519-signed manifest entry that chains the previous entry's hash; `audit verify` names any changed, added, deleted or reordered file or entry.",
        status: match verify {
            Verify::Intact(_) => Status::Evidence,
            Verify::Broken(_) => Status::Failed,
        },
        facts,
        tables: vec![Table {
            caption: "Signing keys (Ed25519)".into(),
            head: vec!["host", "public key", "SHA-256 fingerprint"],
            rows: keys
                .iter()
                .map(|k| vec![k.host.clone(), k.public_key.clone(), k.fingerprint.clone()])
                .collect(),
        }],
        samples_caption: "The evidence is the manifest chain, not rows".into(),
        samples: Vec::new(),
        note: Some(
            "`audit verify` checks the whole directory, not only the period. Without a pinned key (--public-key) it proves consistency with the key stored beside the manifest, not its origin."
                .into(),
        ),
    }
}

pub(super) fn au10(verify: &Verify, ex: &[&AuditRow]) -> Control {
    let identified: Vec<&&AuditRow> = ex.iter().filter(|r| !is_auth_refusal(r)).collect();
    let bound = identified
        .iter()
        .filter(|r| r.subject.is_some() && r.auth_method.is_some())
        .count();
    let credential = identified
        .iter()
        .filter(|r| r.token_id.is_some() || r.cert_fingerprint.is_some())
        .count();
    let versioned = ex
        .iter()
        .filter(|r| r.decision.is_some() && r.policy_version.is_some())
        .count();
    let decided = ex.iter().filter(|r| r.decision.is_some()).count();
    let chain = match verify {
        Verify::Intact(r) => format!(
            "intact ({} signed manifest entr{})",
            r.entries,
            if r.entries == 1 { "y" } else { "ies" }
        ),
        Verify::Broken(b) => format!("BROKEN: {b}"),
    };
    Control {
        id: "AU-10",
        title: "Non-repudiation",
        asks: "It can be shown who performed an action, so that the actor cannot credibly deny it.",
        how: "Each row is bound to the verified identity behind the request (OIDC token or client certificate, with token id or certificate fingerprint), and the rows are sealed by an Ed25519-signed hash chain.",
        status: match verify {
            Verify::Broken(_) => Status::Failed,
            Verify::Intact(_) => status_for(bound),
        },
        facts: vec![
            fact("Signed manifest chain", chain),
            fact(
                "Exchange rows with subject and auth_method",
                of(bound, identified.len()),
            ),
            fact(
                "… with a credential id (token_id or cert_fingerprint)",
                of(credential, identified.len()),
            ),
            fact("Decisions tied to a policy version", of(versioned, decided)),
            fact(
                "Refusals before identification (not counted above)",
                ex.len() - identified.len(),
            ),
        ],
        tables: Vec::new(),
        samples_caption: "Rows bound to an identity".into(),
        samples: samples(
            identified
                .iter()
                .map(|r| **r)
                .filter(|r| r.subject.is_some() && r.tool_name.is_some()),
        ),
        note: None,
    }
}

pub(super) fn au12(rows: &[AuditRow]) -> Control {
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
        status: status_for(rows.len()),
        facts: vec![
            fact("agent_start rows", n("agent_start")),
            fact("agent_stop rows", n("agent_stop")),
            fact("policy_loaded rows", n("policy_loaded")),
            fact(
                "Recording hosts",
                hosts.into_iter().collect::<Vec<_>>().join(", "),
            ),
            fact("Hours with rows", hours.len()),
        ],
        tables: vec![Table {
            caption: caption.into(),
            head,
            rows: table_rows,
        }],
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
    Control {
        id: "IA-2",
        title: "Identification and authentication",
        asks: "Users are uniquely identified and authenticated before they can act.",
        how: "Every request must carry a verified OIDC bearer token or mTLS client certificate (anonymous callers only where explicitly allowed); a request without one is refused with 401 or 403 and recorded.",
        status: status_for(ex.len()),
        facts: vec![
            fact("Distinct subjects", subjects.len()),
            fact("Refused authentications", refused.len()),
            fact(
                "Anonymous exchange rows",
                methods.get("anonymous").copied().unwrap_or(0),
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

pub(super) fn sc8(rows: &[AuditRow]) -> Control {
    let mut conns: BTreeSet<(&str, i64)> = BTreeSet::new();
    let mut mtls: BTreeSet<(&str, i64)> = BTreeSet::new();
    for r in rows {
        if let Some(c) = r.conn_id {
            conns.insert((&r.host, c));
            if r.cert_fingerprint.is_some() {
                mtls.insert((&r.host, c));
            }
        }
    }
    let tls_refusals: Vec<&AuditRow> = rows
        .iter()
        .filter(|r| r.decided_by.as_deref() == Some("tls"))
        .collect();
    let unknown = conns.len() - mtls.len();
    Control {
        id: "SC-8",
        title: "Transmission confidentiality and integrity",
        asks: "Information in transit is protected against disclosure and modification.",
        how: "The agent serves TLS and mTLS on the steered ports (rustls), can refuse plaintext (`tls.require_tls`, answered 426), and verifies TLS to upstreams marked `upstream_tls`.",
        status: Status::Limited,
        facts: vec![
            fact("Connections seen", conns.len()),
            fact(
                "Connections with a client certificate (mTLS, hence TLS)",
                of(mtls.len(), conns.len()),
            ),
            fact(
                "Refused by the TLS stage (plaintext under require_tls, failed handshakes)",
                tls_refusals.len(),
            ),
            fact("Connections whose transport security is not recorded", unknown),
        ],
        tables: Vec::new(),
        samples_caption: "Refusals by the TLS stage".into(),
        samples: samples(tls_refusals.into_iter()),
        note: Some(
            "The audit has no column saying whether a connection used TLS: `transport` is the MCP transport (streamable-http, sse, stateless, http), not the wire. A client certificate fingerprint proves TLS; for other connections the trail cannot tell, so check `tls.require_tls` in the agent's configuration."
                .into(),
        ),
    }
}
