-- The FLS quality measures' reads (docs/measures.md): one pass over the facts of the patients who may count in a
-- period, their organisations, the alerts opened in it, and the stored MeasureReports. The format is queries.sql's.

-- name: measure_facts
-- Patients with a possible index event in the period, or a denosumab dose whose next one fell due in it; the facts
-- the measures read (medication facts of the treating drugs only), known by the evaluation time: one row per patient,
-- the facts as one JSON array (a year of 100,000 patients is half a million facts: one orjson parse per patient costs
-- the client a third less than converting each fact's row).
WITH candidates AS (
    SELECT DISTINCT patient_id FROM fact
     WHERE recorded_at <= %(as_of)s
       AND ((kind IN ('vertebral-augmentation', 'vertebral-fracture')
             AND effective_date BETWEEN %(start)s AND %(end)s)
         OR (kind = 'medication' AND attrs ->> 'drug' IN ('denosumab-60mg', 'denosumab')
             AND effective_date BETWEEN %(dose_start)s AND %(dose_end)s))
)
SELECT f.patient_id,
       json_agg(json_build_array(f.kind, f.value_num, f.effective_date, f.end_date, f.status,
                                 CASE WHEN f.kind IN ('birth-date', 'deceased', 'dxa-t-score', 'dxa-bmd')
                                      THEN NULL ELSE f.attrs END))::text AS facts
  FROM fact f JOIN candidates c USING (patient_id)
 WHERE f.kind = ANY(%(kinds)s::text[]) AND f.recorded_at <= %(as_of)s
   AND (f.kind <> 'medication' OR f.attrs ->> 'drug' = ANY(%(drugs)s::text[]))
 GROUP BY f.patient_id;

-- name: patient_organizations
SELECT id, body -> 'managingOrganization' ->> 'reference' AS organization
  FROM resource WHERE resource_type = 'Patient' AND body ? 'managingOrganization';

-- name: dxa_gap_reasons
-- The documented reasons for no DXA: the episode's bmd-assessment-gap alert dismissed with a reason.
SELECT patient_id, episode FROM alert
 WHERE code = 'bmd-assessment-gap' AND status = 'dismissed' AND dismiss_reason IS NOT NULL
   AND updated_at <= %(as_of)s;

-- name: measure_alerts
-- Alerts opened in the period, the first action a person took and when the record resolved them, all by the
-- evaluation time. An action: a worklist action by a person, or the alert's Task completed at the EHR (issue 18 writes
-- that as an event 'ehr-task-completed' by 'ehr:…'; a Task put in progress there is an 'acknowledge' by 'ehr:…').
SELECT a.patient_id, a.code, a.opened_at, acted.first_action_at,
       CASE WHEN a.status = 'resolved' AND a.closed_at <= %(as_of)s THEN a.closed_at END AS resolved_at
  FROM alert a
  LEFT JOIN (SELECT e.alert_id, min(e.at) AS first_action_at FROM alert_event e
              WHERE e.actor <> 'refracture' AND e.at >= %(from)s AND e.at <= %(as_of)s
                AND e.action IN ('acknowledge', 'assign', 'snooze', 'note', 'dismiss', 'reopen', 'ehr-task-completed')
              GROUP BY e.alert_id) acted ON acted.alert_id = a.id
 WHERE a.opened_at >= %(from)s AND a.opened_at < %(to)s AND a.opened_at <= %(as_of)s;

-- name: upsert_measure_report
INSERT INTO measure_report (id, measure_id, site, period_start, period_end, evaluated_at, resource)
VALUES (%(id)s, %(measure_id)s, %(site)s, %(period_start)s, %(period_end)s, %(evaluated_at)s, %(resource)s)
ON CONFLICT (id) DO UPDATE SET evaluated_at = EXCLUDED.evaluated_at, resource = EXCLUDED.resource;

-- name: search_measure_reports
-- sites NULL: every report (site-wide ones included); otherwise only the reports of those sites.
SELECT resource::text AS body FROM measure_report
 WHERE (%(measure_id)s::text IS NULL OR measure_id = %(measure_id)s)
   AND (%(period_from)s::date IS NULL OR period_start >= %(period_from)s)
   AND (%(period_to)s::date IS NULL OR period_end <= %(period_to)s)
   AND (%(site)s::text IS NULL OR site = %(site)s)
   AND (%(sites)s::text[] IS NULL OR site = ANY(%(sites)s::text[]))
 ORDER BY period_start DESC, measure_id, site NULLS FIRST
 LIMIT %(limit)s;

-- name: read_measure_report
SELECT site, resource::text AS body FROM measure_report WHERE id = %(id)s;
