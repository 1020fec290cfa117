use bytes::Bytes;
use http::HeaderMap;

use super::*;
use crate::jsonrpc::parse;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, v.parse().unwrap());
    }
    h
}

const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;

fn body(s: &str) -> Body {
    parse(&Bytes::copy_from_slice(s.as_bytes())).unwrap()
}

#[test]
fn matching_headers_pass() {
    let h = headers(&[
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
        ("mcp-protocol-version", "2026-07-28"),
    ]);
    assert!(is_stateless(&h));
    assert_eq!(check(&h, &body(CALL)), Ok(()));
    // Base64 sentinel form decodes before comparing.
    let h = headers(&[
        ("mcp-method", "tools/call"),
        ("mcp-name", "=?base64?ZWNobw==?="),
    ]);
    assert_eq!(check(&h, &body(CALL)), Ok(()));
}

#[test]
fn each_mismatch_names_its_header() {
    let cases = [
        (
            headers(&[("mcp-method", "tools/list"), ("mcp-name", "echo")]),
            "Mcp-Method",
        ),
        (
            headers(&[("mcp-name", "echo"), ("mcp-protocol-version", "2026-07-28")]),
            "Mcp-Method",
        ),
        (
            headers(&[("mcp-method", "tools/call"), ("mcp-name", "rm_rf")]),
            "Mcp-Name",
        ),
        (headers(&[("mcp-method", "tools/call")]), "Mcp-Name"),
        (
            headers(&[
                ("mcp-method", "tools/call"),
                ("mcp-name", "echo"),
                ("mcp-protocol-version", "2026-08-01"),
            ]),
            "MCP-Protocol-Version",
        ),
    ];
    for (h, name) in cases {
        let err = check(&h, &body(CALL)).expect_err(name).error();
        assert_eq!(err["code"], -32020);
        assert_eq!(err["data"]["reason"], "header_mismatch");
        assert_eq!(err["data"]["mismatch"]["header"], name);
    }
}

#[test]
fn a_task_request_is_routed_by_its_task_id() {
    let get = r#"{"jsonrpc":"2.0","id":2,"method":"tasks/get","params":{"taskId":"t-1"}}"#;
    let h = |name: &str| headers(&[("mcp-method", "tasks/get"), ("mcp-name", name)]);
    assert_eq!(check(&h("t-1"), &body(get)), Ok(()));
    for (h, why) in [
        (h("t-2"), "another task"),
        (headers(&[("mcp-method", "tasks/get")]), "none"),
    ] {
        let err = check(&h, &body(get)).expect_err(why).error();
        assert_eq!(err["data"]["mismatch"]["header"], "Mcp-Name", "{why}");
    }
}

#[test]
fn older_revisions_are_not_stateless() {
    assert!(!is_stateless(&headers(&[(
        "mcp-protocol-version",
        "2025-11-25"
    )])));
    let batch = body(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#);
    let h = headers(&[("mcp-method", "ping")]);
    assert_eq!(check(&h, &batch).unwrap_err().code(), -32600);
}

#[test]
fn a_mirrored_header_sent_twice_is_refused() {
    // Intermediaries that read the first copy and the server that reads
    // the last would route and run different tools.
    let mut h = headers(&[("mcp-method", "tools/call"), ("mcp-name", "echo")]);
    h.append("mcp-name", "rm_rf".parse().unwrap());
    let err = check(&h, &body(CALL)).unwrap_err().error();
    assert_eq!(err["code"], -32020);
    assert_eq!(
        err["data"]["mismatch"],
        serde_json::json!({"header": "Mcp-Name", "repeated": true})
    );
}
