use http::{HeaderMap, HeaderValue};

use super::*;

fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.insert(*k, HeaderValue::from_static(v));
    }
    m
}

#[test]
fn json_rpc_bodies_are_recognised_in_any_case_and_in_batches() {
    let none = HeaderMap::new();
    for b in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        r#"{"JSONRPC":"2.0","id":1}"#,
        r#"{"method":"tools/call"}"#,
        "\u{feff} [1, {\"jsonrpc\":\"2.0\",\"method\":\"x\"}]",
    ] {
        assert_eq!(read_body(&none, b.as_bytes()), Body::JsonRpc, "{b}");
    }
    for b in [
        r#"{"status":"ok"}"#,
        "[]",
        "hello",
        r#"{"a":{"jsonrpc":1}}"#,
        "",
    ] {
        assert_eq!(read_body(&none, b.as_bytes()), Body::Other, "{b}");
    }
}

#[test]
fn bodies_the_agent_cannot_read_are_unsure() {
    let none = HeaderMap::new();
    assert!(matches!(
        read_body(&none, br#"{"jsonrpc":"2.0",}"#),
        Body::Unsure(_)
    ));
    let gz = h(&[("content-encoding", "gzip")]);
    assert!(matches!(read_body(&gz, b"x"), Body::Unsure(_)));
    let utf16 = h(&[("content-type", "application/json; charset=utf-16")]);
    assert!(matches!(read_body(&utf16, b"{}"), Body::Unsure(_)));
    let utf8 = h(&[("content-type", "application/json; charset=UTF-8")]);
    assert_eq!(read_body(&utf8, br#"{"jsonrpc":"2.0"}"#), Body::JsonRpc);
}
