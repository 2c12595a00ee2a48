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
    -- json, not jsonb: served and sent as stored, never queried inside, and cheaper to write by the thousand
    resource          json        NOT NULL,
    UNIQUE (patient_id, sequence_no)
);
CREATE INDEX assessment_patient_idx ON assessment (patient_id, assessed_at DESC, sequence_no DESC);

-- lz4 compresses a RiskAssessment about twice as fast as the default pglz at the same size, which is most of the
-- cost of writing a rescore's assessments; servers built without lz4 keep pglz.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
                WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)) THEN
        ALTER TABLE assessment ALTER COLUMN resource SET COMPRESSION lz4;
        ALTER TABLE assessment ALTER COLUMN result SET COMPRESSION lz4;
    END IF;
END
$$;
