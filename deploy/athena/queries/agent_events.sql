-- What happened to the boundary itself between {{from}} and {{to}}: agent
-- starts and stops, policy sets loaded or refused (with their version),
-- and tool definitions pinned, changed, restored or re-pinned by an
-- operator (NIST CM-3, SI-7: changes to what agents are told they can do).
--
-- Parameters (substituted textually by the caller; each one sits inside a
-- single-quoted SQL string, so a value containing ' must have it doubled):
--   {{from}}  start, 'YYYY-MM-DD HH:MM:SS' in UTC, inclusive
--   {{to}}    end,   'YYYY-MM-DD HH:MM:SS' in UTC, exclusive
--
-- Plain SQL: runs unchanged on Athena (Trino) and DuckDB.
SELECT
  event_time,
  host,
  kind,
  message
FROM mcp_audit
WHERE dt BETWEEN substr('{{from}}', 1, 10) AND substr('{{to}}', 1, 10)
  AND event_time >= TIMESTAMP '{{from}}'
  AND event_time < TIMESTAMP '{{to}}'
  AND kind IN ('agent_start', 'agent_stop', 'policy_loaded', 'policy_rejected',
               'tool_pinned', 'tool_changed', 'tool_restored', 'tool_repinned')
ORDER BY event_time, event_time_us, event_id
