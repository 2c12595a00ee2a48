-- The audit chain's head is moved once per statement instead of once per row (issue 15, item 6).
--
-- 0013 updated the one audit_chain_head row for every appended row. A worklist page audits 50 patients, so each
-- page made 50 versions of that row in one transaction; under ingest the head's table grew to about a hundred pages
-- of dead versions between autovacuum runs, and each row's lookup of the head walked them: 0.2-0.8 ms per row, 10-40
-- ms per page, all of it holding the lock every ingest write waits for (docs/performance.md, bench/load).
--
-- Now a row's predecessor is the newest row this transaction appended after the head (rows above the head's seq can
-- only be the lock holder's: every statement moves the head before it ends), found through audit_event_seq_idx; the
-- head is locked as before by the first row and moved to the last row by a statement-level trigger. The chain, its
-- bytes and hashes, and `refracture audit verify` are unchanged; a rolled-back append still rolls the head back.
-- Nothing the runtime role can write takes part: the running position is read from the append-only trail itself.

CREATE OR REPLACE FUNCTION audit_event_chain() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    head audit_chain_head;
    last_seq  bigint;
    last_hash bytea;
BEGIN
    SELECT * INTO head FROM audit_chain_head WHERE singleton FOR UPDATE;
    -- A row-level BEFORE trigger sees the rows its own statement inserted before this one.
    SELECT e.seq, e.hash INTO last_seq, last_hash FROM audit_event e WHERE e.seq > head.seq
        ORDER BY e.seq DESC LIMIT 1;
    IF last_seq IS NULL THEN
        last_seq := head.seq;
        last_hash := head.hash;
    END IF;
    NEW.seq := last_seq + 1;
    NEW.prev_hash := last_hash;
    NEW.hash := sha256(audit_event_bytes(NEW));
    RETURN NEW;
END
$$;

CREATE FUNCTION audit_event_chain_head() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    last_seq  bigint;
    last_hash bytea;
BEGIN
    SELECT e.seq, e.hash INTO last_seq, last_hash FROM audit_event e
        WHERE e.seq > (SELECT h.seq FROM audit_chain_head h WHERE h.singleton) ORDER BY e.seq DESC LIMIT 1;
    IF last_seq IS NOT NULL THEN
        UPDATE audit_chain_head SET seq = last_seq, hash = last_hash WHERE singleton;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER audit_event_chain_head AFTER INSERT ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_chain_head();

DO $$
BEGIN
    -- CREATE OR REPLACE dropped 0013's fixed search path: set it again (this schema, then pg_temp: no shadowing).
    EXECUTE format('ALTER FUNCTION audit_event_chain() SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION audit_event_chain_head() SET search_path = %I, pg_temp', current_schema());
END
$$;
-- The newest row above the head must be found through audit_event_seq_idx whatever the statistics say: planned while
-- the trail was small (a new installation, before autovacuum's first ANALYZE), the cached plan scanned the whole
-- table for every appended row, 9 → 100 ms for a 50-row append over the first 10,000 appends.
ALTER FUNCTION audit_event_chain() SET enable_seqscan = off;
ALTER FUNCTION audit_event_chain_head() SET enable_seqscan = off;
ALTER FUNCTION audit_event_chain() OWNER TO refracture_audit;
ALTER FUNCTION audit_event_chain_head() OWNER TO refracture_audit;
