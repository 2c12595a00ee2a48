-- Issue 19: the FLS quality measures' MeasureReports (docs/measures.md), one row per measure, site and period.
-- Each evaluation (Measure/[id]/$evaluate-measure, `refracture measures`) replaces the report of the same measure,
-- site and period: the latest evaluation is the one served at /fhir/MeasureReport. Counts only, no patient data.

CREATE TABLE IF NOT EXISTS measure_report (
    id            text        PRIMARY KEY,  -- a hash of measure, site and period: a repeated evaluation replaces it
    measure_id    text        NOT NULL,
    site          text,                     -- NULL: every site together
    period_start  date        NOT NULL,
    period_end    date        NOT NULL,
    evaluated_at  timestamptz NOT NULL,
    resource      jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS measure_report_search_idx ON measure_report (measure_id, period_start, site);
