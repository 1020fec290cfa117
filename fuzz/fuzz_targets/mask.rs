//! Masking of server answers and audit records: the default config's
//! `standard` profile (every built-in detector, key names, card numbers
//! partial, the rest redacted) over the input as text (`mask_str`) and,
//! when it is JSON, as a value (`mask_json`, which also follows JSON
//! embedded in strings, integers and object keys); then the same with every
//! strategy `redact`.
//!
//! Invariants of the design, each relied on elsewhere:
//! - `mask_json` returning false means nothing changed: the mask phase
//!   then forwards the original bytes (mask/phase.rs);
//! - whatever changed was counted (the audit's masked counts);
//! - with `redact`, masking is idempotent: an answer masked with the
//!   default profile is not masked again for the audit, which must still
//!   hold no value an enabled detector matches (mask/phase.rs,
//!   `masking_is_idempotent`). Not asserted for `partial`: the last four
//!   digits it keeps can form a new number with the digits after them
//!   (`37044 0532 3704 00452 0130`), which a second pass may take.
#![no_main]

use std::{collections::BTreeMap, sync::OnceLock};

use interceptor::{
    config::MaskProfile,
    mask::{Counts, MaskConfig, Masker, Profile, Strategy},
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn masker() -> &'static Masker {
    static M: OnceLock<Masker> = OnceLock::new();
    M.get_or_init(|| {
        let redact = MaskProfile {
            detectors: [
                "email",
                "phone",
                "card",
                "ssn",
                "iban",
                "aws_access_key",
                "aws_secret_key",
                "api_token",
                "jwt",
                "private_key",
            ]
            .map(String::from)
            .to_vec(),
            strategies: BTreeMap::from([("card".to_string(), Strategy::Redact)]),
            keys: [
                "password",
                "secret",
                "token",
                "api_key",
                "authorization",
                "ssn",
            ]
            .map(String::from)
            .to_vec(),
            key_strategy: Strategy::Redact,
            custom: Vec::new(),
        };
        let cfg = MaskConfig {
            profiles: BTreeMap::from([("redact".to_string(), redact)]),
            ..MaskConfig::default()
        };
        Masker::new(&cfg, [7; 32]).expect("masker")
    })
}

fn check(p: &Profile, data: &[u8], idempotent: bool) {
    let text = String::from_utf8_lossy(data);
    let mut counts = Counts::new();
    if let Some(once) = p.mask_str(&text, &mut counts) {
        assert!(!counts.is_empty(), "masked without a count");
        if idempotent {
            assert_eq!(
                p.mask_str(&once, &mut Counts::new()),
                None,
                "masking {text:?} twice changed {once:?} again"
            );
        }
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let before = v.clone();
    let mut counts = Counts::new();
    if !p.mask_json(&mut v, &mut counts) {
        assert_eq!(v, before, "changed but reported unchanged");
        return;
    }
    assert!(!counts.is_empty(), "masked without a count");
    // What goes on the wire and into the audit is still JSON.
    let out = serde_json::to_string(&v).expect("serializes");
    assert!(serde_json::from_str::<Value>(&out).is_ok());
    if idempotent {
        let once = v.clone();
        assert!(
            !p.mask_json(&mut v, &mut Counts::new()),
            "masking twice changed {once} into {v}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let m = masker();
    check(m.profile(None), data, false);
    check(m.profile(Some("redact")), data, true);
});
