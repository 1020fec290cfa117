//! Unit tests of masking, one file per family: `tokens` (email, keys,
//! tokens, JWTs, private keys, IPv6), `numbers` (phones, cards, SSNs,
//! IBANs, IPv4), `strategies` (strategies, counts, custom detectors,
//! config and keys), `json` (the JSON walk and JSON embedded in text),
//! `text` (the near-miss corpus, idempotence); the large generated
//! corpus is tested where it lives, in the bench crate.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::*;
use crate::config::{CustomDetector, MaskProfile, Validator};

const KEY: [u8; 32] = [7; 32];

mod json;
mod numbers;
mod strategies;
mod text;
mod tokens;

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

/// Runs the block `name` of `tests/vectors.txt` (its format is in the
/// file's head).
#[track_caller]
fn vectors(name: &str) {
    let text = include_str!("tests/vectors.txt");
    let mut block = None;
    let mut cases = 0;
    for (n, line) in text.lines().enumerate() {
        if let Some(head) = line.strip_prefix("== ") {
            let (test, detector) = head.split_once(' ').expect("== <test> <detector>");
            block = (test == name).then_some(detector);
        } else if let Some(detector) = block {
            let at = format!("vectors.txt:{}", n + 1);
            if let Some(case) = line.strip_prefix("+ ") {
                let (input, want) = case.split_once(" => ").expect("+ <text> => <masked>");
                assert_eq!(with(&[detector], input).as_deref(), Some(want), "{at}");
                cases += 1;
            } else if let Some(input) = line.strip_prefix("- ") {
                assert_eq!(with(&[detector], input), None, "{at}: must pass unchanged");
                cases += 1;
            }
        }
    }
    assert!(cases > 0, "no vectors for {name}");
}

/// One test a block of `tests/vectors.txt`, named after it.
macro_rules! vector_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                vectors(stringify!($name));
            }
        )*
    };
}

vector_tests!(
    phone,
    national_phones,
    ssn,
    iban,
    email,
    aws_access_key,
    ipv6
);

#[track_caller]
fn negative(detectors: &[&str], texts: &[&str]) {
    for t in texts {
        assert_eq!(with(detectors, t), None, "input {t:?} must pass unchanged");
    }
}

fn custom(name: &str, regex: &str, validator: Option<Validator>) -> CustomDetector {
    CustomDetector {
        name: name.into(),
        regex: regex.into(),
        validator,
        strategy: Strategy::Redact,
    }
}

/// A deterministic pseudo-random number below `n` (an LCG: tests need
/// repeatable variety, not quality).
fn rand(state: &mut u64, n: u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (*state >> 33) % n
}

/// Fewer than `most` of `pieces`, picked at random, joined.
fn random_text(state: &mut u64, pieces: &[&str], most: u64) -> String {
    let n = rand(state, most);
    (0..n)
        .map(|_| pieces[rand(state, pieces.len() as u64) as usize])
        .collect()
}
