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
    for (n, b) in p.budgets.iter().enumerate() {
        if b.tool.is_empty() || b.per_minute == 0 || b.burst == 0 {
            return Err(Invalid(format!(
                "policy.budgets[{n}]: tool must be set, per_minute and burst > 0"
            )));
        }
    }
    Ok(())
}
