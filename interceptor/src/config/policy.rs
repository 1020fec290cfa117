//! `[policy]`: Cedar files, how denials look, budgets, tool pinning.

use std::path::PathBuf;

use educe::Educe;
use serde::{Deserialize, Serialize};

use super::ValidationError::{self, Invalid};

/// Policy settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Educe)]
#[educe(Default)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Cedar policy files, or directories whose `*.cedar` files are read.
    /// Empty: no policy stage (every identified caller may do anything;
    /// `doctor` warns). With files, anything no policy permits is denied.
    pub files: Vec<PathBuf>,
    /// A denied `tools/call` is answered as a tool result with `isError`
    /// (the model reads why) instead of a JSON-RPC error.
    pub deny_as_tool_result: bool,
    /// The files are checked for changes this often and reloaded; 0: only
    /// on SIGHUP. A broken set is refused and the running one kept.
    #[educe(Default = 2)]
    pub reload_poll_seconds: u64,
    /// Per-caller call rate limits.
    pub budgets: Vec<Budget>,
    /// Where tool fingerprints are kept (see `mcp-interceptor tools`);
    /// unset: `tool-pins.json` beside the audit directory (the agent's
    /// state directory, `/var/lib/mcp-interceptor` by default).
    pub pins_file: Option<PathBuf>,
    /// What to do when a tool's definition changes.
    pub on_tool_change: OnToolChange,
    /// Tool and prompt names outside the MCP character set (ASCII letters,
    /// digits, `_-./:`) are refused before policy: a look-alike or an
    /// invisible character would otherwise be judged as another tool.
    #[educe(Default = true)]
    pub strict_names: bool,
    /// A signed policy bundle to load instead of `files`:
    /// `s3://bucket/prefix/` (the object `bundle.json` under it). Polled
    /// every `reload_poll_seconds` by ETag; region and endpoint from
    /// `[audit.s3]` when set, credentials from the AWS environment.
    pub source: Option<String>,
    /// The Ed25519 public keys (64 hex digits each) a bundle from
    /// `source` may be signed by; required with `source`.
    pub bundle_keys: Vec<String>,
    /// Where the last good bundle is kept, so that the agent starts when
    /// the source is unreachable; unset: `policy-bundle.json` beside the
    /// audit directory.
    pub bundle_cache: Option<PathBuf>,
}

impl Policy {
    /// Whether a policy stage runs: files or a bundle source are set.
    pub fn enforced(&self) -> bool {
        !self.files.is_empty() || self.source.is_some()
    }

    /// The bucket and key prefix (empty, or ending in `/`) of `source`.
    pub fn source_location(&self) -> Option<(String, String)> {
        s3_location(self.source.as_deref()?)
    }
}

/// The bucket and key prefix (empty, or ending in `/`) of an
/// `s3://bucket/prefix/` URL.
pub fn s3_location(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    (!bucket.is_empty()).then(|| (bucket.to_string(), prefix))
}

/// What a policy bundle's `settings.toml` may set: policy, not where
/// things live on the host. Each table present replaces the local one.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BundleSettings {
    /// `[mask]`: `default_profile` and `profiles` (the key stays local).
    pub mask: Option<BundleMask>,
    /// `[approvals]`: timeouts, grant rules and limits (the database,
    /// the webhook and the approve URL stay local).
    pub approvals: Option<BundleApprovals>,
}

/// The `[mask]` keys a bundle may set.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BundleMask {
    /// Replaces `mask.default_profile`.
    pub default_profile: Option<String>,
    /// Replace `mask.profiles` (all of them).
    pub profiles: Option<std::collections::BTreeMap<String, super::mask::Profile>>,
}

/// The `[approvals]` keys a bundle may set; each replaces the local one.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BundleApprovals {
    /// `approvals.hold_timeout_seconds`.
    pub hold_timeout_seconds: Option<u64>,
    /// `approvals.pending_seconds`.
    pub pending_seconds: Option<u64>,
    /// `approvals.valid_seconds`.
    pub valid_seconds: Option<u64>,
    /// `approvals.grant_groups`.
    pub grant_groups: Option<Vec<String>>,
    /// `approvals.max_grant_ttl_seconds`.
    pub max_grant_ttl_seconds: Option<u64>,
    /// `approvals.max_pending_per_caller`.
    pub max_pending_per_caller: Option<u32>,
}

/// A call budget per subject and tool: `per_minute` sustained, `burst` at once.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Tool name glob (`*` matches anything): `db.*`, `*`.
    pub tool: String,
    /// Calls allowed per minute.
    pub per_minute: u32,
    /// Calls allowed at once above the steady rate.
    pub burst: u32,
}

/// What to do when a pinned tool's definition changes.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnToolChange {
    /// Log and audit the change; the tool stays usable.
    #[default]
    Alert,
    /// Also hide the tool and refuse calls to it until it is re-pinned.
    Block,
}

pub(super) fn validate(p: &Policy) -> Result<(), ValidationError> {
    validate_source(p)?;
    for (n, b) in p.budgets.iter().enumerate() {
        if b.tool.is_empty() || b.per_minute == 0 || b.burst == 0 {
            return Err(Invalid(format!(
                "policy.budgets[{n}]: tool must be set, per_minute and burst > 0"
            )));
        }
    }
    Ok(())
}

fn validate_source(p: &Policy) -> Result<(), ValidationError> {
    let Some(src) = &p.source else {
        return Ok(());
    };
    if p.source_location().is_none() {
        return Err(Invalid(format!(
            "policy.source {src:?} must be an s3://bucket/prefix/ URL"
        )));
    }
    if !p.files.is_empty() {
        return Err(Invalid(
            "policy.source and policy.files are exclusive: the bundle carries the policies".into(),
        ));
    }
    if p.bundle_keys.is_empty() {
        return Err(Invalid(
            "policy.source needs policy.bundle_keys: the public keys a bundle may be signed by \
             (`mcp-interceptor policy keygen` prints one)"
                .into(),
        ));
    }
    for k in &p.bundle_keys {
        if k.len() != 64 || !k.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Invalid(format!(
                "policy.bundle_keys: {k:?} is not an Ed25519 public key (64 hex digits)"
            )));
        }
    }
    Ok(())
}

impl BundleSettings {
    /// Parses a bundle's `settings.toml`; unknown keys are errors.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        toml::from_str(text).map_err(|e| Invalid(format!("bundle settings.toml: {e}")))
    }

    /// `cfg` with these settings in place of its own, validated as a whole.
    pub fn apply(&self, cfg: &super::Config) -> Result<super::Config, ValidationError> {
        let mut c = cfg.clone();
        if let Some(m) = &self.mask {
            if let Some(d) = &m.default_profile {
                c.mask.default_profile = d.clone();
            }
            if let Some(p) = &m.profiles {
                c.mask.profiles = p.clone();
            }
        }
        if let Some(a) = &self.approvals {
            let o = &mut c.approvals;
            let set = |to: &mut u64, v: Option<u64>| *to = v.unwrap_or(*to);
            set(&mut o.hold_timeout_seconds, a.hold_timeout_seconds);
            set(&mut o.pending_seconds, a.pending_seconds);
            set(&mut o.valid_seconds, a.valid_seconds);
            set(&mut o.max_grant_ttl_seconds, a.max_grant_ttl_seconds);
            o.max_pending_per_caller = a.max_pending_per_caller.unwrap_or(o.max_pending_per_caller);
            o.grant_groups = a.grant_groups.clone().unwrap_or(o.grant_groups.clone());
        }
        c.validate()?;
        Ok(c)
    }
}
