//! The 2026-07-28 stateless form: requests mirror their method and target
//! (and, for `tools/call`, the arguments a tool declares with
//! `x-mcp-header`: `params`) into HTTP headers so intermediaries can route
//! without the body. A header that disagrees with the body would let a
//! request be routed, limited and logged as one thing and executed as
//! another, so it is refused with the spec's `HeaderMismatch` (-32020,
//! HTTP 400) naming the header. So is a mirrored header sent twice: one
//! reader takes the first copy, another the last.

use base64::Engine;
use http::HeaderMap;
use serde_json::{Value, json};

use crate::{
    error::{Reason, Refusal},
    jsonrpc::{Body, Kind, Message, mcp_names::META_PROTOCOL_VERSION},
};

pub mod params;

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
/// are not plain ASCII. `None`: a sentinel whose payload is not canonical
/// Base64 of UTF-8 (the engine refuses non-canonical padding and trailing
/// bits, as the Python SDK does).
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

/// The one value of header `name` as text (`Some(None)`: not text),
/// `None` when absent; a header sent more than once is refused.
fn single(headers: &HeaderMap, name: &str, shown: &str) -> Result<Option<Option<String>>, Refusal> {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(repeated(shown));
    }
    Ok(Some(first.to_str().ok().map(str::to_owned)))
}

/// The refusal of a mirrored header sent more than once.
fn repeated(shown: &str) -> Refusal {
    Refusal::new(
        Reason::HeaderMismatch,
        format!("HeaderMismatch: {shown} is sent more than once; the agent cannot tell which copy intermediaries act on"),
    )
    .with("mismatch", json!({ "header": shown, "repeated": true }))
}

/// The refusal of header `name` that disagrees with the body's `expected`.
fn mismatch(name: &str, expected: Option<&str>, got: Option<Option<String>>) -> Refusal {
    Refusal::new(
        Reason::HeaderMismatch,
        format!("HeaderMismatch: {name} does not match the request body"),
    )
    .with(
        "mismatch",
        json!({ "header": name, "body": expected, "header_value": got.flatten() }),
    )
}

/// Header `name` (shown as `shown`), decoded, must equal `expected`.
fn expect(
    headers: &HeaderMap,
    name: &str,
    shown: &str,
    expected: Option<&str>,
) -> Result<(), Refusal> {
    match single(headers, name, shown)? {
        Some(Some(h)) if decode(&h).as_deref() == expected && expected.is_some() => Ok(()),
        got => Err(mismatch(shown, expected, got)),
    }
}

/// Checks the mirrored headers against the body. `Err` carries the
/// JSON-RPC error object to answer with. `Mcp-Param-*` headers are checked
/// apart, by [`params::check`], against the tool's schema.
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
    // The method is compared as sent: only names may take the Base64 form.
    let method = msg.method().unwrap_or_default();
    match single(headers, "mcp-method", "Mcp-Method")? {
        Some(Some(h)) if h == method => {}
        got => return Err(mismatch("Mcp-Method", Some(method), got)),
    }
    if let Some(target) = target(msg, method) {
        expect(headers, "mcp-name", "Mcp-Name", target)?;
    }
    let body_version = msg
        .params()
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_PROTOCOL_VERSION))
        .and_then(Value::as_str);
    match (
        body_version,
        single(headers, "mcp-protocol-version", "MCP-Protocol-Version")?,
    ) {
        (Some(b), Some(h)) if h.as_deref() != Some(b) => {
            Err(mismatch("MCP-Protocol-Version", Some(b), Some(h)))
        }
        _ => Ok(()),
    }
}

/// What `Mcp-Name` must carry for `method`: `Some(target)` for the methods
/// that name one (`Some(None)`: the body names none, so no header can
/// match), `None` for the others.
fn target<'a>(msg: &'a Message, method: &str) -> Option<Option<&'a str>> {
    match method {
        "tools/call" | "resources/read" | "prompts/get" => Some(msg.target()),
        // Tasks extension: a task request is routed by its task id.
        m if super::tasks::names_task(Some(m)) => Some(super::tasks::task_id(msg)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
