use super::*;

#[test]
fn key_names_in_nested_json() {
    let mk = standard();
    let p = mk.profile(None);
    let mut c = Counts::new();
    let mut v = json!({
        "user": {
            "name": "Alice",
            "Password": "hunter2",
            "API-Key": 123456,
            "client-Secret": {"nested": ["a", "b"]},
            "tokens": [{"access_token": "opaque"}, {"refresh_token": 9.5}],
            "session_token": "kept: not exactly a key name",
            "cookie": null,
            "cvv": true,
        },
        "count": 3,
    });
    assert!(p.mask_json(&mut v, &mut c));
    assert_eq!(
        v,
        json!({
            "user": {
                "name": "Alice",
                "Password": "[REDACTED]",
                "API-Key": "[REDACTED]",
                "client-Secret": "[REDACTED]",
                "tokens": [{"access_token": "[REDACTED]"}, {"refresh_token": "[REDACTED]"}],
                "session_token": "kept: not exactly a key name",
                "cookie": null,
                "cvv": true,
            },
            "count": 3,
        })
    );
    assert_eq!(c, BTreeMap::from([("key".to_owned(), 5)]));
    // Already masked: nothing to do, nothing counted.
    let mut c = Counts::new();
    assert!(!p.mask_json(&mut v, &mut c));
    assert!(c.is_empty());
}

#[test]
fn drop_removes_key_and_keeps_order() {
    let mk = masker_with(&[(
        "t",
        MaskProfile {
            keys: vec!["secret".into()],
            key_strategy: Strategy::Drop,
            ..MaskProfile::default()
        },
    )]);
    let mut v = json!({"a": 1, "SECRET": 42, "b": 2, "c": {"se-cret": "x", "d": 3}});
    assert!(mk.profile(Some("t")).mask_json(&mut v, &mut Counts::new()));
    assert_eq!(v.to_string(), r#"{"a":1,"b":2,"c":{"d":3}}"#);
}

#[test]
fn json_embedded_in_text() {
    let mk = standard();
    let p = mk.profile(None);
    let mut c = Counts::new();
    let mut v = json!({"content":[{"type":"text","text":"{\"email\":\"a@b.co\"}"}]});
    assert!(p.mask_json(&mut v, &mut c));
    assert_eq!(
        v,
        json!({"content":[{"type":"text","text":"{\"email\":\"[EMAIL]\"}"}]})
    );
    let inner: Value =
        serde_json::from_str(v["content"][0]["text"].as_str().expect("text")).expect("valid JSON");
    assert_eq!(inner, json!({"email": "[EMAIL]"}));
    // Key names count inside embedded JSON, structuredContent and resources alike.
    let mut v = json!({
        "content": [
            {"type": "text", "text": " [{\"password\": \"p\", \"n\": 4111111111111111}] "},
            {"type": "resource", "resource": {"uri": "file:///x", "text": "call +1 415-555-2671"}},
        ],
        "structuredContent": {"rows": [{"ssn": "078-05-1120", "note": "SSN 078-05-1120"}]},
    });
    assert!(p.mask_json(&mut v, &mut c));
    assert_eq!(
        v,
        json!({
            "content": [
                {"type": "text", "text": "[{\"password\":\"[REDACTED]\",\"n\":\"************1111\"}]"},
                {"type": "resource", "resource": {"uri": "file:///x", "text": "call [PHONE]"}},
            ],
            "structuredContent": {"rows": [{"ssn": "[REDACTED]", "note": "SSN [SSN]"}]},
        })
    );
    // Unchanged embedded JSON keeps its original text (no re-serialization).
    let mut v = json!({"text": "{ \"a\" : 1 }"});
    assert!(!p.mask_json(&mut v, &mut c));
    assert_eq!(v, json!({"text": "{ \"a\" : 1 }"}));
    // Text that only looks like JSON is masked as text.
    let mut v = json!(["[INFO] mail a@b.co]"]);
    assert!(p.mask_json(&mut v, &mut c));
    assert_eq!(v, json!(["[INFO] mail [EMAIL]]"]));
}

#[test]
fn embedded_json_depth_is_bounded() {
    let mut s = json!({"email": "a@b.co"}).to_string();
    for _ in 0..10 {
        s = json!({ "t": s }).to_string();
    }
    let mut v = Value::String(s);
    assert!(
        standard()
            .profile(None)
            .mask_json(&mut v, &mut Counts::new())
    );
    assert!(!v.to_string().contains("a@b.co"));
}

#[test]
fn object_keys_are_masked() {
    let mut v = json!({"alice@example.com": {"role": "admin"}, "bob@example.com": 1, "[EMAIL]": 2});
    let mut c = Counts::new();
    assert!(standard().profile(None).mask_json(&mut v, &mut c));
    assert_eq!(
        v.to_string(),
        r#"{"[EMAIL]":{"role":"admin"},"[EMAIL]#2":1,"[EMAIL]#3":2}"#
    );
    assert_eq!(c, BTreeMap::from([("email".to_owned(), 2)]));
}

/// Profiles of every shape the walk treats differently.
fn walk_profiles() -> Masker {
    let all = |s: Strategy| MaskProfile {
        detectors: Kind::ALL.iter().map(|k| k.name().to_owned()).collect(),
        strategies: Kind::ALL.iter().map(|k| (k.name().to_owned(), s)).collect(),
        keys: vec!["password".into(), "token".into(), "ssn".into()],
        key_strategy: s,
        custom: Vec::new(),
    };
    masker_with(&[
        ("redact", all(Strategy::Redact)),
        ("partial", all(Strategy::Partial)),
        ("hash", all(Strategy::Hash)),
        ("drop", all(Strategy::Drop)),
        (
            "custom",
            MaskProfile {
                custom: vec![
                    CustomDetector {
                        strategy: Strategy::Drop,
                        ..custom("pin", r"^\d{4}$", None)
                    },
                    custom("ref", r"REF-\d+", None),
                ],
                keys: vec!["secret".into()],
                ..MaskProfile::default()
            },
        ),
    ])
}

/// A deterministic random JSON document of values that mask, values that
/// almost do, escapes, and keys that the walk treats apart.
fn random_doc(state: &mut u64, depth: u32) -> Value {
    const STRINGS: &[&str] = &[
        "alice@example.com",
        "mail bob@example.org now",
        "4111 1111 1111 1111",
        "+1 415-555-2671",
        "020 7946 0958",
        "078-05-1120",
        "DE89 3704 0044 0532 0130 00",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_a1B2a1B2a1B2a1B2a1B2a1B2a1B2a1B2a1B2",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "[EMAIL]",
        "****1111",
        "1234",
        "REF-77 and 1234",
        "plain words",
        "",
        "é ✓ 東京 a@b.co",
        "line\nbreak \"quoted\" back\\slash\t/",
        "\u{1}\u{1f}\u{7f}\u{2028}\u{8}\u{c}\r",
        "{not json",
        "[4111111111111111, 1]",
        "{\"password\": \"p\", \"a@b.co\": 1}",
        "2026-11-25T10:00:00Z",
        "550e8400-e29b-41d4-a716-446655440000",
    ];
    const KEYS: &[&str] = &[
        "id",
        "password",
        "Pass-Word",
        "token",
        "name",
        "x",
        "ssn",
        "secret",
        "é",
        "q\"uote",
        "a@b.co",
        "4111111111111111",
        "[EMAIL]",
    ];
    let leaf = |r: u64| -> Value {
        match r % 12 {
            0 => Value::Null,
            1 => Value::Bool(r % 24 == 1),
            2 => json!(4_111_111_111_111_111u64),
            3 => json!(-4_111_111_111_111_111i64),
            4 => json!(1.5),
            5 => json!(1234),
            6 => json!(u64::MAX),
            7 => json!(1e300),
            _ => Value::String(STRINGS[(r / 12) as usize % STRINGS.len()].to_owned()),
        }
    };
    match rand(state, if depth == 0 { 1 } else { 4 }) {
        0 => leaf(rand(state, 10_000)),
        1 => Value::Array(
            (0..rand(state, 5))
                .map(|_| random_doc(state, depth - 1))
                .collect(),
        ),
        2 => {
            // JSON inside a string inside JSON.
            let inner = random_doc(state, depth - 1);
            Value::String(inner.to_string())
        }
        _ => {
            let mut m = Map::new();
            for _ in 0..rand(state, 6) {
                let k = KEYS[rand(state, KEYS.len() as u64) as usize];
                m.insert(k.to_owned(), random_doc(state, depth - 1));
            }
            Value::Object(m)
        }
    }
}

fn outcome(m: Option<Masked>) -> Option<String> {
    m.map(|m| match m {
        Masked::Text(t) => t,
        Masked::Gone => "<gone>".to_owned(),
    })
}

/// The streaming pass over JSON in text (`embedded`) writes exactly what
/// parsing, walking and serializing the tree would, and counts the same.
#[test]
fn embedded_json_streams_exactly_as_the_tree() {
    assert!(embedded::ordered(), "serde_json preserves key order");
    let mk = walk_profiles();
    let mut docs: Vec<String> = [
        r#"{"a": "x@y.co", "a": 1}"#,
        r#"{"b": 1, "a@b.co": 2, "[EMAIL]": 3}"#,
        r#"{"$serde_json::private::RawValue": "{}"}"#,
        r#" [ {"password" : "hunter2", "n" : 4111111111111111} , 1.0e2, -0, 1E400 ] "#,
        r#"{"text": "{\"email\": \"a@b.co\", \"deep\": \"[\\\"c@d.co\\\"]\"}"}"#,
        r#"{"esc\u0061ped": "\u0061@b.co \/ \ud83d\ude00", "n": 100000000000000000000}"#,
        r#"[1, 2] trailing"#,
        r#"{"unterminated": "a@b.co""#,
        r#"[{"pin": 1234}, "1234", [1234]]"#,
        r#"{"secret": {"nested": ["a@b.co"]}, "token": null, "ssn": true}"#,
    ]
    .iter()
    .map(|d| (*d).to_owned())
    .collect();
    docs.push(format!("{}{}", "[".repeat(130), "]".repeat(130)));
    // Objects past the 64 keys compared one by one, with a key twice
    // (early, late) and without.
    let many = |n: usize| {
        (0..n)
            .map(|i| format!("\"k{i}\": \"a@b.co\""))
            .collect::<Vec<_>>()
    };
    for (n, dup) in [(100, Some(3)), (100, Some(99)), (100, None), (40, Some(39))] {
        let mut keys = many(n);
        if let Some(d) = dup {
            keys.push(format!("\"k{d}\": 1"));
        }
        docs.push(format!("{{{}}}", keys.join(",")));
    }
    let mut state = 7;
    for i in 0..400 {
        let v = random_doc(&mut state, 4);
        if v.is_object() || v.is_array() {
            docs.push(if i % 3 == 0 {
                serde_json::to_string_pretty(&v).expect("json")
            } else {
                v.to_string()
            });
        }
    }
    let mut streamed = 0;
    for name in ["standard", "redact", "partial", "hash", "drop", "custom"] {
        let p = mk.profile(Some(name));
        for d in &docs {
            let (mut c1, mut c2) = (Counts::new(), Counts::new());
            if matches!(
                embedded::mask(p, d, &mut Counts::new(), 0, &mut Default::default()),
                embedded::Outcome::Unchanged | embedded::Outcome::Masked(_)
            ) {
                streamed += 1;
            }
            let a = outcome(walk::string(p, d, &mut c1, 0, &mut Default::default()));
            // The tree: parsed, walked and written back whole.
            let b = outcome(match serde_json::from_str::<Value>(d) {
                Ok(mut v) if v.is_object() || v.is_array() => {
                    let memo = &mut Default::default();
                    let changed = walk::value(p, &mut v, &mut c2, 1, memo) != walk::Change::Same;
                    changed.then(|| Masked::Text(v.to_string()))
                }
                _ => p.apply(d, &mut c2, false),
            });
            assert_eq!(a, b, "profile {name}, document {d}");
            assert_eq!(c1, c2, "profile {name}, document {d}");
        }
    }
    assert!(
        streamed > docs.len() * 4,
        "{streamed} of {} streamed",
        docs.len() * 6
    );
}

/// Verdicts on keys are remembered by id: two keys of up to 16 bytes have
/// one id exactly when they are the same bytes (a longer key's id is a
/// hash, only ever used to find duplicates).
#[test]
fn short_key_ids_are_the_keys_bytes() {
    let mut state = 3;
    let keys: Vec<Vec<u8>> = (0..2000)
        .map(|_| {
            let len = rand(&mut state, 21) as usize;
            (0..len)
                .map(|_| b"ab_-"[rand(&mut state, 4) as usize])
                .collect()
        })
        .collect();
    let mut same = 0;
    for a in &keys {
        for b in &keys[..300] {
            let equal_ids = keys::KeyId::of(a) == keys::KeyId::of(b);
            if a.len() <= 16 && b.len() <= 16 {
                assert_eq!(equal_ids, a == b, "{a:?} {b:?}");
            } else if a == b {
                assert!(equal_ids);
            }
            same += usize::from(a == b);
        }
    }
    assert!(same > 300, "the sample has equal keys too ({same})");
}
