//! In-band approvals for MCP 2026-07-28 clients, through the steered port
//! with real OIDC identities and the official Python SDK server
//! (tests/peers/inband_server.py, which prints every request it gets): a
//! retry-mode call of a stateless client that takes URL elicitation gets
//! an `input_required` result naming the approval, not -32003; its retry
//! carries the agent's sealed `requestState`, which is checked (forged,
//! another call's, another caller's: refused) and taken out, with the
//! agent's own input response, before the released call reaches the
//! server; a server's own state and responses pass untouched. Older
//! clients (a 2025-11-25 session, a client without URL elicitation) keep
//! the -32003 refusal.

use std::{net::SocketAddr, path::Path, time::Duration};

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir, auditq,
    everything::repo,
    http::{RawResponse, post_in},
    oidc::Issuer,
    require_root,
    s3::venv_bin,
    sdk,
    world::Stateless,
    world::{PORT, admin_cli, bearer, header, sections as identity, token},
};
use serde_json::{Value, json};

const KEY: &str = "mcp-interceptor/approval";

const POLICY: &str = r#"
@id("session")
permit (principal, action in [Mcp::Action::"initialize", Mcp::Action::"tools/list"], resource);

@id("lookup-needs-oncall")
@approval("oncall")
@approval_mode("retry")
permit (principal, action == Mcp::Action::"tools/call", resource)
when { resource.name == "lookup" };
"#;

/// The issuer, the SDK server on 127.0.0.1:8080 and the agent requiring
/// its tokens; root on the admin socket is bob, in oncall.
struct Setup {
    agent: Agent,
    server: Proc,
    issuer: Issuer,
    ns: NetNs,
    dir: TempDir,
}

/// `approvals`: more keys of `[approvals]`.
fn setup(tag: &str, approvals: &str) -> Setup {
    let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
    let issuer = Issuer::start(&ns, 9400, dir.path());
    let server = sdk::server(&ns, "inband_server.py", &[], dir.path());
    let agent = Agent::start_full(
        &ns,
        dir.path(),
        "",
        PORT,
        "",
        &config(dir.path(), &issuer, approvals),
        Vec::new(),
    );
    Setup {
        agent,
        server,
        issuer,
        ns,
        dir,
    }
}

fn config(dir: &Path, issuer: &Issuer, approvals: &str) -> String {
    let policy = dir.join("inband.cedar");
    std::fs::write(&policy, POLICY).unwrap();
    let cred = dir.join("upstream-credential");
    std::fs::write(&cred, "Bearer upstream-secret\n").unwrap();
    format!(
        "{}[policy]\nfiles = [\"{}\"]\n[approvals]\n{approvals}\n\
         [admin]\nsocket = \"{}\"\n\
         [[admin.local_users]]\nuser = \"root\"\nsubject = \"bob\"\ngroups = [\"oncall\"]\n",
        identity(issuer, &cred, ""),
        policy.display(),
        dir.join("admin.sock").display()
    )
}

/// A 2026-07-28 stateless `tools/call` of lookup(`id`) as `token`'s
/// caller, with `caps` as its client capabilities and `more` merged into
/// its params (requestState, inputResponses).
fn call(s: &Setup, token: &str, rpc_id: i64, id: &str, caps: Value, more: Value) -> RawResponse {
    let mut params = json!({"name": "lookup", "arguments": {"id": id}});
    if let Value::Object(m) = more {
        params.as_object_mut().unwrap().extend(m);
    }
    let request = Stateless {
        method: "tools/call",
        name: Some("lookup"),
        caps,
        headers: vec![bearer(token)],
    };
    request.send(&s.ns, rpc_id, params)
}

fn url_caps() -> Value {
    json!({"elicitation": {"form": {}, "url": {}}})
}

/// The retry of an `input_required` answer: its state echoed, the agent's
/// input request answered with `action`, plus `more` responses.
fn retry_with(state: &str, action: &str, more: Value) -> Value {
    let mut responses = json!({ KEY: {"action": action} });
    if let Value::Object(m) = more {
        responses.as_object_mut().unwrap().extend(m);
    }
    json!({"requestState": state, "inputResponses": responses})
}

/// The agent's input request of an `input_required` answer: (approval id
/// from the URL's end, url, message, requestState).
fn asked(r: &RawResponse) -> (String, String, String, String) {
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let result = &r.json()["result"];
    assert_eq!(result["resultType"], "input_required", "{text}");
    let requests = result["inputRequests"].as_object().expect(&text);
    assert_eq!(requests.len(), 1, "{text}");
    let ask = &requests[KEY];
    assert_eq!(ask["method"], "elicitation/create", "{text}");
    let p = &ask["params"];
    assert_eq!(p["mode"], "url", "{text}");
    let url = p["url"].as_str().expect(&text).to_string();
    let i = url.rfind("apr-").expect(&text);
    let id = url[i..].to_string();
    assert_eq!(id.len(), 20, "{url}");
    let message = p["message"].as_str().expect(&text).to_string();
    assert!(message.contains(&id), "{message}");
    let state = result["requestState"].as_str().expect(&text).to_string();
    assert!(state.starts_with("mcpi1."), "{state}");
    (id, url, message, state)
}

/// The tools/call bodies the server received, in order.
fn server_calls(s: &Setup) -> Vec<Value> {
    s.server
        .stdout()
        .lines()
        .filter_map(|l| l.strip_prefix("got "))
        .filter_map(|b| serde_json::from_str::<Value>(b).ok())
        .filter(|m| m["method"] == "tools/call")
        .collect()
}

fn cli(s: &Setup, args: &[&str]) -> String {
    let (ok, text) = admin_cli(s.dir.path(), args);
    assert!(ok, "{args:?}: {text}");
    text
}

#[test]
fn approval_asked_in_band_released_once_without_the_agents_state() {
    require_root();
    let url = "http://127.0.0.1:9443/v1/approvals";
    let mut s = setup("inband-ok", &format!("approve_url = \"{url}\""));
    let alice = token(&s.issuer, "alice", &["dev"]);

    let first = call(&s, &alice, 1, "7", url_caps(), json!({}));
    let (id, shown, message, state) = asked(&first);
    assert_eq!(shown, format!("{url}/{id}"));
    assert!(message.contains("oncall"), "{message}");
    assert_eq!(first.json()["id"], 1);

    // Retried before a decision: asked again, for the same approval.
    let again = call(
        &s,
        &alice,
        2,
        "7",
        url_caps(),
        retry_with(&state, "accept", json!({})),
    );
    let (id2, _, _, state2) = asked(&again);
    assert_eq!(id2, id);
    assert!(
        server_calls(&s).is_empty(),
        "nothing reached the server yet"
    );
    // The state outlives a restart of the agent, as its approval does.
    s.agent.stop(15);
    s.agent.restart();
    let after = call(
        &s,
        &alice,
        5,
        "7",
        url_caps(),
        retry_with(&state2, "accept", json!({})),
    );
    let (id3, _, _, state2) = asked(&after);
    assert_eq!(id3, id);

    cli(
        &s,
        &["approvals", "approve", &id, "--reason", "looks right"],
    );
    // The server's own input response rides along and must pass.
    let pin = json!({"pin": {"action": "accept", "content": {"pin": "1234"}}});
    let done = call(
        &s,
        &alice,
        3,
        "7",
        url_caps(),
        retry_with(&state2, "accept", pin.clone()),
    );
    let text = String::from_utf8_lossy(&done.body).into_owned();
    assert_eq!(
        done.json()["result"]["content"][0]["text"],
        "customer 7",
        "{text}"
    );
    let got = server_calls(&s);
    assert_eq!(got.len(), 1, "{got:#?}");
    let params = &got[0]["params"];
    assert!(params.get("requestState").is_none(), "{params}");
    assert_eq!(
        params["inputResponses"], pin,
        "only the agent's answer is taken out"
    );
    assert_eq!(params["arguments"], json!({"id": "7"}));

    // Single use: the same state again is refused as today's retry is.
    let twice = call(
        &s,
        &alice,
        4,
        "7",
        url_caps(),
        retry_with(&state2, "accept", json!({})),
    );
    let text = String::from_utf8_lossy(&twice.body).into_owned();
    assert_eq!(twice.code(), -32003, "{text}");
    assert_eq!(twice.reason(), "approval_expired", "{text}");
    assert!(text.contains(&id) && text.contains("used"), "{text}");
    assert_eq!(server_calls(&s).len(), 1);

    // Rows: each input_required answer a denial by the approval phase
    // naming the approval; the release an exchange naming it.
    let events = s.agent.wait_events("the released call", |ev| {
        ev.iter()
            .any(|e| e["kind"] == "exchange" && e["method"] == "tools/call")
    });
    let of = |id_: i64| {
        events
            .iter()
            .find(|e| e["jsonrpc_id"] == id_ && e["method"] == "tools/call")
            .cloned()
            .unwrap_or_else(|| panic!("{events:#?}"))
    };
    for n in [1, 2] {
        let e = of(n);
        assert_eq!(e["kind"], "denied", "{e}");
        assert_eq!(e["decided_by"], "approval", "{e}");
        assert_eq!(e["result"]["resultType"], "input_required", "{e}");
        assert_eq!(e["approval"]["id"], id.as_str(), "{e}");
    }
    let released = of(3);
    assert_eq!(released["kind"], "exchange", "{released}");
    assert_eq!(released["approval"]["id"], id.as_str(), "{released}");
    assert_eq!(released["approval"]["approvers"], json!(["bob"]));

    s.agent.stop(15);
    let all = [
        ("from", "2000-01-01 00:00:00"),
        ("to", "2100-01-01 00:00:00"),
    ];
    let rows = auditq::records(&s.agent.audit_dir(), "approvals", &all);
    let kinds: Vec<&str> = rows
        .iter()
        .filter(|r| r["approval_id"] == id.as_str())
        .filter_map(|r| r["kind"].as_str())
        .collect();
    for k in ["approval_requested", "approval_used", "exchange", "denied"] {
        assert!(kinds.contains(&k), "{k} missing: {kinds:?}");
    }
}

/// A 2025-11-25 session's tools/call of lookup(`id`) as `token`'s caller.
fn session_call(s: &Setup, token: &str, id: &str) -> RawResponse {
    let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let post = |body: Value, sid: Option<&str>| {
        let mut h = vec![bearer(token), "MCP-Protocol-Version: 2025-11-25".into()];
        h.extend(sid.map(|v| format!("Mcp-Session-Id: {v}")));
        let refs: Vec<&str> = h.iter().map(String::as_str).collect();
        post_in(&s.ns, addr, "/mcp", body.to_string().as_bytes(), &refs)
    };
    let init = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "clientInfo": {"name": "old", "version": "1"},
            "capabilities": {"elicitation": {"form": {}, "url": {}}}}}),
        None,
    );
    let sid = header(&init, "mcp-session-id")
        .unwrap_or_else(|| panic!("no session: {}", init.head))
        .to_string();
    post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(&sid),
    );
    post(
        json!({"jsonrpc": "2.0", "id": 20, "method": "tools/call",
               "params": {"name": "lookup", "arguments": {"id": id}}}),
        Some(&sid),
    )
}

#[test]
fn forged_and_foreign_states_are_refused_and_older_clients_keep_retry() {
    require_root();
    let s = setup("inband-bad", "");
    let alice = token(&s.issuer, "alice", &["dev"]);
    let mallory = token(&s.issuer, "mallory", &["dev"]);

    let first = call(&s, &alice, 1, "7", url_caps(), json!({}));
    let (id, url, message, state) = asked(&first);
    // No approve_url: a URN naming the approval, and the command.
    assert_eq!(url, format!("urn:mcp-interceptor:approval:{id}"));
    assert!(
        message.contains(&format!("mcp-interceptor approvals approve {id}")),
        "{message}"
    );

    let refused = |r: &RawResponse, code: i64, reason: &str, what: &str| {
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.code(), code, "{text}");
        assert_eq!(r.reason(), reason, "{text}");
        assert_eq!(r.json()["error"]["data"]["request_state"], what, "{text}");
    };
    // One character of the sealed state changed.
    let mut bytes = state.clone().into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let r = call(
        &s,
        &alice,
        2,
        "7",
        url_caps(),
        retry_with(&tampered, "accept", json!({})),
    );
    refused(&r, -32600, "invalid_request", "forged");
    // Alice's state on another call (other arguments).
    let r = call(
        &s,
        &alice,
        3,
        "8",
        url_caps(),
        retry_with(&state, "accept", json!({})),
    );
    refused(&r, -32600, "invalid_request", "other_call");
    // Alice's state replayed by another caller.
    let r = call(
        &s,
        &mallory,
        4,
        "7",
        url_caps(),
        retry_with(&state, "accept", json!({})),
    );
    refused(&r, -32600, "invalid_request", "other_caller");

    // A requestState that is not the agent's is the server's: once the
    // call is approved it reaches the server untouched (and the SDK
    // server, which did not seal it, refuses it).
    cli(&s, &["approvals", "approve", &id, "--reason", "ok"]);
    let r = call(
        &s,
        &alice,
        5,
        "7",
        url_caps(),
        json!({"requestState": "round-1"}),
    );
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(
        r.json()["error"]["data"]["reason"],
        "invalid_request_state",
        "{text}"
    );
    let got = server_calls(&s);
    assert_eq!(got.len(), 1, "only the approved call got through: {got:#?}");
    assert_eq!(got[0]["params"]["requestState"], "round-1");

    // The user declines to wait: refused, and the request is abandoned.
    let (id9, _, _, state9) = asked(&call(&s, &alice, 6, "9", url_caps(), json!({})));
    let r = call(
        &s,
        &alice,
        7,
        "9",
        url_caps(),
        retry_with(&state9, "decline", json!({})),
    );
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.code(), -32003, "{text}");
    assert!(text.contains("decline") && text.contains(&id9), "{text}");
    let shown = cli(&s, &["approvals", "show", &id9, "--json"]);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["status"], "abandoned", "{shown}");

    // Older clients on the same agent: today's -32003 with the id.
    let old = session_call(&s, &alice, "10");
    let text = String::from_utf8_lossy(&old.body).into_owned();
    assert!(
        text.contains("-32003") && text.contains("approval_required"),
        "{text}"
    );
    assert!(!text.contains("input_required"), "{text}");
    let form_only = json!({"elicitation": {}});
    let r = call(&s, &alice, 8, "11", form_only, json!({}));
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.code(), -32003, "{text}");
    assert_eq!(r.reason(), "approval_required", "{text}");
    assert!(
        r.json()["error"]["data"]["approval_id"].is_string(),
        "{text}"
    );

    // Each refused state is a denied row of the approval phase.
    let events = s.agent.wait_events("the refusals", |ev| {
        ev.iter().filter(|e| e["kind"] == "denied").count() >= 5
    });
    for rpc in [2, 3, 4] {
        let e = events
            .iter()
            .find(|e| e["jsonrpc_id"] == rpc && e["method"] == "tools/call")
            .unwrap_or_else(|| panic!("{events:#?}"));
        assert_eq!(e["kind"], "denied", "{e}");
        assert_eq!(e["decided_by"], "approval", "{e}");
    }
}

/// The official SDK client (tests/peers/inband_client.py) drives the
/// rounds itself: it shows the URL elicitation, repeats the call (asked
/// again before approval), and gets the tool's result once approved.
#[test]
fn the_sdk_client_waits_in_band_and_gets_its_result_once_approved() {
    require_root();
    let url = "http://127.0.0.1:9443/v1/approvals";
    let s = setup("inband-sdk", &format!("approve_url = \"{url}\""));
    let alice = token(&s.issuer, "alice", &["dev"]);
    let go = s.dir.path().join("go");
    let script = repo().join("tests/peers/inband_client.py");
    let args: Vec<String> = [
        script.display().to_string(),
        "--url".into(),
        "http://127.0.0.1:8080/mcp".into(),
        "--bearer".into(),
        alice,
        "--tool".into(),
        "lookup".into(),
        "--args".into(),
        json!({"id": "7"}).to_string(),
        "--go".into(),
        go.display().to_string(),
    ]
    .into();
    let mut client = Proc::spawn(
        "inband-client",
        Some(s.ns.name()),
        &venv_bin("python"),
        &args,
        s.dir.path(),
    );
    // The first elicitation is accepted at once; the repeated call is
    // asked again, for the same approval.
    let out = wait_for_lines(&mut client, "elicit ", 2);
    let asks: Vec<Value> = out
        .lines()
        .filter_map(|l| l.strip_prefix("elicit "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(asks[0]["mode"], "url", "{out}");
    let shown = asks[0]["url"].as_str().unwrap().to_string();
    assert!(shown.starts_with(&format!("{url}/apr-")), "{shown}");
    assert_eq!(asks[1]["url"], shown.as_str(), "the same approval");
    let id = &shown[url.len() + 1..];
    assert!(asks[0]["message"].as_str().unwrap().contains(id), "{out}");
    assert!(
        server_calls(&s).is_empty(),
        "nothing reached the server yet"
    );

    cli(&s, &["approvals", "approve", id, "--reason", "ok"]);
    std::fs::write(&go, "").unwrap();
    let out = client.wait_for_output("result ", Duration::from_secs(30));
    let result: Value = out
        .lines()
        .find_map(|l| l.strip_prefix("result "))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(result["content"][0]["text"], "customer 7", "{out}");
    let got = server_calls(&s);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0]["params"].get("requestState").is_none(), "{got:#?}");
    assert!(got[0]["params"].get("inputResponses").is_none(), "{got:#?}");
}

/// `p`'s stdout once it holds `n` lines starting with `prefix`.
fn wait_for_lines(p: &mut Proc, prefix: &str, n: usize) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = p.stdout();
        if out.lines().filter(|l| l.starts_with(prefix)).count() >= n {
            return out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} lines of {prefix:?} not printed: {out}\n{}",
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A state past its expiry (pending_seconds + valid_seconds after it was
/// asked for) is refused as an expired approval round; the call asked for
/// afresh gets a new approval.
#[test]
fn an_expired_state_is_refused_and_a_fresh_call_asks_anew() {
    require_root();
    let s = setup("inband-exp", "pending_seconds = 1\nvalid_seconds = 1");
    let alice = token(&s.issuer, "alice", &["dev"]);
    let (id, _, _, state) = asked(&call(&s, &alice, 1, "7", url_caps(), json!({})));
    std::thread::sleep(Duration::from_millis(2500));
    let r = call(
        &s,
        &alice,
        2,
        "7",
        url_caps(),
        retry_with(&state, "accept", json!({})),
    );
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.code(), -32003, "{text}");
    assert_eq!(r.reason(), "approval_expired", "{text}");
    assert_eq!(
        r.json()["error"]["data"]["request_state"],
        "expired",
        "{text}"
    );
    let (fresh, _, _, _) = asked(&call(&s, &alice, 3, "7", url_caps(), json!({})));
    assert_ne!(fresh, id);
    assert!(server_calls(&s).is_empty());
}
