-- Write-back to the EHR: one outbox row per patient (only the newest state is sent), the EHR's ids and versions
-- of what was delivered, a log of deliveries, and the write mode chosen from the EHR's CapabilityStatement.

CREATE SEQUENCE writeback_seq;
CREATE TABLE writeback (
    patient_id        text        PRIMARY KEY,
    -- bumped in the transaction of every assessment or care-plan change; sent_seq is the last one delivered
    wanted_seq        bigint      NOT NULL,
    sent_seq          bigint      NOT NULL DEFAULT 0,
    status            text        NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'delivering', 'delivered', 'dead')),
    attempts          integer     NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL,
    lease_until       timestamptz,
    first_failure_at  timestamptz,
    last_error        text,
    last_status       integer,
    last_answer       jsonb,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX writeback_due_idx ON writeback (next_attempt_at) WHERE status IN ('pending', 'delivering');

ALTER TABLE assessment ADD COLUMN ehr_id text, ADD COLUMN delivered_at timestamptz;
ALTER TABLE care_plan ADD COLUMN ehr_id text, ADD COLUMN ehr_version text, ADD COLUMN delivered_version integer;

CREATE TABLE writeback_delivery (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id        text        NOT NULL,
    delivered_at      timestamptz NOT NULL,
    mode              text        NOT NULL,
    assessment_id     uuid,
    ehr_assessment_id text,
    care_plan_version integer,
    ehr_care_plan_id  text,
    ehr_care_plan_version text
);
CREATE INDEX writeback_delivery_patient_idx ON writeback_delivery (patient_id, delivered_at);

CREATE TABLE ehr_state (
    id          integer     PRIMARY KEY CHECK (id = 1),
    base_url    text,
    mode        text        NOT NULL,
    detail      text,
    checked_at  timestamptz NOT NULL
);
