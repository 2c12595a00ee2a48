-- The facts of one patient and kind in date order (issue 15, item 3).
--
-- The pipeline reads a long measurement series (eGFR) only from its latest day on
-- (service/domain/latest_only.py; queries.sql, facts_for_assessment). Finding that day and reading from it are
-- ranges of this index: a patient with 20,000 eGFRs costs what one with two does. With (patient_id, kind) alone the
-- latest day was found by fetching and sorting the whole series. The new index serves every query the old one did
-- (its columns are a prefix), so the old one goes: one index per fact row to keep up on ingest, as before.
CREATE INDEX IF NOT EXISTS fact_patient_kind_day_idx ON fact (patient_id, kind, effective_date);
DROP INDEX IF EXISTS fact_patient_kind_idx;
