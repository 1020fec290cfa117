//! The record of one exchange: what `record` phases (the audit, the JSON
//! lines sink) receive. Field names follow the OpenTelemetry MCP / GenAI
//! conventions where one exists (noted per field).

use serde::Serialize;
use serde_json::Value;

use crate::conn::ConnInfo;

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

/// What an exchange event records.
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

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The client asked, the server answered.
    ClientToServer,
    /// The server asked (sampling, elicitation, roots), the client answered.
    ServerToClient,
}

/// One message exchanged through the proxy, for the audit and event file.
#[derive(Debug, Clone, Serialize)]
pub struct ExchangeEvent {
    /// What the event records.
    pub kind: EventKind,
    /// Which way the message went.
    pub direction: Direction,
    /// The proxy's id for the connection.
    pub conn_id: u64,
    /// The client's address.
    pub client_addr: String,
    /// The original destination address.
    pub orig_dst: String,
    /// What the connection's TLS handshake negotiated; `None`: plaintext.
    pub tls: Option<crate::conn::Negotiated>,
    /// The same-host process that opened the connection; `None`: remote.
    pub process: Option<std::sync::Arc<crate::conn::ProcessFacts>>,
    /// Who asked (`None` only when the request was refused before an
    /// identity was established).
    pub caller: Option<std::sync::Arc<crate::identity::Caller>>,
    /// `mcp.session.id`
    pub session_id: Option<String>,
    /// The MCP transport.
    pub transport: Transport,
    /// `mcp.protocol.version`
    pub protocol_version: Option<String>,
    /// The client's name from `initialize`.
    pub client_name: Option<String>,
    /// The client's version from `initialize`.
    pub client_version: Option<String>,
    /// `jsonrpc.request.id`
    pub jsonrpc_id: Option<Value>,
    /// `mcp.method.name`
    pub method: Option<String>,
    /// `gen_ai.tool.name`, or the resource URI / prompt name, by method.
    pub target: Option<String>,
    /// The request's params.
    pub params: Option<Value>,
    /// The response's result.
    pub result: Option<Value>,
    /// The JSON-RPC error object; `error.type` is its code.
    pub error: Option<Value>,
    /// The HTTP method.
    pub http_method: String,
    /// The HTTP path.
    pub http_path: String,
    /// The HTTP status.
    pub http_status: Option<u16>,
    /// The phase that denied or rewrote the request, if any.
    pub decided_by: Option<String>,
    /// The policy decision, when a policy stage decided.
    pub decision: Option<super::Decision>,
    /// Values masked in the answer, per detector, and the profile used
    /// (so the record stage need not mask the answer again).
    pub masked: super::MaskCounts,
    /// The masking profile applied.
    pub masked_with: Option<String>,
    /// The approval that released the call (or that it waits for).
    pub approval: Option<super::ApprovalNote>,
    /// Whether a phase rewrote the message.
    pub rewritten: bool,
    /// Unix microseconds: request received, forwarded upstream, first
    /// response byte, response complete.
    pub received_us: i64,
    /// When the request was forwarded upstream.
    pub forwarded_us: Option<i64>,
    /// When the first response byte arrived.
    pub first_byte_us: Option<i64>,
    /// When the response was done.
    pub done_us: Option<i64>,
    /// Request bytes from the client, response bytes of this message.
    pub bytes_in: u64,
    /// Bytes sent to the client.
    pub bytes_out: u64,
    /// `params._meta` request metadata and MRTR round linking (`mcp::meta`).
    #[serde(flatten)]
    pub meta: super::RequestMeta,
}

impl ExchangeEvent {
    /// An event of `kind` on `conn`, received now, with nothing else
    /// known yet: no caller, session, message, answer, decision or timing
    /// (the builder fills in what it has).
    pub fn new(
        kind: EventKind,
        direction: Direction,
        conn: &ConnInfo,
        transport: Transport,
    ) -> Self {
        Self {
            kind,
            direction,
            conn_id: conn.id,
            client_addr: conn.client.to_string(),
            orig_dst: conn.orig_dst.to_string(),
            tls: conn.tls.as_ref().map(|t| t.negotiated.clone()),
            process: conn.process.clone(),
            caller: None,
            session_id: None,
            transport,
            protocol_version: None,
            client_name: None,
            client_version: None,
            jsonrpc_id: None,
            method: None,
            target: None,
            params: None,
            result: None,
            error: None,
            http_method: String::new(),
            http_path: String::new(),
            http_status: None,
            decided_by: None,
            decision: None,
            masked: Default::default(),
            masked_with: None,
            approval: None,
            rewritten: false,
            received_us: now_us(),
            forwarded_us: None,
            first_byte_us: None,
            done_us: None,
            bytes_in: 0,
            bytes_out: 0,
            meta: super::RequestMeta::default(),
        }
    }
}

/// Now, in Unix microseconds.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
