//! Masking beyond tool text results, through the steered port: prompt
//! results (prompts/get), resource contents (resources/read),
//! structuredContent, JSON-RPC error payloads and a server-to-client
//! request (sampling/createMessage) reach the client masked; and the audit
//! keeps no raw value in any string column (tool, prompt and resource
//! names, session and JSON-RPC ids, client name included), as DuckDB over
//! the Parquet files and the events file show. `masked_counts` in the
//! Parquet rows is what the events file says.

use std::net::SocketAddr;

use mcp_interceptor_tests::{
    Agent, NetNs, TempDir, auditq,
    http::{RawResponse, initialize, post_in},
    peer::{self, call_with},
    require_root,
};
use serde_json::{Map, Value, json};

const STEERED: &str = "127.0.0.1:8080";
const DIRECT: &str = "127.0.0.1:9090";

// Addresses a client puts where the audit keeps names and ids.
const URI_ID: &str = "ada.uri@example.org";
const PROMPT_NAME: &str = "brief.for.bob@example.org";
const TOOL_NAME: &str = "carol.tool@example.org";
const RPC_ID: &str = "dave.id@example.org";
const CLIENT: &str = "erin.client@example.org";
const SESSION: &str = "frank.session@example.org";
const SAMPLING: &str = "grace.sampling@example.org";

fn rpc(ns: &NetNs, at: &str, id: Value, method: &str, params: Value, headers: &[&str]) -> Value {
    let addr: SocketAddr = at.parse().unwrap();
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let r: RawResponse = post_in(ns, addr, "/mcp", body.to_string().as_bytes(), headers);
    assert_eq!(
        r.status,
        200,
        "{method}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

/// Rows of a deploy/athena query as objects keyed by column.
fn rows(dir: &std::path::Path, needle: &str) -> Vec<Map<String, Value>> {
    auditq::records(
        dir,
        "search_values",
        &[
            ("needle", needle),
            ("from", "2000-01-01 00:00:00"),
            ("to", "2100-01-01 00:00:00"),
        ],
    )
}

#[test]
fn every_kind_of_answer_and_every_stored_string_is_masked() {
    require_root();
    let (ns, dir) = (NetNs::new("masksurf"), TempDir::new("masksurf"));
    // Stateless, JSON answers, for raw requests; a session server on 8081
    // for sampling, which needs a client that answers.
    let _json = peer::server_with(ns.name(), STEERED, dir.path(), &["--json-response"]);
    let _direct = peer::server_with(ns.name(), DIRECT, dir.path(), &["--json-response"]);
    let _session = peer::server(ns.name(), "127.0.0.1:8081", dir.path());
    let mut agent = Agent::start(
        &ns,
        dir.path(),
        "",
        "[[intercept.ports]]\nport = 8080\n[[intercept.ports]]\nport = 8081\n",
    );

    // What the server hands out: customer c-42's record, read directly.
    let direct = rpc(
        &ns,
        DIRECT,
        json!(1),
        "resources/read",
        json!({"uri": "customer://c-42"}),
        &[],
    );
    let record: Value =
        serde_json::from_str(direct["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    let personal = [
        record["email"].as_str().unwrap().to_string(),
        record["phone"].as_str().unwrap().to_string(),
        record["payment_card"]["number"]
            .as_str()
            .unwrap()
            .to_string(),
    ];
    let mut secrets: Vec<String> = personal.to_vec();
    secrets.extend(
        [
            URI_ID,
            PROMPT_NAME,
            TOOL_NAME,
            RPC_ID,
            CLIENT,
            SESSION,
            SAMPLING,
        ]
        .map(str::to_string),
    );
    let raw_in = |v: &Value| {
        let t = v.to_string();
        secrets
            .iter()
            .filter(|s| t.contains(s.as_str()))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(raw_in(&direct), personal.to_vec(), "the server sends them");

    // Resource contents, prompt messages, structuredContent and its text.
    let resource = rpc(
        &ns,
        STEERED,
        json!(2),
        "resources/read",
        json!({"uri": "customer://c-42"}),
        &[],
    );
    let prompt = rpc(
        &ns,
        STEERED,
        json!(3),
        "prompts/get",
        json!({"name": "customer_brief", "arguments": {"id": "c-42"}}),
        &[],
    );
    let structured = rpc(
        &ns,
        STEERED,
        json!(4),
        "tools/call",
        json!({"name": "lookup_customer_structured", "arguments": {"id": "c-42"}}),
        &[],
    );
    // A JSON-RPC error whose message and data name the customer.
    let failed = rpc(
        &ns,
        STEERED,
        json!(5),
        "tools/call",
        json!({"name": "fail_lookup", "arguments": {"id": "c-42"}}),
        &[],
    );
    for (what, v) in [
        ("resource", &resource),
        ("prompt", &prompt),
        ("structured", &structured),
        ("error", &failed),
    ] {
        assert_eq!(
            raw_in(v),
            Vec::<String>::new(),
            "{what} reached the client raw: {v}"
        );
    }
    let contents: Value =
        serde_json::from_str(resource["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(contents["email"], "[EMAIL]");
    assert_eq!(contents["phone"], "[PHONE]");
    assert_eq!(contents["name"], record["name"], "near data passes");
    let text = prompt["result"]["messages"][0]["content"]["text"]
        .as_str()
        .unwrap();
    assert!(text.contains("\"email\": \"[EMAIL]\""), "{text}");
    assert_eq!(
        structured["result"]["structuredContent"]["email"],
        "[EMAIL]"
    );
    let card = structured["result"]["structuredContent"]["payment_card"]["number"]
        .as_str()
        .unwrap();
    assert!(card.starts_with("****"), "{card}");
    assert_eq!(failed["error"]["message"], "lookup failed for [EMAIL]");
    assert_eq!(failed["error"]["data"]["email"], "[EMAIL]");

    // Names and ids the client chose, which the audit stores.
    let sid = format!("Mcp-Session-Id: {SESSION}");
    let mut init = initialize(6);
    init["params"]["clientInfo"]["name"] = json!(CLIENT);
    rpc(
        &ns,
        STEERED,
        init["id"].clone(),
        "initialize",
        init["params"].clone(),
        &[],
    );
    let uri = format!("customer://{URI_ID}");
    let by_uri = rpc(
        &ns,
        STEERED,
        json!(7),
        "resources/read",
        json!({"uri": uri}),
        &[],
    );
    // A session id the server never opened is refused (404), and the
    // refusal's row keeps the id the client chose: masked too.
    let ping = json!({"jsonrpc": "2.0", "id": 10, "method": "ping"}).to_string();
    let addr: SocketAddr = STEERED.parse().unwrap();
    let refused = post_in(&ns, addr, "/mcp", ping.as_bytes(), &[&sid]);
    assert_eq!(refused.status, 404, "{refused:?}");
    let unknown = rpc(
        &ns,
        STEERED,
        json!(8),
        "prompts/get",
        json!({"name": PROMPT_NAME}),
        &[],
    );
    let no_tool = rpc(
        &ns,
        STEERED,
        json!(RPC_ID),
        "tools/call",
        json!({"name": TOOL_NAME, "arguments": {}}),
        &[],
    );
    for v in [&by_uri, &unknown, &no_tool] {
        // The client sent these itself; what matters is the record.
        assert!(v["result"].is_object() || v["error"].is_object(), "{v}");
    }
    assert!(
        unknown["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("[EMAIL]")),
        "the error naming the prompt is masked: {unknown}"
    );

    // A server-to-client request: the sampling prompt the client reads.
    let sampled = call_with(
        ns.name(),
        "http://127.0.0.1:8081/mcp",
        "ask_llm",
        json!({"prompt": format!("write to {SAMPLING} about the refund")}),
        &["--sampling-reply", "done"],
    )
    .json();
    assert_eq!(sampled["sampling_requests"], 1, "{sampled}");
    let seen = sampled["sampling_params"].to_string();
    assert!(!seen.contains(SAMPLING), "{seen}");
    assert!(seen.contains("write to [EMAIL] about the refund"), "{seen}");

    // The events file: not one raw value anywhere in it.
    let events = agent.wait_events("the sampling exchange", |ev| {
        ev.iter().any(|e| e["method"] == "sampling/createMessage")
    });
    let file = std::fs::read_to_string(agent.events_path()).unwrap();
    for s in &secrets {
        assert!(!file.contains(s.as_str()), "{s} is in the events file");
    }
    let read = events
        .iter()
        .find(|e| e["method"] == "resources/read" && e["jsonrpc_id"] == 2)
        .expect("the resources/read event");
    assert!(
        read["masked"]["email"].as_u64() >= Some(1) && read["masked"]["card"] == 1,
        "{}",
        read["masked"]
    );

    // The audit: DuckDB over every string column finds none of them ...
    agent.stop(15);
    let audit = agent.audit_dir();
    for s in &secrets {
        let found = rows(&audit, s);
        assert!(found.is_empty(), "{s} is stored raw: {found:?}");
    }
    // ... and finds the masked names where they were (the query does look
    // in those columns).
    let masked = rows(&audit, "[EMAIL]");
    let has = |col: &str, want: &str| masked.iter().any(|r| r[col] == want);
    assert!(has("resource_uri", "customer://[EMAIL]"), "{masked:?}");
    assert!(has("prompt_name", "[EMAIL]"), "{masked:?}");
    assert!(has("tool_name", "[EMAIL]"), "{masked:?}");
    assert!(has("session_id", "[EMAIL]"), "{masked:?}");

    // masked_counts in Parquet: what the events file recorded for the
    // resources/read answer.
    let parquet = rows(&audit, "customer://c-42");
    let counts = parquet
        .iter()
        .find(|r| r["method"] == "resources/read" && r["result"].is_string())
        .map(|r| r["masked_counts"].clone())
        .unwrap_or_else(|| panic!("the resources/read row: {parquet:?}"));
    assert_eq!(counts, read["masked"], "Parquet and events file agree");
}
