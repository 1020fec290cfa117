//! The 2026-07-28 stateless form: requests mirror their method and target
//! into HTTP headers so intermediaries can route without the body. A header
//! that disagrees with the body would let a request be routed, limited and
//! logged as one thing and executed as another, so it is refused with the
//! spec's `HeaderMismatch` (-32020, HTTP 400) naming the pair.

use base64::Engine;
use http::HeaderMap;
use serde_json::{Value, json};

use crate::{
    error::{Reason, Refusal},
    jsonrpc::{Body, Kind, mcp_names::META_PROTOCOL_VERSION},
};

/// Whether a POST uses the stateless form: it names its method in a
/// header, or declares a protocol revision from 2026-07-28 on.
pub fn is_stateless(headers: &HeaderMap) -> bool {
    headers.contains_key("mcp-method")
        || headers
            .get("mcp-protocol-version")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v >= "2026-07-28")
}

/// A header value, decoding the `=?base64?...?=` form used for values that
/// are not plain ASCII.
fn decode(raw: &str) -> Option<String> {
    match raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        None => Some(raw.to_string()),
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<Option<String>> {
    headers.get(name).map(|v| v.to_str().ok().and_then(decode))
}

/// Checks the mirrored headers against the body. `Err` carries the
/// JSON-RPC error object to answer with.
pub fn check(headers: &HeaderMap, body: &Body) -> Result<(), Refusal> {
    let msg = match body {
        Body::Single(m) => m,
        Body::Batch(_) => {
            return Err(Refusal::new(
                Reason::InvalidRequest,
                "batches are not part of the stateless (2026-07-28) transport",
            ));
        }
    };
    if !matches!(msg.kind, Kind::Request | Kind::Notification) {
        return Ok(());
    }
    let mismatch = |name: &str, expected: Option<&str>, got: Option<Option<String>>| {
        Refusal::new(
            Reason::HeaderMismatch,
            format!("HeaderMismatch: {name} does not match the request body"),
        )
        .with(
            "mismatch",
            json!({ "header": name, "body": expected, "header_value": got.flatten() }),
        )
    };
    let method = msg.method().unwrap_or_default();
    match header(headers, "mcp-method") {
        Some(Some(h)) if h == method => {}
        got => return Err(mismatch("Mcp-Method", Some(method), got)),
    }
    let target = match method {
        "tools/call" | "resources/read" | "prompts/get" => Some(msg.target()),
        // Tasks extension: a task request is routed by its task id.
        m if super::tasks::names_task(Some(m)) => Some(super::tasks::task_id(msg)),
        _ => None,
    };
    if let Some(target) = target {
        match header(headers, "mcp-name") {
            Some(Some(h)) if Some(h.as_str()) == target => {}
            got => return Err(mismatch("Mcp-Name", target, got)),
        }
    }
    let body_version = msg
        .params()
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_PROTOCOL_VERSION))
        .and_then(Value::as_str);
    if let (Some(b), Some(h)) = (body_version, header(headers, "mcp-protocol-version"))
        && h.as_deref() != Some(b)
    {
        return Err(mismatch("MCP-Protocol-Version", Some(b), Some(h)));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
