use super::*;

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

/// Texts shorter than a detector's shortest value are not looked at: each
/// of these is that shortest value, and is still taken.
#[test]
fn shortest_values_are_taken() {
    for (kind, text) in [
        ("ipv6", "::1"),
        ("email", "a@b.co"),
        ("ipv4", "1.1.1.1"),
        ("phone", "+12345678"),
        ("ssn", "123-45-6789"),
        ("card", "4222222222222"),
        ("iban", "NO9386011117947"),
        ("api_token", "xoxb-1234567890"),
        ("jwt", "eyJhbGci.eyJzdWIi."),
        ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
        ("private_key", "-----BEGIN PRIVATE KEY-----"),
    ] {
        let k = Kind::from_name(kind).expect("kind");
        assert_eq!(text.len(), k.min_len(), "{kind}: {text}");
        let label = format!("[{}]", kind.to_ascii_uppercase());
        positive(&[kind], text, &label);
    }
    let cue = "secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    assert!(cue.len() >= Kind::AwsSecretKey.min_len());
    positive(
        &["aws_secret_key"],
        cue,
        "secret_access_key=[AWS_SECRET_KEY]",
    );
}

/// The literal gate sees literals that overlap: `sk-` must not hide the
/// `-----BEGIN` it shares a dash with, and no literal may be a prefix of
/// another (the leftmost-first scan would report only the shorter).
#[test]
fn overlapping_literals_are_all_seen() {
    let text = "ask-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----";
    assert_eq!(m(text).as_deref(), Some("ask[PRIVATE_KEY]"));
    let lits: Vec<&str> = detect::LITERALS
        .iter()
        .map(|(l, _)| *l)
        .chain(detect::AWS_CUES.iter().copied())
        .collect();
    for a in &lits {
        for b in &lits {
            assert!(a == b || !b.starts_with(a), "{a} is a prefix of {b}");
        }
    }
}

/// The hand-written email matcher finds exactly the spans the regex it
/// replaced finds, on texts built to sit on its edges (dots, dashes,
/// repeated `@`, 25-letter domains, digits after the top-level domain).
#[test]
fn email_matcher_is_the_regex() {
    const PIECES: &[&str] = &[
        "a",
        "b",
        "Z",
        "1",
        "_",
        ".",
        "..",
        "-",
        "@",
        "%",
        "+",
        " ",
        "é",
        "x@y",
        "@b",
        ".co",
        ".org",
        ".c",
        ".co1",
        ".co-",
        ".co_",
        ".1",
        "-x",
        ".abcdefghijklmnopqrstuvwx",
        ".abcdefghijklmnopqrstuvwxy",
    ];
    let re = regex::Regex::new(matchers::EMAIL).expect("regex");
    let mut state = 11;
    let mut found = 0;
    for _ in 0..40_000 {
        let text = random_text(&mut state, PIECES, 14);
        let want: Vec<(usize, usize)> = re.find_iter(&text).map(|m| (m.start(), m.end())).collect();
        let mut got = Vec::new();
        let mut at = 0;
        while let Some((s, e)) = matchers::email_at(text.as_bytes(), at) {
            got.push((s, e));
            at = e;
        }
        assert_eq!(got, want, "{text:?}");
        found += want.len();
    }
    assert!(found > 2000, "the sample holds addresses ({found})");
}
