use std::collections::{HashMap, HashSet};

use super::{Reason, Refusal, code};

/// Codes of the spec's reserved range the agent may answer: the spec's own.
const SPEC_RESERVED: &[i64] = &[code::HEADER_MISMATCH];

#[test]
fn no_refusal_takes_a_code_the_spec_reserves() {
    for k in Reason::ALL {
        let c = k.code();
        let reserved = (-32099..=-32020).contains(&c);
        assert!(
            !reserved || SPEC_RESERVED.contains(&c),
            "{k:?} has reserved code {c}"
        );
        let own = (-32019..=-32000).contains(&c);
        let jsonrpc = [-32700, -32600, -32601, -32602, -32603].contains(&c);
        assert!(
            own || jsonrpc || SPEC_RESERVED.contains(&c),
            "{k:?}: {c} is no code we may use"
        );
    }
}

#[test]
fn reasons_are_unique_stable_snake_case() {
    let mut seen = HashSet::new();
    for k in Reason::ALL {
        let r = k.as_str();
        assert!(seen.insert(r), "reason {r} used twice");
        assert!(r.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{r}");
    }
}

#[test]
fn the_reply_carries_code_message_reason_and_data() {
    let r = Refusal::new(Reason::ApprovalCap, "too many").with("max_pending_per_caller", 3);
    let v = r.to_jsonrpc(Some(7.into()));
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], 7);
    assert_eq!(v["error"]["code"], code::LIMIT);
    assert_eq!(v["error"]["message"], "too many");
    assert_eq!(v["error"]["data"]["reason"], "approval_cap");
    assert_eq!(v["error"]["data"]["max_pending_per_caller"], 3);
    // The kind's reason wins: a caller cannot relabel a refusal.
    let r = Refusal::new(Reason::PolicyDenied, "no").with("reason", "ok");
    assert_eq!(
        r.to_jsonrpc(None)["error"]["data"]["reason"],
        "policy_denied"
    );
    assert_eq!(r.to_jsonrpc(None)["id"], serde_json::Value::Null);
}

/// docs/protocol-and-errors.md's "Errors the agent itself answers" rows:
/// reason -> (HTTP, code).
fn documented_rows() -> HashMap<String, (u16, i64)> {
    let page = include_str!("../../../docs/protocol-and-errors.md");
    let start = page
        .find("## Errors the agent itself answers")
        .expect("docs/protocol-and-errors.md has the error table");
    let section = &page[start..];
    let end = section[4..].find("\n#").map_or(section.len(), |e| e + 4);
    let mut rows = HashMap::new();
    for line in section[..end].lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.get(1) == Some(&"HTTP") {
            continue;
        }
        let Some(reason) = cells
            .get(3)
            .and_then(|c| c.strip_prefix('`')?.strip_suffix('`'))
        else {
            continue;
        };
        let status = cells[1]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap_or("");
        let status: u16 = status.parse().expect("an HTTP status");
        let code: i64 = cells[2].parse().expect("a JSON-RPC code");
        let dup = rows.insert(reason.to_owned(), (status, code));
        assert!(
            dup.is_none(),
            "docs/protocol-and-errors.md lists {reason} twice"
        );
    }
    rows
}

#[test]
fn documented_error_table_matches_the_type() {
    let rows = documented_rows();
    for k in Reason::ALL {
        let want = (k.status().as_u16(), k.code());
        assert_eq!(
            rows.get(k.as_str()),
            Some(&want),
            "docs/protocol-and-errors.md row for {}",
            k.as_str()
        );
    }
    assert_eq!(
        rows.len(),
        Reason::ALL.len(),
        "docs/protocol-and-errors.md lists reasons the type lacks"
    );
}
