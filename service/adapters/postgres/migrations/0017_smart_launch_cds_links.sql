-- Issue 18: SMART App Launch of the worklist, and CDS Hooks feedback linked to the patient and the alert.

-- A pending sign-in that is a SMART launch remembers the EHR (the allow-listed iss) it started from: the code is
-- exchanged there, and an OpenID Connect callback never accepts a launch's state (nor the other way round).
ALTER TABLE auth_pending ADD COLUMN IF NOT EXISTS smart_iss text;

-- Every card refracture has answered with: its uuid (deterministic per service, patient and alert or assessment)
-- and what it was about, so that feedback, which names only the card, is linked to the patient and the alert.
CREATE TABLE IF NOT EXISTS cds_card (
    card           text        PRIMARY KEY,
    service_id     text        NOT NULL,
    patient_id     text        NOT NULL,
    alert_id       uuid,
    first_issued   timestamptz NOT NULL
);

ALTER TABLE cds_feedback ADD COLUMN IF NOT EXISTS patient_id text;
ALTER TABLE cds_feedback ADD COLUMN IF NOT EXISTS alert_id uuid;
CREATE INDEX IF NOT EXISTS cds_feedback_patient_idx ON cds_feedback (patient_id, received_at);
CREATE INDEX IF NOT EXISTS cds_feedback_alert_idx ON cds_feedback (alert_id) WHERE alert_id IS NOT NULL;
