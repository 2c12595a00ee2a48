-- Issue 16: sessions with an idle timeout, patients' sites for organisational scoping, break-the-glass grants.

-- When the session was last used: a session idle longer than REFRACTURE_SESSION_IDLE_S ends.
ALTER TABLE web_session ADD COLUMN IF NOT EXISTS last_seen_at timestamptz;
UPDATE web_session SET last_seen_at = created_at WHERE last_seen_at IS NULL;

-- A patient's site is the Patient's managingOrganization: the scoped worklist filters on it.
CREATE INDEX IF NOT EXISTS resource_patient_organization_idx
    ON resource ((body -> 'managingOrganization' ->> 'reference'))
    WHERE resource_type = 'Patient';

-- Break the glass: a coordinator sees one patient outside their sites, for a stated reason, until expires_at.
-- Every grant is also in the audit trail (action break-glass).
CREATE TABLE IF NOT EXISTS break_glass (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    actor       text        NOT NULL,
    patient_id  text        NOT NULL,
    reason      text        NOT NULL,
    granted_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS break_glass_actor_idx ON break_glass (actor, expires_at);

-- The Subscription's shared secret, made fresh by every `refracture subscribe` (only its SHA-256 is kept). The one
-- it replaced stays valid until previous_until, for notifications already on their way.
CREATE TABLE IF NOT EXISTS subscription_secret (
    feed_id         text        PRIMARY KEY,
    secret_hash     bytea       NOT NULL,
    previous_hash   bytea,
    previous_until  timestamptz,
    rotated_at      timestamptz NOT NULL
);
