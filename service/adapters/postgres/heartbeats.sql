-- Named queries of the workers' heartbeats (service/adapters/postgres/heartbeats.py), in queries.sql's format.

-- name: record_heartbeat
-- Rows of workers long gone (a pod's host name is new each time) go as the living write theirs.
WITH purged AS (DELETE FROM worker_heartbeat WHERE last_seen < %(purge_before)s AND hostname <> %(hostname)s)
INSERT INTO worker_heartbeat (hostname, started_at, last_seen) VALUES (%(hostname)s, %(started_at)s, %(now)s)
ON CONFLICT (hostname) DO UPDATE
   SET started_at = EXCLUDED.started_at, last_seen = EXCLUDED.last_seen, stopped_at = NULL;

-- name: record_worker_stopped
UPDATE worker_heartbeat SET stopped_at = %(now)s WHERE hostname = %(hostname)s;

-- name: workers_seen
SELECT count(*) AS seen, max(last_seen) AS last_seen
  FROM worker_heartbeat
 WHERE last_seen >= %(since)s AND stopped_at IS NULL;
