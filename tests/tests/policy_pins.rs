//! Tool pinning and names against a server that changes under its
//! clients, through the proxy with real OIDC callers: a flipped
//! `readOnlyHint` is a changed tool; the names the servers listed survive a
//! config reload; and the shipped filesystem example guards every path of
//! a `paths` array.

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir,
    http::RawResponse,
    oidc::Issuer,
    peer::{self, call_with},
    require_root,
    world::{PORT, UPSTREAM, URL, World, bearer, post_mcp, sections, token},
};
use serde_json::{Value, json};

const POLICY: &str = r#"
@id("all-for-dev")
permit (principal in Mcp::Group::"dev", action, resource);
"#;

fn pin_sections(dir: &std::path::Path) -> String {
    let file = dir.join("policy.cedar");
    std::fs::write(&file, POLICY).unwrap();
    format!(
        "[policy]\nfiles = [\"{}\"]\npins_file = \"{}\"\non_tool_change = \"block\"\n",
        file.display(),
        dir.join("pins.json").display()
    )
}

/// The rmcp client: lists the tools, then calls `name`; its JSON output.
fn tool(w: &World, token: &str, name: &str, args: Value) -> Value {
    call_with(w.ns.name(), URL, name, args, &["--bearer", token]).json()
}

/// A bare tools/call (no session): enough for the agent to decide.
fn raw_call(ns: &NetNs, token: &str, id: i64, tool: &str, args: Value) -> RawResponse {
    post_mcp(
        ns,
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": tool, "arguments": args}}),
        &[bearer(token)],
    )
}

fn error(r: &RawResponse) -> Value {
    serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null)["error"].clone()
}

#[test]
fn a_flipped_read_only_hint_is_a_changed_tool() {
    require_root();
    let w = World::with("pinann", "", pin_sections);
    let alice = token(&w.issuer, "alice", &["dev"]);
    let first = tool(&w, &alice, "echo", json!({"text": "before"}));
    assert!(
        first["tools"].as_array().unwrap().contains(&json!("echo")),
        "{first}"
    );

    // Same description, same schema: only the annotation changes, the one
    // clients use to skip their confirmation prompt.
    tool(
        &w,
        &alice,
        "set_echo_description",
        json!({ "read_only_hint": true }),
    );
    let after = tool(&w, &alice, "add", json!({"a": 1, "b": 1}));
    assert!(
        !after["tools"].as_array().unwrap().contains(&json!("echo")),
        "the re-annotated tool is still listed: {after}"
    );
    let r = raw_call(&w.ns, &alice, 1, "echo", json!({"text": "x"}));
    assert_eq!(
        error(&r)["code"],
        -32002,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let pins: Value =
        serde_json::from_slice(&std::fs::read(w.dir.path().join("pins.json")).unwrap()).unwrap();
    assert_eq!(
        pins["servers"]["8080"]["echo"]["definition"]["annotations"]["readOnlyHint"], true,
        "{pins}"
    );
}

#[test]
fn names_the_server_listed_survive_a_reload() {
    require_root();
    let mut w = World::with("pinnames", "", pin_sections);
    let alice = token(&w.issuer, "alice", &["dev"]);
    tool(&w, &alice, "echo", json!({"text": "learn the names"}));
    let refused = |w: &World, id| {
        let r = raw_call(&w.ns, &alice, id, "ECHO", json!({"text": "x"}));
        let e = error(&r);
        assert_eq!(
            e["code"],
            -32602,
            "call {id}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let m = e["message"].as_str().unwrap_or_default().to_string();
        assert!(
            m.contains("case-sensitive") && m.contains("\"echo\""),
            "{m}"
        );
    };
    refused(&w, 1);
    w.agent.reload(&w.ns, "", PORT);
    // No tools/list since the reload: the agent must still know "echo".
    refused(&w, 2);
}

/// The shipped example policies, the rmcp peer as the "files" server.
struct Files {
    _agent: Agent,
    _server: Proc,
    issuer: Issuer,
    ns: NetNs,
    _dir: TempDir,
}

fn files(tag: &str) -> Files {
    let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
    let issuer = Issuer::start(&ns, 9400, dir.path());
    let cred = dir.path().join("upstream-credential");
    std::fs::write(&cred, format!("{UPSTREAM}\n")).unwrap();
    let server = peer::server_with(
        ns.name(),
        "127.0.0.1:8080",
        dir.path(),
        &["--require-auth", UPSTREAM],
    );
    let examples = mcp_interceptor_tests::everything::repo().join("deploy/policy/examples");
    let tables = format!(
        "{}[policy]\nfiles = [\"{}\"]\n",
        sections(&issuer, &cred, ""),
        examples.display()
    );
    let agent = Agent::start_full(
        &ns,
        dir.path(),
        "",
        "[[intercept.ports]]\nport = 8080\nname = \"files\"\n",
        "",
        &tables,
        Vec::new(),
    );
    Files {
        _agent: agent,
        _server: server,
        issuer,
        ns,
        _dir: dir,
    }
}

#[test]
fn the_filesystem_example_guards_every_path_of_an_array() {
    require_root();
    let f = files("fspaths");
    let alice = token(&f.issuer, "alice", &["dev"]);
    let policies = |r: &RawResponse| error(r)["data"]["policies"].clone();
    let cases = [
        (
            "read_multiple_files",
            json!({"paths": ["/srv/data/a.csv", "/etc/shadow"]}),
            "fs-outside-data-paths",
        ),
        (
            "read_multiple_files",
            json!({"paths": ["/srv/data/../../etc/shadow"]}),
            "fs-outside-data-paths",
        ),
        (
            "read_multiple_files",
            json!({"paths": (0..17).map(|i| format!("/srv/data/{i}")).collect::<Vec<_>>()}),
            "fs-too-many-paths",
        ),
        (
            "move_file",
            json!({"source": "/srv/data/a.csv", "destination": "/tmp/a.csv"}),
            "fs-outside-data",
        ),
    ];
    for (i, (tool, args, policy)) in cases.into_iter().enumerate() {
        let r = raw_call(&f.ns, &alice, i as i64 + 1, tool, args.clone());
        assert_eq!(
            error(&r)["code"],
            -32002,
            "{tool} {args} reached the server: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(policies(&r), json!([policy]), "{tool} {args}");
    }
    // Inside the data directory the list is read (the peer has no such
    // tool, so the server's own error shows the call went through).
    let r = raw_call(
        &f.ns,
        &alice,
        9,
        "read_multiple_files",
        json!({"paths": ["/srv/data/a.csv", "/srv/data/b.csv"]}),
    );
    assert_ne!(
        error(&r)["code"],
        -32002,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}
