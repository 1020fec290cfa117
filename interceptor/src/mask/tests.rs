use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::config::{CustomDetector, MaskProfile, Validator};

const KEY: [u8; 32] = [7; 32];

fn masker_with(profiles: &[(&str, MaskProfile)]) -> Masker {
    let cfg = MaskConfig {
        profiles: profiles
            .iter()
            .map(|(n, p)| ((*n).to_owned(), p.clone()))
            .collect(),
        ..MaskConfig::default()
    };
    Masker::new(&cfg, KEY).expect("masker")
}

fn standard() -> Masker {
    masker_with(&[])
}

/// Masks with `standard`; `None` when unchanged.
fn m(text: &str) -> Option<String> {
    standard().profile(None).mask_str(text, &mut Counts::new())
}

/// A profile of just `detectors`, all redacted.
fn only(detectors: &[&str]) -> MaskProfile {
    MaskProfile {
        detectors: detectors.iter().map(|d| (*d).to_owned()).collect(),
        strategies: detectors
            .iter()
            .map(|d| ((*d).to_owned(), Strategy::Redact))
            .collect(),
        ..MaskProfile::default()
    }
}

fn with(detectors: &[&str], text: &str) -> Option<String> {
    let mk = masker_with(&[("t", only(detectors))]);
    mk.profile(Some("t")).mask_str(text, &mut Counts::new())
}

#[track_caller]
fn positive(detectors: &[&str], text: &str, want: &str) {
    assert_eq!(
        with(detectors, text).as_deref(),
        Some(want),
        "input {text:?}"
    );
}

#[track_caller]
fn negative(detectors: &[&str], texts: &[&str]) {
    for t in texts {
        assert_eq!(with(detectors, t), None, "input {t:?} must pass unchanged");
    }
}

#[test]
fn email() {
    positive(&["email"], "mail alice@example.com now", "mail [EMAIL] now");
    positive(&["email"], "<Bob.Smith+x@mail.example.co.uk>", "<[EMAIL]>");
    positive(&["email"], "a@b.co,c.d@e-f.org.", "[EMAIL],[EMAIL].");
    negative(
        &["email"],
        &[
            "@alice",
            "ping @bob on slack",
            "user@localhost",
            "https://github.com/@user",
            "icon@2x.png",
            "lodash@4.17.21",
            "a@-bad.com",
            "x@y.c",
        ],
    );
}

#[test]
fn phone() {
    let p = &["phone"];
    positive(p, "call +1 415-555-2671", "call [PHONE]");
    positive(p, "tel:+14155552671;", "tel:[PHONE];");
    positive(p, "+44 20 7946 0958", "[PHONE]");
    positive(p, "+1 (415) 555.2671", "[PHONE]");
    positive(
        p,
        "(415) 555-2671 or 415-555-2671 or 415.555.2671",
        "[PHONE] or [PHONE] or [PHONE]",
    );
    positive(p, "phone=+33612345678", "phone=[PHONE]");
    negative(
        p,
        &[
            "2026-11-25",
            "2026-11-25T10:00:00Z",
            "10:00:00",
            "1.2.3",
            "10.0.19045.2965",
            "550e8400-e29b-41d4-a716-446655440000",
            "ORD-2026-000123",
            "ORD-415-555-2671",
            "14155552671",
            "order 4155552671",
            "1.0.0+20130313144700",
            "+3.14159265358979",
            "+123456",
            "123-456-7890",
            "415-555-26711",
            "+1 (415 555 2671",
        ],
    );
}

/// Fuzz (mask target): the second number was refused for following a
/// digit, then taken by the audit's pass once the first read `[PHONE]`.
/// A chain is taken in one pass (re-masking is bounded, see `apply`).
#[test]
fn phones_chained_without_separators_are_taken_in_one_pass() {
    let p = &["phone"];
    let chain = "+15000007+10000000+10000000+10000000+10000000+10000000+10000000+10000000+10000000";
    assert_eq!(standard().profile(None).hits(chain).len(), 9);
    positive(p, chain, &"[PHONE]".repeat(9));
    positive(p, "415-555-2671(415) 555-2671", "[PHONE][PHONE]");
    // A number that is not taken still keeps a `+` after it from being one.
    negative(p, &["1.0.0+20130313144700", "12345678+15000007"]);
}

#[test]
fn card() {
    let p = &["card"];
    positive(p, "4111111111111111", "[CARD]");
    positive(
        p,
        "card 4111 1111 1111 1111, exp 12/28",
        "card [CARD], exp 12/28",
    );
    positive(p, "5555-5555-5555-4444", "[CARD]");
    positive(p, "amex 3782 822463 10005.", "amex [CARD].");
    positive(p, "id:6011111111111117;", "id:[CARD];");
    // The card, not the number before it, nor the year after it.
    positive(p, "qty 12 4111 1111 1111 1111 2026", "qty 12 [CARD] 2026");
    negative(
        p,
        &[
            "4111111111111112",
            "4111 1111 1111 1112",
            "1234567812345678",
            "7992739871300000",
            "9111111111111111",
            "41111111111111111111",
            "x4111111111111111",
            "4111111111111111x",
            "-4111111111111111",
            "1.4111111111111111",
            "4111111111111111.5",
            "3 4 5 6 7 8 9 1 2 3 4 5 6",
            "4111 1111-1111 1111",
            "411",
        ],
    );
    // Partial is the standard strategy for cards.
    assert_eq!(
        m("4111 1111 1111 1111").as_deref(),
        Some("**** **** **** 1111")
    );
}

#[test]
fn ssn() {
    let p = &["ssn"];
    positive(p, "SSN 078-05-1120.", "SSN [SSN].");
    positive(p, "123-45-6789", "[SSN]");
    negative(
        p,
        &[
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
            "123456789",
            "1123-45-6789",
            "123-45-67890",
            "ORD-123-45-6789",
            "2026-11-25",
        ],
    );
}

#[test]
fn iban() {
    let p = &["iban"];
    positive(p, "IBAN DE89 3704 0044 0532 0130 00 EUR", "IBAN [IBAN] EUR");
    positive(p, "GB82 WEST 1234 5698 7654 32", "[IBAN]");
    positive(p, "to FR1420041010050500013M02606.", "to [IBAN].");
    positive(p, "NL91ABNA0417164300", "[IBAN]");
    negative(
        p,
        &[
            "GB82WEST12345698765433",
            "DE89370400440532013001",
            "XX89370400440532013000",
            "DE8937040044053201300",
            "SKU AB12CDEF34567890",
            "xDE89370400440532013000",
        ],
    );
}

#[test]
fn aws_access_key() {
    let p = &["aws_access_key"];
    positive(p, "AKIAIOSFODNN7EXAMPLE", "[AWS_ACCESS_KEY]");
    positive(p, "id=ASIAY34FZKBOKMUTVV7A;", "id=[AWS_ACCESS_KEY];");
    negative(
        p,
        &[
            "AKIAIOSFODNN7EXAMPL",
            "AKIAIOSFODNN7EXAMPLEX",
            "XAKIAIOSFODNN7EXAMPLE",
            "akiaiosfodnn7example",
            "ASIA Pacific",
        ],
    );
}

#[test]
fn aws_secret_key() {
    let p = &["aws_secret_key"];
    let s = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    positive(
        p,
        &format!("AWS_SECRET_ACCESS_KEY={s}"),
        "AWS_SECRET_ACCESS_KEY=[AWS_SECRET_KEY]",
    );
    positive(
        p,
        &format!(r#"{{"SecretAccessKey": "{s}", "x": 1}}"#),
        r#"{"SecretAccessKey": "[AWS_SECRET_KEY]", "x": 1}"#,
    );
    positive(
        p,
        &format!("aws_secret_access_key = {s}"),
        "aws_secret_access_key = [AWS_SECRET_KEY]",
    );
    negative(
        p,
        &[
            s,
            "commit e83c5163316f89bfbde7d9ab23ca2e25604af290",
            &format!("secret_access_key: {s}A"),
            &format!("secret_access_key: {}{s}", "x".repeat(40)),
            "secret_access_key: (redacted)",
        ],
    );
}

#[test]
fn api_token() {
    let p = &["api_token"];
    let cases = [
        format!("ghp_{}", "a1B2".repeat(9)),
        format!("gho_{}", "Z".repeat(36)),
        format!("github_pat_{}", "aB3_".repeat(20) + "xy"),
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx".to_owned(),
        format!("sk_live_{}", "4eC39HqLyjWDarjtT1zdp7dc"),
        format!("rk_test_{}", "51H8kqM2eZvKYlo2C"),
        format!("sk-proj-{}", "Ab3dEf6hIj9kLmN0pQrStUvW"),
        format!("sk-ant-api03-{}", "abcdefghij_klmnopqrst-uvwx"),
        format!("AIza{}", "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"),
        format!("glpat-{}", "xxxxxxxxxxxxxxxxxxxx"),
        format!("npm_{}", "a".repeat(36)),
    ];
    for t in &cases {
        positive(p, &format!("token: {t}\n"), "token: [API_TOKEN]\n");
    }
    negative(
        p,
        &[
            "task-1234567890abcdefghijKLMN",
            "sk-learn-compatible-estimator-v2",
            "ghp_tooShort123",
            &format!("ghp_{}", "a".repeat(37)),
            "xoxb-short",
            "sk_live_short",
            "my_npm_token",
            "AIzaTooShort",
        ],
    );
}

#[test]
fn jwt() {
    let p = &["jwt"];
    let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    positive(p, &format!("Bearer {t}"), "Bearer [JWT]");
    positive(p, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "[JWT]");
    negative(
        p,
        &[
            "eyJhbGciOiJIUzI1NiJ9",
            "eyJhbGciOiJIUzI1NiJ9.notjson.sig",
            "xeyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig",
        ],
    );
}

#[test]
fn private_key() {
    let p = &["private_key"];
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1c7+9z5Pad7OejecsQ0bu3aumgw\nAKIAIOSFODNN7EXAMPLE4111111111111111==\n-----END RSA PRIVATE KEY-----";
    positive(
        p,
        &format!("key:\n{pem}\ndone"),
        "key:\n[PRIVATE_KEY]\ndone",
    );
    // As raw JSON text, newlines still escaped.
    let raw = pem.replace('\n', "\\n");
    positive(
        p,
        &format!(r#"{{"k":"{raw}"}}"#),
        r#"{"k":"[PRIVATE_KEY]"}"#,
    );
    positive(
        p,
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
        "[PRIVATE_KEY]",
    );
    // Truncated: no END line, the body is masked anyway.
    positive(
        p,
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1r\n",
        "[PRIVATE_KEY]",
    );
    negative(
        p,
        &[
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
            "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ\n-----END CERTIFICATE-----",
            "BEGIN PRIVATE KEY",
        ],
    );
    // Everything inside the block is one hit: the key wins over the card
    // and access key in its body.
    let mut counts = Counts::new();
    let out = standard().profile(None).mask_str(pem, &mut counts);
    assert_eq!(out.as_deref(), Some("[PRIVATE_KEY]"));
    assert_eq!(counts, BTreeMap::from([("private_key".to_owned(), 1)]));
}

#[test]
fn ipv4() {
    let p = &["ipv4"];
    positive(p, "from 192.168.1.10:8080", "from [IPV4]:8080");
    positive(p, "10.0.0.1, 255.255.255.255.", "[IPV4], [IPV4].");
    negative(
        p,
        &[
            "1.2.3.4.5",
            "v1.2.3.4",
            "256.1.1.1",
            "10.0.19045.2965",
            "1.2.3",
        ],
    );
    // Not in `standard`.
    assert_eq!(m("192.168.1.10"), None);
}

#[test]
fn ipv6() {
    let p = &["ipv6"];
    positive(p, "addr fe80::1%eth0", "addr [IPV6]%eth0");
    positive(p, "[2001:db8:85a3::8a2e:370:7334]:443", "[[IPV6]]:443");
    positive(p, "::ffff:192.0.2.128", "[IPV6]");
    negative(
        p,
        &[
            "10:00:00",
            "aa:bb:cc:dd:ee:ff",
            "std::net::Ipv6Addr",
            "dead::beef",
            "2026-11-25T10:00:00Z",
        ],
    );
}

fn near_misses() -> Vec<&'static str> {
    include_str!("testdata/near_misses.txt")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn near_miss_corpus_passes_unchanged() {
    let mk = standard();
    let p = mk.profile(None);
    let lines = near_misses();
    assert!(lines.len() >= 40, "{} near misses", lines.len());
    for l in &lines {
        assert_eq!(p.mask_str(l, &mut Counts::new()), None, "near miss {l:?}");
    }
    // All of them at once, as one text and as JSON strings.
    let all = lines.join("\n");
    assert_eq!(p.mask_str(&all, &mut Counts::new()), None);
    let mut v = Value::from(lines.clone());
    assert!(!p.mask_json(&mut v, &mut Counts::new()));
}

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
    assert_eq!(
        p.mask_str("4111-1111-1111-1111", &mut c).as_deref(),
        Some("****-****-****-1111")
    );
    assert_eq!(
        p.mask_str("bob@ex.io", &mut c).as_deref(),
        Some("***@ex.io")
    );
    assert_eq!(p.mask_str("bo@e.io", &mut c).as_deref(), Some("*o@e.io"));
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
    assert_eq!(
        p.mask_str("mail alice@example.com now", &mut c).as_deref(),
        Some("mail  now")
    );
    assert_eq!(p.mask_str("alice@example.com", &mut c).as_deref(), Some(""));
    let mut v = json!({
        "email": "alice@example.com",
        "note": "from alice@example.com",
        "list": ["bob@example.com", 1],
        "password": "x",
        "nested": {"PassWord": {"a": 1}, "keep": true},
    });
    assert!(p.mask_json(&mut v, &mut c));
    assert_eq!(
        v,
        json!({
            "email": null,
            "note": "from ",
            "list": [null, 1],
            "nested": {"keep": true},
        })
    );
    assert_eq!(c.get("email"), Some(&5));
    assert_eq!(c.get("key"), Some(&2));
}

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

fn custom(name: &str, regex: &str, validator: Option<Validator>) -> CustomDetector {
    CustomDetector {
        name: name.into(),
        regex: regex.into(),
        validator,
        strategy: Strategy::Redact,
    }
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
fn masking_is_idempotent() {
    let p = standard();
    let p = p.profile(None);
    let text = "a@b.co 4111 1111 1111 1111 078-05-1120 +1 415-555-2671 DE89 3704 0044 0532 0130 00";
    let once = p.mask_str(text, &mut Counts::new()).expect("masked");
    assert_eq!(p.mask_str(&once, &mut Counts::new()), None, "{once}");
}

/// Fuzz (mask target): values a first pass could not take because of a
/// neighbour it masked (overlapped by a hit that won, or refused for what
/// touched them) are masked by the same call, so masking again (the
/// audit's pass) changes nothing.
#[test]
fn values_exposed_by_masking_a_neighbour_are_masked_too() {
    for (text, want) in [
        ("-----BEGIN PRIVATE KEY-----_@e.co", "[PRIVATE_KEY][EMAIL]"),
        ("+19201448)1@l.co", "[PHONE])[EMAIL]"),
        (
            "mail a@b.co+15000007+10000000 now",
            "mail [EMAIL][PHONE][PHONE] now",
        ),
    ] {
        assert_eq!(m(text).as_deref(), Some(want), "{text}");
        assert_eq!(m(want), None, "{want}");
    }
    let mut v = json!({"k": "-----BEGIN PRIVATE KEY-----_@e.co"});
    let mut c = Counts::new();
    assert!(standard().profile(None).mask_json(&mut v, &mut c));
    assert_eq!(v, json!({"k": "[PRIVATE_KEY][EMAIL]"}));
    assert_eq!((c.get("private_key"), c.get("email")), (Some(&1), Some(&1)));
}

#[test]
fn unicode_text_around_matches() {
    let out = m("Kontakt: José <jose@example.com> — Tel. +49 30 901820 ✓");
    assert_eq!(
        out.as_deref(),
        Some("Kontakt: José <[EMAIL]> — Tel. [PHONE] ✓")
    );
    assert_eq!(m("naïve café 東京 2026-11-25 ✓"), None);
}

#[test]
fn large_mixed_text() {
    let (text, secrets) = corpus::generate(1, 1 << 20);
    assert!(text.len() >= 1 << 20 && text.len() < (1 << 20) + 4096);
    assert_eq!(text, corpus(1, 1 << 20), "deterministic");
    assert_ne!(text, corpus(2, 1 << 20));
    let sensitive: usize = secrets.iter().map(|(_, v)| v.len()).sum();
    let share = sensitive as f64 / text.len() as f64;
    assert!((0.05..=0.10).contains(&share), "sensitive share {share}");

    let mut want = Counts::new();
    for (k, _) in &secrets {
        *want.entry((*k).to_owned()).or_default() += 1;
    }
    let mk = standard();
    let p = mk.profile(None);
    let mut counts = Counts::new();
    let out = p.mask_str(&text, &mut counts).expect("masked");
    assert_eq!(counts, want);
    for (k, v) in &secrets {
        assert!(!out.contains(v.as_str()), "{k} {v} left in the output");
    }
    // The near misses the corpus carries survive: order ids, uuids, refs,
    // timestamps, versions.
    let v: Value = serde_json::from_str(&out).expect("still JSON");
    let orig: Value = serde_json::from_str(&text).expect("JSON");
    let (a, b) = (&v["customers"], &orig["customers"]);
    for i in [0, 1, 100] {
        assert_eq!(a[i]["id"], b[i]["id"]);
        assert_eq!(a[i]["orders"], b[i]["orders"]);
        assert_eq!(a[i]["meta"], b[i]["meta"]);
        assert_eq!(a[i]["customer"]["address"], b[i]["customer"]["address"]);
    }
    // The same through the JSON walk.
    let mut walked = orig.clone();
    let mut c2 = Counts::new();
    assert!(p.mask_json(&mut walked, &mut c2));
    assert_eq!(c2, want);
    assert_eq!(walked, v);
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

#[test]
#[ignore]
fn tmp_throughput() {
    use std::time::Instant;
    let mk = standard();
    let p = mk.profile(None);
    let text = corpus(7, 8 << 20);
    let mb = text.len() as f64 / 1e6;
    let time = |label: &str, bytes: f64, f: &mut dyn FnMut()| {
        f();
        let t = Instant::now();
        let n = 5;
        for _ in 0..n {
            f();
        }
        let s = t.elapsed().as_secs_f64() / n as f64;
        eprintln!("{label}: {:.1} MB/s", bytes / s);
    };
    time("mask_str corpus", mb, &mut || {
        std::hint::black_box(p.mask_str(&text, &mut Counts::new()));
    });
    let clean = p.mask_str(&text, &mut Counts::new()).unwrap();
    time(
        "mask_str masked corpus (no match)",
        clean.len() as f64 / 1e6,
        &mut || {
            assert!(p.mask_str(&clean, &mut Counts::new()).is_none());
        },
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    time("mask_json walk (clone incl.)", mb, &mut || {
        let mut x = v.clone();
        std::hint::black_box(p.mask_json(&mut x, &mut Counts::new()));
    });
    time("clone only", mb, &mut || {
        std::hint::black_box(v.clone());
    });
    let tool = json!({"content":[{"type":"text","text": text}]});
    time("mask_json tool result (parse embedded)", mb, &mut || {
        let mut x = tool.clone();
        std::hint::black_box(p.mask_json(&mut x, &mut Counts::new()));
    });
    let lines = near_misses();
    let total: usize = lines.iter().map(|l| l.len()).sum::<usize>() * 1000;
    time(
        "near-miss lines one by one",
        total as f64 / 1e6,
        &mut || {
            for _ in 0..1000 {
                for l in &lines {
                    std::hint::black_box(p.mask_str(l, &mut Counts::new()));
                }
            }
        },
    );
}

#[test]
#[ignore]
fn tmp_components() {
    use std::time::Instant;
    let text = corpus(7, 8 << 20);
    let mb = text.len() as f64 / 1e6;
    let t = Instant::now();
    for _ in 0..5 {
        std::hint::black_box(detect::gate(&text, u32::MAX));
    }
    eprintln!("gate: {:.0} MB/s", mb * 5.0 / t.elapsed().as_secs_f64());
    for k in Kind::ALL {
        let mut hits = Vec::new();
        let t = Instant::now();
        for _ in 0..5 {
            hits.clear();
            detect::scan(k, &text, 0, &mut hits);
        }
        eprintln!(
            "{}: {:.0} MB/s ({} hits)",
            k.name(),
            mb * 5.0 / t.elapsed().as_secs_f64(),
            hits.len()
        );
    }
}

#[test]
#[ignore]
fn tmp_json() {
    use std::time::Instant;
    let mk = standard();
    let p = mk.profile(None);
    let text = corpus(7, 8 << 20);
    let mb = text.len() as f64 / 1e6;
    let time = |label: &str, f: &mut dyn FnMut()| {
        f();
        let t = Instant::now();
        let n = 5;
        for _ in 0..n {
            f();
        }
        let s = t.elapsed().as_secs_f64() / n as f64;
        eprintln!("{label}: {:.1} MB/s", mb / s);
    };
    time("parse", &mut || {
        std::hint::black_box(serde_json::from_str::<Value>(&text).unwrap());
    });
    let v: Value = serde_json::from_str(&text).unwrap();
    time("serialize", &mut || {
        std::hint::black_box(v.to_string());
    });
    let mut masked = v.clone();
    p.mask_json(&mut masked, &mut Counts::new());
    time("walk masked tree (no change)", &mut || {
        assert!(!p.mask_json(&mut masked, &mut Counts::new()));
    });
    let n = std::env::var("TMP_LOOP")
        .ok()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    for _ in 0..n {
        p.mask_json(&mut masked, &mut Counts::new());
    }
}
