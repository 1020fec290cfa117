//! What a request says of itself in `params._meta`, for the record.
//!
//! - MCP 2026-07-28 stateless requests have no `initialize`: each carries
//!   `io.modelcontextprotocol/clientInfo` (`{name, version}`) and
//!   `io.modelcontextprotocol/protocolVersion` instead, which fill the
//!   same columns `initialize` fills for a session. Like `clientInfo` in
//!   `initialize`, they are the client's own word, not verified.
//! - Any request may carry the W3C trace context as `_meta.traceparent`
//!   (the key the OpenTelemetry propagator writes; the SDKs inject it
//!   there). A valid one gives the row its `trace_id` and `span_id`; a
//!   malformed one is ignored, as W3C Trace Context tells a receiver to:
//!   it never refuses the call, and nothing unvalidated reaches a column.

use serde_json::Value;

use super::session::SessionInfo;
use crate::jsonrpc::mcp_names::{META_CLIENT_INFO, META_PROTOCOL_VERSION};

/// The `_meta` key of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Longest client name or version kept: enough for any real client, and a
/// request cannot make every row of its exchange large through them.
const MAX_TEXT: usize = 256;

fn meta(params: Option<&Value>) -> Option<&serde_json::Map<String, Value>> {
    params?.get("_meta")?.as_object()
}

/// A short string field of `v`, or `None`.
fn text(v: Option<&Value>) -> Option<String> {
    v?.as_str()
        .filter(|s| !s.is_empty() && s.len() <= MAX_TEXT)
        .map(str::to_owned)
}

/// Fills what a stateless request's `_meta` says of its client into
/// `info` (the request's own per-POST entry): the client's name and
/// version, and the protocol version when no header gave one.
pub fn stateless_client(params: Option<&Value>, info: &mut SessionInfo) {
    let Some(m) = meta(params) else { return };
    if let Some(ci) = m.get(META_CLIENT_INFO) {
        info.client_name = text(ci.get("name"));
        info.client_version = text(ci.get("version"));
    }
    if info.protocol_version.is_none() {
        info.protocol_version = text(m.get(META_PROTOCOL_VERSION));
    }
}

/// `(trace_id, span_id)` of the request's `_meta.traceparent`, when it is
/// a valid W3C `traceparent`; `(None, None)` otherwise.
pub fn trace(params: Option<&Value>) -> (Option<String>, Option<String>) {
    meta(params)
        .and_then(|m| m.get(TRACEPARENT))
        .and_then(Value::as_str)
        .and_then(traceparent)
        .map_or((None, None), |(t, s)| (Some(t), Some(s)))
}

fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parses `version-traceid-parentid-flags` as W3C Trace Context level 1
/// says a receiver must: lowercase hex only, version `ff` invalid,
/// version `00` exactly 55 characters, a later version at least 55 with
/// a `-` after the flags; an all-zero trace or parent id is invalid.
pub fn traceparent(s: &str) -> Option<(String, String)> {
    let (head, rest) = (s.get(..55)?, s.get(55..)?);
    let mut parts = head.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let valid = parts.next().is_none()
        && lower_hex(version, 2)
        && version != "ff"
        && lower_hex(trace, 32)
        && lower_hex(span, 16)
        && lower_hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && span.bytes().any(|b| b != b'0')
        && if version == "00" {
            rest.is_empty()
        } else {
            rest.is_empty() || rest.starts_with('-')
        };
    valid.then(|| (trace.to_owned(), span.to_owned()))
}

#[cfg(test)]
mod tests;
