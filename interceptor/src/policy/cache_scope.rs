//! MCP 2026-07-28 caching hints on the answers the policy judges per
//! caller. A cacheable answer's `cacheScope` says whether a cache may
//! share it across authorization contexts (`"public"`) or only reuse it
//! for the one that asked (`"private"`). Through the agent, every such
//! answer depends on who asks: a list shows each caller only what its
//! policy lets it use, and whether the caller gets `resources/read` or
//! `server/discover` answered at all is the policy's decision. A shared
//! cache serving one caller's answer to another would skip the agent, so
//! each goes out `"private"` whenever the policy judged it, whether or not
//! it removed an entry this time. `ttlMs` passes untouched.

use serde_json::{Value, json};

use crate::{jsonrpc::Message, pipeline::MessageCtx};

/// The notification that a resource changed (a listen stream's).
pub const RESOURCE_UPDATED: &str = "notifications/resources/updated";

/// The first protocol revision with caching hints.
const HINTS_SINCE: &str = "2026-07-28";

/// The methods whose results carry caching hints (2026-07-28).
pub const CACHEABLE: &[&str] = &[
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "server/discover",
];

/// Whether `msg`, a complete answer to a cacheable request, may be shared
/// as it stands: it says `"public"`, or says nothing to a client of a
/// revision whose clients read a missing scope as their own default. An
/// answer to an older client without the field is left as it came (it
/// knows no such field); an error or an `input_required` result has no
/// scope to set.
pub fn shared(ctx: &MessageCtx<'_>, msg: &Message) -> bool {
    if !ctx.request_method.is_some_and(|m| CACHEABLE.contains(&m)) {
        return false;
    }
    let Some(result) = msg.result().and_then(Value::as_object) else {
        return false;
    };
    if result.get("resultType").and_then(Value::as_str) == Some("input_required") {
        return false;
    }
    match result.get("cacheScope").and_then(Value::as_str) {
        Some(s) => s != "private",
        None => ctx.protocol_version.is_some_and(|v| v >= HINTS_SINCE),
    }
}

/// Marks the answer `value` (a whole JSON-RPC response) private.
pub fn make_private(value: &mut Value) {
    if let Some(result) = value.get_mut("result").and_then(Value::as_object_mut) {
        result.insert("cacheScope".into(), json!("private"));
    }
}
