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
//! Precision: candidates from the patterns are checked beside the match
//! (not part of a longer number, identifier or version string) and by
//! validators (Luhn, mod-97, SSN ranges, IBAN country lengths), so ids,
//! timestamps, versions and hashes pass unchanged; `tests/` and
//! `testdata/near_misses.txt` hold the corpus that must.
//!
//! Speed: one byte pass over a short string (a few vectorized ones over a
//! long text) decides which detectors can match at all, and an
//! Aho-Corasick literal scan runs only where a token literal may start
//! (most strings: none, answered without a regex and without allocating);
//! only those detectors run, and the output is built once. JSON embedded
//! in text is masked as it is parsed, without building a tree.
#![forbid(unsafe_code)]

mod detect;
mod embedded;
mod gate;
mod keys;
mod matchers;
mod numeric;
pub mod phase;
mod profile;
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

pub use crate::config::{Mask as MaskConfig, MaskStrategy as Strategy};
pub use numeric::luhn;
pub use profile::Profile;

use crate::config::MaskProfile;
use detect::Kind;
pub(crate) use profile::Masked;
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

/// Why a masking profile could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    /// A detector's regex does not compile.
    #[error("mask profile {profile:?}: custom detector {detector:?}: bad regex: {source}")]
    BadRegex {
        /// The profile.
        profile: String,
        /// The detector.
        detector: String,
        /// The regex error.
        source: Box<regex::Error>,
    },
    #[error(
        "mask profile {profile:?}: unknown detector {name:?} (built in: email, phone, card, \
         ssn, iban, aws_access_key, aws_secret_key, api_token, jwt, private_key, ipv4, ipv6)"
    )]
    /// A profile names a detector that does not exist.
    UnknownDetector {
        /// The profile.
        profile: String,
        /// The unknown detector.
        name: String,
    },
    /// A profile sets a strategy for a name that is none of its detectors.
    #[error("mask profile {profile:?}: strategy for {name:?}, which is no detector of it")]
    UnknownStrategy {
        /// The profile.
        profile: String,
        /// The name that is no detector.
        name: String,
    },
    /// A custom detector is invalid.
    #[error("mask profile {profile:?}: custom detector {name:?}: {why}")]
    BadCustom {
        /// The profile.
        profile: String,
        /// The detector.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `mask.default_profile` names no profile.
    #[error("mask.default_profile {0:?} is no profile (built in: standard, none)")]
    UnknownProfile(String),
    /// The hash key could not be read.
    #[error("mask hash key {path}: {source}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The hash key is not 32 bytes long.
    #[error("mask hash key {path}: {len} bytes, expected 32")]
    KeyLength {
        /// The key file.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
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

fn bump(counts: &mut Counts, name: &str) {
    match counts.get_mut(name) {
        Some(c) => *c = c.saturating_add(1),
        None => {
            counts.insert(name.to_owned(), 1);
        }
    }
}
