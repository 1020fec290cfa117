//! The one refusal type: every error the agent itself answers is a
//! [`Refusal`], and [`Refusal::to_jsonrpc`] is the one place it becomes a
//! reply (linkerd2-proxy's `errors/respond.rs`).
//!
//! MCP 2026-07-28 reserves -32020..-32099 for the specification; the agent
//! answers its own refusals with the implementation-defined -32000..-32019,
//! one code per thing the client should do, and tells the reasons apart with
//! a stable `data.reason`. The spec's own codes (-32700, -32600, -32602,
//! -32603, -32020 HeaderMismatch) stay where they apply. A leaf module: it
//! imports nothing from the crate.

use http::StatusCode;
use serde_json::{Map, Value, json};

/// An error and its sources on one line, each cause said once. Most
/// errors print their source in their own message (`cannot read {path}:
/// {source}`) *and* return it from `source()`, so appending every source
/// (anyhow's `{:#}`) said it twice: a source is appended only when the
/// text so far does not hold it already. The CLI prints its errors
/// through this, and doctor the errors it reports.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// The JSON-RPC codes a refusal carries, grouped by what the client should do.
pub mod code {
    /// JSON-RPC: the body is not UTF-8 or not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// JSON-RPC: not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// JSON-RPC: invalid method parameters (MCP: also resource not found).
    pub const INVALID_PARAMS: i64 = -32602;
    /// JSON-RPC: internal error.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// MCP 2026-07-28 `HeaderMismatch`: a header differs from the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// Agent: the session is unknown or gone; start a new one.
    pub const SESSION: i64 = -32000;
    /// Agent: present (other) credentials, or use TLS.
    pub const IDENTITY: i64 = -32001;
    /// Agent: forbidden by policy; retrying the same call will not help.
    pub const FORBIDDEN: i64 = -32002;
    /// Agent: a human must approve; retry once approved.
    pub const APPROVAL: i64 = -32003;
    /// Agent: a limit was hit; retry later, or send less.
    pub const LIMIT: i64 = -32004;
    /// Agent: the upstream server failed; the call may not have run.
    pub const UPSTREAM: i64 = -32005;
    /// Agent: a request the agent will not pass (not MCP, or ambiguous).
    pub const REJECTED: i64 = -32006;
    /// Agent: the agent cannot judge now (audit or identity down); retry later.
    pub const UNAVAILABLE: i64 = -32007;
}

/// Who caused a refusal (pingora's `ErrorSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client sent something the agent will not pass.
    Client,
    /// The upstream server failed or misbehaved.
    Upstream,
    /// The client's security policy (or its approvers) refused.
    Policy,
    /// The agent itself cannot serve the request.
    Internal,
}

macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $name:ident = ($code:ident, $status:literal, $reason:literal, $source:ident),)*) => {
        /// Every reason the agent refuses for; each has one code, one HTTP
        /// status, one stable `data.reason` and one source.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[doc = $doc])* $name,)*
        }

        impl Reason {
            /// Every reason, for tests and the table in docs/protocol-and-errors.md.
            pub const ALL: &'static [Reason] = &[$(Reason::$name),*];

            fn row(self) -> (i64, u16, &'static str, Source) {
                match self {
                    $(Reason::$name => (code::$code, $status, $reason, Source::$source),)*
                }
            }
        }
    };
}

reasons! {
    /// The body is not UTF-8 or not JSON.
    ParseError = (PARSE_ERROR, 400, "parse_error", Client),
    /// JSON, but not a JSON-RPC message or batch the agent accepts.
    InvalidRequest = (INVALID_REQUEST, 400, "invalid_request", Client),
    /// A request id (or a twin) already waits in the session or batch.
    DuplicateId = (INVALID_REQUEST, 200, "duplicate_id", Client),
    /// A tool or prompt name outside the MCP character set, or a case variant.
    InvalidName = (INVALID_PARAMS, 200, "invalid_name", Client),
    /// Too many requests already wait for answers in this session.
    PendingLimit = (INTERNAL_ERROR, 200, "pending_limit", Client),
    /// The client went away before its answer came.
    ClientGone = (INTERNAL_ERROR, 200, "client_gone", Client),
    /// The server's answer ended, or was not JSON, without a response for this request.
    NoResponse = (INTERNAL_ERROR, 502, "no_response", Upstream),
    /// A phase of the agent failed; the call was not forwarded.
    Internal = (INTERNAL_ERROR, 200, "internal", Internal),
    /// Stateless form: a header differs from the body.
    HeaderMismatch = (HEADER_MISMATCH, 400, "header_mismatch", Client),
    /// The request names a session the server never opened here, or one that ended.
    UnknownSession = (SESSION, 404, "unknown_session", Client),
    /// The session ended (closed or forgotten) before the response.
    SessionEnded = (SESSION, 200, "session_ended", Upstream),
    /// No verified identity (missing, invalid or expired credentials).
    Unauthenticated = (IDENTITY, 401, "unauthenticated", Client),
    /// A same-host caller with no credential that no `[identity.process]` rule admits.
    ProcessUnmatched = (IDENTITY, 401, "process_unmatched", Client),
    /// The token lacks the required scopes.
    InsufficientScope = (IDENTITY, 403, "insufficient_scope", Client),
    /// The request names a session another identity opened.
    SessionOwner = (IDENTITY, 403, "session_owner", Client),
    /// Plaintext where TLS is required.
    TlsRequired = (IDENTITY, 426, "tls_required", Client),
    /// Denied by the client's security policy.
    PolicyDenied = (FORBIDDEN, 200, "policy_denied", Policy),
    /// The tool's definition changed since it was pinned.
    ToolChanged = (FORBIDDEN, 200, "tool_changed", Policy),
    /// A held call's approval was denied.
    ApprovalDenied = (FORBIDDEN, 200, "approval_denied", Policy),
    /// The call needs a human's approval first.
    ApprovalRequired = (APPROVAL, 200, "approval_required", Policy),
    /// A held call's approval timed out, was interrupted, or its store failed.
    ApprovalExpired = (APPROVAL, 200, "approval_expired", Policy),
    /// A held request was not released within the hold limit.
    HoldExpired = (APPROVAL, 200, "hold_expired", Policy),
    /// The caller already has the most approval requests pending.
    ApprovalCap = (LIMIT, 200, "approval_cap", Policy),
    /// The caller's call budget for this tool is spent.
    BudgetExceeded = (LIMIT, 200, "budget_exceeded", Policy),
    /// The request body is larger than `http.max_request_body`.
    RequestTooLarge = (LIMIT, 413, "request_too_large", Client),
    /// The request head or body stalled.
    RequestTimeout = (LIMIT, 408, "request_timeout", Client),
    /// More than `http.max_connections` client connections at once.
    TooManyConnections = (LIMIT, 503, "too_many_connections", Client),
    /// The caller holds its share of GET streams to this upstream.
    CallerBusy = (LIMIT, 429, "caller_busy", Client),
    /// Every GET stream slot of this upstream is held.
    UpstreamBusy = (LIMIT, 503, "upstream_busy", Upstream),
    /// The upstream refused, is unreachable, or failed mid-answer.
    UpstreamUnavailable = (UPSTREAM, 502, "upstream_unavailable", Upstream),
    /// The upstream did not answer in time.
    UpstreamTimeout = (UPSTREAM, 504, "upstream_timeout", Upstream),
    /// One server message is larger than `http.max_message`.
    ServerMessageTooLarge = (UPSTREAM, 502, "server_message_too_large", Upstream),
    /// A server message the agent cannot judge (never forwarded).
    UnjudgedServerMessage = (UPSTREAM, 502, "unjudged_server_message", Upstream),
    /// The server opened a session the agent will not bind.
    SessionUnbound = (UPSTREAM, 503, "session_unbound", Upstream),
    /// A steered connection whose original destination is another user's socket.
    ForeignDestination = (UPSTREAM, 502, "foreign_destination", Client),
    /// Not an MCP request, and the path is not passed through.
    NotMcp = (REJECTED, 404, "not_mcp", Client),
    /// An HTTP method other than POST, GET, DELETE on an MCP path.
    MethodNotAllowed = (REJECTED, 405, "method_not_allowed", Client),
    /// A path, query, header or body the agent cannot read one way only.
    Ambiguous = (REJECTED, 400, "ambiguous_request", Client),
    /// The audit trail cannot be written and `on_audit_failure = "block"`.
    AuditUnavailable = (UNAVAILABLE, 200, "audit_unavailable", Internal),
    /// The issuer's keys cannot be fetched or are stale.
    IdentityUnavailable = (UNAVAILABLE, 503, "identity_unavailable", Internal),
}

impl Reason {
    /// The JSON-RPC error code.
    pub fn code(self) -> i64 {
        self.row().0
    }

    /// The HTTP status when this refusal is the whole answer (in a stream or
    /// a batch the HTTP status is the stream's or batch's own).
    pub fn status(self) -> StatusCode {
        StatusCode::from_u16(self.row().1).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The stable `data.reason` string.
    pub fn as_str(self) -> &'static str {
        self.row().2
    }

    /// Who caused it.
    pub fn source(self) -> Source {
        self.row().3
    }
}

/// One refusal: a reason, a message for people, and extra `data` fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    reason: Reason,
    message: String,
    data: Map<String, Value>,
}

impl Refusal {
    /// A refusal of `kind` saying `message`.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            data: Map::new(),
        }
    }

    /// Adds `data.<key>`; `data.reason` is always the refusal's own.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        if key != "reason" {
            self.data.insert(key.to_owned(), value.into());
        }
        self
    }

    /// Merges every field of `extra` (an object) into `data`.
    pub fn with_data(mut self, extra: Value) -> Self {
        if let Value::Object(m) = extra {
            for (k, v) in m {
                self = self.with(&k, v);
            }
        }
        self
    }

    /// Why the agent refuses.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The JSON-RPC error code.
    pub fn code(&self) -> i64 {
        self.reason.code()
    }

    /// The HTTP status when this refusal is the whole answer.
    pub fn status(&self) -> StatusCode {
        self.reason.status()
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON-RPC `error` object: code, message, `data.reason` and extras.
    pub fn error(&self) -> Value {
        let mut data = self.data.clone();
        data.insert("reason".into(), Value::from(self.reason.as_str()));
        json!({ "code": self.code(), "message": self.message, "data": data })
    }

    /// The whole JSON-RPC error response answering `id` (`null` when the
    /// request's id is unknown).
    pub fn to_jsonrpc(&self, id: Option<Value>) -> Value {
        json!({ "jsonrpc": "2.0", "id": id.unwrap_or(Value::Null), "error": self.error() })
    }
}

impl From<Refusal> for Value {
    fn from(r: Refusal) -> Value {
        r.error()
    }
}

#[cfg(test)]
mod tests;
