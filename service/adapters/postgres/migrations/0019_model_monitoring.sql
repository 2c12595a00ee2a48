-- Model monitoring (issue 19 item 4): one row per daily run of the monitoring task, the monthly drift and
-- calibration figures and the warnings as JSON; /metrics and GET /api/model/monitoring read the newest row.

CREATE TABLE IF NOT EXISTS model_monitoring (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    computed_at    timestamptz NOT NULL,
    -- the model version new assessments carried when it ran (the base, or the active calibration)
    model_version  text        NOT NULL,
    -- whether any documented threshold was passed (docs/model-monitoring.md)
    warning        boolean     NOT NULL,
    -- months (inputs, missing rates, PSI, bands, alerts), calibration by month of index and pooled, warnings
    summary        jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS model_monitoring_computed_idx ON model_monitoring (computed_at DESC, id DESC);
