//! MCP 2026-07-28 member names that several stages read: the per-request
//! `_meta` keys of the stateless form, and the params of a multi
//! round-trip (MRTR) retry. One spelling each, so the transport, the
//! approvals and the record all look up the same key.

use serde_json::Value;

/// `_meta` key: the protocol version of a stateless request.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key: a stateless client's name and version.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key: a stateless client's capabilities for this request.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// Param of an MRTR retry: the client's answers to the input requests.
pub const INPUT_RESPONSES: &str = "inputResponses";
/// Param of an MRTR retry (and result field): the state the client echoes.
pub const REQUEST_STATE: &str = "requestState";

/// The params that differ between the rounds of one call (the retry's
/// answers and echoed state) or between any two requests (`_meta`: a
/// progress token, a new `traceparent`): left out of what identifies a call.
const ROUND_PARAMS: &[&str] = &["_meta", INPUT_RESPONSES, REQUEST_STATE];

/// `params` as they identify a call across its rounds (see `ROUND_PARAMS`).
pub fn call_params(mut params: Value) -> Value {
    if let Some(o) = params.as_object_mut() {
        for k in ROUND_PARAMS {
            o.remove(*k);
        }
    }
    params
}
