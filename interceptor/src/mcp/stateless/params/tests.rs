use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::check;
use crate::jsonrpc::{Body, Message, parse};

fn schema() -> Value {
    json!({"type": "object", "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "count": {"type": "integer", "x-mcp-header": "Count"},
        "dry": {"type": "boolean", "x-mcp-header": "Dry"},
        "opts": {"type": "object", "properties": {
            "tenant": {"type": "string", "x-mcp-header": "Tenant"}}},
        "query": {"type": "string"}}})
}

fn call(args: Value) -> Message {
    let s = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "route", "arguments": args}})
    .to_string();
    match parse(&Bytes::from(s)).unwrap() {
        Body::Single(m) => m,
        Body::Batch(_) => unreachable!(),
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    h
}

/// The refusal's `data.mismatch.header` and message.
fn refused(h: &[(&str, &str)], args: Value, schema: Option<&Value>) -> (Value, String) {
    let err = check(&headers(h), &call(args), schema)
        .expect_err("refused")
        .error();
    assert_eq!(err["code"], -32020, "{err}");
    assert_eq!(err["data"]["reason"], "header_mismatch", "{err}");
    (
        err["data"]["mismatch"]["header"].clone(),
        err["message"].as_str().unwrap().to_string(),
    )
}

#[test]
fn mirrored_arguments_pass() {
    let s = schema();
    let args = json!({"region": "us-west1", "count": 42, "dry": false,
        "opts": {"tenant": "Zürich"}, "query": "SELECT 1"});
    let h = [
        ("mcp-param-region", "us-west1"),
        ("Mcp-Param-Count", "42"),
        ("MCP-PARAM-DRY", "false"),
        ("mcp-param-tenant", "=?base64?WsO8cmljaA==?="),
    ];
    assert_eq!(check(&headers(&h), &call(args), Some(&s)), Ok(()));
    // Absent and null arguments send no header; 42.0 in the body is 42.
    let args = json!({"count": 42.0, "region": null});
    assert_eq!(
        check(
            &headers(&[("mcp-param-count", "42")]),
            &call(args),
            Some(&s)
        ),
        Ok(())
    );
    // A tool that declares nothing, called without headers; an unseen one too.
    assert_eq!(
        check(&headers(&[]), &call(json!({"a": 1})), Some(&json!({}))),
        Ok(())
    );
    assert_eq!(check(&headers(&[]), &call(json!({"a": 1})), None), Ok(()));
}

#[test]
fn a_header_that_differs_from_its_argument_is_refused() {
    let s = schema();
    // The region argument is us-west1 in the first five.
    let region = |v| ("mcp-param-region", v, json!({"region": "us-west1"}));
    let cases: [(&str, &str, Value); 9] = [
        region("eu-west1"),
        region("US-WEST1"),
        region("=?base64?ZXUtd2VzdDE=?="),
        // Not canonical Base64 (trailing bits), not Base64 at all.
        region("=?base64?dXMtd2VzdDF=?="),
        region("=?base64?***?="),
        ("mcp-param-count", "042", json!({"count": 42})),
        ("mcp-param-count", "42.0", json!({"count": 42})),
        ("mcp-param-dry", "True", json!({"dry": true})),
        (
            "mcp-param-tenant",
            "Zürich",
            json!({"opts": {"tenant": "Zürich"}}),
        ),
    ];
    for (name, value, args) in cases {
        let (header, msg) = refused(&[(name, value)], args.clone(), Some(&s));
        assert!(
            header.as_str().unwrap().eq_ignore_ascii_case(name),
            "{name}: {value}: {header} {msg}"
        );
    }
}

/// A refusal case: headers, arguments, whether the tool's schema is
/// known, the header the refusal names (null: not checked), what the
/// message says.
type Refusal = (
    &'static [(&'static str, &'static str)],
    Value,
    bool,
    Value,
    &'static str,
);

#[test]
fn missing_extra_and_unbound_headers_are_refused() {
    let s = schema();
    // (headers, arguments, the tool's schema known, header named, message says)
    let cases: [Refusal; 6] = [
        (
            &[],
            json!({"region": "us-west1"}),
            true,
            json!("Mcp-Param-Region"),
            "must be sent",
        ),
        (
            &[("mcp-param-region", "x")],
            json!({"region": null}),
            true,
            json!("Mcp-Param-Region"),
            "absent or null",
        ),
        (
            &[("mcp-param-query", "SELECT 1")],
            json!({"query": "SELECT 1"}),
            true,
            json!("Mcp-Param-query"),
            "declares no such",
        ),
        (
            &[("mcp-param-region", "us")],
            json!({"region": "us"}),
            false,
            Value::Null,
            "has not seen tool \"route\"",
        ),
        (
            &[("mcp-param-region", "us")],
            json!({"region": {"a": 1}}),
            true,
            Value::Null,
            "no header can mirror it",
        ),
        (
            &[("mcp-param-count", "9007199254740993")],
            json!({"count": 9007199254740993_u64}),
            true,
            Value::Null,
            "no header can mirror it",
        ),
    ];
    for (headers, args, known, header, says) in cases {
        let (h, msg) = refused(headers, args, known.then_some(&s));
        assert!(msg.contains(says), "{says}: {msg}");
        if !header.is_null() {
            assert_eq!(h, header, "{says}: {msg}");
        }
    }
}

#[test]
fn a_repeated_or_unreadable_header_is_refused() {
    let s = schema();
    let args = json!({"region": "us-west1"});
    let (h, msg) = refused(
        &[
            ("Mcp-Param-Region", "us-west1"),
            ("mcp-param-REGION", "eu-west1"),
        ],
        args.clone(),
        Some(&s),
    );
    assert_eq!(
        (h.as_str(), msg.contains("more than once")),
        (Some("Mcp-Param-region"), true)
    );
    let (h, _) = refused(
        &[("mcp-param-region", "us-w\u{e9}st1")],
        json!({"region": "us-wést1"}),
        Some(&s),
    );
    assert_eq!(h, "Mcp-Param-Region");
}

#[test]
fn an_invalid_declaration_refuses_the_tool_and_headers_bind_only_to_tools_call() {
    let dup = json!({"type": "object", "properties": {
        "a": {"type": "string", "x-mcp-header": "Region"},
        "b": {"type": "string", "x-mcp-header": "region"}}});
    let err = check(&headers(&[]), &call(json!({"a": "x"})), Some(&dup))
        .unwrap_err()
        .error();
    assert_eq!(err["code"], -32020);
    assert!(
        err["data"]["mismatch"]["invalid"]
            .as_str()
            .unwrap()
            .contains("case-insensitive"),
        "{err}"
    );
    let list = match parse(&Bytes::from_static(
        br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    ))
    .unwrap()
    {
        Body::Single(m) => m,
        Body::Batch(_) => unreachable!(),
    };
    assert_eq!(check(&headers(&[]), &list, None), Ok(()));
    let err = check(&headers(&[("mcp-param-region", "x")]), &list, None).unwrap_err();
    assert!(
        err.message().contains("only a tools/call"),
        "{}",
        err.message()
    );
}
