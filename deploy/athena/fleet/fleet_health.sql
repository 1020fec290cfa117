-- Hosts that need a look at {{now}}: silent for more than {{silent_minutes}}
-- minutes (no row at all: no heartbeat, no traffic), or whose newest row
-- names a policy bundle older than the newest any host runs. Every host
-- that wrote a row between {{from}} and {{now}} is considered; a host
-- silent since before {{from}} is not seen (widen {{from}}: it also bounds
-- the partitions scanned). Agents write a `heartbeat` row every
-- audit.heartbeat_seconds (default 60), so a live host is never silent
-- for longer than that plus the upload delay (audit.roll_seconds).
--
-- Parameters (substituted textually by the caller; each one sits inside a
-- single-quoted SQL string, so a value containing ' must have it doubled):
--   {{from}}            look back from, 'YYYY-MM-DD HH:MM:SS' in UTC
--   {{now}}             the moment judged, 'YYYY-MM-DD HH:MM:SS' in UTC
--   {{silent_minutes}}  N: a host with no row in the last N minutes is silent
--                       (a decimal: 0.5 is 30 seconds)
--
-- Plain SQL: runs unchanged on Athena (Trino) and DuckDB.
WITH recent AS (
  SELECT host, event_time, agent_version, bundle_version, bundle_signer
  FROM mcp_audit
  WHERE dt BETWEEN substr('{{from}}', 1, 10) AND substr('{{now}}', 1, 10)
    AND event_time >= TIMESTAMP '{{from}}'
    AND event_time < TIMESTAMP '{{now}}'
),
hosts AS (
  SELECT host,
         max(event_time) AS last_seen,
         max_by(agent_version, event_time) AS agent_version
  FROM recent
  GROUP BY host
),
bundles AS (
  SELECT host,
         max_by(bundle_version, event_time) AS bundle_version,
         max_by(bundle_signer, event_time) AS bundle_signer
  FROM recent
  WHERE bundle_version IS NOT NULL
  GROUP BY host
),
newest AS (
  SELECT max(bundle_version) AS bundle_version FROM recent
),
judged AS (
  SELECT
    h.host,
    h.last_seen,
    h.agent_version,
    b.bundle_version,
    b.bundle_signer,
    n.bundle_version AS newest_bundle,
    h.last_seen < TIMESTAMP '{{now}}' - INTERVAL '1' SECOND
      * CAST(round(60 * CAST('{{silent_minutes}}' AS double)) AS bigint) AS silent,
    COALESCE(b.bundle_version < n.bundle_version, false) AS old_bundle
  FROM hosts h
  LEFT JOIN bundles b ON b.host = h.host
  CROSS JOIN newest n
)
SELECT host, last_seen, silent, old_bundle, agent_version, bundle_version,
       bundle_signer, newest_bundle
FROM judged
WHERE silent OR old_bundle
ORDER BY host
