-- Workers say they are alive (docs/operations.md, "Is a worker there?"): one row per worker, written when it is ready
-- and then every REFRACTURE_WORKER_STALE_AFTER_S / 4 (at most 30 s); /readyz reports "no worker" when no row was
-- written within REFRACTURE_WORKER_STALE_AFTER_S. Holds host names and times only.

CREATE TABLE IF NOT EXISTS worker_heartbeat (
    hostname    text        PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    -- set when the worker stops cleanly: it is not waited for
    stopped_at  timestamptz
);
CREATE INDEX IF NOT EXISTS worker_heartbeat_seen_idx ON worker_heartbeat (last_seen);
