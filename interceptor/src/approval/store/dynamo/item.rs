//! Approvals and grants as DynamoDB items (the attribute-value JSON of
//! the low-level API), and back. The layout is in `docs/approvals.md`
//! ("A fleet: one queue on DynamoDB").

use serde_json::{Map, Value, json};

use crate::{
    approval::{Approval, Grant, Revocation, Vote, state::Status},
    pipeline::{ApprovalMode, ApprovalRule, CallFacts},
};

/// An item: attribute name to typed value (`{"S": ...}`, `{"N": ...}`).
pub type Item = Map<String, Value>;

/// Items live this long past their last deadline (DynamoDB's TTL then
/// deletes them; the agent checks deadlines itself and never relies on it).
const KEEP_SECONDS: i64 = 7 * 24 * 3600;

/// A string attribute.
pub fn s(v: &str) -> Value {
    json!({ "S": v })
}

/// A number attribute.
pub fn n(v: i64) -> Value {
    json!({ "N": v.to_string() })
}

/// The string attribute `k` of `item`.
pub fn get_s(item: &Item, k: &str) -> Option<String> {
    item.get(k)?.get("S")?.as_str().map(str::to_string)
}

/// The number attribute `k` of `item`.
pub fn get_n(item: &Item, k: &str) -> Option<i64> {
    item.get(k)?.get("N")?.as_str()?.parse().ok()
}

fn list(item: &Item, k: &str) -> Vec<String> {
    get_s(item, k)
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default()
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The key of approval `id`.
pub fn approval_key(id: &str) -> Value {
    json!({ "pk": s(&format!("apr#{id}")), "sk": s("a") })
}

/// The key of one approver's vote on approval `id`.
pub fn vote_key(id: &str, approver: &str) -> Value {
    json!({ "pk": s(&format!("apr#{id}")), "sk": s(&format!("v#{approver}")) })
}

/// The key of grant `id`.
pub fn grant_key(id: &str) -> Value {
    json!({ "pk": s(&format!("grt#{id}")), "sk": s("g") })
}

/// The sort key of the `by_kind` index: zero-padded `created_us`, `#`,
/// the id; as strings these sort as (created_us, id) do. For a negative
/// time, "0": before every item (a key value may not be empty).
pub fn order(created_us: i64, id: &str) -> String {
    if created_us < 0 {
        return "0".into();
    }
    format!("{created_us:020}#{id}")
}

fn put_opt(m: &mut Item, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(k.into(), v);
    }
}

/// The item of a new approval held by `host`; `keep_us`: how long after
/// its deadline it may still be used (approved, in retry mode).
pub fn approval(a: &Approval, host: &str, keep_us: i64) -> Item {
    let c = &a.call;
    let mode = if a.rule.mode == ApprovalMode::Retry {
        "retry"
    } else {
        "hold"
    };
    let mut m = Item::new();
    for (k, v) in [
        ("kind", approval_kind(a.status).as_str()),
        ("order", &order(a.created_us, &a.id)),
        ("id", &a.id),
        ("status", a.status.as_str()),
        ("mode", mode),
        ("subject", &c.subject),
        ("issuer", &c.issuer),
        ("groups", &to_json(&c.groups)),
        ("server", &c.server),
        ("method", &c.method),
        ("arguments_sha256", &c.arguments_sha256),
        ("digest", &a.digest),
        ("policy_version", &c.policy_version),
        ("policies", &to_json(&a.policies)),
        ("approver_groups", &to_json(&a.rule.groups)),
        ("host", host),
    ] {
        m.insert(k.into(), s(v));
    }
    for (k, v) in [
        ("quorum", i64::from(a.rule.quorum)),
        ("created_us", a.created_us),
        ("expires_us", a.expires_us),
        ("ttl", (a.expires_us + keep_us) / 1_000_000 + KEEP_SECONDS),
    ] {
        m.insert(k.into(), n(v));
    }
    put_opt(&mut m, "target", c.target.as_deref().map(s));
    put_opt(
        &mut m,
        "arguments",
        a.arguments.as_ref().map(|v| s(&to_json(v))),
    );
    put_opt(&mut m, "decided_us", a.decided_us.map(n));
    put_opt(&mut m, "valid_until_us", a.valid_until_us.map(n));
    put_opt(&mut m, "reason", a.reason.as_deref().map(s));
    m.insert("votes".into(), json!({ "L": [] }));
    m.extend(as_item(approval_key(&a.id)));
    m
}

/// A vote as the element appended to an approval's `votes` list.
pub fn vote(v: &Vote) -> Value {
    json!({ "L": [s(&to_json(v))] })
}

/// The approval an item holds.
pub fn read_approval(m: &Item) -> Approval {
    let mut votes: Vec<Vote> = (m.get("votes").and_then(|v| v["L"].as_array()))
        .map(|l| {
            l.iter()
                .filter_map(|v| serde_json::from_str(v["S"].as_str()?).ok())
                .collect()
        })
        .unwrap_or_default();
    votes.sort_by_key(|v| v.at_us);
    let text = |k: &str| get_s(m, k).unwrap_or_default();
    Approval {
        id: text("id"),
        status: Status::parse(&text("status")),
        rule: ApprovalRule {
            groups: list(m, "approver_groups"),
            quorum: u32::try_from(get_n(m, "quorum").unwrap_or(1)).unwrap_or(1),
            mode: if text("mode") == "retry" {
                ApprovalMode::Retry
            } else {
                ApprovalMode::Hold
            },
        },
        call: CallFacts {
            subject: text("subject"),
            issuer: text("issuer"),
            groups: list(m, "groups"),
            server: text("server"),
            method: text("method"),
            target: get_s(m, "target"),
            arguments_sha256: text("arguments_sha256"),
            policy_version: text("policy_version"),
        },
        arguments: get_s(m, "arguments").and_then(|a| serde_json::from_str(&a).ok()),
        digest: text("digest"),
        policies: list(m, "policies"),
        created_us: get_n(m, "created_us").unwrap_or(0),
        expires_us: get_n(m, "expires_us").unwrap_or(0),
        decided_us: get_n(m, "decided_us"),
        valid_until_us: get_n(m, "valid_until_us"),
        reason: get_s(m, "reason"),
        votes,
    }
}

/// The `by_kind` partition of an approval in `status`: one per status, so
/// the open ones (pending, approved) are read without the closed ones,
/// however many those are. A status change moves the item.
pub fn approval_kind(status: Status) -> String {
    format!("approval#{}", status.as_str())
}

/// The `by_kind` partition of grants that have not ended (neither revoked
/// nor recorded as expired); an ended grant moves to [`GRANT_ENDED`].
pub const GRANT_ACTIVE: &str = "grant#active";
/// The `by_kind` partition of ended grants (listed only by `grants list --all`).
pub const GRANT_ENDED: &str = "grant#ended";

/// The item of a new grant.
pub fn grant(g: &Grant) -> Item {
    let mut m = Item::new();
    let kind = if g.revocation.revoked_us.is_some() {
        GRANT_ENDED
    } else {
        GRANT_ACTIVE
    };
    for (k, v) in [
        ("kind", kind),
        ("order", &order(g.created_us, &g.id)),
        ("id", &g.id),
        ("subject", &g.subject),
        ("issuer", &g.issuer),
        ("server", &g.server),
        ("tool", &g.tool),
        ("granted_by", &g.granted_by),
        ("reason", &g.reason),
    ] {
        m.insert(k.into(), s(v));
    }
    for (k, v) in [
        ("created_us", g.created_us),
        ("expires_us", g.expires_us),
        ("ended_recorded", 0),
        ("ttl", g.expires_us / 1_000_000 + KEEP_SECONDS),
    ] {
        m.insert(k.into(), n(v));
    }
    let r = &g.revocation;
    put_opt(&mut m, "revoked_us", r.revoked_us.map(n));
    put_opt(&mut m, "revoked_by", r.revoked_by.as_deref().map(s));
    put_opt(&mut m, "revoke_reason", r.revoke_reason.as_deref().map(s));
    m.extend(as_item(grant_key(&g.id)));
    m
}

/// The grant an item holds.
pub fn read_grant(m: &Item) -> Grant {
    let text = |k: &str| get_s(m, k).unwrap_or_default();
    Grant {
        id: text("id"),
        subject: text("subject"),
        issuer: text("issuer"),
        server: text("server"),
        tool: text("tool"),
        created_us: get_n(m, "created_us").unwrap_or(0),
        expires_us: get_n(m, "expires_us").unwrap_or(0),
        granted_by: text("granted_by"),
        reason: text("reason"),
        revocation: Revocation {
            revoked_us: get_n(m, "revoked_us"),
            revoked_by: get_s(m, "revoked_by"),
            revoke_reason: get_s(m, "revoke_reason"),
        },
    }
}

/// `v` (a JSON object) as an item.
pub fn as_item(v: Value) -> Item {
    match v {
        Value::Object(m) => m,
        _ => Item::new(),
    }
}
