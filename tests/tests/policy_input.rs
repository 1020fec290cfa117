//! Policy input is what the server acts on, or the call is refused: probes
//! that a real server (tests/peers/judged_server.py: sqlite3's
//! executescript, a WHATWG URI parser, Python's json) reads otherwise than
//! a naive reading would, sent through the steered port and asked of
//! `policy explain`. Each was allowed through before the agent read SQL
//! with sqlparser, URIs with the url crate and client JSON strictly.

use std::{net::SocketAddr, path::Path, time::Duration};

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir, bin,
    everything::repo,
    http::{RawResponse, post_in},
    oidc::Issuer,
    proc::run_in,
    require_root,
    s3::venv_bin,
    world::{bearer, sections, token},
};
use serde_json::{Value, json};

const POLICY: &str = r#"
@id("session")
permit (principal, action in [Mcp::Action::"initialize", Mcp::Action::"ping", Mcp::Action::"tools/list"], resource);

@id("outside-data")
forbid (principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"read_file")
when { resource.hasTag("path") && !(resource.getTag("path") like "/srv/data/*") };

@id("data-resources")
permit (principal, action == Mcp::Action::"resources/read", resource)
when { resource.uri like "file:///srv/data/*" };
"#;

/// The Python server, the agent (the shipped database example plus
/// POLICY, the port named "db") and an analyst's token.
struct Setup {
    agent: Agent,
    _server: Proc,
    _issuer: Issuer,
    ns: NetNs,
    _dir: TempDir,
    token: String,
}

fn setup(tag: &str) -> Setup {
    let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
    let issuer = Issuer::start(&ns, 9400, dir.path());
    let cred = dir.path().join("upstream-credential");
    std::fs::write(&cred, "Bearer upstream\n").unwrap();
    let script = repo().join("tests/peers/judged_server.py");
    let args = [script.display().to_string(), "--port".into(), "8080".into()];
    let mut server = Proc::spawn(
        &format!("judged-{tag}"),
        Some(ns.name()),
        &venv_bin("python"),
        &args,
        dir.path(),
    );
    server.wait_for_output("judged server ready", Duration::from_secs(30));
    let policy = dir.path().join("input.cedar");
    std::fs::write(&policy, POLICY).unwrap();
    let files = config_files(&policy);
    let agent = Agent::start_full(
        &ns,
        dir.path(),
        "",
        "[[intercept.ports]]\nport = 8080\nname = \"db\"\n",
        "",
        &format!(
            "{}[policy]\nfiles = [{files}]\n",
            sections(&issuer, &cred, "")
        ),
        Vec::new(),
    );
    let token = token(&issuer, "ann", &["analysts"]);
    Setup {
        agent,
        _server: server,
        _issuer: issuer,
        ns,
        _dir: dir,
        token,
    }
}

fn config_files(policy: &Path) -> String {
    let db = repo().join("deploy/policy/examples/database.cedar");
    format!("\"{}\", \"{}\"", db.display(), policy.display())
}

fn post(s: &Setup, body: &[u8]) -> RawResponse {
    let auth = bearer(&s.token);
    let addr = SocketAddr::from(([127, 0, 0, 1], 8080));
    post_in(&s.ns, addr, "/mcp", body, &[auth.as_str()])
}

fn call(s: &Setup, id: i64, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let r = post(s, body.to_string().as_bytes());
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

/// What the server reported in a tool result or resource.
fn server_said(v: &Value) -> Value {
    let text = v["result"]["content"][0]["text"]
        .as_str()
        .or_else(|| v["result"]["contents"][0]["text"].as_str())
        .unwrap_or_else(|| panic!("no server answer: {v}"));
    serde_json::from_str(text).unwrap()
}

fn tool(s: &Setup, id: i64, name: &str, args: Value) -> Value {
    call(
        s,
        id,
        "tools/call",
        json!({"name": name, "arguments": args}),
    )
}

/// The agent's refusal: a JSON-RPC error whose message names why.
fn refused(v: &Value, why: &str) {
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        v["error"]["code"].is_i64() && msg.contains(why),
        "want a refusal naming {why:?}: {v}"
    );
}

/// The agent recorded a row for the request with this id, with an error.
fn audited(s: &Setup, id: i64) {
    s.agent
        .wait_events(&format!("an event for request {id}"), |ev| {
            ev.iter()
                .any(|e| e["jsonrpc_id"] == id && !e["error"].is_null())
        });
}

#[test]
fn sql_that_dialects_read_differently_is_denied_and_the_table_stays() {
    require_root();
    let s = setup("pin-sql");
    let ok = tool(&s, 1, "query", json!({"sql": "SELECT 1"}));
    assert_eq!(server_said(&ok)["orders"], true, "{ok}");
    for (id, sql) in [
        (2, "SELECT 1 AS [--]; DROP TABLE orders"),
        (3, "SELECT 1 AS `--`; DROP TABLE orders"),
        (4, "SELECT 1 -- x\r; DROP TABLE orders"),
    ] {
        let v = tool(&s, id, "query", json!({ "sql": sql }));
        refused(&v, "denied");
        audited(&s, id);
    }
    // sqlite3 still has the table: no probe reached it.
    let after = tool(
        &s,
        9,
        "query",
        json!({"sql": "SELECT count(*) FROM orders"}),
    );
    assert_eq!(server_said(&after)["orders"], true, "{after}");
}

#[test]
fn uris_and_paths_servers_resolve_elsewhere_are_refused() {
    require_root();
    let s = setup("pin-uri");
    let ok = call(
        &s,
        1,
        "resources/read",
        json!({"uri": "file:///srv/data/a.txt"}),
    );
    assert_eq!(server_said(&ok)["resolved"], "/srv/data/a.txt", "{ok}");
    for (id, uri) in [
        (2, "file:///srv/data/%3F/../../../etc/passwd"),
        (3, "file:///srv/data/..\\..\\etc\\passwd"),
        (4, "file:///srv/data/%2e%2e/%2e%2e/etc/passwd"),
    ] {
        let v = call(&s, id, "resources/read", json!({ "uri": uri }));
        refused(&v, "refused");
        audited(&s, id);
    }
    let ok = tool(&s, 10, "read_file", json!({"path": "/srv/data/b.txt"}));
    assert_eq!(server_said(&ok)["resolved"], "/srv/data/b.txt", "{ok}");
    for (id, path) in [
        (11, "/srv/data/..\\..\\etc\\passwd"),
        (12, "/srv/data/%2e%2e/%2e%2e/etc/passwd"),
    ] {
        let v = tool(&s, id, "read_file", json!({ "path": path }));
        refused(&v, "refused");
        audited(&s, id);
    }
}

#[test]
fn client_json_servers_could_read_otherwise_is_refused() {
    require_root();
    let s = setup("pin-json");
    let ok = tool(&s, 1, "echo", json!({"n": 18446744073709551615u64}));
    assert_eq!(
        server_said(&ok)["arguments"]["n"],
        json!(18446744073709551615u64)
    );
    let probes: [(&str, &str); 4] = [
        (
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"n":123456789012345678901}}}"#,
            "exactly",
        ),
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"query","arguments":{"sql":"DROP TABLE orders","sql":"SELECT 1"}}}"#,
            "twice",
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"NAME":"query","arguments":{"sql":"DROP TABLE orders"}}}"#,
            "case variant",
        ),
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/data/a","PATH":"/etc/shadow"}}}"#,
            "twice",
        ),
    ];
    for (body, why) in probes {
        let r = post(&s, body.as_bytes());
        assert_eq!(r.status, 400, "{body}");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        refused(&v, why);
        assert_eq!(v["error"]["code"], -32600, "{v}");
    }
    // Every refusal is a row of its own, saying why.
    s.agent.wait_events("four refusals", |ev| {
        ev.iter()
            .filter(|e| {
                let err = e["error"].to_string();
                err.contains("exactly") || err.contains("twice") || err.contains("case variant")
            })
            .count()
            >= 4
    });
    let after = tool(
        &s,
        9,
        "query",
        json!({"sql": "SELECT count(*) FROM orders"}),
    );
    assert_eq!(server_said(&after)["orders"], true, "{after}");
}

/// `policy explain` with the agent's config, as an operator runs it.
fn explain(s: &Setup, args: &[&str]) -> std::process::Output {
    let mut argv: Vec<String> = ["policy", "explain", "--config"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    argv.push(s.agent.config.display().to_string());
    argv.extend(
        [
            "--subject",
            "ann",
            "--group",
            "analysts",
            "--server",
            "db",
            "--method",
        ]
        .iter()
        .chain(args)
        .map(|a| a.to_string()),
    );
    run_in(
        None,
        &bin("mcp-interceptor"),
        &argv,
        Duration::from_secs(20),
    )
}

#[test]
fn policy_explain_sees_the_same_probes() {
    require_root();
    let s = setup("pin-explain");
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let sql = |q: &str| {
        let args = json!({ "sql": q }).to_string();
        explain(&s, &["tools/call", "--tool", "query", "--args", &args])
    };
    assert!(text(&sql("SELECT 1")).contains("decision: allow"));
    for q in [
        "SELECT 1 AS [--]; DROP TABLE orders",
        "SELECT $$ ; $$; DROP TABLE orders",
        "SELECT E'\\'; DROP TABLE orders; --'",
        "SELECT 1 /*! ; DROP TABLE orders */",
    ] {
        let out = text(&sql(q));
        assert!(out.contains("decision: deny"), "{q}: {out}");
    }
    for uri in [
        "file:///srv/data/%3F/../../../etc/passwd",
        "file:///srv/data/..\\..\\etc\\passwd",
    ] {
        let o = explain(&s, &["resources/read", "--uri", uri]);
        assert!(
            !o.status.success() && text(&o).contains("refused"),
            "{uri}: {}",
            text(&o)
        );
    }
    let o = explain(
        &s,
        &[
            "tools/call",
            "--tool",
            "echo",
            "--args",
            r#"{"n": 123456789012345678901}"#,
        ],
    );
    assert!(
        !o.status.success() && text(&o).contains("exactly"),
        "{}",
        text(&o)
    );
}
