-- Everything recorded for one MCP session, in the order it happened.
--
-- Parameters (substituted textually by the caller; it sits inside a
-- single-quoted SQL string, so a value containing ' must have it doubled):
--   {{session_id}}  the Mcp-Session-Id (mcp.session.id)
--
-- Ordered by event_time_us (microseconds; event_time has milliseconds
-- only), then event_id. tool_name / resource_uri / prompt_name: whichever
-- the method targets (tools/call, resources/read, prompts/get).
-- This reads every partition on Athena; when the session's days are known,
-- add e.g. AND dt BETWEEN '2026-03-01' AND '2026-03-02' to scan less.
-- Plain SQL: runs unchanged on Athena (Trino) and DuckDB.
SELECT
  event_time,
  event_time_us,
  kind,
  direction,
  jsonrpc_id,
  method,
  tool_name,
  resource_uri,
  prompt_name,
  http_status,
  error_code,
  latency_us
FROM mcp_audit
WHERE session_id = '{{session_id}}'
ORDER BY event_time_us, event_id
