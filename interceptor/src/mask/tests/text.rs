use super::*;

fn near_misses() -> Vec<&'static str> {
    include_str!("../testdata/near_misses.txt")
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

/// Passes after the first look only around what the one before replaced;
/// they find what whole scans would, on texts built so that masking a
/// value changes how its neighbours read (values touching, a drop joining
/// two halves, tokens beside digits and `+`, hard bytes between).
#[test]
fn later_passes_near_replacements_find_what_whole_scans_find() {
    const PIECES: &[&str] = &[
        "a@b.co",
        "x",
        "@",
        ".co",
        "+1500000",
        "7",
        "+",
        "(",
        ")",
        "-",
        " ",
        "1",
        "415-555-2671",
        "4111111111111111",
        "078-05-1120",
        "DE89370400440532013000",
        "AKIAIOSFODNN7EXAMPLE",
        "[EMAIL]",
        "\"",
        ",",
        "\n",
        "é",
        ":",
        "::1",
        "-----BEGIN",
        " PRIVATE KEY-----",
        "_",
        "ghp_",
        "a1B2a1B2a1B2a1B2a1B2a1B2a1B2a1B2a1B2",
        "secret_access_key=",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "020 7946 0958",
    ];
    let all = |s: Strategy| MaskProfile {
        detectors: Kind::ALL.iter().map(|k| k.name().to_owned()).collect(),
        strategies: Kind::ALL.iter().map(|k| (k.name().to_owned(), s)).collect(),
        ..MaskProfile::default()
    };
    let mk = masker_with(&[
        ("redact", all(Strategy::Redact)),
        ("hash", all(Strategy::Hash)),
        ("drop", all(Strategy::Drop)),
    ]);
    let mut state = 5;
    let (mut changed, mut later) = (0, 0);
    for _ in 0..6000 {
        let text = random_text(&mut state, PIECES, 12);
        for name in ["standard", "redact", "hash", "drop"] {
            let p = mk.profile(Some(name));
            let (mut c1, mut c2) = (Counts::new(), Counts::new());
            let near = p.apply_passes(&text, &mut c1, false, true);
            let whole = p.apply_passes(&text, &mut c2, false, false);
            let show = |m: Option<Masked>| match m {
                None => None,
                Some(Masked::Text(t)) => Some(t),
                Some(Masked::Gone) => Some("<gone>".to_owned()),
            };
            let near = show(near);
            changed += usize::from(near.is_some());
            // More values counted than the first pass found: a later pass
            // took some.
            let counted: u32 = c1.values().sum();
            later += usize::from(counted as usize > p.hits(&text).len());
            assert_eq!(near, show(whole), "profile {name}: {text:?}");
            assert_eq!(c1, c2, "profile {name}: {text:?}");
        }
    }
    assert!(changed > 5000, "{changed} masked");
    assert!(later > 200, "{later} needed a later pass");
}
