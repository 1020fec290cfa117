//! Signed policy bundles: one S3 object that many agents load (issue 24,
//! "policy from one source"). This module is the format and its checks;
//! the agent's `bundle_watch` fetches, and `policy publish` builds.
//!
//! The object (`<prefix>bundle.json`) is a JSON *envelope*:
//!
//! ```json
//! {"format": "mcp-interceptor-bundle/1",
//!  "manifest": "<base64 of the manifest's bytes>",
//!  "signer": "<hex of the Ed25519 public key>",
//!  "signature": "<base64 of the Ed25519 signature>"}
//! ```
//!
//! The signature is over `"mcp-interceptor-bundle/1\n"` followed by the
//! manifest's exact bytes, and those same bytes (decoded from base64, never
//! re-serialized) are what the agent parses and loads: nothing unsigned is
//! acted on. The manifest is JSON: `format`, a `version` that must grow
//! with every publish (an agent refuses one not newer than the one it
//! runs, so an old bundle replayed is refused), and `files`, each with
//! `name`, `sha256` (hex of the text) and `text`: the `*.cedar` policies
//! and at most one `settings.toml` (see `config::BundleSettings`). One
//! object, so an agent never reads a manifest with another's signature.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod keys;

/// The format name, in the envelope and the manifest.
pub const FORMAT: &str = "mcp-interceptor-bundle/1";
/// Signed before the manifest: a signature made by the same key for
/// anything else never verifies as a bundle's.
const DOMAIN: &[u8] = b"mcp-interceptor-bundle/1\n";
/// The bundle's optional settings file (mask profiles, approval settings).
pub const SETTINGS: &str = "settings.toml";
/// The object's name under the source prefix.
pub const OBJECT: &str = "bundle.json";

/// Why a bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The bytes are not a bundle of this format.
    #[error("not a policy bundle: {0}")]
    Malformed(String),
    /// The envelope has no signature.
    #[error("the bundle is not signed")]
    Unsigned,
    /// Signed by a key that `[policy] bundle_keys` does not pin.
    #[error("the bundle is signed by {0}, which is not in [policy] bundle_keys")]
    UnknownSigner(String),
    /// The signature does not verify over the manifest.
    #[error("the bundle's signature does not verify with its signer's key")]
    BadSignature,
    /// A file's text does not hash to the manifest's `sha256`.
    #[error("bundle file {0}: its text does not match its sha256")]
    Digest(String),
    /// The version is not newer than the one running (a replay).
    #[error("bundle version {got} is not newer than the running version {running}")]
    NotNewer {
        /// The refused bundle's version.
        got: u64,
        /// The running bundle's version.
        running: u64,
    },
    /// A key could not be read or used.
    #[error("{0}")]
    Key(String),
}

impl BundleError {
    /// A stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::Unsigned => "unsigned",
            Self::UnknownSigner(_) => "unknown_signer",
            Self::BadSignature => "bad_signature",
            Self::Digest(_) => "digest",
            Self::NotNewer { .. } => "not_newer",
            Self::Key(_) => "key",
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    format: String,
    manifest: String,
    #[serde(default)]
    signer: Option<String>,
    #[serde(default)]
    signature: Option<String>,
}

/// What a bundle holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Grows with every publish.
    pub version: u64,
    /// The files, in name order.
    pub files: Vec<BundleFile>,
}

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFile {
    /// A plain name: `*.cedar`, or [`SETTINGS`].
    pub name: String,
    /// Hex SHA-256 of `text`.
    pub sha256: String,
    /// The file's text.
    pub text: String,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A file name a bundle may carry: a plain `*.cedar` name, or the settings.
fn allowed_name(name: &str) -> bool {
    let plain = !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    plain && (name == SETTINGS || (name.ends_with(".cedar") && name.len() > ".cedar".len()))
}

impl Manifest {
    /// A manifest of `files` (name, text), sorted by name.
    pub fn new(version: u64, files: Vec<(String, String)>) -> Result<Self, BundleError> {
        let mut files: Vec<BundleFile> = files
            .into_iter()
            .map(|(name, text)| BundleFile {
                sha256: sha256_hex(&text),
                name,
                text,
            })
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let m = Self {
            format: FORMAT.into(),
            version,
            files,
        };
        m.check()?;
        Ok(m)
    }

    /// Format, names (allowed, unique), digests, at least one policy.
    fn check(&self) -> Result<(), BundleError> {
        let bad = |m: String| Err(BundleError::Malformed(m));
        if self.format != FORMAT {
            return bad(format!(
                "manifest format {:?}, expected {FORMAT:?}",
                self.format
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.files {
            if !allowed_name(&f.name) {
                return bad(format!(
                    "file name {:?} is not a plain *.cedar name or {SETTINGS}",
                    f.name
                ));
            }
            if !seen.insert(&f.name) {
                return bad(format!("file {:?} appears twice", f.name));
            }
            if sha256_hex(&f.text) != f.sha256 {
                return Err(BundleError::Digest(f.name.clone()));
            }
        }
        if !self.files.iter().any(|f| f.name.ends_with(".cedar")) {
            return bad("no *.cedar policy file".into());
        }
        Ok(())
    }

    /// The policies as (name, text), for the policy loader.
    pub fn policy_sources(&self) -> Vec<(String, String)> {
        (self.files.iter())
            .filter(|f| f.name != SETTINGS)
            .map(|f| (f.name.clone(), f.text.clone()))
            .collect()
    }

    /// The settings file's text, if the bundle has one.
    pub fn settings(&self) -> Option<&str> {
        (self.files.iter())
            .find(|f| f.name == SETTINGS)
            .map(|f| f.text.as_str())
    }
}

/// The public key's id as configs pin it and audit rows name it: hex.
pub fn key_id(k: &VerifyingKey) -> String {
    hex::encode(k.as_bytes())
}

/// A pinned public key from its hex.
pub fn public_key(hex_key: &str) -> Result<VerifyingKey, BundleError> {
    let raw: [u8; 32] = hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            BundleError::Key(format!(
                "{hex_key:?} is not an Ed25519 public key (64 hex digits)"
            ))
        })?;
    VerifyingKey::from_bytes(&raw)
        .map_err(|e| BundleError::Key(format!("{hex_key:?} is not an Ed25519 public key: {e}")))
}

fn signed_bytes(manifest: &[u8]) -> Vec<u8> {
    [DOMAIN, manifest].concat()
}

/// The bundle object for `m`, signed with `key`.
pub fn seal(m: &Manifest, key: &SigningKey) -> Vec<u8> {
    let manifest = serde_json::to_vec(m).expect("a manifest always serializes");
    let sig = key.sign(&signed_bytes(&manifest));
    let env = Envelope {
        format: FORMAT.into(),
        manifest: B64.encode(&manifest),
        signer: Some(key_id(&key.verifying_key())),
        signature: Some(B64.encode(sig.to_bytes())),
    };
    serde_json::to_vec_pretty(&env).expect("an envelope always serializes")
}

/// A bundle whose signature verified with a pinned key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// What it holds.
    pub manifest: Manifest,
    /// The signing key's id ([`key_id`]).
    pub signer: String,
}

impl Verified {
    /// Refuses a bundle not newer than `running` (the version in force).
    pub fn check_newer(&self, running: Option<u64>) -> Result<(), BundleError> {
        match running {
            Some(r) if self.manifest.version <= r => Err(BundleError::NotNewer {
                got: self.manifest.version,
                running: r,
            }),
            _ => Ok(()),
        }
    }

    /// Who and which version, as audit rows record it.
    pub fn origin(&self) -> Origin {
        Origin {
            version: self.manifest.version,
            signer: self.signer.clone(),
        }
    }
}

/// Checks `bytes` against the pinned `keys`: envelope, signer, signature,
/// then the manifest parsed from the signed bytes themselves.
pub fn open(bytes: &[u8], keys: &[VerifyingKey]) -> Result<Verified, BundleError> {
    let env: Envelope = serde_json::from_slice(bytes)
        .map_err(|e| BundleError::Malformed(format!("envelope: {e}")))?;
    if env.format != FORMAT {
        return Err(BundleError::Malformed(format!(
            "format {:?}, expected {FORMAT:?}",
            env.format
        )));
    }
    let (Some(signer), Some(sig)) = (env.signer, env.signature) else {
        return Err(BundleError::Unsigned);
    };
    let key = keys
        .iter()
        .find(|k| key_id(k) == signer.trim().to_ascii_lowercase())
        .ok_or(BundleError::UnknownSigner(signer))?;
    let manifest = B64
        .decode(env.manifest.as_bytes())
        .map_err(|e| BundleError::Malformed(format!("manifest is not base64: {e}")))?;
    let sig: [u8; 64] = (B64.decode(sig.as_bytes()).ok())
        .and_then(|s| s.try_into().ok())
        .ok_or(BundleError::BadSignature)?;
    key.verify_strict(&signed_bytes(&manifest), &Signature::from_bytes(&sig))
        .map_err(|_| BundleError::BadSignature)?;
    let manifest: Manifest = serde_json::from_slice(&manifest)
        .map_err(|e| BundleError::Malformed(format!("manifest: {e}")))?;
    manifest.check()?;
    Ok(Verified {
        manifest,
        signer: key_id(key),
    })
}

/// The bundle a policy set came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The manifest's version.
    pub version: u64,
    /// The signing key's id.
    pub signer: String,
}

/// Which bundle each installed policy set (by its version) came from, for
/// the audit: a row names the policy version that decided it, so it names
/// that set's bundle, not whichever one is newest when it is written.
#[derive(Debug, Clone, Default)]
pub struct Origins(Arc<RwLock<HashMap<String, Origin>>>);

/// Sets remembered; beyond this the map restarts with the newest (a
/// decision is recorded well within this many installs).
const ORIGINS_KEPT: usize = 256;

impl Origins {
    /// Records that policy set `policy_version` came from `origin`.
    pub fn record(&self, policy_version: &str, origin: Origin) {
        let mut m = self.0.write().unwrap_or_else(|p| p.into_inner());
        if m.len() >= ORIGINS_KEPT {
            m.clear();
        }
        m.insert(policy_version.to_string(), origin);
    }

    /// The bundle policy set `policy_version` came from, if any.
    pub fn get(&self, policy_version: &str) -> Option<Origin> {
        let m = self.0.read().unwrap_or_else(|p| p.into_inner());
        m.get(policy_version).cloned()
    }
}

#[cfg(test)]
mod tests;
