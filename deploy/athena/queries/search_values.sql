-- Incident response: every row between {{from}} and {{to}} whose stored
-- text holds {{needle}} in any string column (arguments, result, error,
-- message, tool, resource URI, prompt, session, JSON-RPC id, method,
-- client, identity, decision, trace id, MRTR input responses, ...), e.g. "where did this customer id
-- appear?". Values the masking stage recognises are never stored raw, so
-- searching for one finds nothing; search for its masked form ([EMAIL], or
-- the [EMAIL:<hmac>] of the hash strategy, which is the same for the same
-- value) instead. Who acted (subject, issuer, groups, approvers) is stored
-- as verified, not masked.
--
-- Parameters (substituted textually by the caller; each one sits inside a
-- single-quoted SQL string, so a value containing ' must have it doubled):
--   {{needle}} the text to look for (exact substring)
--   {{from}}   start, 'YYYY-MM-DD HH:MM:SS' in UTC, inclusive
--   {{to}}     end,   'YYYY-MM-DD HH:MM:SS' in UTC, exclusive
--
-- Plain SQL: runs unchanged on Athena (Trino) and DuckDB. concat_ws skips
-- nulls in both; chr(31) (unit separator) keeps a match from spanning two
-- columns.
SELECT
  event_time,
  kind,
  subject,
  session_id,
  method,
  tool_name,
  resource_uri,
  prompt_name,
  masked_counts,
  arguments,
  input_responses,
  result,
  error,
  message
FROM mcp_audit
WHERE dt BETWEEN substr('{{from}}', 1, 10) AND substr('{{to}}', 1, 10)
  AND event_time >= TIMESTAMP '{{from}}'
  AND event_time < TIMESTAMP '{{to}}'
  AND (strpos(concat_ws(chr(31),
        event_id, kind, host, agent_version, policy_version, session_id,
        transport, protocol_version, src_addr, dst_addr, subject, issuer,
        auth_method, cert_fingerprint, token_id, oauth_client_id, cert_serial,
        client_name, client_version, direction, jsonrpc_id, method, tool_name,
        resource_uri, prompt_name, arguments, arguments_sha256, result, error,
        decision, decided_by, approval_id, message, trace_id, span_id, call_id,
        follows, input_responses, tls_version, tls_cipher, tls_alpn, process_user,
        process_exe, process_exe_sha256, process_unit, process_cgroup), '{{needle}}') > 0
    OR EXISTS (SELECT 1 FROM UNNEST(groups) AS g(v) WHERE strpos(v, '{{needle}}') > 0)
    OR EXISTS (SELECT 1 FROM UNNEST(rule_ids) AS r(v) WHERE strpos(v, '{{needle}}') > 0)
    OR EXISTS (SELECT 1 FROM UNNEST(approvers) AS a(v) WHERE strpos(v, '{{needle}}') > 0))
ORDER BY event_time, event_time_us, event_id
