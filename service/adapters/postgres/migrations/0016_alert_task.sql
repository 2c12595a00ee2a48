-- Issue 18: one FHIR Task per alert, written back with the RiskAssessment and CarePlan and kept in step.
-- A row per alert that ever had a Task: the current resource (a new version when its content changes), what the EHR
-- has (its id and version, and which of our versions it got), and the last EHR change refracture acted on, so a
-- completion read twice (notification and poll) is acted on once and our own writes never come back as actions.
CREATE TABLE IF NOT EXISTS alert_task (
    alert_id          uuid        PRIMARY KEY REFERENCES alert (id),
    patient_id        text        NOT NULL,
    -- the Task's id and identifier value: opaque (a UUID derived from the alert's id), never an MRN
    id                uuid        NOT NULL UNIQUE,
    version           integer     NOT NULL,
    content_hash      text        NOT NULL,
    status            text        NOT NULL,
    updated_at        timestamptz NOT NULL,
    resource          json        NOT NULL,
    ehr_id            text,
    ehr_version       text,
    delivered_version integer,
    -- the EHR's version of the Task whose change was applied to the alert (or seen to be our own write)
    synced_ehr_version text,
    -- completed or cancelled at the EHR (and applied to the alert): the Task keeps that status from then on
    ehr_final_status  text
);
CREATE INDEX IF NOT EXISTS alert_task_patient_idx ON alert_task (patient_id, status);
CREATE INDEX IF NOT EXISTS alert_task_pending_idx ON alert_task (patient_id)
    WHERE delivered_version IS DISTINCT FROM version;
