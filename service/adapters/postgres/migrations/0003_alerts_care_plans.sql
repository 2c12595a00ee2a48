-- Alerts with their history, the sweep's index of next-due dates, and the one active CarePlan per patient.

CREATE TABLE alert (
    id             uuid        PRIMARY KEY,
    patient_id     text        NOT NULL,
    code           text        NOT NULL,
    status         text        NOT NULL
                   CHECK (status IN ('open', 'acknowledged', 'assigned', 'snoozed', 'resolved', 'dismissed')),
    priority       text        NOT NULL,
    due_date       date        NOT NULL,
    -- what the alert is about (the last denosumab dose, the index fracture): a dismissal holds for the episode
    episode        text        NOT NULL,
    evidence       jsonb       NOT NULL,
    detail         text        NOT NULL,
    assignee       text,
    snoozed_until  date,
    dismiss_reason text,
    opened_at      timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    closed_at      timestamptz,
    -- bumped by every change, so two people acting on one alert cannot overwrite each other unseen
    revision       integer     NOT NULL DEFAULT 1
);
-- At most one active alert per patient and code.
CREATE UNIQUE INDEX alert_one_active_idx ON alert (patient_id, code)
    WHERE status IN ('open', 'acknowledged', 'assigned', 'snoozed');
CREATE INDEX alert_patient_idx ON alert (patient_id, closed_at);

CREATE TABLE alert_event (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id    uuid        NOT NULL REFERENCES alert (id),
    at          timestamptz NOT NULL,
    actor       text        NOT NULL,
    action      text        NOT NULL,
    from_status text,
    to_status   text,
    note        text
);
CREATE INDEX alert_event_alert_idx ON alert_event (alert_id, at);

-- The sweep's index: the next day on which time alone can change a patient's alerts.
CREATE TABLE alert_schedule (
    patient_id  text PRIMARY KEY,
    next_check  date,
    checked_at  timestamptz NOT NULL
);
CREATE INDEX alert_schedule_due_idx ON alert_schedule (next_check) WHERE next_check IS NOT NULL;

CREATE TABLE care_plan (
    patient_id    text        PRIMARY KEY,
    id            uuid        NOT NULL UNIQUE,
    version       integer     NOT NULL,
    content_hash  text        NOT NULL,
    updated_at    timestamptz NOT NULL,
    resource      json        NOT NULL
);
CREATE TABLE care_plan_history (
    id          uuid        NOT NULL,
    version     integer     NOT NULL,
    updated_at  timestamptz NOT NULL,
    resource    json        NOT NULL,
    PRIMARY KEY (id, version)
);
