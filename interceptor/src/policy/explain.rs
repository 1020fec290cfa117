//! `policy explain` and `policy test`: the same question the live proxy
//! asks (`Input` -> `Policies::decide`), from the command line or from a
//! table of cases in users' own CI.

use std::{net::IpAddr, path::Path};

use serde::Deserialize;
use serde_json::Value;

use super::{Decision, Effect, Input, Policies, PolicyError};
use crate::{config::Config, pipeline::call::TargetColumn};

/// One question, with the live proxy's defaults for what is not given.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Question {
    /// The case's name.
    pub name: Option<String>,
    /// The caller's subject.
    pub subject: String,
    /// The caller's groups.
    pub groups: Vec<String>,
    /// "oidc" (default), "mtls", "process" or "anonymous".
    pub auth_method: Option<String>,
    /// The token's issuer.
    pub issuer: Option<String>,
    /// The OAuth client id.
    pub client_id: Option<String>,
    /// The caller's scopes.
    pub scopes: Vec<String>,
    /// The server's policy name; default: the first port's.
    pub server: Option<String>,
    /// The server's address (`resource.address`); default 127.0.0.1.
    pub server_address: Option<String>,
    /// The JSON-RPC method.
    pub method: String,
    /// The tool (tools/call), resource URI or prompt name.
    pub tool: Option<String>,
    /// The resource URI.
    pub uri: Option<String>,
    /// The prompt name.
    pub prompt: Option<String>,
    /// The call's arguments.
    pub arguments: Option<Value>,
    /// The client's name.
    pub client_name: Option<String>,
    /// The client's version.
    pub client_version: Option<String>,
    /// Default 127.0.0.1.
    pub source_ip: Option<IpAddr>,
    /// The MCP session id.
    pub session_id: Option<String>,
    /// The MCP transport.
    pub transport: Option<String>,
    /// Unix seconds; default now.
    pub time: Option<i64>,
    /// The caller's standing grants.
    pub grants: Vec<String>,
    /// Whether the call is a listing.
    pub listing: bool,
    /// A same-host caller's process (`context.process`): pid, uid, user,
    /// unit, cgroup, exe, exe_sha256, container, pod; absent: remote.
    pub process: Option<super::input::ProcessContext>,
    /// `policy test` only: "allow", "deny" or "approval".
    pub expect: Option<String>,
    /// `policy test` only: the determining policy ids expected (any order).
    pub policies: Option<Vec<String>>,
}

impl Question {
    /// The policy input, as the proxy would build it for this request.
    pub fn input(&self, cfg: &Config) -> Input {
        let rule = cfg.intercept.ports.first();
        let port = rule.map_or(0, |r| r.port);
        let default_server = rule
            .and_then(|r| r.name.clone())
            .unwrap_or_else(|| port.to_string());
        let server = self.server.clone().unwrap_or(default_server);
        let server_port = cfg
            .intercept
            .ports
            .iter()
            .find(|r| r.name.as_deref() == Some(&server) || r.port.to_string() == server)
            .map_or(port, |r| r.port);
        Input {
            subject: self.subject.clone(),
            groups: self.groups.clone(),
            auth_method: self.auth_method.clone().unwrap_or_else(|| "oidc".into()),
            issuer: self.issuer.clone().unwrap_or_default(),
            client_id: self.client_id.clone().unwrap_or_default(),
            scopes: self.scopes.clone(),
            server,
            server_address: self
                .server_address
                .clone()
                .unwrap_or_else(|| "127.0.0.1".into()),
            server_port,
            method: self.method.clone(),
            target: TargetColumn::target_of(
                self.tool.as_deref(),
                self.uri.as_deref(),
                self.prompt.as_deref(),
            ),
            arguments: self.arguments.clone(),
            client_name: self.client_name.clone().unwrap_or_default(),
            client_version: self.client_version.clone().unwrap_or_default(),
            source_ip: self.source_ip.unwrap_or(IpAddr::from([127, 0, 0, 1])),
            session_id: self.session_id.clone().unwrap_or_default(),
            transport: self
                .transport
                .clone()
                .unwrap_or_else(|| "streamable-http".into()),
            time: self
                .time
                .unwrap_or_else(|| crate::pipeline::event::now_us() / 1_000_000),
            grants: self.grants.clone(),
            listing: self.listing,
            process: self.process.clone(),
        }
    }
}

/// The cases file: `[[case]]` tables of [`Question`] with `expect`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cases {
    /// The cases to check.
    #[serde(rename = "case")]
    pub cases: Vec<Question>,
}

/// Why a cases file could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    /// The file could not be read (path, error).
    #[error("{0}: {1}")]
    Read(String, String),
    /// The file could not be parsed (path, error).
    #[error("{0}: {1}")]
    Parse(String, String),
    /// A case's expectation is invalid (case, error).
    #[error("case {0}: expect must be allow, deny or approval, not {1:?}")]
    Expect(String, String),
    /// The policies could not be loaded.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// One case's outcome.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Whether the decision was the expected one.
    pub passed: bool,
    /// The expected decision.
    pub want: String,
    /// The decision taken.
    pub decision: Decision,
}

/// Loads a policy test cases file.
pub fn load_cases(path: &Path) -> Result<Cases, CasesError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CasesError::Read(shown.clone(), e.to_string()))?;
    toml::from_str(&text).map_err(|e| CasesError::Parse(shown, e.to_string().trim().to_string()))
}

/// Decides every case and compares with its expectation.
pub fn run_cases(
    policies: &Policies,
    cfg: &Config,
    cases: &Cases,
) -> Result<Vec<CaseResult>, CasesError> {
    let mut out = Vec::new();
    for (n, c) in cases.cases.iter().enumerate() {
        let name = c.name.clone().unwrap_or_else(|| format!("#{}", n + 1));
        let want = c.expect.clone().unwrap_or_default();
        let effect = match want.as_str() {
            "allow" => Effect::Allow,
            "deny" => Effect::Deny,
            "approval" => Effect::Approval,
            other => return Err(CasesError::Expect(name, other.to_string())),
        };
        let decision = policies.decide(&c.input(cfg))?;
        let mut passed = decision.effect == effect;
        if let Some(ids) = &c.policies {
            let mut want_ids = ids.clone();
            want_ids.sort();
            passed &= want_ids == decision.policies;
        }
        out.push(CaseResult {
            name,
            passed,
            want,
            decision,
        });
    }
    Ok(out)
}

/// The human form of a decision.
pub fn render(d: &Decision, policies: &Policies) -> String {
    let mut s = format!("decision: {}\n", d.effect.as_str());
    let ids = if d.policies.is_empty() {
        "(none: default deny)".to_string()
    } else {
        d.policies.join(", ")
    };
    s.push_str(&format!("determining policies: {ids}\n"));
    if let Some(a) = &d.approval {
        s.push_str(&format!(
            "approval by: {} ({} of them, {})\n",
            a.groups_text(),
            a.quorum,
            match a.mode {
                crate::pipeline::ApprovalMode::Hold => "the call is held until decided",
                crate::pipeline::ApprovalMode::Retry => "the caller retries once approved",
            }
        ));
    }
    if let Some(m) = &d.mask {
        s.push_str(&format!("masking profile: {m}\n"));
    }
    s.push_str(&format!("why: {}\n", d.reason));
    for e in &d.errors {
        s.push_str(&format!("evaluation error (policy skipped): {e}\n"));
    }
    s.push_str(&format!(
        "policy set: {} ({} policies)\n",
        d.version, policies.count
    ));
    s
}
