//! `context.process`: the same-host process that opened the caller's
//! connection (issue 23), present only for same-host callers, so policies
//! can say "only the ai-agent unit may call the shell server" whatever
//! named the caller (a process rule, a token or a certificate).

use cedar_policy::RestrictedExpression;
use serde::Deserialize;

use super::{input_err, s};
use crate::{identity::process::Seen, policy::PolicyError};

/// The process as policy sees it; what is unknown is "" (Cedar has no
/// null, and "" matches no unit, user or path a policy names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessContext {
    /// Its PID.
    pub pid: i64,
    /// Its real uid.
    pub uid: i64,
    /// The uid's user name.
    pub user: String,
    /// The systemd unit its cgroup names (`ai-agent.service`).
    pub unit: String,
    /// Its cgroup v2 path.
    pub cgroup: String,
    /// Its executable's path.
    pub exe: String,
    /// Its executable's SHA-256, lowercase hex.
    pub exe_sha256: String,
    /// The container id its cgroup names.
    pub container: String,
    /// The Kubernetes pod UID its cgroup names.
    pub pod: String,
}

impl ProcessContext {
    /// The context of the process identity saw.
    pub fn of(seen: &Seen) -> Self {
        let f = &seen.facts;
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        Self {
            pid: i64::from(f.pid),
            uid: i64::from(f.uid),
            user: text(&seen.user),
            unit: text(&seen.placement.unit),
            cgroup: text(&f.cgroup_path),
            exe: text(&f.exe_path),
            exe_sha256: text(&f.exe_sha256),
            container: text(&seen.placement.container),
            pod: text(&seen.placement.pod),
        }
    }

    /// The Cedar record.
    pub(super) fn expr(&self) -> Result<RestrictedExpression, PolicyError> {
        let long = RestrictedExpression::new_long;
        RestrictedExpression::new_record([
            ("pid".to_string(), long(self.pid)),
            ("uid".to_string(), long(self.uid)),
            ("user".to_string(), s(&self.user)),
            ("unit".to_string(), s(&self.unit)),
            ("cgroup".to_string(), s(&self.cgroup)),
            ("exe".to_string(), s(&self.exe)),
            ("exe_sha256".to_string(), s(&self.exe_sha256)),
            ("container".to_string(), s(&self.container)),
            ("pod".to_string(), s(&self.pod)),
        ])
        .map_err(input_err)
    }
}
