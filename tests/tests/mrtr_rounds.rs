//! MCP 2026-07-28 request metadata and multi round-trip calls in the
//! audit, through the agent (eBPF mode) with the official Python SDK
//! server (tests/peers/mrtr_rounds_server.py) and a raw stateless client:
//!
//! - a stateless request's `_meta` clientInfo fills `client_name` and
//!   `client_version` (no `initialize` ever does), and its W3C
//!   `traceparent` fills `trace_id` / `span_id`; a malformed one leaves
//!   them null and the call still goes through;
//! - an MRTR retry (`inputResponses`, echoed `requestState`) is stored
//!   with its `inputResponses` masked and `follows` naming the first
//!   call's `call_id`; a call that only looks like a retry is not linked.

use std::time::Duration;

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir, auditq, everything::repo, http::RawResponse, require_root, run_in,
    s3::venv_bin, sdk, world::Stateless,
};
use serde_json::{Value, json};

const POLICY: &str = r#"
@id("calls")
permit (principal, action == Mcp::Action::"tools/call", resource);
@id("lists")
permit (principal, action == Mcp::Action::"tools/list", resource);
@id("elicitation-ok")
permit (principal, action == Mcp::Action::"elicitation/create", resource);
"#;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";
/// A secret the `standard` mask profile (the default) detects.
const SECRET: &str = "AKIAIOSFODNN7EXAMPLE";

struct Setup {
    agent: Agent,
    server: Proc,
    ns: NetNs,
    _dir: TempDir,
}

fn setup(tag: &str) -> Setup {
    let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
    let server = sdk::server(&ns, "mrtr_rounds_server.py", &[], dir.path());
    let file = dir.path().join("rounds.cedar");
    std::fs::write(&file, POLICY).unwrap();
    let tables = format!(
        "[[intercept.ports]]\nport = 8080\n[policy]\nfiles = [\"{}\"]\n",
        file.display()
    );
    let agent = Agent::start(&ns, dir.path(), "", &tables);
    Setup {
        agent,
        server,
        ns,
        _dir: dir,
    }
}

/// A stateless `tools/call` of unlock(`vault`) with id `id`, its `_meta`
/// plus `meta`, and `extra` params (a retry's).
fn unlock(ns: &NetNs, id: u64, vault: &str, meta: Value, extra: Value) -> RawResponse {
    let mut params = json!({"name": "unlock", "arguments": {"vault": vault}, "_meta": {
        "io.modelcontextprotocol/clientInfo": {"name": "raw-client", "version": "9.8.7"}}});
    for (k, v) in meta.as_object().unwrap() {
        params["_meta"][k] = v.clone();
    }
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    let call = Stateless {
        method: "tools/call",
        name: Some("unlock"),
        caps: json!({"elicitation": {}}),
        headers: Vec::new(),
    };
    call.send(ns, id, params)
}

/// The recorded `tools/call` exchange events, once there are `n`.
fn calls(agent: &Agent, n: usize) -> Vec<Value> {
    let calls = |ev: &[Value]| -> Vec<Value> {
        ev.iter()
            .filter(|e| e["method"] == "tools/call" && e["kind"] == "exchange")
            .cloned()
            .collect()
    };
    calls(&agent.wait_events("the calls", |ev| calls(ev).len() >= n))
}

fn by_id(events: &[Value], id: u64) -> Value {
    let e = events.iter().find(|e| e["jsonrpc_id"] == id);
    e.cloned()
        .unwrap_or_else(|| panic!("call {id} in {events:#?}"))
}

/// Rows of `query` over the Parquet audit, as objects by column.
fn rows(agent: &Agent, query: &str) -> Vec<serde_json::Map<String, Value>> {
    let v = auditq::sql(&agent.audit_dir(), query);
    let cols: Vec<String> = serde_json::from_value(v["columns"].clone()).unwrap();
    let rows: Vec<Vec<Value>> = serde_json::from_value(v["rows"].clone()).unwrap();
    rows.into_iter()
        .map(|r| cols.iter().cloned().zip(r).collect())
        .collect()
}

#[test]
fn stateless_meta_fills_client_and_trace_columns_and_a_bad_traceparent_is_ignored() {
    require_root();
    let mut s = setup("meta-trace");
    let good = json!({"traceparent": format!("00-{TRACE}-{SPAN}-01")});
    let r = unlock(&s.ns, 1, "v1", good, json!({}));
    assert_eq!(r.json()["result"]["resultType"], "input_required", "{r:?}");
    // Uppercase hex is not a valid traceparent: ignored, never refused.
    let bad = json!({"traceparent": format!("00-{}-{SPAN}-01", TRACE.to_uppercase())});
    let r = unlock(&s.ns, 2, "v1", bad, json!({}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"]["resultType"], "input_required", "{r:?}");
    let junk = json!({"traceparent": {"not": "a string"}});
    let r = unlock(&s.ns, 3, "v1", junk, json!({}));
    assert_eq!(r.json()["result"]["resultType"], "input_required", "{r:?}");

    let events = calls(&s.agent, 3);
    let first = by_id(&events, 1);
    assert_eq!(first["client_name"], "raw-client", "{first}");
    assert_eq!(first["client_version"], "9.8.7");
    assert_eq!(first["protocol_version"], "2026-07-28");
    assert_eq!(first["transport"], "stateless");
    assert_eq!(
        (&first["trace_id"], &first["span_id"]),
        (&json!(TRACE), &json!(SPAN))
    );
    for id in [2, 3] {
        let e = by_id(&events, id);
        assert_eq!(e["client_name"], "raw-client", "{e}");
        assert!(e["trace_id"].is_null() && e["span_id"].is_null(), "{e}");
    }

    s.agent.stop(15);
    let got = rows(
        &s.agent,
        "SELECT jsonrpc_id, client_name, client_version, protocol_version, trace_id, span_id \
         FROM mcp_audit WHERE method = 'tools/call' AND kind = 'exchange' ORDER BY jsonrpc_id",
    );
    assert_eq!(got.len(), 3, "{got:#?}");
    for r in &got {
        assert_eq!(r["client_name"], "raw-client", "{r:?}");
        assert_eq!(r["client_version"], "9.8.7", "{r:?}");
        assert_eq!(r["protocol_version"], "2026-07-28", "{r:?}");
    }
    assert_eq!(got[0]["trace_id"], TRACE, "{got:#?}");
    assert_eq!(got[0]["span_id"], SPAN);
    for r in &got[1..] {
        assert!(r["trace_id"].is_null() && r["span_id"].is_null(), "{r:?}");
    }
    // The auditors' search finds a trace by its id.
    let window = [
        ("needle", TRACE),
        ("from", "2000-01-01 00:00:00"),
        ("to", "2100-01-01 00:00:00"),
    ];
    let found = auditq::records(&s.agent.audit_dir(), "search_values", &window);
    let kinds: Vec<&Value> = found.iter().map(|r| &r["kind"]).collect();
    assert_eq!(
        kinds,
        [&json!("forwarded"), &json!("exchange")],
        "{found:#?}"
    );
    older_files_still_read(&s.agent);
}

/// Beside the agent's files, one as an agent before the added columns
/// wrote it (their columns dropped), sorting first: auditors' DuckDB view
/// and the schema check read both, the old file's new columns as null.
fn older_files_still_read(agent: &Agent) {
    const SCRIPT: &str = r#"
import sys, pathlib, pyarrow.parquet as pq
events = pathlib.Path(sys.argv[1]) / "events"
new = sorted(events.rglob("*.parquet"))[0]
t = pq.read_table(new)
t = t.drop_columns(["trace_id", "span_id", "call_id", "follows", "input_responses",
                    "tls_version", "tls_cipher", "tls_alpn", "bundle_version",
                    "bundle_signer", "process_pid", "process_uid", "process_user",
                    "process_exe", "process_exe_sha256", "process_unit",
                    "process_cgroup"])
pq.write_table(t, new.parent / "0-older-layout.parquet")
"#;
    let dir = agent.audit_dir();
    let out = std::process::Command::new(venv_bin("python"))
        .args(["-c", SCRIPT])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let schema = auditq::check(&dir, &["--schema"]);
    assert!(
        schema["fields"].to_string().contains("input_responses"),
        "{schema}"
    );
    let got = rows(
        agent,
        "SELECT count(*) AS n, count(trace_id) AS traced FROM mcp_audit \
         WHERE method = 'tools/call' AND kind = 'exchange'",
    );
    // Each call twice (the copy without trace_id); one of six traced.
    assert_eq!(
        (&got[0]["n"], &got[0]["traced"]),
        (&json!(6), &json!(1)),
        "{got:?}"
    );
}

#[test]
fn an_mrtr_retry_is_stored_masked_and_follows_the_first_call() {
    require_root();
    let mut s = setup("meta-rounds");
    let r = unlock(&s.ns, 1, "v1", json!({}), json!({}));
    let first = r.json();
    assert_eq!(first["result"]["resultType"], "input_required", "{r:?}");
    let state = first["result"]["requestState"].clone();
    assert!(state.is_string(), "{first}");
    let answers = json!({"pin": {"action": "accept", "content": {"pin": SECRET}}});

    // Looks like a retry, but of another call (other arguments): not linked.
    let other = json!({"inputResponses": answers});
    let r = unlock(&s.ns, 3, "v2", json!({}), other);
    assert_eq!(
        r.json()["result"]["content"][0]["text"],
        "unlocked v2",
        "{r:?}"
    );
    // The retry of call 1: a new id, the answers, the echoed state.
    let retry = json!({"inputResponses": answers, "requestState": state});
    let r = unlock(&s.ns, 2, "v1", json!({}), retry);
    assert_eq!(
        r.json()["result"]["content"][0]["text"],
        "unlocked v1",
        "{r:?}"
    );
    // The server got the answers as the client sent them.
    assert!(
        s.server
            .stdout()
            .contains(&format!("got pin {SECRET} for v1")),
        "{}",
        s.server.stdout()
    );

    let events = calls(&s.agent, 3);
    let (call, retry, lookalike) = (by_id(&events, 1), by_id(&events, 2), by_id(&events, 3));
    let root = call["call_id"].as_str().expect("call_id").to_owned();
    assert!(call["follows"].is_null(), "{call}");
    assert_eq!(retry["follows"], root.as_str(), "{retry}");
    assert_ne!(retry["call_id"], root.as_str());
    assert!(lookalike["follows"].is_null(), "{lookalike}");
    let events_text = std::fs::read_to_string(s.agent.events_path()).unwrap();
    assert!(
        !events_text.contains(SECRET),
        "the events file holds the secret"
    );
    assert!(
        retry["params"]["inputResponses"]["pin"]["content"]["pin"].is_string(),
        "{retry}"
    );

    s.agent.stop(15);
    let dir = s.agent.audit_dir();
    let got = rows(
        &s.agent,
        "SELECT jsonrpc_id, kind, call_id, follows, input_responses FROM mcp_audit \
         WHERE method = 'tools/call' ORDER BY jsonrpc_id, kind",
    );
    let row = |id: &str, kind: &str| {
        got.iter()
            .find(|r| r["jsonrpc_id"] == id && r["kind"] == kind)
            .unwrap_or_else(|| panic!("{id} {kind} in {got:#?}"))
            .clone()
    };
    // The call's forwarded row and its exchange row share its call_id.
    assert_eq!(row("1", "forwarded")["call_id"], root.as_str());
    assert_eq!(row("1", "exchange")["call_id"], root.as_str());
    assert!(row("1", "exchange")["input_responses"].is_null());
    let stored = row("2", "exchange");
    assert_eq!(stored["follows"], root.as_str(), "{stored:?}");
    let inputs = stored["input_responses"].as_str().expect("input_responses");
    assert!(!inputs.contains(SECRET), "{inputs}");
    let inputs: Value = serde_json::from_str(inputs).unwrap();
    assert_eq!(inputs["pin"]["action"], "accept", "{inputs}");
    assert!(row("3", "exchange")["follows"].is_null());
    // Every round of the logical call by one id: the call, the input
    // request the server made of it, the retry.
    let rounds = auditq::sql(
        &dir,
        &format!(
            "SELECT jsonrpc_id, method FROM mcp_audit WHERE kind = 'exchange' \
             AND (call_id = '{root}' OR follows = '{root}') ORDER BY jsonrpc_id, method"
        ),
    );
    let want = json!([
        ["1", "elicitation/create"],
        ["1", "tools/call"],
        ["2", "tools/call"]
    ]);
    assert_eq!(rounds["rows"], want, "{rounds}");
    // Nowhere in the audit.
    let leaks = auditq::sql(
        &dir,
        &format!(
            "SELECT count(*) FROM mcp_audit WHERE contains(coalesce(input_responses, '') || \
             coalesce(arguments, '') || coalesce(result, ''), '{SECRET}')"
        ),
    );
    assert_eq!(leaks["rows"], json!([[0]]), "{leaks}");
}

/// The official SDK client end to end: it puts clientInfo and a
/// `traceparent` in every request's `_meta` and answers the elicitation by
/// retrying on its own; both rounds carry the client's columns and trace,
/// and the retry follows the first call.
#[test]
fn the_sdk_clients_round_trip_is_traced_and_linked() {
    require_root();
    let s = setup("meta-sdk");
    let args: Vec<String> = [
        repo()
            .join("tests/peers/mrtr_rounds_client.py")
            .display()
            .to_string(),
        "--url".into(),
        "http://127.0.0.1:8080/mcp".into(),
        "--vault".into(),
        "sdk".into(),
        "--pin".into(),
        SECRET.into(),
        "--trace-id".into(),
        TRACE.into(),
        "--span-id".into(),
        SPAN.into(),
    ]
    .into();
    let out = run_in(
        Some(s.ns.name()),
        &venv_bin("python"),
        &args,
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got, json!({"text": "unlocked sdk", "asked": 1}), "{stderr}");

    let events = calls(&s.agent, 2);
    let (first, retry) = (&events[0], &events[1]);
    for e in [first, retry] {
        assert_eq!(e["client_name"], "sdk-rounds", "{e}");
        assert_eq!(e["client_version"], "2.3.0-test", "{e}");
        assert_eq!(e["protocol_version"], "2026-07-28", "{e}");
        assert_eq!(e["trace_id"], TRACE, "{e}");
        assert!(e["span_id"].as_str().is_some_and(|s| s.len() == 16), "{e}");
    }
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    assert!(first["follows"].is_null());
    assert_eq!(retry["follows"], first["call_id"], "{retry}");
    let inputs = retry["params"]["inputResponses"].to_string();
    assert!(
        inputs.contains("accept") && !inputs.contains(SECRET),
        "{inputs}"
    );
}
