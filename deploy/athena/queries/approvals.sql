-- Human approvals and just-in-time grants between {{from}} and {{to}}
-- (NIST AC-6, AC-2(2)): every approval_* event (approval_requested,
-- approval_vote_approve, approval_vote_deny, approval_refused,
-- approval_approved, approval_denied, approval_expired, approval_used,
-- approval_abandoned, approval_interrupted, approval_values_viewed: an
-- approver or the caller looked at the real arguments, which the row never
-- holds), every grant_* event
-- (grant_added, grant_revoked, grant_expired; approval_id holds the grant
-- id), and every call an approval released or refused (its exchange or
-- denial row carries the approval_id). Who asked is `subject` of `issuer`; who
-- approved, denied or granted is `approvers`; why is `message`.
-- Rows of one approval share approval_id.
--
-- Parameters (substituted textually by the caller; each one sits inside a
-- single-quoted SQL string, so a value containing ' must have it doubled):
--   {{from}}  start, 'YYYY-MM-DD HH:MM:SS' in UTC, inclusive
--   {{to}}    end,   'YYYY-MM-DD HH:MM:SS' in UTC, exclusive
--
-- '_' is a LIKE wildcard, hence the escape: only kinds that start with
-- the literal text "approval_" or "grant_" match.
-- The dt condition lets Athena read only those days' partitions.
-- Plain SQL: runs unchanged on Athena (Trino) and DuckDB.
SELECT
  event_time,
  kind,
  approval_id,
  approvers,
  subject,
  issuer,
  tool_name,
  arguments_sha256,
  decision,
  message,
  session_id
FROM mcp_audit
WHERE dt BETWEEN substr('{{from}}', 1, 10) AND substr('{{to}}', 1, 10)
  AND event_time >= TIMESTAMP '{{from}}'
  AND event_time < TIMESTAMP '{{to}}'
  AND (kind LIKE 'approval!_%' ESCAPE '!'
       OR kind LIKE 'grant!_%' ESCAPE '!'
       OR approval_id IS NOT NULL)
ORDER BY event_time, event_time_us, event_id
