//! Tool pinning, against a server that changes a tool after it was trusted
//! (a "rug pull": a description that now carries instructions for the
//! model, a schema that now asks for more, an annotation that now claims
//! `readOnlyHint`). Each tool definition (every member the client or the
//! model reads: name, title, description, input and output schema,
//! annotations, icons, `_meta`) is fingerprinted per server; the first
//! definition seen is pinned (trust on first use), and one that differs
//! from its pin is logged and audited, and with `on_tool_change = "block"`
//! hidden and refused until an operator re-pins it
//! (`mcp-interceptor tools pin`).
//!
//! Named `tool_pins`, not `pins`: these pin tool definitions, unlike the
//! bpffs pins of `steer::pins`.
//!
//! The pins file is shared by the agent and the CLI. Readers never lock:
//! writers rename a whole file into place. Writers hold an exclusive
//! `flock` on `<file>.lock` around read-modify-write, so an operator's
//! re-pin and the agent's observation never overwrite each other.
//!
//! `fingerprint` says what a pin covers, `file` what an observation or a
//! re-pin does to the pins, `store` how the file is read and written, and
//! `phase` how the agent applies all that to the traffic.

mod file;
mod fingerprint;
mod phase;
mod store;

use std::{path::Path, time::Duration};

pub use file::{PinFile, Repinned, Seen, ToolPin};
#[cfg(test)]
use fingerprint::legacy_fingerprint;
pub use fingerprint::{Observed, PINNED_MEMBERS, definition, fingerprint};
pub use phase::PinPhase;
pub use store::{PinError, PinStore};

use crate::config::Config;

/// How often the agent looks for a re-pin by the CLI (one `stat`).
pub const RECHECK: Duration = Duration::from_secs(1);

/// The pins file format this build writes; a newer one is refused rather
/// than rewritten without the fields it does not know. 2: fingerprints
/// cover every member of [`PINNED_MEMBERS`] (1 covered three of them).
pub const FORMAT: u32 = 2;

/// The key a server's pins are kept under: its port rule's `name`, else
/// the port number (the same server identity policies use).
pub fn server_key(cfg: &Config, port: u16) -> String {
    cfg.rule(port)
        .and_then(|r| r.name.clone())
        .unwrap_or_else(|| port.to_string())
}

/// What `mcp-interceptor tools pin` does: re-pins under the file lock.
pub fn repin(path: &Path, server: &str, tool: Option<&str>) -> Result<Vec<Repinned>, PinError> {
    PinStore::new(path).update(|f| f.repin(server, tool, unix_now()))
}

/// Seconds since the epoch (0 for a clock set before it).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
