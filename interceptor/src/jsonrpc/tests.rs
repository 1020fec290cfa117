use bytes::Bytes;
use serde_json::json;

use super::*;

fn p(s: &str) -> Result<Body, ParseError> {
    parse(&Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn classifies_every_kind() {
    let cases = [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#,
            Kind::Request,
        ),
        (
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
            Kind::Notification,
        ),
        (r#"{"jsonrpc":"2.0","id":"a","result":{}}"#, Kind::Response),
        (
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#,
            Kind::Error,
        ),
    ];
    for (text, kind) in cases {
        match p(text).expect(text) {
            Body::Single(m) => assert_eq!(m.kind, kind, "{text}"),
            b => panic!("{text}: {b:?}"),
        }
    }
}

#[test]
fn targets_follow_the_method() {
    let Body::Single(m) =
        p(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"db.query"}}"#)
            .unwrap()
    else {
        panic!()
    };
    assert_eq!(m.target(), Some("db.query"));
    let Body::Single(r) =
        p(r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///x"}}"#)
            .unwrap()
    else {
        panic!()
    };
    assert_eq!(r.target(), Some("file:///x"));
    assert_eq!(r.id_key().as_deref(), Some("2"));
}

#[test]
fn ids_of_different_types_stay_distinct() {
    let a = classify(json!({"jsonrpc":"2.0","id":1,"result":{}})).unwrap();
    let b = classify(json!({"jsonrpc":"2.0","id":"1","result":{}})).unwrap();
    assert_ne!(a.id_key(), b.id_key());
}

#[test]
fn bad_input_gets_the_right_code() {
    assert_eq!(p("{not json").unwrap_err().refusal().code(), -32700);
    assert_eq!(
        parse(&Bytes::from_static(b"{\"a\":\"\xff\"}")).unwrap_err(),
        ParseError::Utf8(6)
    );
    for bad in [
        "[]",
        "42",
        r#"{"id":1,"method":"x"}"#,
        r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
        r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
        r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#,
        r#"{"jsonrpc":"2.0","id":true,"method":"x"}"#,
        r#"{"jsonrpc":"2.0","id":0.5,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#,
        r#"{"jsonrpc":"2.0","result":1}"#,
    ] {
        assert_eq!(p(bad).unwrap_err().refusal().code(), -32600, "{bad}");
    }
}

#[test]
fn unchanged_bodies_keep_their_bytes_and_rewrites_reserialize() {
    let original =
        Bytes::from_static(b"{ \"jsonrpc\": \"2.0\",  \"id\": 1, \"method\": \"ping\" }");
    let mut body = parse(&original).unwrap();
    assert_eq!(
        body.to_bytes(&original),
        original,
        "byte-identical when untouched"
    );
    body.messages_mut()[0]
        .rewrite(json!({"jsonrpc":"2.0","id":1,"method":"pong"}))
        .unwrap();
    let out = body.to_bytes(&original);
    assert_eq!(
        serde_json::from_slice::<Value>(&out).unwrap()["method"],
        "pong"
    );
    let batch = Bytes::from_static(
        b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"},{\"jsonrpc\":\"2.0\",\"method\":\"b\"}]",
    );
    let b = parse(&batch).unwrap();
    assert_eq!(b.messages().len(), 2);
    assert_eq!(b.to_bytes(&batch), batch);
}
