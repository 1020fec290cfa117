//! The record of one exchange: what `record` phases (the audit, the JSON
//! lines sink) receive. Field names follow the OpenTelemetry MCP / GenAI
//! conventions where one exists (noted per field).

use serde::Serialize;
use serde_json::Value;

/// Which MCP transport carried the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Streamable HTTP (2025-03-26 and later, with or without sessions).
    StreamableHttp,
    /// Legacy HTTP+SSE (2024-11-05).
    Sse,
    /// The 2026-07-28 stateless form (per-request metadata and headers).
    Stateless,
    /// A non-MCP path on an intercepted port.
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A request paired with its response or error.
    Exchange,
    /// A notification (no response expected), either direction.
    Notification,
    /// A client request refused by a phase.
    Denied,
    /// A request that never got a response (stream ended, upstream failed).
    Unanswered,
    /// A response whose request was never seen.
    Unpaired,
    /// A session ended (DELETE).
    SessionClosed,
    /// A request the agent rejected before any message (bad body, limits).
    Rejected,
    /// A non-MCP HTTP request passed through.
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The client asked, the server answered.
    ClientToServer,
    /// The server asked (sampling, elicitation, roots), the client answered.
    ServerToClient,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExchangeEvent {
    pub kind: EventKind,
    pub direction: Direction,
    pub conn_id: u64,
    pub client_addr: String,
    pub orig_dst: String,
    /// Who asked (`None` only when the request was refused before an
    /// identity was established).
    pub caller: Option<std::sync::Arc<crate::identity::Caller>>,
    /// `mcp.session.id`
    pub session_id: Option<String>,
    pub transport: Transport,
    /// `mcp.protocol.version`
    pub protocol_version: Option<String>,
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    /// `jsonrpc.request.id`
    pub jsonrpc_id: Option<Value>,
    /// `mcp.method.name`
    pub method: Option<String>,
    /// `gen_ai.tool.name`, or the resource URI / prompt name, by method.
    pub target: Option<String>,
    pub params: Option<Value>,
    pub result: Option<Value>,
    /// The JSON-RPC error object; `error.type` is its code.
    pub error: Option<Value>,
    pub http_method: String,
    pub http_path: String,
    pub http_status: Option<u16>,
    /// The phase that denied or rewrote the request, if any.
    pub decided_by: Option<String>,
    /// The policy decision, when a policy stage decided.
    pub decision: Option<super::Decision>,
    /// Values masked in the answer, per detector, and the profile used
    /// (so the record stage need not mask the answer again).
    pub masked: super::MaskCounts,
    pub masked_with: Option<String>,
    /// The approval that released the call (or that it waits for).
    pub approval: Option<super::ApprovalNote>,
    pub rewritten: bool,
    /// Unix microseconds: request received, forwarded upstream, first
    /// response byte, response complete.
    pub received_us: i64,
    pub forwarded_us: Option<i64>,
    pub first_byte_us: Option<i64>,
    pub done_us: Option<i64>,
    /// Request bytes from the client, response bytes of this message.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Now, in Unix microseconds.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
