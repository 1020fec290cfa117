-- mcp_audit rows as OCSF API Activity events (class_uid 6003, category 6
-- Application Activity), for SIEMs and data lakes that speak OCSF.
--
-- Athena (engine v3, Trino SQL) only: this uses Trino's ROW casts, lambdas
-- (transform, map_filter), json_format and json_extract_scalar. Create
-- mcp_audit first (create_table.sql), in the same database.
--
-- Shape: OCSF objects are nested ROW structs, built as
-- CAST(ROW(...) AS ROW(name type, ...)), so the view's columns are the OCSF
-- top-level attributes (actor, api, metadata, ...) and consumers address
-- actor.user.name exactly as OCSF names it. Flat aliases such as
-- "actor.user.name" were not used: a column name with a dot must be quoted
-- everywhere, reads like a struct path it is not, and Glue/Hive column names
-- are meant to be lowercase letters, digits and underscores.
-- Every column has a concrete type: no bare NULL (Athena refuses a view
-- column of type unknown) and no JSON-typed column (not a Hive type), so
-- payloads and unmapped stay JSON text (varchar). String constants are cast
-- to varchar so they do not become varchar(n).
--
-- Mapping:
--   activity_id     99 Other for MCP messages (method set), with the MCP
--                   method in api.operation; 0 Unknown for rows that carry no
--                   method (connection, agent, session_closed, http, ...);
--                   metadata.event_code always has the row's kind.
--   type_uid        class_uid * 100 + activity_id (600399 or 600300).
--   status_id       the decision's outcome, in OCSF's status vocabulary:
--                   99 Other (status 'Pending') while an approval is
--                   pending (decision pending); 2 Failure when error_code
--                   is set, kind is denied, unanswered or rejected,
--                   http_status >= 400, or the decision refused the call
--                   (deny, and an approval denied, expired, abandoned,
--                   interrupted or refused); else 1 Success (allow,
--                   approval, approved, used, and rows with no decision).
--   status_detail   why: "<decision> (<decided_by>: <rule_ids>)", e.g.
--                   "deny (policy: no-delete)", "pending (approval)" (each
--                   part when present), then "; " and the JSON-RPC error's
--                   message when there is one; null when the row has
--                   neither.
--   time            epoch milliseconds: event_time_us / 1000, bigint division
--                   (Trino truncates), which is event_time's value exactly;
--                   time_dt is event_time itself (datetime profile).
--   actor           user.name and user.uid = subject, user.groups = groups
--                   (as OCSF Group objects), user.credential_uid = token_id,
--                   session.uid = session_id (mcp.session.id), app_name =
--                   client_name (clientInfo), idp.name = issuer;
--                   process (same-host callers only, else null): pid =
--                   process_pid, file.path = process_exe, file.hashes =
--                   [SHA-256 process_exe_sha256], user.name = process_user,
--                   user.uid = process_uid; process_unit and
--                   process_cgroup go to unmapped.
--   src_endpoint    src_addr / src_port (the client).
--   dst_endpoint    dst_addr / dst_port (the MCP server).
--   api             operation = method (mcp.method.name), request.uid =
--                   jsonrpc_id (jsonrpc.request.id), request.data =
--                   arguments, response.code = http_status, response.error =
--                   error_code (error.type), response.error_message = the
--                   JSON-RPC error's message, response.data = result,
--                   version = protocol_version (mcp.protocol.version).
--   resources       the call's target: tool_name (type tool), resource_uri
--                   (type resource, also as uid) or prompt_name (type
--                   prompt).
--   device          hostname = host (the agent that recorded the row).
--   metadata        product.name 'mcp-interceptor', product.version =
--                   agent_version, version = the OCSF schema version
--                   '1.6.0', uid = event_id, event_code = kind,
--                   correlation_uid = session_id, profiles datetime + host.
--   tls             OCSF's TLS object for the client connection: version =
--                   tls_version, cipher = tls_cipher (rustls name); null on
--                   plaintext connections. OCSF's tls object has no ALPN:
--                   tls_alpn goes to unmapped (as do bundle_version and
--                   bundle_signer, which OCSF has no attribute for). API Activity does not list
--                   tls among its attributes (the Network Activity classes
--                   do); it is carried here as the object OCSF defines.
--   trace           the Trace profile's trace object: uid = trace_id, span.uid
--                   = span_id (the W3C traceparent of the request's _meta;
--                   span_id is the client's span, the request's parent);
--                   null when the request carried no valid traceparent.
--                   metadata.profiles then also names 'trace'.
--   unmapped        every other column with a value, as one JSON object
--                   text (null values left out).
--   dt, hour        the partition columns, kept so that filters on them
--                   still prune partitions through the view.
CREATE OR REPLACE VIEW mcp_audit_ocsf AS
SELECT
  CAST(6 AS integer) AS category_uid,
  CAST('Application Activity' AS varchar) AS category_name,
  CAST(6003 AS integer) AS class_uid,
  CAST('API Activity' AS varchar) AS class_name,
  e.activity_id,
  CAST(CASE e.activity_id WHEN 99 THEN 'Other' ELSE 'Unknown' END AS varchar) AS activity_name,
  CAST(6003 * 100 + e.activity_id AS bigint) AS type_uid,
  CAST(CASE e.activity_id WHEN 99 THEN 'API Activity: Other' ELSE 'API Activity: Unknown' END AS varchar) AS type_name,
  CAST(1 AS integer) AS severity_id,
  CAST('Informational' AS varchar) AS severity,
  e.status_id,
  CAST(CASE e.status_id WHEN 1 THEN 'Success' WHEN 2 THEN 'Failure' ELSE 'Pending' END AS varchar) AS status,
  CAST(e.error_code AS varchar) AS status_code,
  NULLIF(concat_ws('; ',
    CASE WHEN e.decision IS NOT NULL THEN concat(
      e.decision,
      CASE WHEN e.decided_by IS NOT NULL OR cardinality(e.rule_ids) > 0 THEN concat(
        ' (',
        concat_ws(': ', e.decided_by, NULLIF(array_join(e.rule_ids, ', '), '')),
        ')'
      ) ELSE '' END
    ) END,
    json_extract_scalar(e.error, '$.message')
  ), '') AS status_detail,
  CAST(e.event_time_us / 1000 AS bigint) AS "time",
  e.event_time AS time_dt,
  e.message AS message,
  CAST(ROW(
    ROW(e.subject, e.subject, e.token_id, transform(e.groups, g -> ROW(g))),
    ROW(e.session_id),
    e.client_name,
    ROW(e.issuer),
    CASE WHEN e.process_pid IS NOT NULL THEN ROW(
      e.process_pid,
      ROW(e.process_exe, CASE WHEN e.process_exe_sha256 IS NOT NULL THEN
        ARRAY[ROW(3, 'SHA-256', e.process_exe_sha256)] END),
      ROW(e.process_user, CAST(e.process_uid AS varchar))
    ) END
  ) AS ROW(
    "user" ROW(name varchar, uid varchar, credential_uid varchar, groups array(ROW(name varchar))),
    session ROW(uid varchar),
    app_name varchar,
    idp ROW(name varchar),
    process ROW(
      pid integer,
      file ROW(path varchar, hashes array(ROW(algorithm_id integer, algorithm varchar, value varchar))),
      "user" ROW(name varchar, uid varchar)
    )
  )) AS actor,
  CAST(ROW(e.src_addr, e.src_port) AS ROW(ip varchar, port integer)) AS src_endpoint,
  CAST(ROW(e.dst_addr, e.dst_port) AS ROW(ip varchar, port integer)) AS dst_endpoint,
  CAST(ROW(
    e.method,
    ROW(e.jsonrpc_id, e.arguments),
    ROW(e.http_status, CAST(e.error_code AS varchar), json_extract_scalar(e.error, '$.message'), e.result),
    e.protocol_version
  ) AS ROW(
    operation varchar,
    request ROW(uid varchar, data varchar),
    response ROW(code integer, error varchar, error_message varchar, data varchar),
    version varchar
  )) AS api,
  CASE
    WHEN e.tool_name IS NOT NULL THEN
      ARRAY[CAST(ROW(e.tool_name, 'tool', CAST(NULL AS varchar)) AS ROW(name varchar, type varchar, uid varchar))]
    WHEN e.resource_uri IS NOT NULL THEN
      ARRAY[CAST(ROW(e.resource_uri, 'resource', e.resource_uri) AS ROW(name varchar, type varchar, uid varchar))]
    WHEN e.prompt_name IS NOT NULL THEN
      ARRAY[CAST(ROW(e.prompt_name, 'prompt', CAST(NULL AS varchar)) AS ROW(name varchar, type varchar, uid varchar))]
  END AS resources,
  CAST(ROW(e.host) AS ROW(hostname varchar)) AS device,
  CAST(ROW(
    '1.6.0',
    e.event_id,
    e.kind,
    e.session_id,
    CASE WHEN e.trace_id IS NULL THEN ARRAY['datetime', 'host']
      ELSE ARRAY['datetime', 'host', 'trace'] END,
    ROW('mcp-interceptor', 'mcp-interceptor', e.agent_version)
  ) AS ROW(
    version varchar,
    uid varchar,
    event_code varchar,
    correlation_uid varchar,
    profiles array(varchar),
    product ROW(name varchar, vendor_name varchar, version varchar)
  )) AS metadata,
  CASE WHEN e.trace_id IS NOT NULL THEN
    CAST(ROW(e.trace_id, ROW(e.span_id)) AS ROW(uid varchar, span ROW(uid varchar)))
  END AS trace,
  CASE WHEN e.tls_version IS NOT NULL THEN
    CAST(ROW(e.tls_version, e.tls_cipher) AS ROW(version varchar, cipher varchar))
  END AS tls,
  json_format(CAST(map_filter(
    MAP(
      ARRAY[
        'transport', 'direction', 'conn_id', 'auth_method', 'cert_fingerprint',
        'client_version', 'policy_version', 'arguments_sha256', 'error',
        'response_truncated', 'response_size', 'decision', 'decided_by',
        'rule_ids', 'approval_id', 'approvers', 'masked_counts',
        'received_us', 'forwarded_us', 'first_byte_us', 'done_us',
        'latency_us', 'bytes_in', 'bytes_out', 'call_id', 'follows',
        'input_responses', 'tls_alpn', 'bundle_version', 'bundle_signer',
        'process_unit', 'process_cgroup'
      ],
      ARRAY[
        CAST(e.transport AS JSON), CAST(e.direction AS JSON), CAST(e.conn_id AS JSON),
        CAST(e.auth_method AS JSON), CAST(e.cert_fingerprint AS JSON),
        CAST(e.client_version AS JSON), CAST(e.policy_version AS JSON),
        CAST(e.arguments_sha256 AS JSON), CAST(e.error AS JSON),
        CAST(e.response_truncated AS JSON), CAST(e.response_size AS JSON),
        CAST(e.decision AS JSON), CAST(e.decided_by AS JSON),
        CAST(e.rule_ids AS JSON), CAST(e.approval_id AS JSON), CAST(e.approvers AS JSON),
        CAST(e.masked_counts AS JSON),
        CAST(e.received_us AS JSON), CAST(e.forwarded_us AS JSON),
        CAST(e.first_byte_us AS JSON), CAST(e.done_us AS JSON),
        CAST(e.latency_us AS JSON), CAST(e.bytes_in AS JSON), CAST(e.bytes_out AS JSON),
        CAST(e.call_id AS JSON), CAST(e.follows AS JSON), CAST(e.input_responses AS JSON),
        CAST(e.tls_alpn AS JSON), CAST(e.bundle_version AS JSON),
        CAST(e.bundle_signer AS JSON), CAST(e.process_unit AS JSON),
        CAST(e.process_cgroup AS JSON)
      ]
    ),
    (k, v) -> v IS NOT NULL
  ) AS JSON)) AS unmapped,
  e.dt,
  e.hour
FROM (
  SELECT
    a.*,
    CASE WHEN a.method IS NOT NULL THEN 99 ELSE 0 END AS activity_id,
    CASE
      WHEN a.decision = 'pending' THEN 99
      WHEN a.error_code IS NOT NULL
        OR a.kind IN ('denied', 'unanswered', 'rejected')
        OR a.http_status >= 400
        OR a.decision IN ('deny', 'denied', 'expired', 'abandoned', 'interrupted', 'refused')
      THEN 2
      ELSE 1
    END AS status_id
  FROM mcp_audit a
) e
