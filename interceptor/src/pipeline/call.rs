//! Who made a call and what it asked: the one copy of the fields that an
//! approval is bound to, a retry must match, a webhook announces and an
//! approval's audit rows carry.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One call's identity: who asked, which server, which method and target,
/// a digest of its arguments, and the policy set that judged it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallFacts {
    /// The caller's subject.
    pub subject: String,
    /// The caller's issuer (token issuer or certificate issuer DN; "" for
    /// anonymous): with `subject`, who asked. "alice" of one issuer is not
    /// "alice" of another, nor a certificate CN "alice".
    pub issuer: String,
    /// The caller's groups.
    pub groups: Vec<String>,
    /// The server the call is addressed to (port rule `name`, or the port).
    pub server: String,
    /// The JSON-RPC method of the call.
    pub method: String,
    /// The tool, resource or prompt the call names.
    pub target: Option<String>,
    /// SHA-256 of the call's canonical arguments ("" when it has none).
    pub arguments_sha256: String,
    /// The policy set version that judged the call.
    pub policy_version: String,
}

/// SHA-256 of a value's canonical JSON (key order does not change it).
pub fn arguments_sha256(v: &Value) -> String {
    hex::encode(Sha256::digest(crate::jsonrpc::canonical(v).as_bytes()))
}

/// Which audit column names a method's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetColumn {
    /// `tool_name`: the tool of a `tools/call`.
    Tool,
    /// `prompt_name`: the prompt of a `prompts/get`.
    Prompt,
    /// `resource_uri`: the URI of a `resources/*` request.
    Resource,
}

impl TargetColumn {
    /// The column for `method`'s target; other methods name none.
    pub fn of(method: &str) -> Option<Self> {
        match method {
            "tools/call" | "tasks/get" | "tasks/update" | "tasks/cancel" => Some(Self::Tool),
            "prompts/get" => Some(Self::Prompt),
            m if m.starts_with("resources/") => Some(Self::Resource),
            _ => None,
        }
    }

    /// The target back from its three columns (tool, resource URI,
    /// prompt), of which a method sets at most one: the first that is set.
    pub fn target_of(
        tool: Option<&str>,
        resource: Option<&str>,
        prompt: Option<&str>,
    ) -> Option<String> {
        tool.or(resource).or(prompt).map(str::to_owned)
    }
}
