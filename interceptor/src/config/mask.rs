//! `[mask]`: what counts as sensitive, and what replaces it.

use std::{collections::BTreeMap, path::PathBuf};

use educe::Educe;
use serde::{Deserialize, Serialize};

/// Masking settings: the named profiles.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Educe)]
#[educe(Default)]
#[serde(deny_unknown_fields, default)]
pub struct Mask {
    /// Mask server answers, server requests and every string the audit
    /// stores. Off: nothing is masked (doctor warns).
    #[educe(Default = true)]
    pub enabled: bool,
    /// The profile used unless the determining policy names one with
    /// `@mask("...")`.
    #[educe(Default = "standard")]
    pub default_profile: String,
    /// Key of the `hash` strategy (32 random bytes, generated 0600 if
    /// absent); unset: `mask-hash.key` beside the audit directory.
    pub hash_key: Option<PathBuf>,
    /// Named profiles; `standard` and `none` are built in (a profile of the
    /// same name here replaces them).
    pub profiles: BTreeMap<String, Profile>,
}

/// Profiles every config has; a `[mask.profiles]` entry of the same name
/// replaces one.
pub const BUILTIN_PROFILES: [&str; 2] = ["standard", "none"];

impl Mask {
    /// Whether `name` is a profile of this config, as `@mask("...")` must
    /// name one (the masker compiles exactly these).
    pub fn has_profile(&self, name: &str) -> bool {
        BUILTIN_PROFILES.contains(&name) || self.profiles.contains_key(name)
    }
}

/// What one profile masks and how.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Educe)]
#[educe(Default)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    /// Built-in detectors: email, phone, card, ssn, iban, aws_access_key,
    /// aws_secret_key, api_token, jwt, private_key, ipv4, ipv6.
    pub detectors: Vec<String>,
    /// Strategy per detector (built-in or custom name); the rest use
    /// each detector's default.
    pub strategies: BTreeMap<String, Strategy>,
    /// JSON keys (case-insensitive, `-`/`_` ignored) whose string or
    /// number values are masked whatever they look like.
    pub keys: Vec<String>,
    /// How values under sensitive keys are masked.
    #[educe(Default(expression = Strategy::Redact))]
    pub key_strategy: Strategy,
    /// Detectors defined by the operator.
    pub custom: Vec<CustomDetector>,
}

/// How a masked value is replaced.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// `[EMAIL]`: the detector's name, upper-cased, in brackets.
    Redact,
    /// Everything but the last four characters (digits for numbers)
    /// replaced: `************4242`.
    Partial,
    /// `[EMAIL:3f9a0c1b2d4e5f60]`: HMAC-SHA256 with the agent's key, so
    /// auditors can correlate equal values without seeing them.
    Hash,
    /// The value is removed: inside text it is cut out; a JSON field that
    /// is entirely the value is removed, as a key-matched field is (an
    /// array element becomes `null`, so the others keep their places).
    Drop,
}

/// A site-specific detector.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CustomDetector {
    /// Lowercase name, used in counts, strategies and `[NAME]`.
    pub name: String,
    /// A Rust `regex` pattern; the whole match is the value.
    pub regex: String,
    /// Optional check on each match: `luhn` or `mod97`.
    #[serde(default)]
    pub validator: Option<Validator>,
    /// How this detector's matches are masked.
    #[serde(default = "redact")]
    pub strategy: Strategy,
}

fn redact() -> Strategy {
    Strategy::Redact
}

/// A checksum a match must pass to count.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Validator {
    /// The Luhn checksum (card numbers).
    Luhn,
    /// The ISO 7064 mod-97 checksum (IBANs).
    Mod97,
}
