-- Who did what between {{from}} and {{to}}: per authenticated subject,
-- how they authenticated, their groups, and how many calls each method
-- and tool got, allowed and denied (NIST AU-3: identity in every record).
--
-- Parameters (substituted textually by the caller; each one sits inside a
-- single-quoted SQL string, so a value containing ' must have it doubled):
--   {{from}}  start, 'YYYY-MM-DD HH:MM:SS' in UTC, inclusive
--   {{to}}    end,   'YYYY-MM-DD HH:MM:SS' in UTC, exclusive
--
-- groups is taken from the subject's latest row in the window (a token's
-- groups can change between logins). Plain SQL: runs unchanged on Athena
-- (Trino) and DuckDB.
SELECT
  subject,
  issuer,
  auth_method,
  max_by(groups, event_time_us) AS groups,
  method,
  tool_name,
  count(*) AS calls,
  count_if(decision = 'allow') AS allowed,
  count_if(decision = 'deny') AS denied
FROM mcp_audit
WHERE dt BETWEEN substr('{{from}}', 1, 10) AND substr('{{to}}', 1, 10)
  AND event_time >= TIMESTAMP '{{from}}'
  AND event_time < TIMESTAMP '{{to}}'
  AND subject IS NOT NULL
  AND method IS NOT NULL
GROUP BY subject, issuer, auth_method, method, tool_name
ORDER BY subject, method, tool_name
