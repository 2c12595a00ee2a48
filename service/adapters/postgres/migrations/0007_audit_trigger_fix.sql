-- 0006's trigger read refracture.audit_retention_days without missing_ok: SQL does not promise to short-circuit
-- AND, so an UPDATE or DELETE outside a purge failed on the unknown setting instead of the intended refusal.
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND coalesce(current_setting('refracture.audit_purge', true), '') = 'on' THEN
        IF OLD.at < now() - make_interval(days => current_setting('refracture.audit_retention_days', true)::int) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_event is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
