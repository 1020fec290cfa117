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

/// How one column is typed in Arrow and read off a row: each column is
/// written once, in [`COLUMNS`], so the schema and the batch cannot
/// drift apart.
enum Col {
    /// A UTC timestamp in milliseconds; `bool`: nullable.
    Time(fn(&AuditRow) -> Option<i64>, bool),
    /// A string that every row has.
    Text(fn(&AuditRow) -> &str),
    /// A nullable string.
    OptText(fn(&AuditRow) -> Option<&str>),
    /// A nullable 32-bit integer.
    I32(fn(&AuditRow) -> Option<i32>),
    /// A 64-bit integer; `bool`: nullable.
    I64(fn(&AuditRow) -> Option<i64>, bool),
    /// A boolean every row has.
    Bool(fn(&AuditRow) -> bool),
    /// A list of strings.
    List(fn(&AuditRow) -> &Vec<String>),
    /// `masked_counts`: a string-keyed map of counts.
    Counts,
}

/// The columns, in file order, column for column with [`AuditRow`]
/// (`event_time` first, derived from `event_time_us`).
const COLUMNS: &[(&str, Col)] = &[
    (
        "event_time",
        Col::Time(|r| Some(r.event_time_us / 1000), false),
    ),
    ("event_time_us", Col::I64(|r| Some(r.event_time_us), false)),
    ("event_id", Col::Text(|r| &r.event_id)),
    ("kind", Col::Text(|r| &r.kind)),
    ("host", Col::Text(|r| &r.host)),
    ("agent_version", Col::Text(|r| &r.agent_version)),
    (
        "policy_version",
        Col::OptText(|r| r.policy_version.as_deref()),
    ),
    ("session_id", Col::OptText(|r| r.session_id.as_deref())),
    ("transport", Col::OptText(|r| r.transport.as_deref())),
    (
        "protocol_version",
        Col::OptText(|r| r.protocol_version.as_deref()),
    ),
    ("src_addr", Col::OptText(|r| r.src_addr.as_deref())),
    ("src_port", Col::I32(|r| r.src_port)),
    ("dst_addr", Col::OptText(|r| r.dst_addr.as_deref())),
    ("dst_port", Col::I32(|r| r.dst_port)),
    ("conn_id", Col::I64(|r| r.conn_id, true)),
    ("subject", Col::OptText(|r| r.subject.as_deref())),
    ("issuer", Col::OptText(|r| r.issuer.as_deref())),
    ("auth_method", Col::OptText(|r| r.auth_method.as_deref())),
    ("groups", Col::List(|r| &r.groups)),
    (
        "cert_fingerprint",
        Col::OptText(|r| r.cert_fingerprint.as_deref()),
    ),
    ("token_id", Col::OptText(|r| r.token_id.as_deref())),
    (
        "oauth_client_id",
        Col::OptText(|r| r.oauth_client_id.as_deref()),
    ),
    ("cert_serial", Col::OptText(|r| r.cert_serial.as_deref())),
    ("cert_not_after", Col::Time(|r| r.cert_not_after, true)),
    ("client_name", Col::OptText(|r| r.client_name.as_deref())),
    (
        "client_version",
        Col::OptText(|r| r.client_version.as_deref()),
    ),
    ("direction", Col::OptText(|r| r.direction.as_deref())),
    ("jsonrpc_id", Col::OptText(|r| r.jsonrpc_id.as_deref())),
    ("method", Col::OptText(|r| r.method.as_deref())),
    ("tool_name", Col::OptText(|r| r.tool_name.as_deref())),
    ("resource_uri", Col::OptText(|r| r.resource_uri.as_deref())),
    ("prompt_name", Col::OptText(|r| r.prompt_name.as_deref())),
    ("arguments", Col::OptText(|r| r.arguments.as_deref())),
    (
        "arguments_sha256",
        Col::OptText(|r| r.arguments_sha256.as_deref()),
    ),
    ("result", Col::OptText(|r| r.result.as_deref())),
    ("error", Col::OptText(|r| r.error.as_deref())),
    ("error_code", Col::I32(|r| r.error_code)),
    ("response_truncated", Col::Bool(|r| r.response_truncated)),
    ("response_size", Col::I64(|r| r.response_size, true)),
    ("http_status", Col::I32(|r| r.http_status)),
    ("decision", Col::OptText(|r| r.decision.as_deref())),
    ("decided_by", Col::OptText(|r| r.decided_by.as_deref())),
    ("rule_ids", Col::List(|r| &r.rule_ids)),
    ("approval_id", Col::OptText(|r| r.approval_id.as_deref())),
    ("approvers", Col::List(|r| &r.approvers)),
    ("masked_counts", Col::Counts),
    ("received_us", Col::I64(|r| r.received_us, true)),
    ("forwarded_us", Col::I64(|r| r.forwarded_us, true)),
    ("first_byte_us", Col::I64(|r| r.first_byte_us, true)),
    ("done_us", Col::I64(|r| r.done_us, true)),
    ("latency_us", Col::I64(|r| r.latency_us, true)),
    ("bytes_in", Col::I64(|r| r.bytes_in, true)),
    ("bytes_out", Col::I64(|r| r.bytes_out, true)),
    ("message", Col::OptText(|r| r.message.as_deref())),
    ("trace_id", Col::OptText(|r| r.trace_id.as_deref())),
    ("span_id", Col::OptText(|r| r.span_id.as_deref())),
    ("call_id", Col::OptText(|r| r.call_id.as_deref())),
    ("follows", Col::OptText(|r| r.follows.as_deref())),
    (
        "input_responses",
        Col::OptText(|r| r.input_responses.as_deref()),
    ),
    ("tls_version", Col::OptText(|r| r.tls_version.as_deref())),
    ("tls_cipher", Col::OptText(|r| r.tls_cipher.as_deref())),
    ("tls_alpn", Col::OptText(|r| r.tls_alpn.as_deref())),
    ("bundle_version", Col::I64(|r| r.bundle_version, true)),
    (
        "bundle_signer",
        Col::OptText(|r| r.bundle_signer.as_deref()),
    ),
    ("process_pid", Col::I64(|r| r.process_pid, true)),
    ("process_uid", Col::I64(|r| r.process_uid, true)),
    ("process_user", Col::OptText(|r| r.process_user.as_deref())),
    ("process_exe", Col::OptText(|r| r.process_exe.as_deref())),
    (
        "process_exe_sha256",
        Col::OptText(|r| r.process_exe_sha256.as_deref()),
    ),
    ("process_unit", Col::OptText(|r| r.process_unit.as_deref())),
    (
        "process_cgroup",
        Col::OptText(|r| r.process_cgroup.as_deref()),
    ),
];

fn utc_millis() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

impl Col {
    /// The column's Arrow field.
    fn field(&self, name: &str) -> Field {
        let (ty, nullable) = match self {
            Col::Time(_, nullable) => (utc_millis(), *nullable),
            Col::Text(_) => (DataType::Utf8, false),
            Col::OptText(_) => (DataType::Utf8, true),
            Col::I32(_) => (DataType::Int32, true),
            Col::I64(_, nullable) => (DataType::Int64, *nullable),
            Col::Bool(_) => (DataType::Boolean, false),
            Col::List(_) => {
                let item = Field::new("item", DataType::Utf8, true);
                (DataType::List(Arc::new(item)), true)
            }
            Col::Counts => {
                let entries = Fields::from(vec![
                    Field::new("key", DataType::Utf8, false),
                    Field::new("value", DataType::Int32, true),
                ]);
                let entries = Field::new("entries", DataType::Struct(entries), false);
                (DataType::Map(Arc::new(entries), false), true)
            }
        };
        Field::new(name, ty, nullable)
    }

    /// The column's values for `rows`.
    fn array(&self, rows: &[AuditRow]) -> Result<ArrayRef, ArrowError> {
        Ok(match self {
            Col::Time(f, _) => Arc::new(
                rows.iter()
                    .map(f)
                    .collect::<TimestampMillisecondArray>()
                    .with_timezone("UTC"),
            ),
            Col::Text(f) => Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>()),
            Col::OptText(f) => Arc::new(rows.iter().map(f).collect::<StringArray>()),
            Col::I32(f) => Arc::new(rows.iter().map(f).collect::<Int32Array>()),
            Col::I64(f, _) => Arc::new(rows.iter().map(f).collect::<Int64Array>()),
            Col::Bool(f) => Arc::new(rows.iter().map(|r| Some(f(r))).collect::<BooleanArray>()),
            Col::List(f) => lists(rows, *f),
            Col::Counts => Arc::new(counts(rows)?),
        })
    }
}

/// The Arrow schema, column for column with [`AuditRow`].
pub fn schema() -> Arc<Schema> {
    let fields: Vec<Field> = COLUMNS.iter().map(|(name, c)| c.field(name)).collect();
    Arc::new(Schema::new(fields))
}

fn lists(rows: &[AuditRow], f: fn(&AuditRow) -> &Vec<String>) -> ArrayRef {
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
    let columns = COLUMNS
        .iter()
        .map(|(_, c)| c.array(rows))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema(), columns)
}

#[cfg(test)]
mod tests;
