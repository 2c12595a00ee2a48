-- Named queries of model monitoring (monitoring.py); the format of queries.sql.

-- name: monitoring_assessments
-- Each patient's newest assessment (a rescore re-assesses everyone: the newest is what the worklist shows), by the
-- month of its index operation.
SELECT to_char(a.index_date, 'YYYY-MM') AS month, a.result -> 'inputs' AS inputs, a.result -> 'missing' AS missing,
       a.probability, a.band
  FROM (SELECT DISTINCT ON (patient_id) patient_id, index_date, result, probability, band
          FROM assessment
         ORDER BY patient_id, assessed_at DESC, sequence_no DESC) a
 WHERE a.index_date >= %(since)s;

-- name: monitoring_alert_patients
-- Patients (by the month of their newest assessment's index) with at least one alert of each code, of any status.
SELECT to_char(a.index_date, 'YYYY-MM') AS month, al.code, count(DISTINCT al.patient_id) AS patients
  FROM (SELECT DISTINCT ON (patient_id) patient_id, index_date
          FROM assessment
         ORDER BY patient_id, assessed_at DESC, sequence_no DESC) a
  JOIN alert al ON al.patient_id = a.patient_id
 WHERE a.index_date >= %(since)s
 GROUP BY 1, 2;

-- name: insert_monitoring
INSERT INTO model_monitoring (computed_at, model_version, warning, summary)
VALUES (%(computed_at)s, %(model_version)s, %(warning)s, %(summary)s);

-- name: prune_monitoring
DELETE FROM model_monitoring WHERE computed_at < %(before)s;

-- name: latest_monitoring
SELECT computed_at, model_version, warning, summary
  FROM model_monitoring ORDER BY computed_at DESC, id DESC LIMIT 1;
