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
