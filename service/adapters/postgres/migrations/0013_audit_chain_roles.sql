-- A tamper-evident audit trail and least-privilege database roles (issue 16, finding 3; docs/security.md).
--
-- 1. Two NOLOGIN roles, created when missing (a DBA may create them beforehand where the migrating role may not
--    create roles): refracture_runtime holds what the API, workers and beat need and nothing more (SELECT and INSERT
--    on the audit trail, no UPDATE, DELETE or TRUNCATE, owns nothing so it cannot DROP TRIGGER); refracture_audit owns
--    the purge and the chain trigger (SECURITY DEFINER) and is the only role the append-only trigger lets delete.
--    The hospital's login users are members: CREATE ROLE refracture_app LOGIN PASSWORD '…' IN ROLE refracture_runtime.
-- 2. A hash chain: every row stores seq (1, 2, 3, … without gaps), the previous row's hash and its own
--    hash = sha256(audit_event_bytes(row)). One chain-head row, locked by every append until its transaction ends,
--    serialises appends from every connection into one chain. `refracture audit verify` recomputes it in Python.
-- 3. The purge deletes only a prefix of the chain, only rows older than max(its argument, 365 days), and records
--    the last purged row's seq and hash as a checkpoint the remaining rows verify from.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'refracture_runtime') THEN
        BEGIN
            CREATE ROLE refracture_runtime NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database of this cluster was migrated at the same moment: roles are cluster-wide
        END;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'refracture_audit') THEN
        BEGIN
            CREATE ROLE refracture_audit NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    -- A non-superuser owner may hand objects to a role only as its member (PostgreSQL 15).
    IF NOT pg_has_role(current_user, 'refracture_audit', 'MEMBER') THEN
        EXECUTE format('GRANT refracture_audit TO %I', current_user);
    END IF;
END
$$;

ALTER TABLE audit_event ADD COLUMN seq bigint, ADD COLUMN prev_hash bytea, ADD COLUMN hash bytea;

-- The chain's last link: seq and hash of the newest row (0 and 32 zero bytes before the first).
CREATE TABLE audit_chain_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq       bigint  NOT NULL,
    hash      bytea   NOT NULL
);

-- What the purge removed: the seq and hash of the last purged row, which the first remaining row must follow.
CREATE TABLE audit_checkpoint (
    seq            bigint      PRIMARY KEY,
    hash           bytea       NOT NULL,
    purged         bigint      NOT NULL,
    purged_at      timestamptz NOT NULL,
    retention_days integer     NOT NULL
);

-- One field of the canonical bytes: its UTF-8 length as a 4-byte big-endian integer, then the bytes; NULL is -1.
CREATE FUNCTION audit_field(value text) RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN value IS NULL THEN int4send(-1)
                ELSE int4send(octet_length(convert_to(value, 'UTF8'))) || convert_to(value, 'UTF8') END
$$;

-- The canonical bytes a row's hash covers (service/usecases/audit.py canonical_bytes is the same in Python):
-- prev_hash (32 bytes), then seq, at (UTC, microseconds, 'YYYY-MM-DDTHH:MM:SS.ffffffZ'), actor, client_id,
-- auth_source, roles (a 4-byte count, then each role), action, what, resource_type, resource_id, patient_id, outcome,
-- source_ip, request_id, detail — each as audit_field. The row id is not covered: seq orders the chain.
-- (plpgsql, not sql: its plan is cached per session, which keeps the append cheap.)
CREATE FUNCTION audit_event_bytes(e audit_event) RETURNS bytea LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    roles bytea := int4send(coalesce(cardinality(e.roles), 0));
    role  text;
BEGIN
    FOREACH role IN ARRAY coalesce(e.roles, '{}') LOOP
        roles := roles || audit_field(role);
    END LOOP;
    RETURN e.prev_hash
        || audit_field(e.seq::text)
        || audit_field(to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        || audit_field(e.actor) || audit_field(e.client_id) || audit_field(e.auth_source)
        || roles
        || audit_field(e.action) || audit_field(e.what) || audit_field(e.resource_type)
        || audit_field(e.resource_id) || audit_field(e.patient_id) || audit_field(e.outcome::text)
        || audit_field(e.source_ip) || audit_field(e.request_id) || audit_field(e.detail);
END
$$;

-- Chain the rows already there, in id order (the append-only trigger refuses this UPDATE, so it is off meanwhile).
ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only;
DO $$
DECLARE
    r    audit_event;
    prev bytea  := decode(repeat('00', 32), 'hex');
    n    bigint := 0;
BEGIN
    FOR r IN SELECT * FROM audit_event ORDER BY id LOOP
        n := n + 1;
        r.seq := n;
        r.prev_hash := prev;
        r.hash := sha256(audit_event_bytes(r));
        UPDATE audit_event SET seq = r.seq, prev_hash = r.prev_hash, hash = r.hash WHERE id = r.id;
        prev := r.hash;
    END LOOP;
    INSERT INTO audit_chain_head (seq, hash) VALUES (n, prev);
END
$$;
ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only;
ALTER TABLE audit_event ALTER COLUMN seq SET NOT NULL, ALTER COLUMN prev_hash SET NOT NULL,
    ALTER COLUMN hash SET NOT NULL;
CREATE UNIQUE INDEX audit_event_seq_idx ON audit_event (seq);

-- Every append: the next seq and the previous hash from the head, whose row lock (held until commit) makes appends
-- from many connections one chain; a rolled-back append rolls the head back too, so seq has no gaps.
CREATE FUNCTION audit_event_chain() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    head audit_chain_head;
BEGIN
    SELECT * INTO head FROM audit_chain_head WHERE singleton FOR UPDATE;
    NEW.seq := head.seq + 1;
    NEW.prev_hash := head.hash;
    NEW.hash := sha256(audit_event_bytes(NEW));
    UPDATE audit_chain_head SET seq = NEW.seq, hash = NEW.hash WHERE singleton;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_event_chain BEFORE INSERT ON audit_event FOR EACH ROW EXECUTE FUNCTION audit_event_chain();

-- The shortest retention the purge accepts, whatever it is asked.
CREATE FUNCTION audit_min_retention_days() RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT 365';

-- No UPDATE ever; no TRUNCATE; DELETE only inside the purge (run as refracture_audit) and only past the minimum
-- retention. The session setting refracture.audit_purge of 0006 no longer opens anything.
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_event' AND current_user = 'refracture_audit'
       AND OLD.at < now() - make_interval(days => audit_min_retention_days()) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();

-- The retention purge: a prefix of the chain (every row before the first one still within retention), never less
-- than the minimum retention old, with a checkpoint of the last purged row so the rest still verifies.
CREATE OR REPLACE FUNCTION purge_audit_events(retention_days integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    cutoff    timestamptz;
    keep_from bigint;
    tail      audit_event;
    purged    bigint;
BEGIN
    IF retention_days IS NULL OR retention_days < audit_min_retention_days() THEN
        RAISE EXCEPTION 'audit retention must be at least % days (asked: %)', audit_min_retention_days(), retention_days
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    cutoff := now() - make_interval(days => retention_days);
    PERFORM 1 FROM audit_chain_head WHERE singleton FOR UPDATE;  -- no append while the prefix is cut
    SELECT seq INTO keep_from FROM audit_event WHERE at >= cutoff ORDER BY seq LIMIT 1;
    SELECT * INTO tail FROM audit_event WHERE keep_from IS NULL OR seq < keep_from ORDER BY seq DESC LIMIT 1;
    IF tail.seq IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM audit_event WHERE seq <= tail.seq;
    GET DIAGNOSTICS purged = ROW_COUNT;
    INSERT INTO audit_checkpoint (seq, hash, purged, purged_at, retention_days)
        VALUES (tail.seq, tail.hash, purged, now(), retention_days);
    RETURN purged;
END
$$;

-- Grants, in a function migrate() runs after every migration run, so tables later migrations add are granted too.
CREATE FUNCTION refracture_apply_grants() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    schema_name text := current_schema();
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO refracture_runtime, refracture_audit', schema_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO refracture_runtime',
                   schema_name);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO refracture_runtime', schema_name);
    -- The trail: read and append only; the chain's head and checkpoints are the audit role's.
    REVOKE UPDATE, DELETE, TRUNCATE ON audit_event FROM refracture_runtime;
    REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit_chain_head, audit_checkpoint, schema_migration
        FROM refracture_runtime;
    GRANT SELECT, DELETE ON audit_event TO refracture_audit;
    GRANT SELECT, UPDATE ON audit_chain_head TO refracture_audit;
    GRANT SELECT, INSERT ON audit_checkpoint TO refracture_audit;
    REVOKE EXECUTE ON FUNCTION purge_audit_events(integer) FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION purge_audit_events(integer) TO refracture_runtime;
    REVOKE EXECUTE ON FUNCTION refracture_apply_grants() FROM PUBLIC;
END
$$;

DO $$
BEGIN
    -- SECURITY DEFINER functions run with a fixed search path (this schema, then pg_temp last: no shadowing).
    EXECUTE format('ALTER FUNCTION audit_event_chain() SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION purge_audit_events(integer) SET search_path = %I, pg_temp', current_schema());
END
$$;
ALTER FUNCTION audit_event_chain() OWNER TO refracture_audit;
ALTER FUNCTION purge_audit_events(integer) OWNER TO refracture_audit;
SELECT refracture_apply_grants();
