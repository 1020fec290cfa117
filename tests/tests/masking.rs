//! Masking through the steered port: a tool that returns personal data
//! reaches the client masked, SSE events are masked one by one as they
//! stream, request arguments reach the server unchanged but are stored
//! masked, and DuckDB over the audit finds none of the raw values and reads
//! the per-detector `masked_counts` the events file recorded.

use mcp_interceptor_tests::{
    Agent, NetNs, TempDir, auditq,
    peer::{self, call},
    require_root,
};
use serde_json::{Value, json};

const PORT: &str = "[[intercept.ports]]\nport = 8080\n";

/// The record a tool result carries as JSON text.
fn record(result: &Value) -> Value {
    let text = result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    serde_json::from_str(text).unwrap_or_else(|e| panic!("record is JSON ({e}): {text}"))
}

#[test]
fn personal_data_is_masked_for_the_client_and_in_the_audit() {
    require_root();
    let (ns, dir) = (NetNs::new("mask"), TempDir::new("mask"));
    // Sessions off: rmcp then streams a call's notifications and its
    // result as SSE events of the call's own answer.
    let _server = peer::server_with(
        ns.name(),
        "127.0.0.1:8080",
        dir.path(),
        &["--json-response"],
    );
    // A second server off the steered port: what the client would get raw.
    let _direct = peer::server(ns.name(), "127.0.0.1:9090", dir.path());
    let mut agent = Agent::start(&ns, dir.path(), "", PORT);

    // The customer id is itself an e-mail address: stored masked, sent raw.
    let id = "ada.lovelace@example.org";
    let raw = record(
        &call(
            ns.name(),
            "http://127.0.0.1:9090/mcp",
            "lookup_customer",
            json!({ "id": id }),
        )
        .json(),
    );
    let masked = record(
        &call(
            ns.name(),
            "http://127.0.0.1:8080/mcp",
            "lookup_customer",
            json!({ "id": id }),
        )
        .json(),
    );
    let secrets = [
        raw["email"].as_str().unwrap().to_string(),
        raw["phone"].as_str().unwrap().to_string(),
        raw["payment_card"]["number"].as_str().unwrap().to_string(),
        id.to_string(),
    ];
    let text = masked.to_string();
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "{s} reached the client: {text}");
    }
    assert_eq!(masked["email"], "[EMAIL]");
    assert_eq!(masked["phone"], "[PHONE]");
    let card = masked["payment_card"]["number"].as_str().unwrap();
    let last4 = &secrets[2][secrets[2].len() - 4..];
    assert_eq!(
        card,
        format!("{}{last4}", "*".repeat(12)),
        "partial keeps the last four"
    );
    // The server derived the record from the raw id: the argument went
    // upstream unchanged (a masked id would give another customer).
    assert_eq!(masked["name"], raw["name"]);
    assert_eq!(masked["orders"], raw["orders"]);
    // Order ids, dates, prices and SKUs are near misses: untouched.
    assert_eq!(
        masked["orders"][0]["order_id"],
        raw["orders"][0]["order_id"]
    );
    assert_eq!(masked["date_of_birth"], raw["date_of_birth"]);

    // Streamed: each SSE event (three log notifications, then the result)
    // is masked as it passes.
    let streamed = call(
        ns.name(),
        "http://127.0.0.1:8080/mcp",
        "stream_customers",
        json!({"count": 3, "prefix": "s"}),
    );
    let v = streamed.json();
    let logs = v["log_messages"].as_array().expect("log_messages");
    assert_eq!(logs.len(), 3, "{v}");
    for (i, l) in logs.iter().enumerate() {
        assert_eq!(l["customer_id"], format!("s-{i}"));
        assert_eq!(l["email"], "[EMAIL]", "event {i}: {l}");
        assert!(
            l["payment_card"]["number"]
                .as_str()
                .unwrap()
                .starts_with("****"),
            "{l}"
        );
    }

    let events = agent.wait_events("the masked exchanges", |ev| {
        ev.iter().any(|e| {
            e["method"] == "tools/call"
                && e["target"] == "stream_customers"
                && e["kind"] == "exchange"
        })
    });
    let lookup = events
        .iter()
        .find(|e| e["method"] == "tools/call" && e["target"] == "lookup_customer")
        .unwrap();
    // Two e-mail addresses: the customer's, and the id the record echoes.
    assert_eq!(lookup["masked"]["email"], 2, "{}", lookup["masked"]);
    assert_eq!(lookup["masked"]["card"], 1);
    assert_eq!(
        lookup["params"]["arguments"]["id"], "[EMAIL]",
        "the events file holds no raw argument"
    );
    let logs: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "notification" && e["method"] == "notifications/message")
        .collect();
    assert_eq!(logs.len(), 3);
    assert!(logs.iter().all(|e| e["masked"]["email"] == 1), "{logs:?}");

    // The auditor's search finds none of the raw values, and finds the
    // masked form.
    agent.stop(15);
    let window = [
        ("from", "2000-01-01 00:00:00"),
        ("to", "2100-01-01 00:00:00"),
    ];
    for s in &secrets {
        let mut params = vec![("needle", s.as_str())];
        params.extend(window);
        let rows = auditq::query(&agent.audit_dir(), "search_values", &params);
        assert!(rows.is_empty(), "{s} is stored raw: {rows:?}");
    }
    let mut params = vec![("needle", "[EMAIL]")];
    params.extend(window);
    let rows = auditq::query(&agent.audit_dir(), "search_values", &params);
    // The lookup (its `forwarded` and `exchange` rows) and the three
    // streamed records.
    assert_eq!(rows.len(), 5, "masked rows are findable: {rows:?}");

    // masked_counts as DuckDB reads it from the Parquet files: per row,
    // what the events file recorded for the same exchange.
    let counts = |tool: &str| {
        let v = auditq::run_query(&agent.audit_dir(), "search_values", &params);
        let col = |name: &str| {
            v["columns"]
                .as_array()
                .unwrap()
                .iter()
                .position(|c| c == name)
                .unwrap()
        };
        let (t, m, c) = (col("tool_name"), col("method"), col("masked_counts"));
        let k = col("kind");
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            // A `forwarded` row has no answer to have masked.
            .filter(|r| r[k] != "forwarded")
            .filter(|r| r[t] == tool || (tool.is_empty() && r[m] == "notifications/message"))
            .map(|r| r[c].clone())
            .collect::<Vec<Value>>()
    };
    assert_eq!(counts("lookup_customer"), [lookup["masked"].clone()]);
    assert_eq!(lookup["masked"]["email"], 2);
    let streamed = counts("");
    assert_eq!(streamed.len(), 3, "{streamed:?}");
    for (row, ev) in streamed.iter().zip(&logs) {
        assert_eq!(row, &ev["masked"]);
        assert_eq!(row["email"], 1, "{row}");
        assert_eq!(row["card"], 1, "{row}");
    }
}
