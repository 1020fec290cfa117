//! MCP 2026-07-28 multi round-trip requests (MRTR): a server asks for
//! elicitation inside a result (`resultType: "input_required"`,
//! `inputRequests`), not as a request of its own. The agent judges each
//! input request as the server request it replaces: a policy that does
//! not permit `elicitation/create` stops it, and every input request gets
//! an audit row. The server is the official Python SDK
//! (tests/peers/mrtr_server.py); the client speaks the stateless form.

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir, auditq::records, http::RawResponse, require_root, sdk,
    world::Stateless,
};
use serde_json::{Value, json};

const SESSION: &str = r#"
@id("calls")
permit (principal, action == Mcp::Action::"tools/call", resource);
"#;

const NO_ELICITATION: &str = r#"
@id("no-elicitation")
forbid (principal, action == Mcp::Action::"elicitation/create", resource);
"#;

const ELICITATION: &str = r#"
@id("elicitation-ok")
permit (principal, action == Mcp::Action::"elicitation/create", resource);
"#;

struct Setup {
    agent: Agent,
    server: Proc,
    ns: NetNs,
    _dir: TempDir,
}

/// The SDK server on 127.0.0.1:8080 behind an agent with `policy`.
fn setup(tag: &str, policy: &str) -> Setup {
    let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
    let server = sdk::server(&ns, "mrtr_server.py", &[], dir.path());
    let file = dir.path().join("mrtr.cedar");
    std::fs::write(&file, policy).unwrap();
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

/// A 2026-07-28 stateless `tools/call` of confirm_pin, id 7.
fn confirm_pin(ns: &NetNs) -> RawResponse {
    let call = Stateless {
        method: "tools/call",
        name: Some("confirm_pin"),
        caps: json!({"elicitation": {}}),
        headers: Vec::new(),
    };
    call.send(ns, 7, json!({"name": "confirm_pin", "arguments": {}}))
}

/// The events of the input request "pin" and of call 7, once both exist.
fn rows(agent: &Agent) -> (Value, Value) {
    let events = agent.wait_events("the input request and the call", |ev| {
        ev.iter().any(|e| e["target"] == "pin") && ev.iter().any(|e| e["method"] == "tools/call")
    });
    let find = |f: &dyn Fn(&Value) -> bool| {
        events
            .iter()
            .find(|e| f(e))
            .cloned()
            .unwrap_or_else(|| panic!("{events:#?}"))
    };
    (
        find(&|e| e["target"] == "pin"),
        find(&|e| e["method"] == "tools/call"),
    )
}

#[test]
fn refused_elicitation_input_request_never_reaches_the_client() {
    require_root();
    let mut s = setup("mrtr-deny", &format!("{SESSION}{NO_ELICITATION}"));
    let r = confirm_pin(&s.ns);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.code(), -32002, "{text}");
    assert_eq!(r.reason(), "policy_denied", "{text}");
    assert_eq!(r.json()["id"], 7, "{text}");
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with(
            "input request \"pin\" (elicitation/create) denied by the client's security policy"
        ),
        "{message}"
    );
    assert!(!text.contains("enter your PIN"), "{text}");
    assert!(!text.contains("inputRequests"), "{text}");
    // The server did ask: the agent, not the server, kept it away.
    assert!(s.server.stdout().contains("enter your PIN"));

    let (input, call) = rows(&s.agent);
    assert_eq!(input["kind"], "denied", "{input}");
    assert_eq!(input["direction"], "server_to_client");
    assert_eq!(input["method"], "elicitation/create");
    assert_eq!(input["jsonrpc_id"], 7, "linked to the call: {input}");
    assert_eq!(input["decided_by"], "policy");
    assert_eq!(input["decision"]["effect"], "deny");
    assert_eq!(input["decision"]["policies"], json!(["no-elicitation"]));
    assert_eq!(call["kind"], "denied", "{call}");
    assert_eq!(call["jsonrpc_id"], 7);
    assert_eq!(call["decided_by"], "policy");
    assert_eq!(call["error"]["message"], message.as_str());

    // The Parquet audit lists both among the denials.
    s.agent.stop(15);
    let all = [
        ("from", "2000-01-01 00:00:00"),
        ("to", "2100-01-01 00:00:00"),
    ];
    let denials = records(&s.agent.audit_dir(), "denials", &all);
    let row = denials
        .iter()
        .find(|r| r["method"] == "elicitation/create")
        .unwrap_or_else(|| panic!("{denials:#?}"));
    let error: Value = serde_json::from_str(row["error"].as_str().unwrap()).unwrap();
    assert_eq!(error["message"], message.as_str(), "{row:?}");
    assert_eq!(row["decided_by"], "policy");
    assert_eq!(row["rule_ids"], json!(["no-elicitation"]));
    assert!(
        denials.iter().any(|r| r["method"] == "tools/call"),
        "{denials:#?}"
    );
}

#[test]
fn permitted_elicitation_input_request_passes_unchanged_and_is_audited() {
    require_root();
    let s = setup("mrtr-allow", &format!("{SESSION}{ELICITATION}"));
    let r = confirm_pin(&s.ns);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 200, "{text}");
    let got = r.json();
    let result = &got["result"];
    assert_eq!(result["resultType"], "input_required", "{text}");
    assert_eq!(
        result["inputRequests"]["pin"]["method"],
        "elicitation/create"
    );
    assert_eq!(
        result["inputRequests"]["pin"]["params"]["message"],
        "enter your PIN"
    );
    // What the server sent, byte for byte (its sealed requestState too).
    let out = s.server.stdout();
    let sent = out
        .lines()
        .find_map(|l| l.strip_prefix("sent "))
        .unwrap_or_else(|| panic!("{out}"));
    let sent: Value = serde_json::from_str(sent).unwrap();
    assert_eq!(result["inputRequests"], sent["result"]["inputRequests"]);
    let state = result["requestState"].as_str().expect("requestState");
    assert!(!state.is_empty());
    assert_eq!(state, sent["result"]["requestState"].as_str().unwrap());
    assert!(text.contains(&format!("\"requestState\":\"{state}\"")));

    let (input, call) = rows(&s.agent);
    assert_eq!(input["kind"], "exchange", "{input}");
    assert_eq!(input["direction"], "server_to_client");
    assert_eq!(input["method"], "elicitation/create");
    assert_eq!(input["jsonrpc_id"], 7, "linked to the call: {input}");
    assert_eq!(input["decision"]["effect"], "allow");
    assert_eq!(input["decision"]["policies"], json!(["elicitation-ok"]));
    assert_eq!(call["kind"], "exchange", "{call}");
    assert_eq!(call["result"]["resultType"], "input_required");
}
