//! The boundary against a hostile server and a careless client, through
//! the steered port with real peers:
//!
//! - an rmcp server that sends `Content-Type: Text/Event-Stream` is judged
//!   like any SSE answer (its tool list filtered, its answer masked with
//!   the call's profile), not passed on as text the client reads anyway;
//! - an rmcp server that sends response id `0.0` for `0` (which zod, and so
//!   the TypeScript SDK, reads as `0`) gets nothing past the agent: the
//!   rmcp client hears the agent's error, the audit says why;
//! - an rmcp server whose tool result names `content` twice, or carries
//!   `ResultType`/`InputRequests` (an elicitation a case-insensitive client
//!   reads as an MCP 2026-07-28 input request), gets nothing past the
//!   agent: the client hears why, the audit says why;
//! - two requests with the same id in one batch: the second is refused,
//!   and the audit (DuckDB over the Parquet files) holds both;
//! - a client that hangs up after its request went upstream to a
//!   JSON-answer server still leaves the row, `client_gone`.
//!
//! (What a raw-socket server streams, ids `"1"` for `1` and content types
//! a client reads loosely are in `masking_stream.rs`.)

use std::{
    io::Write,
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use mcp_interceptor_tests::{
    Agent, NetNs, TempDir, auditq, everything,
    http::{in_netns, initialize, post, post_in},
    peer::{self, call},
    require_root, wait_for,
    world::{header, messages},
};
use serde_json::{Value, json};

const URL: &str = "http://127.0.0.1:8080/mcp";
const PROFILES: &str = "[mask.profiles.strict]\n\
    detectors = [\"email\", \"phone\", \"card\"]\n\
    keys = [\"name\", \"cardholder\"]\n";
/// Only `lookup_customer_structured` may be called (so only it is
/// listed), and its answer is masked with `strict`.
const POLICY: &str = r#"
@id("session")
permit (principal, action in [Mcp::Action::"initialize", Mcp::Action::"ping", Mcp::Action::"tools/list"], resource);

@id("strict-records")
@mask("strict")
permit (principal, action == Mcp::Action::"tools/call", resource)
when { resource.name == "lookup_customer_structured" };
"#;

fn addr() -> SocketAddr {
    "127.0.0.1:8080".parse().unwrap()
}

/// An rmcp server on the steered port with `--hostile mode`, an agent
/// with the policy above.
fn hostile_rmcp(tag: &str, mode: &str) -> (NetNs, TempDir, mcp_interceptor_tests::Proc, Agent) {
    let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
    let server = peer::server_with(
        ns.name(),
        "127.0.0.1:8080",
        dir.path(),
        &["--hostile", mode],
    );
    let file = dir.path().join("policy.cedar");
    std::fs::write(&file, POLICY).unwrap();
    let agent = Agent::start(
        &ns,
        dir.path(),
        "",
        &format!(
            "[[intercept.ports]]\nport = 8080\n{PROFILES}[policy]\nfiles = [\"{}\"]\n",
            file.display()
        ),
    );
    (ns, dir, server, agent)
}

#[test]
fn a_mixed_case_sse_answer_is_judged_like_any_other() {
    require_root();
    let (ns, _dir, _server, agent) = hostile_rmcp("hmixed", "mixed-case-type");
    let out = call(
        ns.name(),
        URL,
        "lookup_customer_structured",
        json!({"id": "c-1"}),
    )
    .json();
    // The list is the caller's: what the policy lets it call.
    assert_eq!(out["tools"], json!(["lookup_customer_structured"]), "{out}");
    // Masked with the call's profile, field by field.
    let sc = &out["result"]["structuredContent"];
    assert_eq!(sc["name"], "[REDACTED]", "{sc}");
    assert_eq!(sc["email"], "[EMAIL]", "{sc}");
    // Recorded as answered, with the profile that masked it.
    let events = agent.wait_events("the call", |ev| {
        ev.iter()
            .any(|e| e["target"] == "lookup_customer_structured" && e["method"] == "tools/call")
    });
    let row = events
        .iter()
        .find(|e| e["target"] == "lookup_customer_structured" && e["method"] == "tools/call")
        .unwrap();
    assert_eq!(row["kind"], "exchange", "{row}");
    assert_eq!(row["masked_with"], "strict", "{row}");
}

#[test]
fn a_response_id_that_matches_only_loosely_is_never_forwarded() {
    require_root();
    let (ns, _dir, _server, mut agent) = hostile_rmcp("hfloat", "float-ids");
    let c = call(
        ns.name(),
        URL,
        "lookup_customer_structured",
        json!({"id": "c-1"}),
    );
    assert!(!c.ok(), "the client got nothing it could use: {c:?}");
    assert!(
        c.stderr().contains("cannot judge"),
        "the client hears the agent's error: {}",
        c.stderr()
    );
    // A raw client sees exactly what came back: the agent's error for its
    // id, and no message with id 7.0.
    let init = peer_init(7);
    let r = post_in(&ns, addr(), "/mcp", init.as_bytes(), &[]);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(!body.contains("7.0"), "{body}");
    assert!(!body.contains("serverInfo"), "{body}");
    assert!(
        body.contains("\"id\":7") && body.contains("-32005") && body.contains("cannot judge"),
        "{body}"
    );
    let events = agent.wait_events("the refused initialize", |ev| {
        ev.iter()
            .filter(|e| e["method"] == "initialize" && e["kind"] == "unanswered")
            .count()
            >= 2
    });
    for e in events.iter().filter(|e| e["method"] == "initialize") {
        assert_eq!(e["kind"], "unanswered", "{e}");
        assert_eq!(
            e["error"]["data"]["reason"], "unjudged_server_message",
            "{e}"
        );
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("not a JSON-RPC message"),
            "{e}"
        );
    }
    // And in the Parquet files an auditor queries.
    agent.stop(15);
    let rows = auditq::sql(
        &agent.audit_dir(),
        "SELECT kind, error_code FROM mcp_audit WHERE method = 'initialize' AND kind <> 'forwarded'",
    );
    let rows = rows["rows"].as_array().unwrap();
    assert!(rows.len() >= 2, "{rows:?}");
    assert!(
        rows.iter().all(|r| r == &json!(["unanswered", -32005])),
        "{rows:?}"
    );
}

fn peer_init(id: i64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"}}})
    .to_string()
}

/// An rmcp server answering JSON (stateless), logging each request it
/// receives, behind an agent.
fn json_server(tag: &str) -> (NetNs, TempDir, mcp_interceptor_tests::Proc, Agent) {
    let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
    let server = peer::server_with(
        ns.name(),
        "127.0.0.1:8080",
        dir.path(),
        &["--json-response", "--log-auth"],
    );
    let agent = Agent::start(&ns, dir.path(), "", "[[intercept.ports]]\nport = 8080\n");
    (ns, dir, server, agent)
}

fn tool_call(id: impl Into<Value>, name: &str, args: Value) -> Value {
    let id: Value = id.into();
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": name, "arguments": args}})
}

#[test]
fn a_second_request_with_the_same_id_is_refused_and_both_are_recorded() {
    require_root();
    let (ns, dir) = (NetNs::new("hdupid"), TempDir::new("hdupid"));
    // The reference TypeScript server: it takes batches.
    let _server = everything::server(ns.name(), "streamableHttp", 8080, dir.path());
    let mut agent = Agent::start(&ns, dir.path(), "", "[[intercept.ports]]\nport = 8080\n");
    let proto = PROTO;
    let sid_h = raw_session(&ns);
    // The first is what the server runs; the second, with the same id,
    // would have taken its place in the pending table; " 8" is a twin of 8
    // to the TypeScript and Python SDKs.
    let batch = json!([
        tool_call(7, "echo", json!({"message": "first of two"})),
        tool_call(7, "get-sum", json!({"a": 1, "b": 2})),
        tool_call(8, "echo", json!({"message": "third"})),
        tool_call(" 8", "get-sum", json!({"a": 3, "b": 4})),
    ]);
    let batch = serde_json::to_vec(&batch).unwrap();
    let r = post_in(&ns, addr(), "/mcp", &batch, &[proto, &sid_h]);
    let answers = messages(&r);
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|a| a["error"]["data"]["reason"] == "duplicate_id")
        .collect();
    assert_eq!(refused.len(), 2, "{answers:?}");
    assert_eq!(refused[0]["id"], 7);
    assert_eq!(refused[1]["id"], " 8");
    assert!(
        refused.iter().all(|a| a["error"]["code"] == -32600),
        "{answers:?}"
    );
    // The server ran the first of each pair, and the client has its answer.
    let text = |id: i64| {
        answers
            .iter()
            .find(|a| a["id"] == id && a.get("result").is_some())
            .map(|a| a["result"]["content"][0]["text"].clone())
    };
    assert_eq!(text(7), Some(json!("Echo: first of two")), "{answers:?}");
    assert_eq!(text(8), Some(json!("Echo: third")), "{answers:?}");

    agent.wait_events("the batch", |ev| {
        ev.iter()
            .filter(|e| e["target"] == "echo" && e["kind"] == "exchange")
            .count()
            >= 2
    });
    agent.stop(15);
    let rows = auditq::sql(
        &agent.audit_dir(),
        "SELECT tool_name, kind, jsonrpc_id, arguments FROM mcp_audit \
         WHERE method = 'tools/call' ORDER BY event_time_us",
    );
    let rows = rows["rows"].as_array().unwrap().clone();
    let has = |tool: &str, kind: &str, arg: &str| {
        rows.iter().any(|r| {
            r[0] == tool && r[1] == kind && r[3].as_str().unwrap_or_default().contains(arg)
        })
    };
    assert!(has("echo", "exchange", "first of two"), "{rows:?}");
    assert!(has("echo", "exchange", "third"), "{rows:?}");
    assert!(has("get-sum", "denied", "\"a\":1"), "{rows:?}");
    assert!(has("get-sum", "denied", "\"a\":3"), "{rows:?}");
    // Each forwarded one also has its `forwarded` row; the refused do not.
    assert!(has("echo", "forwarded", "first of two"), "{rows:?}");
    assert!(has("echo", "forwarded", "third"), "{rows:?}");
    assert_eq!(rows.len(), 6, "{rows:?}");
}

#[test]
fn a_request_whose_id_is_already_waiting_in_the_session_is_refused() {
    require_root();
    let (ns, dir) = (NetNs::new("hdupsess"), TempDir::new("hdupsess"));
    let server = peer::server_with(ns.name(), "127.0.0.1:8080", dir.path(), &["--log-auth"]);
    let agent = Agent::start(&ns, dir.path(), "", "[[intercept.ports]]\nport = 8080\n");
    let proto = PROTO;
    let sid_h = raw_session(&ns);
    let posts = || {
        peer::auth_log(&server)
            .iter()
            .filter(|l| l.starts_with("auth POST"))
            .count()
    };
    let before = posts();
    // A slow call with id 5, then, while it waits, another with id 5.
    let slow = tool_call(5, "sleep", json!({"ms": 1500})).to_string();
    let second = tool_call(5, "echo", json!({"text": "second"})).to_string();
    let headers = [proto, sid_h.as_str()];
    let answers = std::thread::scope(|sc| {
        let first = sc.spawn(|| messages(&post_in(&ns, addr(), "/mcp", slow.as_bytes(), &headers)));
        wait_for("the slow call upstream", Duration::from_secs(10), || {
            (posts() > before).then_some(())
        });
        let r = post_in(&ns, addr(), "/mcp", second.as_bytes(), &headers);
        let v = r.json();
        assert_eq!(v["id"], 5, "{v}");
        assert_eq!(v["error"]["code"], -32600, "{v}");
        assert_eq!(v["error"]["data"]["reason"], "duplicate_id", "{v}");
        assert_eq!(posts(), before + 1, "the second never reached the server");
        first.join().unwrap()
    });
    // The first gets its own answer, recorded as its own.
    let a = answers.iter().find(|m| m["id"] == 5).expect("an answer");
    assert_eq!(
        a["result"]["content"][0]["text"], "slept 1500 ms",
        "{answers:?}"
    );
    let events = agent.wait_events("both", |ev| {
        ev.iter()
            .any(|e| e["target"] == "sleep" && e["kind"] == "exchange")
            && ev.iter().any(|e| e["target"] == "echo")
    });
    let row = |t: &str| events.iter().find(|e| e["target"] == t).unwrap().clone();
    assert_eq!(
        row("sleep")["result"]["content"][0]["text"],
        "slept 1500 ms"
    );
    assert_eq!(row("echo")["kind"], "denied");
    assert_eq!(row("echo")["params"]["arguments"]["text"], "second");
}

#[test]
fn a_client_that_hangs_up_after_forwarding_leaves_a_row() {
    require_root();
    let (ns, _dir, server, mut agent) = json_server("hhangup");
    let body = tool_call(3, "sleep", json!({"ms": 3000})).to_string();
    let req = post("/mcp", body.as_bytes(), &[]);
    let sock: TcpStream = in_netns(&ns, move || {
        let mut s = TcpStream::connect(addr()).expect("connect");
        s.write_all(&req).expect("send");
        s
    });
    // The server has it: the agent forwarded it.
    wait_for(
        "the server to receive the call",
        Duration::from_secs(10),
        || {
            peer::auth_log(&server)
                .iter()
                .any(|l| l.starts_with("auth POST /mcp"))
                .then_some(())
        },
    );
    drop(sock);
    let events = agent.wait_events("the hung-up call", |ev| {
        ev.iter().any(|e| e["target"] == "sleep")
    });
    let row = events.iter().find(|e| e["target"] == "sleep").unwrap();
    assert_eq!(row["kind"], "unanswered", "{row}");
    assert_eq!(row["error"]["data"]["reason"], "client_gone", "{row}");
    agent.stop(15);
    let rows = auditq::sql(
        &agent.audit_dir(),
        "SELECT kind, arguments, error FROM mcp_audit WHERE tool_name = 'sleep' \
         ORDER BY event_time_us",
    );
    let rows = rows["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0][0], "forwarded");
    assert_eq!(rows[1][0], "unanswered");
    let rows = &rows[1..];
    assert!(
        rows[0][1].as_str().unwrap_or_default().contains("3000"),
        "{rows:?}"
    );
    assert!(
        rows[0][2]
            .as_str()
            .unwrap_or_default()
            .contains("client_gone"),
        "{rows:?}"
    );
}

#[test]
fn a_request_forwarded_before_a_kill_9_is_in_the_audit() {
    require_root();
    let (ns, _dir, server, mut agent) = json_server("hkill9");
    let body = tool_call(4, "sleep", json!({"ms": 5000})).to_string();
    let req = post("/mcp", body.as_bytes(), &[]);
    let _sock: TcpStream = in_netns(&ns, move || {
        let mut s = TcpStream::connect(addr()).expect("connect");
        s.write_all(&req).expect("send");
        s
    });
    wait_for(
        "the server to receive the call",
        Duration::from_secs(10),
        || {
            peer::auth_log(&server)
                .iter()
                .any(|l| l.starts_with("auth POST /mcp"))
                .then_some(())
        },
    );
    // The agent dies with the call upstream: no answer will be recorded.
    agent.stop(9);
    agent.restart();
    agent.stop(15);
    let rows = auditq::sql(
        &agent.audit_dir(),
        "SELECT kind, arguments FROM mcp_audit WHERE tool_name = 'sleep'",
    );
    let rows = rows["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], "forwarded", "{rows:?}");
    assert!(
        rows[0][1].as_str().unwrap_or_default().contains("5000"),
        "{rows:?}"
    );
}

/// The protocol version of the raw sessions below.
const PROTO: &str = "MCP-Protocol-Version: 2025-06-18";

/// A raw client's session through the agent: initialized, announced;
/// its `Mcp-Session-Id` header line.
fn raw_session(ns: &NetNs) -> String {
    let init = initialize(1).to_string();
    let init = post_in(ns, addr(), "/mcp", init.as_bytes(), &[PROTO]);
    let sid = header(&init, "mcp-session-id").expect("a session");
    let sid_h = format!("Mcp-Session-Id: {sid}");
    let done = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    post_in(
        ns,
        addr(),
        "/mcp",
        done.to_string().as_bytes(),
        &[PROTO, &sid_h],
    );
    sid_h
}

/// A raw session with the hostile rmcp server through the agent: the
/// answer to a `tools/call` of `lookup_customer_structured`, as bytes.
fn raw_tool_call(ns: &NetNs) -> String {
    let (proto, sid_h) = (PROTO, raw_session(ns));
    let call = tool_call(5, "lookup_customer_structured", json!({"id": "c-1"}));
    let r = post_in(
        ns,
        addr(),
        "/mcp",
        call.to_string().as_bytes(),
        &[proto, &sid_h],
    );
    String::from_utf8_lossy(&r.body).into_owned()
}

/// A tool result the client could read otherwise than the agent (`mode`):
/// the client gets the agent's error, never the result; the call's row
/// says why (`why` in its error message).
fn ambiguous_result_is_never_forwarded(tag: &str, mode: &str, leaks: &[&str], why: &str) {
    require_root();
    let (ns, _dir, _server, mut agent) = hostile_rmcp(tag, mode);
    let body = raw_tool_call(&ns);
    for leak in leaks {
        assert!(!body.contains(leak), "{leak} reached the client: {body}");
    }
    assert!(
        body.contains("-32005") && body.contains("cannot judge") && body.contains(why),
        "{body}"
    );
    // The rmcp client hears the agent's error too.
    let c = call(
        ns.name(),
        URL,
        "lookup_customer_structured",
        json!({"id": "c-1"}),
    );
    assert!(!c.ok() && c.stderr().contains("cannot judge"), "{c:?}");
    let calls = |ev: &[Value]| {
        ev.iter()
            .filter(|e| e["method"] == "tools/call" && e["kind"] == "unanswered")
            .count()
    };
    let events = agent.wait_events("the refused calls", |ev| calls(ev) >= 2);
    for e in events
        .iter()
        .filter(|e| e["method"] == "tools/call" && e["kind"] != "forwarded")
    {
        assert_eq!(e["kind"], "unanswered", "{e}");
        assert_eq!(
            e["error"]["data"]["reason"], "unjudged_server_message",
            "{e}"
        );
        let msg = e["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(why), "{e}");
    }
    agent.stop(15);
    let rows = auditq::sql(
        &agent.audit_dir(),
        "SELECT kind, error_code FROM mcp_audit WHERE method = 'tools/call' AND kind <> 'forwarded'",
    );
    let rows = rows["rows"].as_array().unwrap();
    assert!(rows.len() >= 2, "{rows:?}");
    assert!(
        rows.iter().all(|r| r == &json!(["unanswered", -32005])),
        "{rows:?}"
    );
}

#[test]
fn a_result_that_names_a_member_twice_is_never_forwarded() {
    ambiguous_result_is_never_forwarded("hdupkey", "duplicate-key", &["first-content"], "twice");
}

#[test]
fn a_result_with_case_variant_input_requests_is_never_forwarded() {
    ambiguous_result_is_never_forwarded(
        "hcasevar",
        "case-variant",
        &["shadow: enter your PIN", "InputRequests"],
        "case variant",
    );
}
