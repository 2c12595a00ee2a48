-- Named queries of the CDS Hooks services (service/adapters/postgres/cds.py), in queries.sql's format.

-- name: cds_latest_assessment
SELECT id::text AS id, probability, probability_low, probability_high, band, model_version, assessed_at,
       result -> 'contributions' AS contributions, result -> 'missing' AS missing
  FROM assessment WHERE patient_id = %(patient_id)s
 ORDER BY sequence_no DESC LIMIT 1;

-- name: cds_active_alerts
SELECT id::text AS id, code, status, priority, due_date, detail, episode
  FROM alert WHERE patient_id = %(patient_id)s AND closed_at IS NULL
   AND status IN ('open', 'acknowledged', 'assigned', 'snoozed');

-- name: cds_medication_facts
-- Medicines for the order check, and the kidneys (eGFR, CKD) for whether a bisphosphonate may be suggested.
SELECT kind, value_num, value_text, unit, effective_date, effective_at, end_date, status, attrs, source_type,
       source_id, recorded_at
  FROM fact WHERE patient_id = %(patient_id)s AND kind IN ('medication', 'egfr', 'chronic-kidney-disease');

-- name: claim_jti
-- Expired ids go as new ones arrive; a conflict means the id was seen while its token was still valid.
WITH purged AS (DELETE FROM cds_jti WHERE expires_at < %(now)s)
INSERT INTO cds_jti (issuer, jti, expires_at) VALUES (%(issuer)s, %(jti)s, %(expires_at)s)
ON CONFLICT (issuer, jti) DO NOTHING
RETURNING 1 AS claimed;

-- name: insert_cds_feedback
-- Linked to the patient and the alert of the card when refracture issued it (cds_card, migration 0017).
INSERT INTO cds_feedback (received_at, caller, service_id, card, outcome, accepted_suggestions, override_system,
                          override_code, override_comment, outcome_at, patient_id, alert_id)
SELECT %(received_at)s, %(caller)s, %(service_id)s, %(card)s, %(outcome)s, %(accepted_suggestions)s,
       %(override_system)s, %(override_code)s, %(override_comment)s, %(outcome_at)s, c.patient_id, c.alert_id
  FROM (SELECT 1) AS one LEFT JOIN cds_card c ON c.card = %(card)s
RETURNING patient_id, alert_id::text AS alert_id;

-- name: insert_cds_card
INSERT INTO cds_card (card, service_id, patient_id, alert_id, first_issued)
VALUES (%(card)s, %(service_id)s, %(patient_id)s, %(alert_id)s::uuid, %(now)s)
ON CONFLICT (card) DO NOTHING;
