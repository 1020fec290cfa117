//! Names and URIs the policy could misread, through the steered port with
//! real OIDC identities: a tool name with a look-alike or invisible
//! character, a case variant of a listed tool, and resource URIs that walk
//! out of a permitted prefix with `..`, percent-escapes or extra slashes.
//! Each is refused with a clear JSON-RPC error before the server sees it.

use mcp_interceptor_tests::{
    http::RawResponse,
    peer::call_with,
    require_root,
    world::{URL, World, bearer, post_mcp, token},
};
use serde_json::{Value, json};

const POLICY: &str = r#"
@id("session")
permit (
  principal,
  action in [Mcp::Action::"initialize", Mcp::Action::"ping", Mcp::Action::"tools/list"],
  resource
);

@id("dev-tools")
permit (principal in Mcp::Group::"dev", action == Mcp::Action::"tools/call", resource in Mcp::Server::"8080");

@id("no-read-file")
forbid (principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"read_file");

@id("data-resources")
permit (principal in Mcp::Group::"dev", action == Mcp::Action::"resources/read", resource)
when { resource.uri like "file:///srv/data/*" };
"#;

fn call(w: &World, token: &str, id: i64, method: &str, params: Value) -> RawResponse {
    post_mcp(
        &w.ns,
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        &[bearer(token)],
    )
}

/// The JSON-RPC error code and message; (0, body) when the answer is not
/// JSON-RPC (the server's own plain-text refusal of a bare request).
fn error(r: &RawResponse) -> (i64, String) {
    let Ok(v) = serde_json::from_slice::<Value>(&r.body) else {
        return (0, String::from_utf8_lossy(&r.body).into_owned());
    };
    let e = &v["error"];
    (
        e["code"].as_i64().unwrap_or(0),
        e["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn look_alike_names_and_uri_tricks_are_refused_before_policy() {
    require_root();
    let w = World::with("names", "", |dir| {
        let file = dir.join("policy.cedar");
        std::fs::write(&file, POLICY).unwrap();
        format!("[policy]\nfiles = [\"{}\"]\n", file.display())
    });
    let alice = token(&w.issuer, "alice", &["dev"]);

    // A real client session: the agent learns the server's tool names.
    let ok = call_with(
        w.ns.name(),
        URL,
        "echo",
        json!({"text": "hi"}),
        &["--bearer", &alice],
    )
    .json();
    assert_eq!(ok["result"]["content"][0]["text"], "hi", "{ok}");

    // The forbidden tool itself.
    let (code, _) = error(&call(
        &w,
        &alice,
        1,
        "tools/call",
        json!({"name": "read_file", "arguments": {"path": "/x"}}),
    ));
    assert_eq!(code, -32002);
    // A case variant of it is not judged as another tool.
    let (code, msg) = error(&call(
        &w,
        &alice,
        2,
        "tools/call",
        json!({"name": "READ_File", "arguments": {"path": "/x"}}),
    ));
    assert_eq!(code, -32602, "{msg}");
    assert!(
        msg.contains("\"read_file\" is") && msg.contains("case-sensitive"),
        "{msg}"
    );
    // Look-alikes, invisible characters, NUL.
    for (name, shows) in [
        ("r\u{0435}ad_file", "U+0435"),
        ("read_file\u{200b}", "U+200B"),
        ("read\u{0}file", "U+0000"),
        ("read file", "U+0020"),
    ] {
        let (code, msg) = error(&call(
            &w,
            &alice,
            3,
            "tools/call",
            json!({"name": name, "arguments": {}}),
        ));
        assert_eq!(code, -32602, "{name:?}: {msg}");
        assert!(
            msg.contains(shows) && msg.contains("invalid tool name"),
            "{name:?}: {msg}"
        );
    }

    // Resource URIs are judged as the server resolves them. A permitted
    // one goes on to the server (which has no resources: its own error).
    let (code, msg) = error(&call(
        &w,
        &alice,
        4,
        "resources/read",
        json!({"uri": "file:///srv/data/a.txt"}),
    ));
    assert_ne!(code, -32002, "permitted: {msg}");
    for uri in [
        "file:///srv/data/../../etc/passwd",
        "file:///srv/data/%2e%2e/%2E%2E/etc/passwd",
        "file:///srv/data/..%2f..%2fetc/passwd",
        "FILE:////srv/data/../../etc/passwd",
        "file:///srv/data/a%00.txt",
    ] {
        let (code, msg) = error(&call(&w, &alice, 5, "resources/read", json!({"uri": uri})));
        assert_eq!(code, -32002, "{uri}: {msg}");
    }

    let log = w.agent.log();
    assert!(log.contains("name refused before policy"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
