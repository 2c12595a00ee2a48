-- The resource types a patient's record holds (the risk model's coverage) were read as DISTINCT over every resource
-- of the patient: 20,000 rows for a long lab series, on every change. With (patient_id, resource_type) the query
-- probes each input type once (EXISTS, an index seek each), whatever the record's length. The index also serves
-- every lookup by patient alone, so it replaces resource_patient_idx instead of adding a third index to each write.
CREATE INDEX IF NOT EXISTS resource_patient_type_idx ON resource (patient_id, resource_type)
    WHERE patient_id IS NOT NULL;
DROP INDEX IF EXISTS resource_patient_idx;
