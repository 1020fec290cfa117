//! MCP 2026-07-28 caching hints on the lists the policy filters per
//! caller. A list answer's `cacheScope` says whether a cache may share it
//! across authorization contexts (`"public"`) or only reuse it for the one
//! that asked (`"private"`). The agent shows each caller only what its
//! policy lets it use, so such a list depends on who asks: it goes out
//! `"private"` whenever the policy judged it, whether or not it removed an
//! entry this time (an unfiltered answer to one caller is still no answer
//! for another). `ttlMs` passes untouched.

use serde_json::{Value, json};

use crate::{jsonrpc::Message, pipeline::MessageCtx};

/// The notification that a resource changed (a listen stream's).
pub const RESOURCE_UPDATED: &str = "notifications/resources/updated";

/// The first protocol revision with caching hints.
const HINTS_SINCE: &str = "2026-07-28";

/// Whether the list answer `msg` may be shared as it stands: it says
/// `"public"`, or says nothing to a client of a revision whose clients
/// read a missing scope as their own default. An answer to an older
/// client without the field is left as it came (it knows no such field).
pub fn shared(ctx: &MessageCtx<'_>, msg: &Message) -> bool {
    let scope = msg
        .result()
        .and_then(|r| r.get("cacheScope"))
        .and_then(Value::as_str);
    match scope {
        Some(s) => s != "private",
        None => ctx.protocol_version.is_some_and(|v| v >= HINTS_SINCE),
    }
}

/// Marks the list answer `value` (a whole JSON-RPC response) private.
pub fn make_private(value: &mut Value) {
    if let Some(result) = value.get_mut("result").and_then(Value::as_object_mut) {
        result.insert("cacheScope".into(), json!("private"));
    }
}
