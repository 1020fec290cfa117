//! The data path between two implementations that are not ours: the
//! official Python SDK client and the reference TypeScript server
//! (server-everything), over Streamable HTTP and legacy HTTP+SSE, through
//! the steered port.

use mcp_interceptor_tests::{Agent, NetNs, TempDir, agent::ANONYMOUS, everything, require_root};
use serde_json::Value;

fn port_cfg() -> String {
    "[[intercept.ports]]\nport = 8080\n".into()
}

fn count(events: &[Value], kind: &str, method: &str) -> usize {
    events
        .iter()
        .filter(|e| e["kind"] == kind && e["method"] == method)
        .count()
}

/// Every tool through the agent gives the client the same bytes as without
/// it, and every message the client saw is an event, paired.
fn whole_tool_set(mode: &str, transport: &str, path: &str) {
    require_root();
    let (ns, dir) = (NetNs::new(&format!("ev-{mode}")), TempDir::new("ev"));
    let _server = everything::server(ns.name(), mode, 8080, dir.path());
    let url = format!("http://127.0.0.1:8080{path}");
    let direct = everything::client(ns.name(), &url, transport, "all-tools");

    // Transparency is the point here: masking would (rightly) change the
    // e-mail address server-everything's elicitation tool echoes back.
    let unmasked = format!("{ANONYMOUS}[mask]\nenabled = false\n");
    let agent = Agent::start_full(&ns, dir.path(), "", &port_cfg(), "", &unmasked, Vec::new());
    let proxied = everything::client(ns.name(), &url, transport, "all-tools");
    assert!(
        agent.counters(8080).steered > 0,
        "the second run went through the agent"
    );
    let (d, p) = (
        everything::stable(direct.clone()),
        everything::stable(proxied.clone()),
    );
    assert_eq!(d["tools"], p["tools"]);
    assert!(
        d["tools"].as_array().is_some_and(|t| t.len() >= 12),
        "{}",
        d["tools"]
    );
    for (name, result) in d["results"].as_object().expect("results") {
        assert_eq!(
            &p["results"][name], result,
            "tool {name} differs through the agent"
        );
    }
    assert_eq!(d, p, "whole client view identical");

    let tools = direct["results"].as_object().unwrap().len();
    let events = agent.wait_events("every tool call", |ev| {
        count(ev, "exchange", "tools/call") >= tools
    });
    assert_eq!(count(&events, "exchange", "initialize"), 1);
    assert!(count(&events, "exchange", "tools/list") >= 1);
    let calls: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "exchange" && e["method"] == "tools/call")
        .collect();
    for c in &calls {
        assert!(
            c["result"].is_object() || c["error"].is_object(),
            "paired: {c}"
        );
        assert_eq!(c["transport"], transport);
        assert!(c["session_id"].is_string(), "bound to the session: {c}");
    }
    // The recorded result is the one the client got (the client's model
    // adds defaults such as isError=false that the wire does not carry).
    let echo = calls
        .iter()
        .find(|c| c["target"] == "echo")
        .expect("echo called");
    assert_eq!(
        echo["result"]["content"],
        proxied["results"]["echo"]["content"]
    );
    // Server requests made during the tool calls, answered by the client.
    for method in ["roots/list", "elicitation/create", "sampling/createMessage"] {
        let asked: Vec<&Value> = events.iter().filter(|e| e["method"] == method).collect();
        assert!(!asked.is_empty(), "{method} seen");
        assert!(
            asked.iter().all(|e| e["kind"] == "exchange"
                && e["direction"] == "server_to_client"
                && e["result"].is_object()),
            "{method} paired with the client's reply: {asked:#?}"
        );
    }
    let stray: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "unpaired" || e["kind"] == "rejected")
        .collect();
    assert!(stray.is_empty(), "{stray:#?}");
}

#[test]
fn python_client_and_server_everything_over_streamable_http() {
    whole_tool_set("streamableHttp", "streamable-http", "/mcp");
}

#[test]
fn python_client_and_server_everything_over_legacy_sse() {
    whole_tool_set("sse", "sse", "/sse");
}

#[test]
fn progress_and_sampling_over_streamable_http() {
    progress_notifications_and_server_sampling_requests_are_paired(
        "streamableHttp",
        "streamable-http",
        "/mcp",
    );
}

#[test]
fn progress_and_sampling_over_legacy_sse() {
    progress_notifications_and_server_sampling_requests_are_paired("sse", "sse", "/sse");
}

fn progress_notifications_and_server_sampling_requests_are_paired(
    mode: &str,
    transport: &str,
    path: &str,
) {
    require_root();
    let (ns, dir) = (NetNs::new("ev-prog"), TempDir::new("ev-prog"));
    let _server = everything::server(ns.name(), mode, 8080, dir.path());
    let agent = Agent::start(&ns, dir.path(), "", &port_cfg());
    let url = &format!("http://127.0.0.1:8080{path}");

    let progress = everything::client(ns.name(), url, transport, "progress");
    let seen = progress["progress"]
        .as_array()
        .expect("progress list")
        .len();
    assert!(seen >= 2, "{progress}");
    let events = agent.wait_events("progress", |ev| {
        count(ev, "notification", "notifications/progress") >= seen
    });
    let notes: Vec<&Value> = events
        .iter()
        .filter(|e| e["method"] == "notifications/progress")
        .collect();
    assert_eq!(
        notes.len(),
        seen,
        "one event per progress notification the client got"
    );
    assert!(notes.iter().all(|n| n["direction"] == "server_to_client"));
    let long = events
        .iter()
        .find(|e| e["kind"] == "exchange" && e["target"] == "trigger-long-running-operation")
        .expect("long-running call paired");
    let last_note = notes
        .iter()
        .filter_map(|n| n["done_us"].as_i64())
        .max()
        .unwrap();
    assert!(
        long["done_us"].as_i64().unwrap() >= last_note,
        "response after its progress"
    );

    let sampling = everything::client(ns.name(), url, transport, "sampling");
    let asked = sampling["sampling_requests"]
        .as_array()
        .expect("sampling requests")
        .len();
    assert_eq!(asked, 1, "{sampling}");
    let events = agent.wait_events("sampling", |ev| {
        count(ev, "exchange", "sampling/createMessage") == 1
    });
    let s = events
        .iter()
        .find(|e| e["method"] == "sampling/createMessage")
        .unwrap();
    assert_eq!(s["direction"], "server_to_client");
    assert_eq!(s["transport"], transport);
    let text = s["result"]["content"]["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("sampled:"),
        "the client's reply is paired with the server's request: {s}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "exchange" && e["target"] == "trigger-sampling-request")
    );
}

#[test]
fn a_batch_of_requests_is_paired_message_by_message() {
    use mcp_interceptor_tests::http::{exchange, in_netns, post};
    use std::time::Duration;
    require_root();
    let (ns, dir) = (NetNs::new("ev-batch"), TempDir::new("ev-batch"));
    let _server = everything::server(ns.name(), "streamableHttp", 8080, dir.path());
    let agent = Agent::start(&ns, dir.path(), "", &port_cfg());
    let (init, batch) = in_netns(&ns, || {
        let addr = "127.0.0.1:8080".parse().unwrap();
        let limit = Duration::from_secs(10);
        let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"batcher","version":"0.1"}}}"#;
        let r = exchange(addr, &[&post("/mcp", init, &[])], Duration::ZERO, limit);
        let sid = r
            .head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("mcp-session-id:")
                    .map(|v| v.trim().to_string())
            })
            .expect("session id");
        let h = format!("Mcp-Session-Id: {sid}");
        let note = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        exchange(
            addr,
            &[&post(
                "/mcp",
                note,
                &[&h, "MCP-Protocol-Version: 2025-03-26"],
            )],
            Duration::ZERO,
            limit,
        );
        let batch = br#"[{"jsonrpc":"2.0","id":2,"method":"tools/list"},{"jsonrpc":"2.0","id":"three","method":"ping"}]"#;
        let b = exchange(
            addr,
            &[&post(
                "/mcp",
                batch,
                &[&h, "MCP-Protocol-Version: 2025-03-26"],
            )],
            Duration::ZERO,
            limit,
        );
        (r, b)
    });
    assert_eq!(init.status, 200, "{init:?}");
    assert_eq!(batch.status, 200, "{batch:?}");
    let events = agent.wait_events("both batch members", |ev| {
        count(ev, "exchange", "tools/list") == 1 && count(ev, "exchange", "ping") == 1
    });
    let ping = events.iter().find(|e| e["method"] == "ping").unwrap();
    assert_eq!(
        ping["jsonrpc_id"], "three",
        "string and number ids both paired"
    );
    assert_eq!(ping["client_name"], "batcher");
    let list = events.iter().find(|e| e["method"] == "tools/list").unwrap();
    assert!(
        list["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
    );
}
