-- Issue 15: an assessment is stored compactly (its numbers and factors in `result`) and its RiskAssessment is
-- rendered from them when read or delivered (service/fhir/assessment_record.py). Building and storing a ~10 kB
-- RiskAssessment per patient was most of a rescore's time. Rows stored before keep their resource as stored; new
-- rows leave it NULL.

ALTER TABLE assessment ALTER COLUMN resource DROP NOT NULL;
