//! What a tool's pin covers: the members of its definition that clients
//! show or models read, and the fingerprint over them.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::jsonrpc::canonical;

/// The members of a tool definition that are fingerprinted: all that a
/// client shows or a model reads. `annotations` (`readOnlyHint`,
/// `destructiveHint`) steer clients' confirmation prompts, `title` and
/// `icons` what a user sees, `outputSchema` what the model is told to
/// expect, `_meta` extension data clients act on.
pub const PINNED_MEMBERS: [&str; 8] = [
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
    "icons",
    "_meta",
];

/// The members format 1 fingerprinted.
const LEGACY_MEMBERS: [&str; 3] = ["name", "description", "inputSchema"];

/// One tool of a `tools/list` answer, fingerprinted.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The tool's name.
    pub name: String,
    /// The fingerprint of its definition.
    pub fingerprint: String,
    /// The definition as listed.
    pub definition: Value,
}

impl Observed {
    /// `None` for an entry without a string `name` (nothing can call it).
    pub fn of(tool: &Value) -> Option<Self> {
        let name = tool.get("name")?.as_str()?.to_string();
        let definition = definition(tool);
        Some(Self {
            name,
            fingerprint: digest(&definition),
            definition,
        })
    }
}

/// The fingerprinted part of a tool; missing fields are `null`, so adding
/// a description where there was none is a change too.
pub fn definition(tool: &Value) -> Value {
    members(tool, &PINNED_MEMBERS)
}

/// The named members of a tool, missing ones as `null`.
fn members(tool: &Value, names: &[&str]) -> Value {
    let field = |k: &str| tool.get(k).cloned().unwrap_or(Value::Null);
    Value::Object(names.iter().map(|k| (k.to_string(), field(k))).collect())
}

/// The format 1 fingerprint of a definition, to carry old pins over.
pub(super) fn legacy_fingerprint(definition: &Value) -> String {
    digest(&members(definition, &LEGACY_MEMBERS))
}

/// SHA-256 (hex) of the canonical JSON of the tool's definition: key order
/// and whitespace do not count, everything else does.
pub fn fingerprint(tool: &Value) -> String {
    digest(&definition(tool))
}

/// SHA-256 (hex) of a definition's canonical JSON.
fn digest(definition: &Value) -> String {
    hex::encode(Sha256::digest(canonical(definition).as_bytes()))
}
