use super::*;

fn strategy_profile(s: Strategy) -> Masker {
    masker_with(&[(
        "t",
        MaskProfile {
            detectors: vec!["email".into(), "card".into()],
            strategies: BTreeMap::from([("email".into(), s), ("card".into(), s)]),
            keys: vec!["password".into()],
            key_strategy: s,
            custom: Vec::new(),
        },
    )])
}

/// Each text masks to what the case says, counted in `c`.
fn assert_texts(p: &Profile, c: &mut Counts, cases: &[(&str, &str)]) {
    for (text, want) in cases {
        assert_eq!(p.mask_str(text, c).as_deref(), Some(*want), "{text}");
    }
}

#[test]
fn strategy_redact() {
    let mk = strategy_profile(Strategy::Redact);
    let out = mk
        .profile(Some("t"))
        .mask_str("a alice@example.com 4111111111111111 b", &mut Counts::new());
    assert_eq!(out.as_deref(), Some("a [EMAIL] [CARD] b"));
}

#[test]
fn strategy_partial() {
    let mk = strategy_profile(Strategy::Partial);
    let p = mk.profile(Some("t"));
    let mut c = Counts::new();
    assert_texts(
        p,
        &mut c,
        &[
            ("4111-1111-1111-1111", "****-****-****-1111"),
            ("bob@ex.io", "***@ex.io"),
            ("bo@e.io", "*o@e.io"),
        ],
    );
    let mut v = json!({"password": "hunter2", "pin": {"password": 1234}});
    assert!(p.mask_json(&mut v, &mut c));
    assert_eq!(
        v,
        json!({"password": "***ter2", "pin": {"password": "****"}})
    );
}

#[test]
fn strategy_hash() {
    let mk = strategy_profile(Strategy::Hash);
    let p = mk.profile(Some("t"));
    let mut c = Counts::new();
    let a = p.mask_str("alice@example.com", &mut c).expect("masked");
    let b = p.mask_str("to alice@example.com", &mut c).expect("masked");
    let other = p.mask_str("bob@example.com", &mut c).expect("masked");
    assert!(
        a.starts_with("[EMAIL:") && a.ends_with(']') && a.len() == "[EMAIL:]".len() + 16,
        "{a}"
    );
    assert_eq!(b, format!("to {a}"), "equal values correlate");
    assert_ne!(a, other);
    // The HMAC of name || 0x00 || value under the agent's key.
    let mac = HmacKey::new(&KEY).mac(&[b"email\0alice@example.com"]);
    assert_eq!(a, format!("[EMAIL:{}]", hex::encode(&mac[..8])));
    // Another key, another hash.
    let cfg = MaskConfig {
        profiles: BTreeMap::from([("t".into(), strategy_profile_cfg(Strategy::Hash))]),
        ..MaskConfig::default()
    };
    let other_key = Masker::new(&cfg, [8; 32]).expect("masker");
    assert_ne!(
        other_key
            .profile(Some("t"))
            .mask_str("alice@example.com", &mut c),
        Some(a)
    );
    // Key hits hash too, numbers as their JSON text.
    let mut v = json!({"password": 1234});
    assert!(p.mask_json(&mut v, &mut c));
    let mac = HmacKey::new(&KEY).mac(&[b"key\x001234"]);
    assert_eq!(
        v,
        json!({"password": format!("[REDACTED:{}]", hex::encode(&mac[..8]))})
    );
    // Masking the audit copy of an answer again changes nothing.
    assert!(!p.mask_json(&mut v, &mut c));
}

fn strategy_profile_cfg(s: Strategy) -> MaskProfile {
    MaskProfile {
        detectors: vec!["email".into()],
        strategies: BTreeMap::from([("email".into(), s)]),
        ..MaskProfile::default()
    }
}

#[test]
fn strategy_drop() {
    let mk = strategy_profile(Strategy::Drop);
    let p = mk.profile(Some("t"));
    let mut c = Counts::new();
    assert_texts(
        p,
        &mut c,
        &[
            ("mail alice@example.com now", "mail  now"),
            ("alice@example.com", ""),
        ],
    );
    let mut v = json!({
        "email": "alice@example.com",
        "note": "from alice@example.com",
        "list": ["bob@example.com", 1],
        "password": "x",
        "nested": {"PassWord": {"a": 1}, "keep": true},
    });
    assert!(p.mask_json(&mut v, &mut c));
    // A value dropped whole leaves its object with its key, as a key-name
    // drop does ("password"); in an array it leaves a null, so the
    // elements after it keep their positions.
    assert_eq!(
        v.to_string(),
        r#"{"note":"from ","list":[null,1],"nested":{"keep":true}}"#
    );
    assert_eq!(c.get("email"), Some(&5));
    assert_eq!(c.get("key"), Some(&2));
    // The same inside JSON embedded in text, and for a whole value.
    let mut v = json!({"text": "{\"a\": \"bob@example.com\", \"b\": [\"bob@example.com\"]}"});
    assert!(p.mask_json(&mut v, &mut c));
    assert_eq!(v, json!({"text": "{\"b\":[null]}"}));
    let mut v = json!("bob@example.com");
    assert!(p.mask_json(&mut v, &mut c));
    assert_eq!(v, Value::Null);
    // A number dropped by a custom detector goes the same way.
    let mk = masker_with(&[(
        "n",
        MaskProfile {
            custom: vec![CustomDetector {
                strategy: Strategy::Drop,
                ..custom("pin", r"^\d{4}$", None)
            }],
            ..MaskProfile::default()
        },
    )]);
    let mut v = json!({"pin": 1234, "n": 12345, "pins": [1234]});
    assert!(mk.profile(Some("n")).mask_json(&mut v, &mut c));
    assert_eq!(v.to_string(), r#"{"n":12345,"pins":[null]}"#);
}

#[test]
fn counts_per_detector() {
    let mut c = Counts::new();
    let out = standard().profile(None).mask_str(
        "a@b.co c@d.co 4111111111111111 078-05-1120 +14155552671 AKIAIOSFODNN7EXAMPLE",
        &mut c,
    );
    assert_eq!(
        out.as_deref(),
        Some("[EMAIL] [EMAIL] ************1111 [SSN] [PHONE] [AWS_ACCESS_KEY]")
    );
    let want: Counts = [
        ("aws_access_key", 1),
        ("card", 1),
        ("email", 2),
        ("phone", 1),
        ("ssn", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(c, want);
    // Counts accumulate across calls; nothing matched adds nothing.
    assert_eq!(
        standard()
            .profile(None)
            .mask_str("a@b.co", &mut c)
            .as_deref(),
        Some("[EMAIL]")
    );
    assert_eq!(
        standard().profile(None).mask_str("nothing here", &mut c),
        None
    );
    assert_eq!(c["email"], 3);
}

#[test]
fn custom_detectors() {
    let mk = masker_with(&[(
        "t",
        MaskProfile {
            custom: vec![
                custom("employee_id", r"\bEMP-\d{6}\b", None),
                custom("loyalty", r"\b\d{8}\b", Some(Validator::Luhn)),
                custom(
                    "account",
                    r"\b[A-Z]{2}\d{2}[A-Z0-9]{10,30}\b",
                    Some(Validator::Mod97),
                ),
                CustomDetector {
                    strategy: Strategy::Drop,
                    ..custom("ticket", r"TCK\d+", None)
                },
            ],
            strategies: BTreeMap::from([("ticket".into(), Strategy::Partial)]),
            ..MaskProfile::default()
        },
    )]);
    let p = mk.profile(Some("t"));
    let mut c = Counts::new();
    let out = p.mask_str(
        "EMP-123456 EMP-1234567 12345674 12345678 GB82WEST12345698765432 GB82WEST12345698765433 TCK98765",
        &mut c,
    );
    assert_eq!(
        out.as_deref(),
        Some(
            "[EMPLOYEE_ID] EMP-1234567 [LOYALTY] 12345678 [ACCOUNT] GB82WEST12345698765433 ****8765"
        )
    );
    assert_eq!(c.len(), 4);
    // A custom detector applies to JSON numbers too.
    let mut v = json!({"n": 12345674});
    assert!(p.mask_json(&mut v, &mut c));
    assert_eq!(v, json!({"n": "[LOYALTY]"}));
}

#[test]
fn config_errors() {
    let err = |p: MaskProfile| {
        Masker::new(
            &MaskConfig {
                profiles: BTreeMap::from([("p".into(), p)]),
                ..MaskConfig::default()
            },
            KEY,
        )
        .expect_err("must fail")
    };
    let e = err(MaskProfile {
        custom: vec![custom("order_ref", r"ORD-(\d+", None)],
        ..MaskProfile::default()
    });
    assert!(matches!(e, MaskError::BadRegex { ref detector, .. } if detector == "order_ref"));
    assert!(e.to_string().contains("order_ref"), "{e}");
    let e = err(only(&["email", "credit_card"]));
    assert!(e.to_string().contains("credit_card"), "{e}");
    let e = err(MaskProfile {
        strategies: BTreeMap::from([("emial".into(), Strategy::Hash)]),
        ..MaskProfile::default()
    });
    assert!(matches!(e, MaskError::UnknownStrategy { .. }), "{e}");
    for bad in ["email", "key", "Upper", ""] {
        let e = err(MaskProfile {
            custom: vec![custom(bad, "x", None)],
            ..MaskProfile::default()
        });
        assert!(matches!(e, MaskError::BadCustom { .. }), "{bad}: {e}");
    }
    let e = err(MaskProfile {
        custom: vec![custom("a", "x", None), custom("a", "y", None)],
        ..MaskProfile::default()
    });
    assert!(matches!(e, MaskError::BadCustom { .. }), "{e}");
    let e = Masker::new(
        &MaskConfig {
            default_profile: "strict".into(),
            ..MaskConfig::default()
        },
        KEY,
    )
    .expect_err("unknown default");
    assert!(matches!(e, MaskError::UnknownProfile(ref n) if n == "strict"));
}

#[test]
fn hmac_rfc4231() {
    // Test case 1.
    let mac = HmacKey::new(&[0x0b; 20]).mac(&[b"Hi ", b"There"]);
    assert_eq!(
        hex::encode(mac),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
    // Test case 2: a key shorter than the block.
    let mac = HmacKey::new(b"Jefe").mac(&[b"what do ya want for nothing?"]);
    assert_eq!(
        hex::encode(mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // Test case 6: a key longer than the block is hashed first.
    let mac = HmacKey::new(&[0xaa; 131])
        .mac(&[b"Test Using Larger Than Block-Size Key - Hash Key First"]);
    assert_eq!(
        hex::encode(mac),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

#[test]
fn none_profile_and_disabled() {
    let mk = standard();
    let none = mk.profile(Some("none"));
    assert_eq!(none.name(), "none");
    assert!(!none.is_active());
    let secrets = "alice@example.com 4111111111111111 password";
    assert_eq!(none.mask_str(secrets, &mut Counts::new()), None);
    let mut v = json!({"password": "x", "e": "alice@example.com"});
    assert!(!none.mask_json(&mut v, &mut Counts::new()));
    assert!(mk.profile(None).is_active());

    let off = Masker::new(
        &MaskConfig {
            enabled: false,
            ..MaskConfig::default()
        },
        KEY,
    )
    .expect("masker");
    assert!(!off.profile(None).is_active());
    assert!(!off.profile(Some("standard")).is_active());
}

#[test]
fn profile_lookup() {
    let mk = masker_with(&[("standard", only(&["email"])), ("strict", only(&["ipv4"]))]);
    assert_eq!(mk.profile(None).name(), "standard");
    assert_eq!(mk.profile(Some("strict")).name(), "strict");
    assert_eq!(mk.profile(Some("no-such")).name(), "standard");
    assert_eq!(mk.profile(Some("no-such")).name(), "standard");
    assert!(mk.has_profile("none") && !mk.has_profile("no-such"));
    assert_eq!(
        mk.profile_names().collect::<Vec<_>>(),
        ["none", "standard", "strict"]
    );
    // The configured `standard` replaced the built-in one.
    let p = mk.profile(None);
    assert_eq!(p.mask_str("4111111111111111", &mut Counts::new()), None);
    assert_eq!(
        p.mask_str("a@b.co", &mut Counts::new()).as_deref(),
        Some("[EMAIL]")
    );
}

#[test]
fn load_key_creates_then_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a/b/mask-hash.key");
    let k1 = Masker::load_key(&path).expect("created");
    let meta = std::fs::metadata(&path).expect("exists");
    assert_eq!(meta.len(), 32);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(Masker::load_key(&path).expect("read"), k1);
    assert_ne!(k1, [0; 32]);
    let leftovers = std::fs::read_dir(path.parent().expect("dir"))
        .expect("dir")
        .count();
    assert_eq!(leftovers, 1, "no temporary file left");

    let short = dir.path().join("short.key");
    std::fs::write(&short, b"abc").expect("write");
    assert!(matches!(
        Masker::load_key(&short),
        Err(MaskError::KeyLength { len: 3, .. })
    ));
}
