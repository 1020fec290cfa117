use bytes::Bytes;

use super::super::{ParseError, parse_client};

fn p(s: &str) -> Result<(), ParseError> {
    parse_client(&Bytes::copy_from_slice(s.as_bytes())).map(|_| ())
}

fn call(args: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"q","arguments":{args}}}}}"#
    )
}

#[test]
fn duplicate_keys_are_refused_at_any_depth() {
    assert!(p(&call(r#"{"a":1,"b":{"c":1,"d":2}}"#)).is_ok());
    for bad in [
        r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
        &call(r#"{"sql":"select 1","sql":"drop table t"}"#),
        &call(r#"{"x":[{"k":1,"k":2}]}"#),
        &call(r#"{"sql":"a","\u0073ql":"b"}"#),
        &call(r#"{"path":"/srv/data/a","PATH":"/etc/shadow"}"#),
        &call(r#"{"ask":"/srv/data/a","a\u017fk":"/etc/shadow"}"#),
    ] {
        let e = p(bad).expect_err(bad);
        assert!(e.to_string().contains("twice"), "{bad}: {e}");
        assert_eq!(e.refusal().code(), -32600);
    }
    // The same key in sibling objects is fine.
    assert!(p(&call(r#"{"a":{"k":1},"b":{"k":2}}"#)).is_ok());
    // Keys inside strings are text.
    assert!(p(&call(r#"{"a":"\"a\":1,\"a\":2"}"#)).is_ok());
}

#[test]
fn case_variants_of_member_names_are_refused() {
    for bad in [
        r#"{"jsonrpc":"2.0","ID":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","PARAMS":{"name":"a"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"a"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"Uri":"file:///x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Arguments":{}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_META":{}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"progresstoken":1}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"progressTo\u212Aen":1}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"Content":[]}}"#,
    ] {
        let e = p(bad).expect_err(bad);
        assert!(e.to_string().contains("case variant"), "{bad}: {e}");
    }
    // Argument names are the tool's: any case, as long as it is one key.
    assert!(p(&call(r#"{"NAME":"a","Uri":"b"}"#)).is_ok());
}

#[test]
fn numbers_must_be_exact() {
    for ok in [
        "1",
        "-1",
        "0",
        "18446744073709551615",
        "-9223372036854775808",
        "0.1",
        "1.0",
        "1e2",
        "1.5E-3",
        "0.10",
        "123.456",
        "-0.0",
        "1.7976931348623157e308",
    ] {
        assert!(p(&call(&format!(r#"{{"n":{ok}}}"#))).is_ok(), "{ok}");
    }
    for bad in [
        "123456789012345678901",
        "-0",
        "18446744073709551616",
        "-9223372036854775809",
        "0.1000000000000000000001",
        "12345678901234567890.0",
        "1e-400",
        "9007199254740993.0",
    ] {
        let e = p(&call(&format!(r#"{{"n":[{bad}]}}"#))).unwrap_err();
        assert!(e.to_string().contains("exactly"), "{bad}: {e}");
    }
    // Also as an id.
    assert!(p(r#"{"jsonrpc":"2.0","id":123456789012345678901,"method":"ping"}"#).is_err());
}

fn server(s: &str) -> Result<(), ParseError> {
    super::super::parse_server(&Bytes::copy_from_slice(s.as_bytes())).map(|_| ())
}

#[test]
fn a_server_answer_a_client_could_read_otherwise_is_refused() {
    let ok = r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required","inputRequests":{},"requestState":"s"}}"#;
    assert!(server(ok).is_ok());
    for (bad, why) in [
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"ResultType":"input_required"}}"#,
            "case variant",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"inputrequests":{}}}"#,
            "case variant",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","resultType":"input_required"}}"#,
            "twice",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"a"}],"content":[]}}"#,
            "twice",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{"structuredContent":{"n":123456789012345678901234}}}"#,
            "exactly",
        ),
        (
            r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"Level":"info"}}"#,
            "case variant",
        ),
    ] {
        let e = server(bad).expect_err(bad);
        assert!(e.to_string().contains(why), "{bad}: {e}");
    }
}
