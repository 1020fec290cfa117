//! What a request says of itself in `params._meta` that the record keeps
//! (the W3C trace context), and how the record links the round trips of
//! one MCP 2026-07-28 multi round-trip call (MRTR). Filled by `mcp`
//! (`mcp::meta`, `mcp::rounds`); read by the `record` phases.

use serde::Serialize;

/// Per-request ids an exchange event carries beside its message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestMeta {
    /// `trace_id` of a valid W3C `traceparent` in `params._meta`: 32
    /// lowercase hex digits; `None` when absent or malformed.
    pub trace_id: Option<String>,
    /// The `traceparent`'s parent-id (the client's span): 16 lowercase hex.
    pub span_id: Option<String>,
    /// The agent's id for a client request (a UUID v7): shared by the
    /// request's `forwarded` row and the row of its outcome.
    pub call_id: Option<String>,
    /// For an MRTR retry (`inputResponses` / `requestState`) or an input
    /// request a call's answer carried: the `call_id` of the first call of
    /// the logical call it belongs to.
    pub follows: Option<String>,
}
