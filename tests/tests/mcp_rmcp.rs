//! The MCP-aware data path with the rmcp SDK on both sides, through the
//! steered port: every message seen, paired with its answer, recorded.

use std::{net::SocketAddr, time::Duration};

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir, bin,
    http::{exchange, in_netns, post},
    peer::{self, call},
    require_root,
};
use serde_json::{Value, json};

const PORT: &str = "[[intercept.ports]]\nport = 8080\n";

fn find<'a>(events: &'a [Value], kind: &str, method: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["kind"] == kind && e["method"] == method)
        .collect()
}

/// The timestamps of a finished exchange are present and in order.
fn assert_timeline(e: &Value) {
    let t = |k: &str| {
        e[k].as_i64()
            .unwrap_or_else(|| panic!("{k} missing in {e}"))
    };
    let (r, f, b, d) = (
        t("received_us"),
        t("forwarded_us"),
        t("first_byte_us"),
        t("done_us"),
    );
    assert!(r <= f && f <= b && b <= d, "timeline out of order: {e}");
}

fn server_json(ns: &NetNs, dir: &TempDir) -> Proc {
    let args = vec![
        "server".into(),
        "--listen".into(),
        "127.0.0.1:8080".into(),
        "--json-response".into(),
    ];
    let mut p = Proc::spawn(
        "server-json",
        Some(ns.name()),
        &bin("mcp-peer"),
        &args,
        dir.path(),
    );
    p.wait_for_output("listening", Duration::from_secs(15));
    p
}

#[test]
fn rmcp_session_over_sse_is_seen_and_paired() {
    require_root();
    let (ns, dir) = (NetNs::new("rmcp-sse"), TempDir::new("rmcp-sse"));
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let agent = Agent::start(&ns, dir.path(), "", PORT);

    let out = call(
        ns.name(),
        "http://127.0.0.1:8080/mcp",
        "lookup_customer",
        json!({ "id": "c-7" }),
    );
    let text = out.text();
    assert!(text.contains("c-7"), "{text}");

    let events = agent.wait_events("the session to close", |ev| {
        ev.iter().any(|e| e["kind"] == "session_closed")
    });
    let init = find(&events, "exchange", "initialize");
    assert_eq!(init.len(), 1, "{events:#?}");
    let session = init[0]["session_id"]
        .as_str()
        .expect("initialize is bound to the new session")
        .to_string();
    assert_eq!(init[0]["transport"], "streamable-http");
    assert!(
        init[0]["client_name"].as_str().is_some(),
        "client info captured: {}",
        init[0]
    );
    assert_eq!(
        init[0]["protocol_version"],
        init[0]["result"]["protocolVersion"]
    );

    let list = find(&events, "exchange", "tools/list");
    assert_eq!(list.len(), 1);
    let tools: Vec<&str> = list[0]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(tools.contains(&"lookup_customer"), "{tools:?}");

    let calls = find(&events, "exchange", "tools/call");
    assert_eq!(calls.len(), 1);
    let c = calls[0];
    assert_eq!(c["target"], "lookup_customer");
    assert_eq!(c["params"]["arguments"]["id"], "c-7");
    assert_eq!(
        c["result"]["content"][0]["text"].as_str(),
        Some(text.as_str()),
        "recorded result is what the client got"
    );
    assert_eq!(c["session_id"], session.as_str());
    assert_eq!(c["http_status"], 200);
    assert!(
        c["bytes_in"].as_u64().unwrap() > 0 && c["bytes_out"].as_u64().unwrap() > 0,
        "{c}"
    );
    for e in init.iter().chain(&list).chain(&calls) {
        assert_timeline(e);
        assert_eq!(e["session_id"], session.as_str());
        assert_eq!(e["protocol_version"], init[0]["protocol_version"]);
    }
    assert_eq!(
        find(&events, "notification", "notifications/initialized").len(),
        1
    );
    let bad: Vec<_> = events
        .iter()
        .filter(|e| {
            matches!(
                e["kind"].as_str(),
                Some("unanswered" | "unpaired" | "rejected")
            )
        })
        .collect();
    assert!(bad.is_empty(), "every message paired: {bad:#?}");
    assert!(
        agent
            .log()
            .contains("method=tools/call target=lookup_customer"),
        "{}",
        agent.log()
    );
}

#[test]
fn rmcp_json_responses_without_session_are_paired() {
    require_root();
    let (ns, dir) = (NetNs::new("rmcp-json"), TempDir::new("rmcp-json"));
    let _server = server_json(&ns, &dir);
    let agent = Agent::start(&ns, dir.path(), "", PORT);
    let out = call(
        ns.name(),
        "http://127.0.0.1:8080/mcp",
        "add",
        json!({ "a": 2, "b": 40 }),
    );
    assert_eq!(out.text(), "42");
    let events = agent.wait_events("the call", |ev| {
        !find(ev, "exchange", "tools/call").is_empty()
    });
    let c = find(&events, "exchange", "tools/call")[0];
    assert_eq!(c["result"]["content"][0]["text"], "42");
    assert_eq!(c["session_id"], Value::Null, "no session in JSON mode");
    assert_timeline(c);
    assert_eq!(find(&events, "exchange", "initialize").len(), 1);
    assert_eq!(find(&events, "exchange", "tools/list").len(), 1);
    assert!(
        events
            .iter()
            .all(|e| e["kind"] != "unanswered" && e["kind"] != "unpaired"),
        "{events:#?}"
    );
}

fn addr() -> SocketAddr {
    "127.0.0.1:8080".parse().unwrap()
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

#[test]
fn bad_input_gets_documented_errors_and_the_next_request_works() {
    require_root();
    let (ns, dir) = (NetNs::new("badin"), TempDir::new("badin"));
    let _server = server_json(&ns, &dir);
    let agent = Agent::start(
        &ns,
        dir.path(),
        "",
        &format!("{PORT}\n[http]\nmax_request_body = 2048\nheader_read_timeout_ms = 400\n"),
    );
    let limit = Duration::from_secs(5);
    let none = Duration::ZERO;
    let results = in_netns(&ns, move || {
        let bad_json = exchange(
            addr(),
            &[&post("/mcp", b"{\"jsonrpc\": \"2.0\", oops", &[])],
            none,
            limit,
        );
        let bad_utf8 = exchange(
            addr(),
            &[&post(
                "/mcp",
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\xfe\"}",
                &[],
            )],
            none,
            limit,
        );
        let not_rpc = exchange(addr(), &[&post("/mcp", b"{\"hello\":1}", &[])], none, limit);
        let big = vec![b' '; 4096];
        let too_big = exchange(addr(), &[&post("/mcp", &big, &[])], none, limit);
        let slow = exchange(
            addr(),
            &[
                b"POST /mcp HTTP/1.1\r\nHost: x\r\n",
                b"Content-Type: application/json\r\n",
            ],
            Duration::from_millis(900),
            limit,
        );
        let ok = exchange(addr(), &[&post("/mcp", INIT.as_bytes(), &[])], none, limit);
        (bad_json, bad_utf8, not_rpc, too_big, slow, ok)
    });
    let (bad_json, bad_utf8, not_rpc, too_big, slow, ok) = results;
    assert_eq!(
        (bad_json.status, bad_json.code()),
        (400, -32700),
        "{bad_json:?}"
    );
    assert_eq!(
        (bad_utf8.status, bad_utf8.code()),
        (400, -32700),
        "{bad_utf8:?}"
    );
    assert_eq!(
        (not_rpc.status, not_rpc.code()),
        (400, -32600),
        "{not_rpc:?}"
    );
    assert_eq!(
        (too_big.status, too_big.code()),
        (413, -32004),
        "{too_big:?}"
    );
    assert_eq!((slow.status, slow.code()), (408, -32004), "{slow:?}");
    assert_eq!(ok.status, 200, "a good request still works: {ok:?}");
    assert_eq!(ok.json()["result"]["serverInfo"]["name"], "mcp-peer");
    let rejected = agent.wait_events("rejections", |ev| {
        ev.iter().filter(|e| e["kind"] == "rejected").count() >= 4
    });
    let statuses: Vec<u64> = rejected
        .iter()
        .filter(|e| e["kind"] == "rejected")
        .filter_map(|e| e["http_status"].as_u64())
        .collect();
    assert_eq!(
        statuses,
        vec![400, 400, 400, 413],
        "each rejection recorded"
    );
    let log = agent.log();
    assert!(
        log.contains("mcp request rejected")
            && log.contains("request head not received in time: 408"),
        "{log}"
    );
}

#[test]
fn stateless_header_mismatch_is_refused_before_the_server() {
    require_root();
    let (ns, dir) = (NetNs::new("stateless"), TempDir::new("stateless"));
    let _server = server_json(&ns, &dir);
    let agent = Agent::start(&ns, dir.path(), "", PORT);
    let body = br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let limit = Duration::from_secs(5);
    let (wrong_name, wrong_method) = in_netns(&ns, move || {
        let h1 = [
            "MCP-Protocol-Version: 2026-07-28",
            "Mcp-Method: tools/call",
            "Mcp-Name: echo",
        ];
        let h2 = ["MCP-Protocol-Version: 2026-07-28", "Mcp-Method: tools/list"];
        (
            exchange(addr(), &[&post("/mcp", body, &h1)], Duration::ZERO, limit),
            exchange(addr(), &[&post("/mcp", body, &h2)], Duration::ZERO, limit),
        )
    });
    assert_eq!(
        (wrong_name.status, wrong_name.code()),
        (400, -32020),
        "{wrong_name:?}"
    );
    assert_eq!(
        wrong_name.json()["error"]["data"]["mismatch"]["header"],
        "Mcp-Name"
    );
    assert_eq!(
        wrong_method.json()["error"]["data"]["mismatch"]["header"],
        "Mcp-Method"
    );
    // Each a `denied` row naming the call, decided by the header check.
    let events = agent.wait_events("two refusals", |ev| {
        ev.iter().filter(|e| e["kind"] == "denied").count() == 2
    });
    assert!(
        events.iter().all(|e| e["transport"] == "stateless"),
        "{events:#?}"
    );
    assert!(
        events.iter().all(|e| e["kind"] != "denied"
            || (e["decided_by"] == "headers" && e["method"] == "tools/call")),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["method"] != "tools/call" || e["kind"] == "denied"),
        "never forwarded"
    );
}

#[test]
fn upstream_down_gets_502_with_a_json_rpc_error() {
    require_root();
    let (ns, dir) = (NetNs::new("updown"), TempDir::new("updown"));
    let mut server = server_json(&ns, &dir);
    let agent = Agent::start(&ns, dir.path(), "", PORT);
    server.stop(15, Duration::from_secs(10));
    let limit = Duration::from_secs(5);
    let resp = in_netns(&ns, move || {
        exchange(
            addr(),
            &[&post("/mcp", INIT.as_bytes(), &[])],
            Duration::ZERO,
            limit,
        )
    });
    assert_eq!(resp.status, 502, "{resp:?}");
    assert_eq!(resp.code(), -32005);
    assert_eq!(resp.json()["id"], 1, "the error answers the request by id");
    let events = agent.wait_events("the unanswered request", |ev| {
        ev.iter().any(|e| e["kind"] == "unanswered")
    });
    let u = events.iter().find(|e| e["kind"] == "unanswered").unwrap();
    assert_eq!(
        (u["method"].as_str(), u["http_status"].as_u64()),
        (Some("initialize"), Some(502))
    );
}

#[test]
fn oversized_heads_get_431_and_oversized_server_events_are_cut() {
    require_root();
    let (ns, dir) = (NetNs::new("limits"), TempDir::new("limits"));
    let _server = peer::server(ns.name(), "127.0.0.1:8080", dir.path());
    let agent = Agent::start(
        &ns,
        dir.path(),
        "",
        &format!("{PORT}\n[http]\nmax_headers = 20\nmax_message = 4096\n"),
    );
    let limit = Duration::from_secs(5);
    let (many, huge) = in_netns(&ns, move || {
        let names: Vec<String> = (0..40).map(|i| format!("X-Filler-{i}: {i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let many = exchange(
            addr(),
            &[&post("/mcp", INIT.as_bytes(), &refs)],
            Duration::ZERO,
            limit,
        );
        let big = format!("X-Big: {}", "a".repeat(80 * 1024));
        let huge = exchange(
            addr(),
            &[&post("/mcp", INIT.as_bytes(), &[&big])],
            Duration::ZERO,
            limit,
        );
        (many, huge)
    });
    assert_eq!(many.status, 431, "{many:?}");
    assert_eq!(huge.status, 431, "{huge:?}");

    // A tool result bigger than max_message: the SSE event is never relayed;
    // the client gets a JSON-RPC error for its request instead.
    let small = call(
        ns.name(),
        "http://127.0.0.1:8080/mcp",
        "echo",
        json!({ "text": "fits" }),
    );
    assert_eq!(small.text(), "fits");
    // (The tool list itself, a few KiB, must still fit.)
    let big = call(
        ns.name(),
        "http://127.0.0.1:8080/mcp",
        "echo",
        json!({ "text": "y".repeat(6000) }),
    );
    assert!(!big.ok(), "the oversized answer must not reach the client");
    assert!(
        big.stderr().contains("-32005") || big.stderr().contains("exceeded"),
        "{}",
        big.stderr()
    );
    let events = agent.wait_events("the cut exchange", |ev| {
        ev.iter()
            .any(|e| e["kind"] == "unanswered" && e["target"] == "echo")
    });
    let cut = events
        .iter()
        .find(|e| e["kind"] == "unanswered" && e["target"] == "echo")
        .unwrap();
    assert_eq!(cut["error"]["code"], -32005, "{cut}");
    assert!(agent.log().contains("upstream SSE stream cut"));
}

#[test]
fn listed_paths_pass_through_and_are_logged() {
    require_root();
    let (ns, dir) = (NetNs::new("other"), TempDir::new("other"));
    let _server = server_json(&ns, &dir);
    let port = format!("{PORT}pass_through = [\"/healthz\"]\n");
    let agent = Agent::start(&ns, dir.path(), "", &port);
    let limit = Duration::from_secs(5);
    let resp = in_netns(&ns, move || {
        let req = b"GET /healthz?probe=1 HTTP/1.1\r\nHost: mcp.test\r\nConnection: close\r\n\r\n";
        exchange(addr(), &[req], Duration::ZERO, limit)
    });
    assert_eq!(
        resp.status, 404,
        "the server's own answer, unchanged: {resp:?}"
    );
    mcp_interceptor_tests::wait_for("the pass-through log line", Duration::from_secs(5), || {
        agent
            .log()
            .lines()
            .find(|l| {
                l.contains("http pass-through")
                    && l.contains("path=/healthz")
                    && l.contains("status=404")
            })
            .map(|_| ())
    });
    assert!(
        agent
            .events()
            .iter()
            .all(|e| e["method"].is_null() || e["kind"] != "exchange"),
        "no MCP event for it"
    );
}
