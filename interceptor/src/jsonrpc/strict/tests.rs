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

/// An object of `n` distinct keys `k0`..., then `extra` keys.
fn wide(n: usize, extra: &str) -> String {
    let keys: Vec<String> = (0..n).map(|i| format!(r#""k{i}":{i}"#)).collect();
    call(&format!("{{{}{extra}}}", keys.join(",")))
}

#[test]
fn duplicates_are_found_in_wide_objects_and_after_nested_ones() {
    // Past the linear look-up (16 keys) the set of hashes takes over.
    for n in [3, 15, 16, 17, 200] {
        assert!(p(&wide(n, "")).is_ok(), "{n}");
        for dup in [
            r#","k0":1"#,
            r#","K1":1"#,
            r#","\u006b2":1"#,
            r#","k\u017f":1,"ks":2"#,
        ] {
            let bad = wide(n, dup);
            let e = p(&bad).expect_err(&bad);
            assert!(e.to_string().contains("twice"), "{n} {dup}: {e}");
        }
    }
    // A nested object's keys are its own, before and after it closes.
    assert!(
        p(&call(
            r#"{"a":{"b":1,"c":{"a":1,"b":2}},"b":{"a":{}},"c":3}"#
        ))
        .is_ok()
    );
    let e = p(&call(r#"{"a":{"b":1,"c":{"x":1}},"B":2,"A":3}"#)).unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
    let e = p(&call(r#"{"a":[{"x":1},{"x":2,"y":{"z":1},"X":3}]}"#)).unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
    // Keys that only look alike stay apart: a prefix, an escape of another
    // letter, non-ASCII that folds to no ASCII key.
    assert!(p(&call(r#"{"ab":1,"abc":2,"\u0061bd":3,"é":4,"É":{}}"#)).is_err());
    assert!(p(&call(r#"{"ab":1,"abc":2,"\u0061bd":3,"é":4,"e":5}"#)).is_ok());
}
