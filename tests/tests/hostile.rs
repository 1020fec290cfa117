//! Hostile input through the steered port: request smuggling shapes,
//! obsolete line folding, NUL bytes, deeply nested JSON, odd JSON-RPC ids
//! and a batch of 10,000 messages each get a clear error (or a bounded
//! answer), never a hang or a crash; the next request still works.
//! (Bad JSON, invalid UTF-8, oversized bodies and heads, slow heads,
//! oversized server events and the stateless header/body mismatch are in
//! `mcp_rmcp.rs`; look-alike tool names and resource URI tricks in
//! `names.rs`; faults in `faults.rs`, `audit.rs` and
//! `steering_faults.rs`; 10,000 connections in `load.rs`.)

use std::{net::SocketAddr, time::Duration};

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir, bin,
    http::{RawResponse, exchange, in_netns, post},
    require_root,
};
use serde_json::{Value, json};

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

fn addr() -> SocketAddr {
    "127.0.0.1:8080".parse().unwrap()
}

fn send(ns: &NetNs, raw: Vec<u8>) -> RawResponse {
    in_netns(ns, move || {
        exchange(addr(), &[&raw], Duration::ZERO, Duration::from_secs(10))
    })
}

fn head_only(lines: &str, body: &str) -> Vec<u8> {
    format!("POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{lines}\r\n{body}")
        .into_bytes()
}

fn responses(r: &RawResponse) -> usize {
    let whole = format!("{}\r\n\r\n{}", r.head, String::from_utf8_lossy(&r.body));
    whole.matches("HTTP/1.1 ").count()
}

#[test]
fn hostile_requests_get_clear_errors_and_the_agent_stays_up() {
    require_root();
    let (ns, dir) = (NetNs::new("hostile"), TempDir::new("hostile"));
    let mut server = Proc::spawn(
        "server-json",
        Some(ns.name()),
        &bin("mcp-peer"),
        &["server", "--listen", "127.0.0.1:8080", "--json-response"].map(String::from),
        dir.path(),
    );
    server.wait_for_output("listening", Duration::from_secs(15));
    let agent = Agent::start(
        &ns,
        dir.path(),
        "",
        "[[intercept.ports]]\nport = 8080\n[http]\nmax_request_body = 4194304\n",
    );

    // Smuggling: Content-Length with Transfer-Encoding, a second request
    // hidden behind the first body. Refused; nothing after it is answered.
    let te_cl = send(
        &ns,
        head_only(
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\nPOST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        ),
    );
    assert_eq!(te_cl.status, 400, "{te_cl:?}");
    assert_eq!(
        responses(&te_cl),
        1,
        "the smuggled request is not answered: {te_cl:?}"
    );
    // Two different Content-Length values.
    let dup = send(
        &ns,
        head_only("Content-Length: 2\r\nContent-Length: 3\r\n", "{}"),
    );
    assert_eq!(dup.status, 400, "{dup:?}");
    // Obsolete line folding.
    let fold = send(
        &ns,
        head_only("X-Folded: a\r\n b\r\nContent-Length: 2\r\n", "{}"),
    );
    assert_eq!(fold.status, 400, "{fold:?}");
    // A NUL byte in a header value.
    let nul = send(&ns, head_only("X-Nul: a\0b\r\nContent-Length: 2\r\n", "{}"));
    assert_eq!(nul.status, 400, "{nul:?}");

    // JSON nested far deeper than any real message.
    let deep = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"text\":{}1{}}}}}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let r = send(&ns, post("/mcp", deep.as_bytes(), &[]));
    assert_eq!((r.status, r.code()), (400, -32700), "{r:?}");

    // Ids that are neither strings nor integers.
    for id in [json!({"a": 1}), json!([1]), json!(true), json!(1.5)] {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "ping"}).to_string();
        let r = send(&ns, post("/mcp", body.as_bytes(), &[]));
        assert_eq!((r.status, r.code()), (400, -32600), "id {id}: {r:?}");
    }

    // A NUL inside a JSON string is data, not a terminator: passed on,
    // and the server's answer comes back.
    let r = send(
        &ns,
        post(
            "/mcp",
            INIT.replace("\"raw\"", "\"ra\\u0000w\"").as_bytes(),
            &[],
        ),
    );
    assert_eq!(r.status, 200, "{r:?}");

    // 10,000 messages in one batch: refused before any is decided.
    let batch: Vec<Value> = (0..10_000)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "ping"}))
        .collect();
    let body = serde_json::to_vec(&batch).unwrap();
    let t = std::time::Instant::now();
    let r = send(&ns, post("/mcp", &body, &[]));
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!((r.status, r.code()), (400, -32600), "{}", r.head);
    let m = r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        m.contains("10000 messages") && m.contains("http.max_batch"),
        "{m}"
    );

    // Still serving.
    let ok = send(&ns, post("/mcp", INIT.as_bytes(), &[]));
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json()["result"]["serverInfo"]["name"], "mcp-peer");
    assert!(!agent.log().contains("panicked"), "{}", agent.log());
}
