-- Who called tool {{tool}} between {{from}} and {{to}}?
--
-- Parameters (substituted textually by the caller; each one sits inside a
-- single-quoted SQL string, so a value containing ' must have it doubled):
--   {{tool}}  the tool name (tools/call params.name; gen_ai.tool.name)
--   {{from}}  start, 'YYYY-MM-DD HH:MM:SS' in UTC, inclusive
--   {{to}}    end,   'YYYY-MM-DD HH:MM:SS' in UTC, exclusive
--
-- Answered calls only (kind = 'exchange': a request paired with its
-- response or error); denials and approvals have their own queries.
-- error_code is the JSON-RPC error code when the call failed, else null. The dt condition is redundant with
-- the event_time one but lets Athena read only those days' partitions.
-- Plain SQL: runs unchanged on Athena (Trino) and DuckDB.
SELECT
  event_time,
  subject,
  client_name,
  session_id,
  arguments,
  error_code
FROM mcp_audit
WHERE dt BETWEEN substr('{{from}}', 1, 10) AND substr('{{to}}', 1, 10)
  AND event_time >= TIMESTAMP '{{from}}'
  AND event_time < TIMESTAMP '{{to}}'
  AND kind = 'exchange'
  AND method = 'tools/call'
  AND tool_name = '{{tool}}'
ORDER BY event_time, event_time_us, event_id
