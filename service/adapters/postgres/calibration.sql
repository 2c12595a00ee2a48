-- Named queries of the model calibration registry (calibrations.py); the format of queries.sql.

-- name: active_calibration
SELECT version, base_version, method, intercept, slope, n, events
  FROM model_calibration
 WHERE base_version = %(base_version)s AND retired_at IS NULL
 ORDER BY fitted_at DESC, version DESC LIMIT 1;

-- name: insert_calibration
INSERT INTO model_calibration (version, base_version, parent_version, method, intercept, slope, fitted_at, n,
                               events, metrics)
VALUES (%(version)s, %(base_version)s, %(parent_version)s, %(method)s, %(intercept)s, %(slope)s, %(fitted_at)s,
        %(n)s, %(events)s, %(metrics)s)
ON CONFLICT (version) DO UPDATE SET retired_at = NULL, fitted_at = EXCLUDED.fitted_at;

-- name: insert_evaluation
INSERT INTO model_evaluation (evaluated_at, current_version, candidate_version, registered, reason, metrics)
VALUES (%(evaluated_at)s, %(current_version)s, %(candidate_version)s, %(registered)s, %(reason)s, %(metrics)s);

-- name: list_calibrations
SELECT version, base_version, parent_version, method, intercept, slope, fitted_at, n, events, metrics, retired_at
  FROM model_calibration ORDER BY fitted_at DESC, version DESC LIMIT %(limit)s;

-- name: latest_evaluation
SELECT evaluated_at, current_version, candidate_version, registered, reason, metrics
  FROM model_evaluation ORDER BY evaluated_at DESC, id DESC LIMIT 1;

-- name: retire_calibrations
UPDATE model_calibration SET retired_at = %(now)s WHERE retired_at IS NULL RETURNING version;

-- name: patients_operated_by
-- Patients with a completed augmentation dated on or before a day (whose 2-year window may have closed), after a
-- keyset position, in id order.
SELECT DISTINCT patient_id FROM fact
 WHERE kind = 'vertebral-augmentation' AND status = 'completed' AND effective_date <= %(day)s
   AND patient_id > %(after)s
 ORDER BY patient_id LIMIT %(limit)s;
