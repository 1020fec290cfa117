//! `[identity.process]`: same-host callers named by what the kernel saw
//! when they connected (issue 23), with no token and no client change.

use educe::Educe;
use serde::{Deserialize, Serialize};

use super::ValidationError::{self, Invalid};

/// How same-host callers without a credential are named.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Educe)]
#[educe(Default)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessIdentity {
    /// Rules tried in order; the first whose every condition holds names
    /// the caller. Empty: same-host callers need a token or a certificate
    /// like remote ones.
    pub rules: Vec<ProcessRule>,
    /// How long a uid's user name (from the system's passwd, through NSS)
    /// is kept before it is looked up again.
    #[educe(Default = 300)]
    pub user_cache_seconds: u64,
}

/// One rule: conditions on the connecting process (all that are set must
/// hold; at least one is set) and the identity it gets.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProcessRule {
    /// The caller's subject, e.g. `svc:ai-agent`.
    pub subject: String,
    /// The caller's groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The unix user name the process ran as (its real uid, looked up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The real uid the process ran as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The systemd unit (`ai-agent.service`, `session-3.scope`): the
    /// innermost `.service` or `.scope` of the process's cgroup path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The cgroup path (`/system.slice/ai-agent.service`); `*` matches any
    /// run of characters, `/` included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// The executable's absolute path, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// The executable's SHA-256 (hex), as the agent hashed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_sha256: Option<String>,
}

impl ProcessRule {
    /// Whether the rule has no condition at all (it would admit every
    /// process on the host).
    fn unconditional(&self) -> bool {
        self.user.is_none()
            && self.uid.is_none()
            && self.unit.is_none()
            && self.cgroup.is_none()
            && self.exe.is_none()
            && self.exe_sha256.is_none()
    }
}

/// `[identity.process]`: each rule names a subject, has a condition, and
/// its conditions are well formed.
pub(super) fn validate(p: &ProcessIdentity) -> Result<(), ValidationError> {
    if p.user_cache_seconds == 0 || p.user_cache_seconds > 86_400 {
        return Err(Invalid(
            "identity.process.user_cache_seconds must be 1..=86400".into(),
        ));
    }
    for (n, r) in p.rules.iter().enumerate() {
        let at = format!("identity.process.rules[{n}]");
        if r.subject.trim().is_empty() {
            return Err(Invalid(format!("{at}: subject is empty")));
        }
        if r.unconditional() {
            return Err(Invalid(format!(
                "{at}: no condition (user, uid, unit, cgroup, exe or exe_sha256): \
                 it would admit every process on the host"
            )));
        }
        if r.groups.iter().any(|g| g.is_empty()) {
            return Err(Invalid(format!("{at}: a group is empty")));
        }
        if r.user.as_deref().is_some_and(str::is_empty) || r.unit.as_deref() == Some("") {
            return Err(Invalid(format!("{at}: user and unit must not be empty")));
        }
        if let Some(u) = &r.unit
            && (u.contains('/') || !(u.ends_with(".service") || u.ends_with(".scope")))
        {
            return Err(Invalid(format!(
                "{at}: unit {u:?} must be a unit name ending in .service or .scope"
            )));
        }
        if let Some(c) = &r.cgroup
            && !c.starts_with('/')
        {
            return Err(Invalid(format!(
                "{at}: cgroup {c:?} must be a path under the cgroup2 mount, starting with /"
            )));
        }
        if let Some(e) = &r.exe
            && !e.starts_with('/')
        {
            return Err(Invalid(format!("{at}: exe {e:?} must be an absolute path")));
        }
        if let Some(h) = &r.exe_sha256
            && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(Invalid(format!("{at}: exe_sha256 must be 64 hex digits")));
        }
    }
    Ok(())
}

/// `*` matches any run of characters; everything else literally.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}
