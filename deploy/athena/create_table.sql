-- mcp-interceptor audit trail as an Athena table.
--
-- One row per event, as written by the agent to
--   <audit_dir>/events/dt=YYYY-MM-DD/hour=HH/<host>-<seq>.parquet
-- (zstd Parquet) and synced to S3. The column list is the Arrow schema of
-- interceptor/src/audit/schema.rs, in the same order with the same types;
-- a unit test (interceptor/src/audit/schema/tests.rs) fails when they drift.
--
-- Replace YOUR-AUDIT-BUCKET (twice: LOCATION and storage.location.template).
-- Partitions are projected (dt from 2026-01-01 to today, hour 00..23): no
-- MSCK REPAIR TABLE or ALTER TABLE ADD PARTITION is ever needed. Always
-- filter on dt (and hour) so Athena reads only the matching prefixes.
-- Times are UTC: dt/hour are the UTC date and hour of event_time.
--
-- Where an OpenTelemetry attribute exists for a column it is named in
-- [brackets].

CREATE EXTERNAL TABLE IF NOT EXISTS mcp_audit (
  -- The event: when (event_time is INT64 TIMESTAMP(MILLIS, UTC) in Parquet;
  -- event_time_us keeps the microseconds, order by it), its unique id, and
  -- what happened: forwarded (a request went upstream; its exchange or
  -- unanswered row follows), exchange, notification, denied, unanswered, unpaired,
  -- session_closed, rejected, http, connection_open, connection_close,
  -- agent_start, agent_stop, approval_requested, approval_granted,
  -- approval_denied, approval_expired, grant_added, grant_revoked,
  -- grant_expired, policy_loaded, tool_changed.
  `event_time` timestamp,
  `event_time_us` bigint,
  `event_id` string,
  `kind` string,
  -- The agent that recorded it: host name, agent version, and the version
  -- of the policy in force (null before a policy is loaded).
  `host` string,
  `agent_version` string,
  `policy_version` string,
  -- The MCP session: session id [mcp.session.id], transport
  -- (streamable-http, sse, stateless, http) and negotiated protocol version
  -- [mcp.protocol.version].
  `session_id` string,
  `transport` string,
  `protocol_version` string,
  -- The TCP connection: client address and port [client.address,
  -- client.port], original destination (the MCP server) [server.address,
  -- server.port], and the agent's connection number.
  `src_addr` string,
  `src_port` int,
  `dst_addr` string,
  `dst_port` int,
  `conn_id` bigint,
  -- Who: the authenticated subject, its issuer, how it authenticated
  -- (mtls, oidc, anonymous), its groups, the client certificate's
  -- fingerprint, the token's id (jti), the OAuth client acting for the
  -- subject (azp / client_id), the client certificate's serial and expiry
  -- (null without a certificate; all null when a request was refused
  -- before an identity was established), and the client's own name and
  -- version from initialize (clientInfo), or on a stateless (2026-07-28)
  -- request from its _meta io.modelcontextprotocol/clientInfo.
  `subject` string,
  `issuer` string,
  `auth_method` string,
  `groups` array<string>,
  `cert_fingerprint` string,
  `token_id` string,
  `oauth_client_id` string,
  `cert_serial` string,
  `cert_not_after` timestamp,
  `client_name` string,
  `client_version` string,
  -- The JSON-RPC message: direction (client_to_server: the client asked;
  -- server_to_client: the server asked), request id as text
  -- [jsonrpc.request.id], method [mcp.method.name], and its target: tool
  -- name for tools/call [gen_ai.tool.name], resource URI for resources/read
  -- [mcp.resource.uri], prompt name for prompts/get [gen_ai.prompt.name].
  `direction` string,
  `jsonrpc_id` string,
  `method` string,
  `tool_name` string,
  `resource_uri` string,
  `prompt_name` string,
  -- Payloads, as JSON text: the request's params (arguments) and their
  -- SHA-256, the result, the JSON-RPC error object and its code
  -- [error.type]; whether the stored response was truncated, the
  -- response's size in bytes, and the HTTP status
  -- [http.response.status_code].
  `arguments` string,
  `arguments_sha256` string,
  `result` string,
  `error` string,
  `error_code` int,
  `response_truncated` boolean,
  `response_size` bigint,
  `http_status` int,
  -- The decision: allow, deny or approval; what decided (decided_by), the
  -- policy rule ids that applied, the approval id and its approvers, and
  -- how many values were masked, by name.
  `decision` string,
  `decided_by` string,
  `rule_ids` array<string>,
  `approval_id` string,
  `approvers` array<string>,
  `masked_counts` map<string,int>,
  -- Timing, in Unix microseconds: request received, forwarded upstream,
  -- first response byte, response done; then the latency in
  -- microseconds, and the request's and the response's size in bytes.
  `received_us` bigint,
  `forwarded_us` bigint,
  `first_byte_us` bigint,
  `done_us` bigint,
  `latency_us` bigint,
  `bytes_in` bigint,
  `bytes_out` bigint,
  -- Free text for events that are not messages (agent start, policy load).
  `message` string,
  -- Added later, so last (Athena reads Parquet by column name: files
  -- written before them read these as null). The request's W3C trace
  -- context from params._meta.traceparent, validated (lowercase hex;
  -- null when absent or malformed): trace id [trace_id] and the client's
  -- span, the traceparent's parent-id [span_id]. The agent's id for a
  -- client request, shared by its forwarded row and its outcome's row;
  -- for an MCP 2026-07-28 multi round-trip retry (and the input requests
  -- an input_required answer carried), the call_id of the logical call's
  -- first request (follows: call_id = X OR follows = X gives every round),
  -- and the retry's inputResponses as JSON text, masked like arguments.
  `trace_id` string,
  `span_id` string,
  `call_id` string,
  `follows` string,
  `input_responses` string,
  -- Added later still: what the client connection's TLS handshake
  -- negotiated, on every row of the connection, null on plaintext ones:
  -- the protocol version (TLSv1.3, TLSv1.2), the cipher suite by its
  -- rustls name (the IANA name, TLS 1.3 suites prefixed TLS13_:
  -- TLS13_AES_128_GCM_SHA256) and the ALPN protocol (http/1.1; null when
  -- the client offered none).
  `tls_version` string,
  `tls_cipher` string,
  `tls_alpn` string,
  -- Added later: the signed policy bundle ([policy] source) the deciding
  -- policy set came from: its manifest version and its signer (hex of the
  -- Ed25519 public key); null when policies come from local files.
  `bundle_version` bigint,
  `bundle_signer` string,
  -- Added later still: the same-host process that opened the client
  -- connection, as the kernel saw it at connect(2), on every row of the
  -- connection; all null for remote callers. Its PID and real uid, the
  -- uid's user name (null when the system has none, or on a row refused
  -- before identity looked it up), the executable's path and SHA-256, the
  -- systemd unit its cgroup names (ai-agent.service) and the cgroup path.
  `process_pid` bigint,
  `process_uid` bigint,
  `process_user` string,
  `process_exe` string,
  `process_exe_sha256` string,
  `process_unit` string,
  `process_cgroup` string
)
PARTITIONED BY (`dt` string, `hour` string)
STORED AS PARQUET
LOCATION 's3://YOUR-AUDIT-BUCKET/mcp-interceptor/events/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2026-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'projection.hour.type' = 'integer',
  'projection.hour.range' = '0,23',
  'projection.hour.digits' = '2',
  'storage.location.template' = 's3://YOUR-AUDIT-BUCKET/mcp-interceptor/events/dt=${dt}/hour=${hour}/',
  'parquet.compression' = 'ZSTD'
);
