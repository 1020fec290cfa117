-- Incident response: every row between {{from}} and {{to}} whose stored
-- text holds {{needle}} (arguments, result, error or message), e.g. "where
-- did this customer id appear?". Values the masking stage recognises are
-- never stored raw, so searching for one finds nothing; search for its
-- masked form ([EMAIL], or the [EMAIL:<hmac>] of the hash strategy, which
-- is the same for the same value) instead.
--
-- Parameters (substituted textually by the caller; each one sits inside a
-- single-quoted SQL string, so a value containing ' must have it doubled):
--   {{needle}} the text to look for (exact substring)
--   {{from}}   start, 'YYYY-MM-DD HH:MM:SS' in UTC, inclusive
--   {{to}}     end,   'YYYY-MM-DD HH:MM:SS' in UTC, exclusive
--
-- Plain SQL: runs unchanged on Athena (Trino) and DuckDB.
SELECT
  event_time,
  kind,
  subject,
  session_id,
  method,
  tool_name,
  masked_counts,
  arguments,
  result,
  error,
  message
FROM mcp_audit
WHERE dt BETWEEN substr('{{from}}', 1, 10) AND substr('{{to}}', 1, 10)
  AND event_time >= TIMESTAMP '{{from}}'
  AND event_time < TIMESTAMP '{{to}}'
  AND (strpos(coalesce(arguments, ''), '{{needle}}') > 0
    OR strpos(coalesce(result, ''), '{{needle}}') > 0
    OR strpos(coalesce(error, ''), '{{needle}}') > 0
    OR strpos(coalesce(message, ''), '{{needle}}') > 0)
ORDER BY event_time, event_time_us, event_id
