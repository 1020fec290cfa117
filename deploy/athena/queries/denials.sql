-- Every denial between {{from}} and {{to}}: requests refused before they
-- reached the server (kind = 'denied') and any row whose decision was deny
-- (e.g. a denied approval).
--
-- Parameters (substituted textually by the caller; each one sits inside a
-- single-quoted SQL string, so a value containing ' must have it doubled):
--   {{from}}  start, 'YYYY-MM-DD HH:MM:SS' in UTC, inclusive
--   {{to}}    end,   'YYYY-MM-DD HH:MM:SS' in UTC, exclusive
--
-- decided_by names what refused (identity, tls, route, headers, mcp,
-- policy, approval or grant), rule_ids the policy rules that
-- applied, error the JSON-RPC error the client received (JSON text).
-- subject is null when authentication itself failed; src_addr and
-- cert_fingerprint then say where the attempt came from.
-- The dt condition lets Athena read only those days' partitions.
-- Plain SQL: runs unchanged on Athena (Trino) and DuckDB.
SELECT
  event_time,
  kind,
  subject,
  auth_method,
  src_addr,
  cert_fingerprint,
  session_id,
  method,
  tool_name,
  decided_by,
  rule_ids,
  error
FROM mcp_audit
WHERE dt BETWEEN substr('{{from}}', 1, 10) AND substr('{{to}}', 1, 10)
  AND event_time >= TIMESTAMP '{{from}}'
  AND event_time < TIMESTAMP '{{to}}'
  AND (kind = 'denied' OR decision = 'deny')
ORDER BY event_time, event_time_us, event_id
