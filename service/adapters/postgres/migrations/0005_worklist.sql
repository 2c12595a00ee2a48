-- The care coordinators' worklist: a per-patient summary kept up to date by ingest, assessment and alert
-- evaluation, and indexes for keyset pages of open alerts in each sort order.

CREATE TABLE patient_summary (
    patient_id        text        PRIMARY KEY,
    name              text,
    mrn               text,
    birth_date        date,
    sex               text,
    -- lower-case name and MRN, for the worklist's free-text filter
    search            text        NOT NULL DEFAULT '',
    risk_band         text,
    risk_probability  double precision,
    assessed_at       timestamptz,
    last_dose_date    date,
    last_dose_drug    text,
    index_date        date,
    updated_at        timestamptz NOT NULL
);

ALTER TABLE alert ADD COLUMN priority_rank smallint
    GENERATED ALWAYS AS (CASE priority WHEN 'urgent' THEN 0 ELSE 1 END) STORED;
CREATE INDEX alert_worklist_due_idx ON alert (due_date, id)
    WHERE status IN ('open', 'acknowledged', 'assigned', 'snoozed');
CREATE INDEX alert_worklist_priority_idx ON alert (priority_rank, due_date, id)
    WHERE status IN ('open', 'acknowledged', 'assigned', 'snoozed');
CREATE INDEX alert_worklist_code_idx ON alert (code, due_date, id)
    WHERE status IN ('open', 'acknowledged', 'assigned', 'snoozed');
-- The dashboard's counts per code and priority: an index-only scan in group order, no hashing of 100,000 rows.
CREATE INDEX alert_worklist_counts_idx ON alert (code, priority)
    WHERE status IN ('open', 'acknowledged', 'assigned', 'snoozed');
-- The risk and name orders walk the patients in order and fetch each one's few alerts (alert_one_active_idx).
CREATE INDEX patient_summary_risk_idx ON patient_summary ((-coalesce(risk_probability, -1)), patient_id);
CREATE INDEX patient_summary_name_idx ON patient_summary ((coalesce(lower(name), '')), patient_id);

-- Databases that already hold assessments and alerts: every alert's patient gets a summary (the worklist joins
-- on it), with the latest risk. Names come from the stored Patients (migrate.py runs that step in Python); the last
-- dose and index event with the patient's next evaluation (`refracture sweep --all` brings them all at once).
INSERT INTO patient_summary (patient_id, risk_band, risk_probability, assessed_at, updated_at)
SELECT DISTINCT ON (patient_id) patient_id, band, probability, assessed_at, now()
  FROM assessment ORDER BY patient_id, assessed_at DESC, sequence_no DESC;
INSERT INTO patient_summary (patient_id, updated_at)
SELECT DISTINCT patient_id, now() FROM alert ON CONFLICT (patient_id) DO NOTHING;

-- Trigram search where the server has pg_trgm (it is a contrib module, and creating it may need rights we lack).
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX patient_summary_search_idx ON patient_summary USING gin (search gin_trgm_ops);
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm is not available: the free-text filter scans';
END
$$;
