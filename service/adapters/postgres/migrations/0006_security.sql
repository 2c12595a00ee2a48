-- Security: the audit trail (append-only), sign-in sessions of the worklist page, and pending OIDC sign-ins.

CREATE TABLE audit_event (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL,
    -- who: the token's subject (a person or a client), its client id, how they were authenticated, their roles
    actor         text        NOT NULL,
    client_id     text,
    auth_source   text,
    roles         text[]      NOT NULL DEFAULT '{}',
    -- what: read | search | create | update | export | write-back | alert-action | sign-in | sign-out | denied
    action        text        NOT NULL,
    -- the route template (never the URL: query strings can carry identifiers) or the job
    what          text        NOT NULL,
    resource_type text,
    resource_id   text,
    patient_id    text,
    -- the outcome: the HTTP status, or the write-back's result
    outcome       integer     NOT NULL,
    source_ip     text,
    request_id    text,
    detail        text
);
CREATE INDEX audit_event_at_idx ON audit_event (at);
CREATE INDEX audit_event_patient_idx ON audit_event (patient_id, at) WHERE patient_id IS NOT NULL;

-- Append-only: no UPDATE ever; DELETE only by the retention purge (purge_audit_events), of rows past retention.
CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND current_setting('refracture.audit_purge', true) = 'on'
       AND OLD.at < now() - make_interval(days => current_setting('refracture.audit_retention_days')::int) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_event is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();

CREATE FUNCTION purge_audit_events(retention_days integer) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    purged bigint;
BEGIN
    PERFORM set_config('refracture.audit_purge', 'on', true);
    PERFORM set_config('refracture.audit_retention_days', retention_days::text, true);
    DELETE FROM audit_event WHERE at < now() - make_interval(days => retention_days);
    GET DIAGNOSTICS purged = ROW_COUNT;
    PERFORM set_config('refracture.audit_purge', 'off', true);
    RETURN purged;
END
$$;

-- The worklist page's sign-in sessions: the cookie holds a random id, this table its hash and who signed in.
CREATE TABLE web_session (
    id_hash     bytea       PRIMARY KEY,
    claims      jsonb       NOT NULL,
    csrf_token  text        NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX web_session_expires_idx ON web_session (expires_at);

-- OpenID Connect sign-ins under way: state, nonce and PKCE verifier until the provider sends the person back.
CREATE TABLE auth_pending (
    state          text        PRIMARY KEY,
    nonce          text        NOT NULL,
    code_verifier  text        NOT NULL,
    return_to      text        NOT NULL,
    expires_at     timestamptz NOT NULL
);
