//! Inline masking of sensitive values in server answers and in the audit
//! (NIST SC-28, AU-9 spirit: what the audit keeps must not itself be a
//! breach).
//!
//! A [`Profile`] is a set of detectors (built-in or custom regexes), a
//! strategy for each (redact `[EMAIL]`, partial `****1111`, keyed hash
//! `[EMAIL:3f9a0c1b2d4e5f60]`, drop) and JSON key names whose values are
//! masked whatever they hold. Profiles are compiled once by [`Masker`];
//! `standard` and `none` are built in.
//!
//! Precision: candidates from the regexes are checked beside the match
//! (not part of a longer number, identifier or version string) and by
//! validators (Luhn, mod-97, SSN ranges, IBAN country lengths), so ids,
//! timestamps, versions and hashes pass unchanged; `tests.rs` and
//! `testdata/near_misses.txt` hold the corpus that must.
//!
//! Speed: one byte pass and one Aho-Corasick literal pass decide which
//! detectors can match at all (most strings: none, answered without a
//! regex and without allocating); only those regexes run, and the output
//! is built once.
#![forbid(unsafe_code)]

mod corpus;
mod detect;
mod numeric;
pub mod phase;
mod strategy;
mod walk;

#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Mutex,
};

use regex::Regex;

pub use crate::config::{Mask as MaskConfig, MaskStrategy as Strategy};
pub use corpus::corpus;

use crate::config::{MaskProfile, Validator};
use detect::{Hit, Kind};
use strategy::HmacKey;

/// Counts per detector name (built-in or custom, and "key" for key-name hits).
pub type Counts = BTreeMap<String, u32>;

/// The name counted for, and the label shown for, key-name hits.
const KEY_NAME: &str = "key";
const KEY_LABEL: &str = "REDACTED";

/// Key names of the built-in `standard` profile.
const STANDARD_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "private_key",
    "authorization",
    "cookie",
    "set_cookie",
    "ssn",
    "card_number",
    "cvv",
    "cvc",
];

#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error("mask profile {profile:?}: custom detector {detector:?}: bad regex: {source}")]
    BadRegex {
        profile: String,
        detector: String,
        source: Box<regex::Error>,
    },
    #[error(
        "mask profile {profile:?}: unknown detector {name:?} (built in: email, phone, card, \
         ssn, iban, aws_access_key, aws_secret_key, api_token, jwt, private_key, ipv4, ipv6)"
    )]
    UnknownDetector { profile: String, name: String },
    #[error("mask profile {profile:?}: strategy for {name:?}, which is no detector of it")]
    UnknownStrategy { profile: String, name: String },
    #[error("mask profile {profile:?}: custom detector {name:?}: {why}")]
    BadCustom {
        profile: String,
        name: String,
        why: &'static str,
    },
    #[error("mask.default_profile {0:?} is no profile (built in: standard, none)")]
    UnknownProfile(String),
    #[error("mask hash key {path}: {source}")]
    Key { path: PathBuf, source: io::Error },
    #[error("mask hash key {path}: {len} bytes, expected 32")]
    KeyLength { path: PathBuf, len: usize },
}

/// Every compiled profile of a config.
#[derive(Debug)]
pub struct Masker {
    profiles: BTreeMap<String, Profile>,
    default: String,
    /// `mask.enabled = false`: every name gives this empty profile.
    off: Option<Profile>,
    warned: Mutex<BTreeSet<String>>,
}

impl Masker {
    /// Compiles every profile (built-in `standard` and `none`, plus
    /// cfg.profiles which replace same-named built-ins). `key` is the
    /// 32-byte HMAC key. With `cfg.enabled` false every name gives a
    /// profile that masks nothing.
    pub fn new(cfg: &MaskConfig, key: [u8; 32]) -> Result<Self, MaskError> {
        let hmac = HmacKey::new(&key);
        let mut configs = BTreeMap::from([
            ("standard".to_owned(), standard_config()),
            ("none".to_owned(), MaskProfile::default()),
        ]);
        configs.extend(cfg.profiles.iter().map(|(n, p)| (n.clone(), p.clone())));
        let profiles = configs
            .into_iter()
            .map(|(name, p)| Profile::compile(&name, &p, &hmac).map(|c| (name, c)))
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        if !profiles.contains_key(&cfg.default_profile) {
            return Err(MaskError::UnknownProfile(cfg.default_profile.clone()));
        }
        detect::warm();
        let off = (!cfg.enabled)
            .then(|| Profile::compile("none", &MaskProfile::default(), &hmac))
            .transpose()?;
        Ok(Self {
            profiles,
            default: cfg.default_profile.clone(),
            off,
            warned: Mutex::new(BTreeSet::new()),
        })
    }

    /// Reads the key file, or creates it (32 random bytes from
    /// /dev/urandom, mode 0600, parent dirs created) if absent.
    pub fn load_key(path: &Path) -> Result<[u8; 32], MaskError> {
        let err = |source| MaskError::Key {
            path: path.to_owned(),
            source,
        };
        match fs::read(path) {
            Ok(bytes) => return key_from(path, &bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(err)?;
        let mut key = [0u8; 32];
        File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .map_err(err)?;
        // Written whole under a private name, then linked into place: a
        // crash leaves no short key, and of two agents starting at once
        // one wins and the other reads the winner's key.
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&key).and_then(|()| f.sync_all()))
            .map_err(err)?;
        let placed = match fs::hard_link(&tmp, path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = fs::remove_file(&tmp);
                return key_from(path, &fs::read(path).map_err(err)?);
            }
            // Filesystems without hard links: rename (the race above is
            // then last-writer-wins, still never a short file).
            Err(_) => fs::rename(&tmp, path),
            Ok(()) => fs::remove_file(&tmp),
        };
        placed
            .and_then(|()| File::open(dir)?.sync_all())
            .map_err(err)?;
        Ok(key)
    }

    /// The named profile; `None` or an unknown name gives the default
    /// profile (an unknown name is logged once with tracing::warn!).
    pub fn profile(&self, name: Option<&str>) -> &Profile {
        if let Some(off) = &self.off {
            return off;
        }
        if let Some(name) = name {
            if let Some(p) = self.profiles.get(name) {
                return p;
            }
            let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            // Bounded: names come from policy annotations, but a set that
            // only grows should not be trusted to stay small.
            if warned.len() < 256 && warned.insert(name.to_owned()) {
                tracing::warn!(
                    profile = name,
                    default = %self.default,
                    "unknown mask profile, using the default"
                );
            }
        }
        &self.profiles[self.default.as_str()]
    }

    /// Whether `name` is a profile (for checking `@mask("...")` at load).
    pub fn has_profile(&self, name: &str) -> bool {
        self.profiles.contains_key(name)
    }

    /// Profile names, sorted.
    pub fn profile_names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }
}

fn key_from(path: &Path, bytes: &[u8]) -> Result<[u8; 32], MaskError> {
    let key: [u8; 32] = bytes.try_into().map_err(|_| MaskError::KeyLength {
        path: path.to_owned(),
        len: bytes.len(),
    })?;
    if let Ok(m) = fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{:o}", m.permissions().mode() & 0o777),
            "mask hash key is readable by others; hashes can be reversed by guessing"
        );
    }
    Ok(key)
}

fn standard_config() -> MaskProfile {
    MaskProfile {
        detectors: Kind::STANDARD.iter().map(|k| k.name().to_owned()).collect(),
        strategies: BTreeMap::from([("card".to_owned(), Strategy::Partial)]),
        keys: STANDARD_KEYS.iter().map(|k| (*k).to_owned()).collect(),
        key_strategy: Strategy::Redact,
        custom: Vec::new(),
    }
}

/// One compiled profile.
#[derive(Debug)]
pub struct Profile {
    name: String,
    /// Built-ins in tie-break order, then customs in config order.
    dets: Vec<Det>,
    /// Bits of the built-in kinds in `dets`.
    builtin: u32,
    /// Index in `dets` per built-in kind, or `detect::NONE`.
    det_of: [u32; 12],
    has_custom: bool,
    /// Fewest digits a text needs for the numeric pass to find anything.
    numeric_min: usize,
    /// Normalized (ASCII lower-case, no `-`/`_`) key names, sorted: a
    /// binary search over a handful of short names beats hashing them.
    keys: Vec<Vec<u8>>,
    longest_key: usize,
    key_strategy: Strategy,
    hmac: HmacKey,
}

#[derive(Debug)]
struct Det {
    name: String,
    label: String,
    strategy: Strategy,
    how: How,
}

#[derive(Debug)]
enum How {
    Builtin(Kind),
    Custom(Regex, Option<Validator>),
}

/// The result of masking one text.
pub(crate) enum Masked {
    Text(String),
    /// The text was one dropped value as a whole.
    Gone,
}

impl Profile {
    fn compile(name: &str, cfg: &MaskProfile, hmac: &HmacKey) -> Result<Self, MaskError> {
        let mut kinds = Vec::new();
        for d in &cfg.detectors {
            let kind = Kind::from_name(d).ok_or_else(|| MaskError::UnknownDetector {
                profile: name.to_owned(),
                name: d.clone(),
            })?;
            kinds.push(kind);
        }
        let strategy_of = |n: &str, default| cfg.strategies.get(n).copied().unwrap_or(default);
        let mut dets: Vec<Det> = Kind::ALL
            .into_iter()
            .filter(|k| kinds.contains(k))
            .map(|k| Det {
                name: k.name().to_owned(),
                label: k.name().to_ascii_uppercase(),
                strategy: strategy_of(k.name(), default_strategy(k)),
                how: How::Builtin(k),
            })
            .collect();
        for c in &cfg.custom {
            let bad = |why| MaskError::BadCustom {
                profile: name.to_owned(),
                name: c.name.clone(),
                why,
            };
            if c.name.is_empty()
                || !c
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(bad("the name must be lower-case letters, digits and _"));
            }
            if Kind::from_name(&c.name).is_some() || c.name == KEY_NAME {
                return Err(bad("the name is taken by a built-in detector"));
            }
            if dets.iter().any(|d| d.name == c.name) {
                return Err(bad("defined twice"));
            }
            let re = Regex::new(&c.regex).map_err(|e| MaskError::BadRegex {
                profile: name.to_owned(),
                detector: c.name.clone(),
                source: Box::new(e),
            })?;
            dets.push(Det {
                name: c.name.clone(),
                label: c.name.to_ascii_uppercase(),
                strategy: strategy_of(&c.name, c.strategy),
                how: How::Custom(re, c.validator),
            });
        }
        for n in cfg.strategies.keys() {
            if Kind::from_name(n).is_none() && !dets.iter().any(|d| &d.name == n) {
                return Err(MaskError::UnknownStrategy {
                    profile: name.to_owned(),
                    name: n.clone(),
                });
            }
        }
        let mut keys: Vec<Vec<u8>> = cfg.keys.iter().map(|k| normalize_key(k)).collect();
        keys.sort();
        keys.dedup();
        let mut det_of = [detect::NONE; 12];
        for (i, d) in dets.iter().enumerate() {
            if let How::Builtin(k) = d.how {
                det_of[k as usize] = i as u32;
            }
        }
        Ok(Self {
            numeric_min: numeric::min_digits(&det_of),
            det_of,
            name: name.to_owned(),
            builtin: kinds.iter().fold(0, |b, k| b | k.bit()),
            has_custom: !cfg.custom.is_empty(),
            longest_key: keys.iter().map(Vec::len).max().unwrap_or(0),
            keys,
            key_strategy: cfg.key_strategy,
            hmac: hmac.clone(),
            dets,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this profile masks anything at all (false for `none`).
    pub fn is_active(&self) -> bool {
        !self.dets.is_empty() || !self.keys.is_empty()
    }

    /// Masks one text; `None` when nothing matched (no allocation on that
    /// path). A dropped value is cut out of the text.
    pub fn mask_str(&self, text: &str, counts: &mut Counts) -> Option<String> {
        self.apply(text, counts, false).map(|m| match m {
            Masked::Text(t) => t,
            Masked::Gone => String::new(),
        })
    }

    /// Masks every string in a JSON value in place: object values whose
    /// key matches `keys` (whatever they hold: strings, numbers;
    /// objects/arrays under such a key are masked wholesale by replacing
    /// with the redaction; null and booleans are left), strings by the
    /// detectors, and strings that are themselves a JSON object or array
    /// (JSON embedded in text, e.g. MCP tool result `content[].text`) are
    /// parsed, walked and re-serialized (compact) when something in them
    /// changed. Integers are checked as their decimal text (a card number
    /// sent as a number); object keys by the detectors too (`drop` then
    /// redacts, so the entry survives). Returns true if anything changed.
    pub fn mask_json(&self, value: &mut serde_json::Value, counts: &mut Counts) -> bool {
        self.is_active() && walk::value(self, value, counts, 0)
    }

    /// Accepted detector hits in `text`, sorted and non-overlapping.
    fn hits(&self, text: &str) -> Vec<Hit> {
        let mut hits = Vec::new();
        if self.builtin & NUMERIC != 0
            && text.bytes().filter(u8::is_ascii_digit).count() >= self.numeric_min
        {
            numeric::scan(text, &self.det_of, &mut hits);
        }
        let bits = detect::gate(text, self.builtin & !NUMERIC);
        if bits != 0 {
            for k in Kind::ALL.into_iter().filter(|k| bits & k.bit() != 0) {
                detect::scan(k, text, self.det_of[k as usize], &mut hits);
            }
        }
        for (i, d) in self.dets.iter().enumerate() {
            if let How::Custom(re, validator) = &d.how {
                hits.extend(
                    re.find_iter(text)
                        .filter(|m| !m.is_empty() && custom_valid(*validator, m.as_str()))
                        .map(|m| Hit {
                            start: m.start(),
                            end: m.end(),
                            det: i as u32,
                        }),
                );
            }
        }
        detect::resolve(
            &mut hits,
            |d| matches!(self.dets[d as usize].how, How::Builtin(k) if k.first()),
        );
        hits
    }

    /// Masks `text`; in an object key (`in_key`) a dropped value is
    /// redacted instead, so the entry keeps a name.
    ///
    /// Masking is idempotent: the audit masks answers again, and an answer
    /// already masked with the default profile is not scanned twice, so
    /// what comes out must hold nothing a detector takes. A value can
    /// become one only once a neighbour is masked: it overlapped a hit that
    /// won (`-----BEGIN PRIVATE KEY-----_@e.co`), or was refused for what
    /// touched it (`+19201448)1@l.co`: the number ran on into the address).
    /// So a text that had something masked is masked again until nothing
    /// changes, at most `MAX_PASSES` times in all, which bounds what a
    /// crafted chain costs; a text with nothing to mask takes one pass.
    /// Not after `partial`, whose output still looks like what it masked
    /// (`*o@e.io`): masking that again would star what it means to show.
    pub(crate) fn apply(&self, text: &str, counts: &mut Counts, in_key: bool) -> Option<Masked> {
        const MAX_PASSES: usize = 8;
        let (mut out, mut partial) = match self.apply_once(text, counts, in_key)? {
            (Masked::Text(t), partial) => (t, partial),
            (Masked::Gone, _) => return Some(Masked::Gone),
        };
        for _ in 1..MAX_PASSES {
            if partial {
                break;
            }
            match self.apply_once(&out, counts, in_key) {
                None => break,
                Some((Masked::Text(t), p)) => (out, partial) = (t, p),
                Some((Masked::Gone, _)) => return Some(Masked::Gone),
            }
        }
        Some(Masked::Text(out))
    }

    /// One pass of [`Profile::apply`], and whether it masked a value with
    /// `partial`.
    fn apply_once(&self, text: &str, counts: &mut Counts, in_key: bool) -> Option<(Masked, bool)> {
        let hits = self.hits(text);
        let strategy = |h: &Hit| match self.dets[h.det as usize].strategy {
            Strategy::Drop if in_key => Strategy::Redact,
            s => s,
        };
        match hits.as_slice() {
            [] => return None,
            [h] if h.start == 0 && h.end == text.len() && strategy(h) == Strategy::Drop => {
                bump(counts, &self.dets[h.det as usize].name);
                return Some((Masked::Gone, false));
            }
            _ => {}
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        let mut partial = false;
        for h in &hits {
            let d = &self.dets[h.det as usize];
            out.push_str(&text[at..h.start]);
            let value = &text[h.start..h.end];
            let s = strategy(h);
            partial |= s == Strategy::Partial;
            strategy::render(&mut out, s, &d.name, &d.label, value, &self.hmac);
            bump(counts, &d.name);
            at = h.end;
        }
        out.push_str(&text[at..]);
        Some((Masked::Text(out), partial))
    }

    /// Whether `key` is one of the profile's key names (case-insensitive,
    /// `-` and `_` ignored), without allocating.
    pub(crate) fn key_hit(&self, key: &str) -> bool {
        if self.keys.is_empty() {
            return false;
        }
        let mut buf = [0u8; 64];
        let mut n = 0;
        for b in key.bytes().filter(|&b| b != b'-' && b != b'_') {
            if n == self.longest_key || n == buf.len() {
                return false;
            }
            buf[n] = b.to_ascii_lowercase();
            n += 1;
        }
        self.keys
            .binary_search_by(|k| k.as_slice().cmp(&buf[..n]))
            .is_ok()
    }

    /// Whether object keys can be masked by the detectors at all.
    pub(crate) fn masks_text(&self) -> bool {
        !self.dets.is_empty()
    }

    pub(crate) fn has_custom(&self) -> bool {
        self.has_custom
    }
}

/// Bits of the detectors `numeric::scan` serves.
const NUMERIC: u32 = {
    let mut b = 0;
    let mut i = 0;
    while i < numeric::KINDS.len() {
        b |= 1 << numeric::KINDS[i] as u32;
        i += 1;
    }
    b
};

fn default_strategy(k: Kind) -> Strategy {
    match k {
        Kind::Card => Strategy::Partial,
        _ => Strategy::Redact,
    }
}

fn normalize_key(k: &str) -> Vec<u8> {
    k.bytes()
        .filter(|&b| b != b'-' && b != b'_')
        .map(|b| b.to_ascii_lowercase())
        .collect()
}

fn custom_valid(v: Option<Validator>, m: &str) -> bool {
    let Some(v) = v else { return true };
    let alnum: Vec<u8> = m
        .chars()
        .filter(|c| c.is_alphanumeric())
        .map(|c| if c.is_ascii() { c as u8 } else { 0 })
        .collect();
    match v {
        Validator::Luhn => {
            alnum.iter().all(u8::is_ascii_digit) && numeric::luhn(alnum.iter().copied())
        }
        Validator::Mod97 => {
            let upper: Vec<u8> = alnum.iter().map(u8::to_ascii_uppercase).collect();
            numeric::mod97(&upper)
        }
    }
}

fn bump(counts: &mut Counts, name: &str) {
    match counts.get_mut(name) {
        Some(c) => *c = c.saturating_add(1),
        None => {
            counts.insert(name.to_owned(), 1);
        }
    }
}
