//! MCP 2026-07-28 `subscriptions/listen`, `server/discover` and
//! `cacheScope` at the agent: a listen stream is relayed event by event
//! and may idle past the answer timeout; each notification on it gets a
//! row; a tool changed and announced on it is caught by pinning on the
//! next `tools/list`; a resource update for a URI the caller may not read
//! never reaches it; `server/discover` is a policy action; a list the
//! policy filtered per caller goes out `cacheScope: "private"`. The server
//! is the official Python SDK (tests/peers/listen_server.py), so is the
//! client (tests/peers/listen_client.py).

use std::time::Duration;

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir, auditq, everything::repo, http::RawResponse, proc::run_in,
    require_root, s3::venv_bin, sdk, world::Stateless,
};
use serde_json::{Value, json};

/// The agent's answer timeout; the client idles on its stream for longer.
const TIMEOUT_MS: u64 = 1500;

const POLICY: &str = r#"
@id("work")
permit (principal, action in [Mcp::Action::"tools/list", Mcp::Action::"tools/call",
    Mcp::Action::"resources/list", Mcp::Action::"subscriptions/listen"], resource);
@id("public-notes")
permit (principal, action == Mcp::Action::"resources/read", resource)
when { resource.uri like "note://public/*" };
"#;

const DISCOVER: &str = r#"
@id("discover")
permit (principal, action == Mcp::Action::"server/discover", resource);
"#;

struct Setup {
    agent: Agent,
    _server: Proc,
    ns: NetNs,
    dir: TempDir,
}

/// The SDK server on 127.0.0.1:8080 behind an agent with `policy`,
/// pinning tools (`block`), a short answer timeout, and one request at a
/// time per caller: a listen stream must hold a stream slot, not the one
/// request slot the client's calls need.
fn setup(tag: &str, policy: &str) -> Setup {
    let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
    let server = sdk::server(&ns, "listen_server.py", &[], dir.path());
    let file = dir.path().join("listen.cedar");
    std::fs::write(&file, policy).unwrap();
    let tables = format!(
        "[[intercept.ports]]\nport = 8080\n[http]\nupstream_response_timeout_ms = {TIMEOUT_MS}\n\
         max_upstream_requests_per_caller = 1\n\
         [policy]\nfiles = [\"{}\"]\npins_file = \"{}\"\non_tool_change = \"block\"\n",
        file.display(),
        dir.path().join("pins.json").display()
    );
    let agent = Agent::start(&ns, dir.path(), "", &tables);
    Setup {
        agent,
        _server: server,
        ns,
        dir,
    }
}

/// The SDK client's run through the agent (see listen_client.py).
fn listen_client(s: &Setup, idle: Duration) -> Value {
    let script = repo().join("tests/peers/listen_client.py");
    let args = [
        script.display().to_string(),
        "--url".into(),
        "http://127.0.0.1:8080/mcp".into(),
        "--idle".into(),
        idle.as_secs_f64().to_string(),
    ];
    let out = run_in(
        Some(s.ns.name()),
        &venv_bin("python"),
        &args,
        Duration::from_secs(60),
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "{stdout}\n{stderr}\n{}",
        s.agent.log()
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A 2026-07-28 stateless request, raw.
fn raw(ns: &NetNs, id: i64, method: &str, params: Value) -> RawResponse {
    let request = Stateless {
        method,
        name: None,
        caps: json!({}),
        headers: Vec::new(),
    };
    request.send(ns, id, params)
}

fn find<'a>(events: &'a [Value], what: &str, f: impl Fn(&Value) -> bool) -> &'a Value {
    events
        .iter()
        .find(|e| f(e))
        .unwrap_or_else(|| panic!("no {what} in {events:#?}"))
}

#[test]
fn a_listen_stream_idles_relays_and_is_judged_event_by_event() {
    require_root();
    let mut s = setup("listen", POLICY);
    let out = listen_client(&s, Duration::from_millis(3 * TIMEOUT_MS));

    // Relayed past the answer timeout: the stream idled twice as long,
    // then carried what the server announced, less the secret note.
    assert_eq!(
        out["events"],
        json!([
            "PromptsListChanged",
            "ToolsListChanged",
            "resource_updated note://public/a"
        ]),
        "{out}"
    );
    // The change announced on the stream is caught on the next list: the
    // rug-pulled tool is hidden, and a call to it refused.
    assert!(out["before"]["fetch_report"].is_string(), "{out}");
    assert!(out["after"].get("fetch_report").is_none(), "{out}");
    assert!(out["after"]["touch"].is_string(), "{out}");
    let refused = out["call_after"].as_str().unwrap_or_default();
    assert!(refused.contains("changed since it was pinned"), "{out}");
    // The agent judges these per caller: private, ttlMs as the server said.
    assert_eq!(
        out["hints"],
        json!({"cacheScope": "private", "ttlMs": 60000}),
        "{out}"
    );
    assert_eq!(
        out["read_hints"],
        json!({"cacheScope": "private", "ttlMs": 5000}),
        "{out}"
    );

    let events = s.agent.wait_events("the listen stream's end", |ev| {
        ev.iter()
            .any(|e| e["method"] == "subscriptions/listen" && e["kind"] != "forwarded")
    });
    let listen = find(&events, "listen row", |e| {
        e["method"] == "subscriptions/listen"
    });
    assert_eq!(
        listen["kind"], "exchange",
        "closing is no failure: {listen}"
    );
    assert!(listen["error"].is_null(), "{listen}");
    assert!(
        !events.iter().any(
            |e| e["kind"] == "unanswered" || e["error"]["data"]["reason"] == "upstream_timeout"
        ),
        "{events:#?}"
    );
    for m in [
        "notifications/subscriptions/acknowledged",
        "notifications/tools/list_changed",
        "notifications/prompts/list_changed",
    ] {
        let row = find(&events, m, |e| e["method"] == m);
        assert_eq!(row["kind"], "notification", "{row}");
    }
    let public = find(&events, "public update", |e| {
        e["target"] == "note://public/a" && e["method"] == "notifications/resources/updated"
    });
    assert_eq!(public["kind"], "notification", "{public}");
    assert_eq!(public["method"], "notifications/resources/updated");
    let secret = find(&events, "secret update", |e| {
        e["target"] == "note://secret/b" && e["method"] == "notifications/resources/updated"
    });
    assert_eq!(secret["kind"], "denied", "{secret}");
    assert_eq!(secret["direction"], "server_to_client");
    assert_eq!(secret["decided_by"], "policy");
    assert_eq!(secret["decision"]["effect"], "deny");
    let message = secret["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("may not read note://secret/b"), "{secret}");
    let pins = std::fs::read_to_string(s.dir.path().join("pins.json")).unwrap();
    assert!(pins.contains("fetch_report"), "{pins}");

    // The Parquet audit has the same rows.
    s.agent.stop(15);
    let v = auditq::sql(
        &s.agent.audit_dir(),
        "SELECT kind, method, decided_by FROM mcp_audit \
         WHERE method LIKE 'notifications/%' OR method = 'subscriptions/listen' \
         ORDER BY event_time_us",
    );
    let rows: Vec<Value> = serde_json::from_value(v["rows"].clone()).unwrap();
    for row in [
        json!(["exchange", "subscriptions/listen", null]),
        json!([
            "notification",
            "notifications/subscriptions/acknowledged",
            null
        ]),
        json!(["notification", "notifications/tools/list_changed", null]),
        json!(["denied", "notifications/resources/updated", "policy"]),
        json!(["notification", "notifications/resources/updated", null]),
    ] {
        assert!(rows.contains(&row), "{row} in {rows:#?}");
    }
}

/// Only the notes rule: neither discover nor listen is permitted.
const NOTES_ONLY: &str = r#"
@id("public-notes")
permit (principal, action == Mcp::Action::"resources/read", resource)
when { resource.uri like "note://public/*" };
"#;

#[test]
fn server_discover_and_listen_are_policy_actions_and_audited() {
    require_root();
    let s = setup("discover-deny", NOTES_ONLY);
    let r = raw(&s.ns, 3, "server/discover", json!({}));
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.code(), -32002, "{text}");
    assert_eq!(r.reason(), "policy_denied", "{text}");
    let notify = json!({"notifications": {"toolsListChanged": true}});
    let r = raw(&s.ns, 6, "subscriptions/listen", notify);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.code(), -32002, "{text}");
    assert_eq!(r.json()["id"], 6, "{text}");
    let events = s.agent.wait_events("the discover and listen rows", |ev| {
        ev.iter().any(|e| e["method"] == "server/discover")
            && ev.iter().any(|e| e["method"] == "subscriptions/listen")
    });
    for m in ["server/discover", "subscriptions/listen"] {
        let row = find(&events, m, |e| e["method"] == m);
        assert_eq!(row["kind"], "denied", "{row}");
        assert_eq!(row["decided_by"], "policy");
        assert_eq!(row["decision"]["effect"], "deny");
    }
    drop(s);

    let s = setup("discover-allow", &format!("{POLICY}{DISCOVER}"));
    let r = raw(&s.ns, 4, "server/discover", json!({}));
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 200, "{text}");
    assert!(r.json()["result"]["supportedVersions"].is_array(), "{text}");
    let events = s.agent.wait_events("the discover row", |ev| {
        ev.iter()
            .any(|e| e["method"] == "server/discover" && e["kind"] == "exchange")
    });
    let row = find(&events, "discover", |e| e["method"] == "server/discover");
    assert_eq!(row["decision"]["policies"], json!(["discover"]), "{row}");
}
