//! One audit row per event, and its Arrow schema.
//!
//! Athena-safe by construction: signed integers only, the event time as
//! INT64 `TIMESTAMP(MILLIS, UTC)` (every Athena engine and Glue read it;
//! micro-precision timestamps have been misread), the microseconds kept in
//! `event_time_us` for ordering, lists of strings and one string-keyed map.
//! Column names follow OpenTelemetry where an attribute exists (noted).
//! docs/audit-and-athena.md and deploy/athena/ document every column; a test keeps the
//! DDL in step with [`schema`].

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, MapArray, RecordBatch, StringArray,
    TimestampMillisecondArray,
    builder::{Int32Builder, ListBuilder, MapBuilder, StringBuilder},
};
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, TimeUnit};
use serde::{Deserialize, Serialize};

/// One row. Optional fields are null until the stage that fills them
/// exists (policy, approvals, masking) or when it had nothing to say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    /// When the event happened (microseconds since the epoch).
    pub event_time_us: i64,
    /// A unique id for the row.
    pub event_id: String,
    /// What the row records (request, response, decision, lifecycle...).
    pub kind: String,
    /// The host that wrote the row.
    pub host: String,
    /// The agent version that wrote the row.
    pub agent_version: String,
    /// The policy set version in force.
    pub policy_version: Option<String>,
    /// The MCP session id.
    pub session_id: Option<String>,
    /// The MCP transport (streamable HTTP or SSE).
    pub transport: Option<String>,
    /// The MCP protocol version negotiated.
    pub protocol_version: Option<String>,
    /// The client's IP address.
    pub src_addr: Option<String>,
    /// The client's port.
    pub src_port: Option<i32>,
    /// The original destination address the client connected to.
    pub dst_addr: Option<String>,
    /// The original destination port.
    pub dst_port: Option<i32>,
    /// The proxy's id for the TCP connection.
    pub conn_id: Option<i64>,
    /// The caller's authenticated subject.
    pub subject: Option<String>,
    /// The issuer that vouched for the caller.
    pub issuer: Option<String>,
    /// How the caller authenticated (anonymous, mTLS, OIDC).
    pub auth_method: Option<String>,
    /// The caller's groups.
    pub groups: Vec<String>,
    /// The client certificate's SHA-256 fingerprint (mTLS).
    pub cert_fingerprint: Option<String>,
    /// The token's `jti` (OIDC).
    pub token_id: Option<String>,
    /// The OAuth client id (OIDC).
    pub oauth_client_id: Option<String>,
    /// The client certificate's serial number (mTLS).
    pub cert_serial: Option<String>,
    /// Unix milliseconds.
    pub cert_not_after: Option<i64>,
    /// The client's name from `initialize`.
    pub client_name: Option<String>,
    /// The client's version from `initialize`.
    pub client_version: Option<String>,
    /// Client to server or server to client.
    pub direction: Option<String>,
    /// The JSON-RPC id.
    pub jsonrpc_id: Option<String>,
    /// The JSON-RPC method.
    pub method: Option<String>,
    /// The tool a `tools/call` names.
    pub tool_name: Option<String>,
    /// The resource URI a `resources/read` names.
    pub resource_uri: Option<String>,
    /// The prompt a `prompts/get` names.
    pub prompt_name: Option<String>,
    /// The call's arguments (masked as configured).
    pub arguments: Option<String>,
    /// SHA-256 of the call's arguments as received.
    pub arguments_sha256: Option<String>,
    /// The call's result (masked as configured).
    pub result: Option<String>,
    /// The JSON-RPC error message.
    pub error: Option<String>,
    /// The JSON-RPC error code.
    pub error_code: Option<i32>,
    /// Whether the stored result was cut short.
    pub response_truncated: bool,
    /// The response body's size in bytes.
    pub response_size: Option<i64>,
    /// The HTTP status of the exchange.
    pub http_status: Option<i32>,
    /// The decision taken (allow, deny, ...).
    pub decision: Option<String>,
    /// The phase or person that decided.
    pub decided_by: Option<String>,
    /// The policy rules that matched.
    pub rule_ids: Vec<String>,
    /// The approval the call waited on.
    pub approval_id: Option<String>,
    /// Who approved the call.
    pub approvers: Vec<String>,
    /// How many values each detector masked.
    pub masked_counts: Vec<(String, i32)>,
    /// When the request was received.
    pub received_us: Option<i64>,
    /// When the request was forwarded upstream.
    pub forwarded_us: Option<i64>,
    /// When the first response byte arrived.
    pub first_byte_us: Option<i64>,
    /// When the response was done.
    pub done_us: Option<i64>,
    /// How long the exchange took.
    pub latency_us: Option<i64>,
    /// Bytes received from the client.
    pub bytes_in: Option<i64>,
    /// Bytes sent to the client.
    pub bytes_out: Option<i64>,
    /// Free text for lifecycle rows.
    pub message: Option<String>,
    // Columns added later go last, nullable, so files written before them
    // still read (by name) and the WAL decodes rows of the older layout
    // (see `wal::decode`).
    /// `trace_id` of the request's W3C `traceparent` (`_meta`), 32 hex.
    pub trace_id: Option<String>,
    /// The `traceparent`'s parent-id (the client's span), 16 hex.
    pub span_id: Option<String>,
    /// The agent's id for a client request, shared by its rows.
    pub call_id: Option<String>,
    /// An MRTR retry or input request: the `call_id` of the logical
    /// call's first request.
    pub follows: Option<String>,
    /// An MRTR retry's `inputResponses` (masked as configured).
    pub input_responses: Option<String>,
    /// The client connection's TLS version (`TLSv1.3`); null: plaintext.
    pub tls_version: Option<String>,
    /// Its cipher suite, by rustls name (`TLS13_AES_128_GCM_SHA256`).
    pub tls_cipher: Option<String>,
    /// Its ALPN protocol (`http/1.1`); null when the client offered none.
    pub tls_alpn: Option<String>,
    /// The signed policy bundle the deciding policy set came from
    /// (`[policy] source`): its manifest version; null with local files.
    pub bundle_version: Option<i64>,
    /// That bundle's signing key (hex of the Ed25519 public key).
    pub bundle_signer: Option<String>,
    /// The same-host process that opened the connection, as the kernel
    /// saw it at connect(2): its PID; every `process_*` is null for
    /// remote callers.
    pub process_pid: Option<i64>,
    /// Its real uid.
    pub process_uid: Option<i64>,
    /// The uid's user name (null when the system has none, or when the
    /// request was refused before identity looked it up).
    pub process_user: Option<String>,
    /// Its executable's path.
    pub process_exe: Option<String>,
    /// Its executable's SHA-256, lowercase hex.
    pub process_exe_sha256: Option<String>,
    /// The systemd unit its cgroup names (`ai-agent.service`).
    pub process_unit: Option<String>,
    /// Its cgroup v2 path.
    pub process_cgroup: Option<String>,
}

/// How many columns were added after the first layout, each an `Option`
/// (one zero byte when `None` in postcard): what `wal::decode` pads an
/// older record with. Layouts so far: the first, then with `trace_id` to
/// `input_responses` (5 more), `tls_version` to `tls_alpn` (3 more),
/// `bundle_version` and `bundle_signer` (2 more), and `process_pid` to
/// `process_cgroup` (7 more).
pub const ADDED_COLUMNS: usize = 17;

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn list_of_strings(name: &str) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        true,
    )
}

/// The Arrow schema, column for column with [`AuditRow`].
pub fn schema() -> Arc<Schema> {
    let entries = Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Int32, true),
    ]);
    let map = DataType::Map(
        Arc::new(Field::new("entries", DataType::Struct(entries), false)),
        false,
    );
    Arc::new(Schema::new(vec![
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("event_time_us", DataType::Int64, false),
        Field::new("event_id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("host", DataType::Utf8, false),
        Field::new("agent_version", DataType::Utf8, false),
        utf8("policy_version"),
        utf8("session_id"),
        utf8("transport"),
        utf8("protocol_version"),
        utf8("src_addr"),
        Field::new("src_port", DataType::Int32, true),
        utf8("dst_addr"),
        Field::new("dst_port", DataType::Int32, true),
        Field::new("conn_id", DataType::Int64, true),
        utf8("subject"),
        utf8("issuer"),
        utf8("auth_method"),
        list_of_strings("groups"),
        utf8("cert_fingerprint"),
        utf8("token_id"),
        utf8("oauth_client_id"),
        utf8("cert_serial"),
        Field::new(
            "cert_not_after",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        utf8("client_name"),
        utf8("client_version"),
        utf8("direction"),
        utf8("jsonrpc_id"),
        utf8("method"),
        utf8("tool_name"),
        utf8("resource_uri"),
        utf8("prompt_name"),
        utf8("arguments"),
        utf8("arguments_sha256"),
        utf8("result"),
        utf8("error"),
        Field::new("error_code", DataType::Int32, true),
        Field::new("response_truncated", DataType::Boolean, false),
        Field::new("response_size", DataType::Int64, true),
        Field::new("http_status", DataType::Int32, true),
        utf8("decision"),
        utf8("decided_by"),
        list_of_strings("rule_ids"),
        utf8("approval_id"),
        list_of_strings("approvers"),
        Field::new("masked_counts", map, true),
        Field::new("received_us", DataType::Int64, true),
        Field::new("forwarded_us", DataType::Int64, true),
        Field::new("first_byte_us", DataType::Int64, true),
        Field::new("done_us", DataType::Int64, true),
        Field::new("latency_us", DataType::Int64, true),
        Field::new("bytes_in", DataType::Int64, true),
        Field::new("bytes_out", DataType::Int64, true),
        utf8("message"),
        utf8("trace_id"),
        utf8("span_id"),
        utf8("call_id"),
        utf8("follows"),
        utf8("input_responses"),
        utf8("tls_version"),
        utf8("tls_cipher"),
        utf8("tls_alpn"),
        Field::new("bundle_version", DataType::Int64, true),
        utf8("bundle_signer"),
        Field::new("process_pid", DataType::Int64, true),
        Field::new("process_uid", DataType::Int64, true),
        utf8("process_user"),
        utf8("process_exe"),
        utf8("process_exe_sha256"),
        utf8("process_unit"),
        utf8("process_cgroup"),
    ]))
}

fn strings<'a>(rows: &'a [AuditRow], f: impl Fn(&'a AuditRow) -> Option<&'a str>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

fn req_strings<'a>(rows: &'a [AuditRow], f: impl Fn(&'a AuditRow) -> &'a str) -> ArrayRef {
    Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>())
}

fn i64s(rows: &[AuditRow], f: impl Fn(&AuditRow) -> Option<i64>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Int64Array>())
}

fn i32s(rows: &[AuditRow], f: impl Fn(&AuditRow) -> Option<i32>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Int32Array>())
}

fn lists(rows: &[AuditRow], f: impl Fn(&AuditRow) -> &Vec<String>) -> ArrayRef {
    let mut b = ListBuilder::new(StringBuilder::new());
    for r in rows {
        for s in f(r) {
            b.values().append_value(s);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

fn counts(rows: &[AuditRow]) -> Result<MapArray, ArrowError> {
    let mut b = MapBuilder::new(None, StringBuilder::new(), Int32Builder::new());
    for r in rows {
        for (k, v) in &r.masked_counts {
            b.keys().append_value(k);
            b.values().append_value(*v);
        }
        b.append(true)?;
    }
    Ok(b.finish())
}

/// Rows (already sorted by time) as one record batch.
pub fn to_batch(rows: &[AuditRow]) -> Result<RecordBatch, ArrowError> {
    let schema = schema();
    let time = TimestampMillisecondArray::from(
        rows.iter()
            .map(|r| r.event_time_us / 1000)
            .collect::<Vec<_>>(),
    )
    .with_timezone("UTC");
    let columns: Vec<ArrayRef> = vec![
        Arc::new(time),
        i64s(rows, |r| Some(r.event_time_us)),
        req_strings(rows, |r| &r.event_id),
        req_strings(rows, |r| &r.kind),
        req_strings(rows, |r| &r.host),
        req_strings(rows, |r| &r.agent_version),
        strings(rows, |r| r.policy_version.as_deref()),
        strings(rows, |r| r.session_id.as_deref()),
        strings(rows, |r| r.transport.as_deref()),
        strings(rows, |r| r.protocol_version.as_deref()),
        strings(rows, |r| r.src_addr.as_deref()),
        i32s(rows, |r| r.src_port),
        strings(rows, |r| r.dst_addr.as_deref()),
        i32s(rows, |r| r.dst_port),
        i64s(rows, |r| r.conn_id),
        strings(rows, |r| r.subject.as_deref()),
        strings(rows, |r| r.issuer.as_deref()),
        strings(rows, |r| r.auth_method.as_deref()),
        lists(rows, |r| &r.groups),
        strings(rows, |r| r.cert_fingerprint.as_deref()),
        strings(rows, |r| r.token_id.as_deref()),
        strings(rows, |r| r.oauth_client_id.as_deref()),
        strings(rows, |r| r.cert_serial.as_deref()),
        Arc::new(
            TimestampMillisecondArray::from(
                rows.iter().map(|r| r.cert_not_after).collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        strings(rows, |r| r.client_name.as_deref()),
        strings(rows, |r| r.client_version.as_deref()),
        strings(rows, |r| r.direction.as_deref()),
        strings(rows, |r| r.jsonrpc_id.as_deref()),
        strings(rows, |r| r.method.as_deref()),
        strings(rows, |r| r.tool_name.as_deref()),
        strings(rows, |r| r.resource_uri.as_deref()),
        strings(rows, |r| r.prompt_name.as_deref()),
        strings(rows, |r| r.arguments.as_deref()),
        strings(rows, |r| r.arguments_sha256.as_deref()),
        strings(rows, |r| r.result.as_deref()),
        strings(rows, |r| r.error.as_deref()),
        i32s(rows, |r| r.error_code),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.response_truncated))
                .collect::<BooleanArray>(),
        ),
        i64s(rows, |r| r.response_size),
        i32s(rows, |r| r.http_status),
        strings(rows, |r| r.decision.as_deref()),
        strings(rows, |r| r.decided_by.as_deref()),
        lists(rows, |r| &r.rule_ids),
        strings(rows, |r| r.approval_id.as_deref()),
        lists(rows, |r| &r.approvers),
        Arc::new(counts(rows)?),
        i64s(rows, |r| r.received_us),
        i64s(rows, |r| r.forwarded_us),
        i64s(rows, |r| r.first_byte_us),
        i64s(rows, |r| r.done_us),
        i64s(rows, |r| r.latency_us),
        i64s(rows, |r| r.bytes_in),
        i64s(rows, |r| r.bytes_out),
        strings(rows, |r| r.message.as_deref()),
        strings(rows, |r| r.trace_id.as_deref()),
        strings(rows, |r| r.span_id.as_deref()),
        strings(rows, |r| r.call_id.as_deref()),
        strings(rows, |r| r.follows.as_deref()),
        strings(rows, |r| r.input_responses.as_deref()),
        strings(rows, |r| r.tls_version.as_deref()),
        strings(rows, |r| r.tls_cipher.as_deref()),
        strings(rows, |r| r.tls_alpn.as_deref()),
        i64s(rows, |r| r.bundle_version),
        strings(rows, |r| r.bundle_signer.as_deref()),
        i64s(rows, |r| r.process_pid),
        i64s(rows, |r| r.process_uid),
        strings(rows, |r| r.process_user.as_deref()),
        strings(rows, |r| r.process_exe.as_deref()),
        strings(rows, |r| r.process_exe_sha256.as_deref()),
        strings(rows, |r| r.process_unit.as_deref()),
        strings(rows, |r| r.process_cgroup.as_deref()),
    ];
    RecordBatch::try_new(schema, columns)
}

#[cfg(test)]
mod tests;
