-- Risk assessments: one row per assessment, with the model version and a hash of its inputs, so unchanged inputs
-- under an unchanged model are not assessed again; the RiskAssessment built from it is kept as served.

CREATE TABLE assessment (
    id                uuid        PRIMARY KEY,
    patient_id        text        NOT NULL,
    -- how many assessments the patient had before this one: part of the deterministic id
    sequence_no       integer     NOT NULL,
    model_version     text        NOT NULL,
    inputs_hash       text        NOT NULL,
    assessed_at       timestamptz NOT NULL,
    index_date        date        NOT NULL,
    probability       double precision NOT NULL,
    probability_low   double precision NOT NULL,
    probability_high  double precision NOT NULL,
    band              text        NOT NULL,
    result            jsonb       NOT NULL,
    resource          jsonb       NOT NULL,
    UNIQUE (patient_id, sequence_no)
);
CREATE INDEX assessment_patient_idx ON assessment (patient_id, assessed_at DESC, sequence_no DESC);
