-- Human approvals between {{from}} and {{to}}: every approval_* event
-- (approval_requested, approval_granted, approval_denied, approval_expired),
-- with who asked, for which tool, who approved and the resulting decision.
-- Rows of one approval share approval_id.
--
-- Parameters (substituted textually by the caller; each one sits inside a
-- single-quoted SQL string, so a value containing ' must have it doubled):
--   {{from}}  start, 'YYYY-MM-DD HH:MM:SS' in UTC, inclusive
--   {{to}}    end,   'YYYY-MM-DD HH:MM:SS' in UTC, exclusive
--
-- '_' is a LIKE wildcard, hence the escape: only kinds that start with
-- the literal text "approval_" match.
-- The dt condition lets Athena read only those days' partitions.
-- Plain SQL: runs unchanged on Athena (Trino) and DuckDB.
SELECT
  event_time,
  kind,
  approval_id,
  approvers,
  subject,
  tool_name,
  decision,
  session_id
FROM mcp_audit
WHERE dt BETWEEN substr('{{from}}', 1, 10) AND substr('{{to}}', 1, 10)
  AND event_time >= TIMESTAMP '{{from}}'
  AND event_time < TIMESTAMP '{{to}}'
  AND kind LIKE 'approval!_%' ESCAPE '!'
ORDER BY event_time, event_time_us, event_id
