-- name: current_versions
-- The stored version of each (type, id), locked so concurrent writers of the same resource queue up.
SELECT r.resource_type, r.id, r.version_id, r.last_updated_at, r.content_hash, r.patient_id
  FROM resource r
  JOIN unnest(%(types)s::text[], %(ids)s::text[]) AS k(resource_type, id)
    ON r.resource_type = k.resource_type AND r.id = k.id
   FOR UPDATE OF r;

-- name: insert_resource
INSERT INTO resource (resource_type, id, version_id, last_updated_at, content_hash, patient_id, status,
                      entered_in_error, medication_ref, body)
VALUES (%(resource_type)s, %(id)s, 1, %(now)s, %(content_hash)s, %(patient_id)s, %(status)s,
        %(entered_in_error)s, %(medication_ref)s, %(body)s);

-- name: update_resource
UPDATE resource
   SET version_id = %(version_id)s, last_updated_at = %(now)s, content_hash = %(content_hash)s,
       patient_id = %(patient_id)s, status = %(status)s, entered_in_error = %(entered_in_error)s,
       medication_ref = %(medication_ref)s, body = %(body)s
 WHERE resource_type = %(resource_type)s AND id = %(id)s;

-- name: read_resource
SELECT body::text AS body, version_id, last_updated_at FROM resource WHERE resource_type = %(resource_type)s AND id = %(id)s;

-- name: read_resource_json
SELECT body FROM resource WHERE resource_type = %(resource_type)s AND id = %(id)s;

-- name: dependents_of_medication
SELECT resource_type, id, version_id, body FROM resource WHERE medication_ref = %(medication_ref)s FOR UPDATE;

-- name: delete_facts_of_sources
DELETE FROM fact f
 USING unnest(%(types)s::text[], %(ids)s::text[]) AS k(source_type, source_id)
 WHERE f.source_type = k.source_type AND f.source_id = k.source_id
RETURNING f.patient_id;

-- name: copy_facts
COPY fact (patient_id, kind, value_num, value_text, unit, effective_date, effective_at, end_date, status, attrs,
           source_type, source_id, source_version, recorded_at) FROM STDIN;

-- name: insert_fact
-- The few facts of one resource, pipelined with the rest of its write (copy_facts for many).
INSERT INTO fact (patient_id, kind, value_num, value_text, unit, effective_date, effective_at, end_date, status, attrs,
                  source_type, source_id, source_version, recorded_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s);

-- name: count_unrecognised
INSERT INTO unrecognised_code AS u (resource_type, system, code, display, occurrences, first_seen_at, last_seen_at)
VALUES (%(resource_type)s, %(system)s, %(code)s, %(display)s, %(occurrences)s, %(now)s, %(now)s)
ON CONFLICT (resource_type, system, code) DO UPDATE
   SET occurrences = u.occurrences + EXCLUDED.occurrences,
       last_seen_at = EXCLUDED.last_seen_at,
       display = coalesce(u.display, EXCLUDED.display);

-- name: list_unrecognised
SELECT resource_type, system, code, display, occurrences, first_seen_at, last_seen_at
  FROM unrecognised_code
 ORDER BY occurrences DESC, resource_type, system, code
 LIMIT %(limit)s;

-- name: mark_patient_changed
-- claimed: the API rings the doorbell for this change itself right after the commit (one transaction per write
-- instead of a second one to claim the row); if that ring fails, release_changes hands the row back to the relay.
INSERT INTO patient_change AS c (patient_id, changed_seq, changed_at, published_at, publish_count)
VALUES (%(patient_id)s, nextval('patient_change_seq'), %(now)s, CASE WHEN %(claimed)s THEN %(now)s END,
        CASE WHEN %(claimed)s THEN 1 ELSE 0 END)
ON CONFLICT (patient_id) DO UPDATE
   SET changed_seq = EXCLUDED.changed_seq, changed_at = EXCLUDED.changed_at, published_at = EXCLUDED.published_at,
       publish_count = c.publish_count + EXCLUDED.publish_count;

-- name: release_changes
-- A doorbell claimed in the write's transaction could not be rung: the relay's next run rings it.
UPDATE patient_change SET published_at = NULL
 WHERE patient_id = ANY(%(patient_ids)s::text[]) AND changed_seq > done_seq;

-- name: claim_changes_to_publish
-- Rows with work not done whose doorbell was never rung, or rung long enough ago to have been lost.
WITH due AS (
    SELECT patient_id FROM patient_change
     WHERE changed_seq > done_seq
       AND (published_at IS NULL OR published_at < %(now)s - make_interval(secs => %(redeliver_after_s)s))
     ORDER BY changed_seq
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
UPDATE patient_change c SET published_at = %(now)s, publish_count = c.publish_count + 1
  FROM due WHERE c.patient_id = due.patient_id
RETURNING c.patient_id;

-- name: pending_changes
SELECT patient_id, changed_seq FROM patient_change
 WHERE patient_id = ANY(%(patient_ids)s::text[]) AND changed_seq > done_seq;

-- name: mark_changes_done
UPDATE patient_change c SET done_seq = greatest(c.done_seq, k.seq), done_at = %(now)s
  FROM unnest(%(patient_ids)s::text[], %(seqs)s::bigint[]) AS k(patient_id, seq)
 WHERE c.patient_id = k.patient_id;

-- name: change_backlog
SELECT count(*) AS pending, min(changed_at) AS oldest_changed_at
  FROM patient_change WHERE changed_seq > done_seq;

-- name: claim_given_changes
-- The doorbell right after an ingest commit: only these patients, only if not rung since they changed.
UPDATE patient_change c SET published_at = %(now)s, publish_count = c.publish_count + 1
 WHERE c.patient_id = ANY(%(patient_ids)s::text[]) AND c.changed_seq > c.done_seq AND c.published_at IS NULL
RETURNING c.patient_id;

-- name: lock_patients
-- Serialises work on the same patients across workers; callers pass the ids sorted to avoid deadlocks.
SELECT pg_advisory_xact_lock(hashtextextended('patient:' || p, 0)) FROM unnest(%(patient_ids)s::text[]) AS p;

-- name: facts_of_patients
-- Empty attrs come back as NULL: most facts (a lab value, a measure) have none, and decoding '{}' from JSON was half
-- the time of reading a long record (20,000 eGFR facts: bench/growth).
SELECT patient_id, kind, value_num, value_text, unit, effective_date, effective_at, end_date, status,
       nullif(attrs, '{}'::jsonb) AS attrs, source_type, source_id, recorded_at
  FROM fact WHERE patient_id = ANY(%(patient_ids)s::text[]);

-- name: facts_for_assessment
-- What the assessment and the alert evaluation as of a moment need (service/domain/latest_only.py): every fact of the
-- kinds read whole (the unread ones, weight, BMI, creatinine, ..., are in neither list), and of each latest-only
-- series (eGFR) only the undated facts and those dated from the latest day with a value known by then (on or before
-- first_day) to last_day; all of them up to last_day when there is no such day. Every part is a range of
-- fact_patient_kind_day_idx: per patient and latest-only kind, one backward probe for the latest day (ORDER BY ...
-- LIMIT 1) and one range from it, so 20,000 eGFRs cost what two do. OFFSET 0 keeps the LATERAL a subquery run per
-- patient and kind: pulled up into the join, the planner took the kind out of the index condition (a join filter over
-- the patient's whole record, memoized per patient: 440 ms for 20,000 facts).
SELECT f.patient_id, f.kind, f.value_num, f.value_text, f.unit, f.effective_date, f.effective_at, f.end_date,
       f.status, nullif(f.attrs, '{}'::jsonb) AS attrs, f.source_type, f.source_id, f.recorded_at
  FROM fact f
 WHERE f.patient_id = ANY(%(patient_ids)s::text[]) AND f.kind = ANY(%(whole)s::text[])
UNION ALL
SELECT s.patient_id, s.kind, s.value_num, s.value_text, s.unit, s.effective_date, s.effective_at, s.end_date,
       s.status, nullif(s.attrs, '{}'::jsonb) AS attrs, s.source_type, s.source_id, s.recorded_at
  FROM unnest(%(patient_ids)s::text[]) AS p(patient_id)
 CROSS JOIN unnest(%(latest_only)s::text[]) AS k(kind)
 CROSS JOIN LATERAL (
       SELECT f.* FROM fact f
        WHERE f.patient_id = p.patient_id AND f.kind = k.kind AND f.effective_date <= %(last_day)s
          AND f.effective_date >= coalesce(
                (SELECT l.effective_date FROM fact l
                  WHERE l.patient_id = p.patient_id AND l.kind = k.kind AND l.effective_date <= %(first_day)s
                    AND l.value_num IS NOT NULL AND l.recorded_at <= %(as_of)s
                  ORDER BY l.effective_date DESC LIMIT 1),
                '-infinity'::date)
       OFFSET 0) AS s
UNION ALL
SELECT f.patient_id, f.kind, f.value_num, f.value_text, f.unit, f.effective_date, f.effective_at, f.end_date,
       f.status, nullif(f.attrs, '{}'::jsonb) AS attrs, f.source_type, f.source_id, f.recorded_at
  FROM fact f
 WHERE f.patient_id = ANY(%(patient_ids)s::text[]) AND f.kind = ANY(%(latest_only)s::text[])
   AND f.effective_date IS NULL;

-- name: coverage_of_patients
-- One index seek per patient and input type (resource_patient_type_idx), not a read of the patient's whole record.
-- LATERAL ... LIMIT 1, not EXISTS: the planner turned EXISTS into a hash semi-join over the whole table (1.5 s at
-- 1M resources); a LIMIT keeps it a nested loop of index probes.
SELECT p.patient_id, t.resource_type
  FROM unnest(%(patient_ids)s::text[]) AS p(patient_id)
 CROSS JOIN unnest(%(types)s::text[]) AS t(resource_type)
 CROSS JOIN LATERAL (SELECT 1 FROM resource r
                      WHERE r.patient_id = p.patient_id AND r.resource_type = t.resource_type
                        AND NOT r.entered_in_error
                      LIMIT 1) AS held;

-- name: latest_assessments
SELECT DISTINCT ON (patient_id) patient_id, model_version, inputs_hash, sequence_no
  FROM assessment WHERE patient_id = ANY(%(patient_ids)s::text[])
 ORDER BY patient_id, sequence_no DESC;

-- name: copy_assessments
-- No resource: the RiskAssessment is rendered from result when read (migration 0022).
COPY assessment (id, patient_id, sequence_no, model_version, inputs_hash, assessed_at, index_date,
                 probability, probability_low, probability_high, band, result) FROM STDIN;

-- name: read_risk_assessment
-- body: the RiskAssessment as stored before migration 0022; NULL: rendered from result (assessment_record.py).
SELECT id::text AS id, patient_id, model_version, inputs_hash, resource::text AS body,
       CASE WHEN resource IS NULL THEN result END AS result, assessed_at
  FROM assessment WHERE id = %(id)s;

-- name: risk_assessments_of_patient
SELECT id::text AS id, patient_id, model_version, inputs_hash, resource::text AS body,
       CASE WHEN resource IS NULL THEN result END AS result
  FROM assessment WHERE patient_id = %(patient_id)s
 ORDER BY assessed_at DESC, sequence_no DESC LIMIT %(limit)s;

-- name: patients_to_rescore
-- Patients with an augmentation on record, after a keyset position, in id order; one of `parts` partitions.
SELECT DISTINCT patient_id FROM fact
 WHERE kind = 'vertebral-augmentation' AND patient_id > %(after)s
   AND (%(parts)s = 1 OR abs(hashtextextended(patient_id, 0) %% %(parts)s) = %(part)s)
 ORDER BY patient_id LIMIT %(limit)s;

-- name: alerts_of_patients
-- Active alerts, and alerts closed in the last 90 days (the care plan shows them completed or cancelled).
SELECT id, patient_id, code, status, priority, due_date, episode, evidence, detail, assignee, snoozed_until,
       opened_at, closed_at, revision
  FROM alert
 WHERE patient_id = ANY(%(patient_ids)s::text[])
   AND (closed_at IS NULL OR closed_at > %(closed_since)s);

-- name: dismissed_episodes
SELECT patient_id, code, episode FROM alert
 WHERE patient_id = ANY(%(patient_ids)s::text[]) AND status = 'dismissed';

-- name: insert_alert
INSERT INTO alert (id, patient_id, code, status, priority, due_date, episode, evidence, detail, opened_at, updated_at)
VALUES (%(id)s, %(patient_id)s, %(code)s, 'open', %(priority)s, %(due_date)s, %(episode)s, %(evidence)s, %(detail)s,
        %(now)s, %(now)s);

-- name: update_alert_finding
UPDATE alert SET due_date = %(due_date)s, episode = %(episode)s, evidence = %(evidence)s, detail = %(detail)s,
                 priority = %(priority)s, updated_at = %(now)s, revision = revision + 1
 WHERE id = %(id)s;

-- name: set_alert_status
UPDATE alert SET status = %(status)s, updated_at = %(now)s, revision = revision + 1,
                 closed_at = CASE WHEN %(status)s IN ('resolved', 'dismissed') THEN %(now)s ELSE NULL END,
                 snoozed_until = CASE WHEN %(status)s = 'snoozed' THEN snoozed_until ELSE NULL END
 WHERE id = %(id)s;

-- name: insert_alert_event
INSERT INTO alert_event (alert_id, at, actor, action, from_status, to_status, note)
VALUES (%(alert_id)s, %(at)s, %(actor)s, %(action)s, %(from_status)s, %(to_status)s, %(note)s);

-- name: upsert_schedule
INSERT INTO alert_schedule (patient_id, next_check, checked_at) VALUES (%(patient_id)s, %(next_check)s, %(now)s)
ON CONFLICT (patient_id) DO UPDATE SET next_check = EXCLUDED.next_check, checked_at = EXCLUDED.checked_at;

-- name: due_for_sweep
SELECT patient_id FROM alert_schedule
 WHERE next_check <= %(today)s AND patient_id > %(after)s
 ORDER BY patient_id LIMIT %(limit)s;

-- name: latest_assessment_views
-- Only the parts the care plan uses: the rest of result is the RiskAssessment's rendering (migration 0022).
SELECT DISTINCT ON (patient_id) patient_id, id, band, result -> 'inputs' AS inputs, result -> 'missing' AS missing
  FROM assessment WHERE patient_id = ANY(%(patient_ids)s::text[])
 ORDER BY patient_id, sequence_no DESC;

-- name: care_plans_of_patients
SELECT patient_id, id, version, content_hash, resource FROM care_plan
 WHERE patient_id = ANY(%(patient_ids)s::text[]);

-- name: insert_care_plan
INSERT INTO care_plan (patient_id, id, version, content_hash, updated_at, resource)
VALUES (%(patient_id)s, %(id)s, %(version)s, %(content_hash)s, %(now)s, %(resource)s)
ON CONFLICT (patient_id) DO UPDATE SET version = EXCLUDED.version, content_hash = EXCLUDED.content_hash,
    updated_at = EXCLUDED.updated_at, resource = EXCLUDED.resource;

-- name: insert_care_plan_history
INSERT INTO care_plan_history (id, version, updated_at, resource)
VALUES (%(id)s, %(version)s, %(now)s, %(resource)s);

-- name: read_care_plan
SELECT resource::text AS body, version, updated_at FROM care_plan WHERE id = %(id)s;

-- name: care_plan_of_patient
SELECT resource::text AS body FROM care_plan WHERE patient_id = %(patient_id)s;

-- name: alert_for_update
SELECT id, patient_id, code, status, priority, due_date, episode, evidence, detail, assignee, snoozed_until,
       opened_at, closed_at, revision
  FROM alert WHERE id = %(id)s FOR UPDATE;

-- name: apply_alert_action
UPDATE alert SET status = %(status)s, assignee = %(assignee)s, snoozed_until = %(snoozed_until)s,
                 dismiss_reason = %(dismiss_reason)s, updated_at = %(now)s, revision = revision + 1,
                 closed_at = CASE WHEN %(status)s IN ('resolved', 'dismissed') THEN %(now)s ELSE NULL END
 WHERE id = %(id)s;

-- name: alert_history
SELECT at, actor, action, from_status, to_status, note FROM alert_event WHERE alert_id = %(id)s ORDER BY at, id;

-- name: all_patients
-- Every patient refracture has heard of (each changed patient has an outbox row), in id order.
SELECT patient_id FROM patient_change WHERE patient_id > %(after)s ORDER BY patient_id LIMIT %(limit)s;

-- name: queue_writeback
-- A new state to send. A job waiting out a backoff keeps its wait (the EHR may be down); a dead one starts over,
-- since the new content may well be accepted.
-- One statement for the batch (a rescore queues thousands; one execution per row cost more than the row), in id
-- order so concurrent transactions lock rows in one order.
INSERT INTO writeback AS w (patient_id, wanted_seq, status, next_attempt_at, updated_at)
SELECT p, nextval('writeback_seq'), 'pending', %(now)s, %(now)s
  FROM unnest(%(patient_ids)s::text[]) AS p ORDER BY p
ON CONFLICT (patient_id) DO UPDATE SET
    wanted_seq = EXCLUDED.wanted_seq,
    status = CASE WHEN w.status = 'delivering' THEN 'delivering' ELSE 'pending' END,
    attempts = CASE WHEN w.status = 'dead' THEN 0 ELSE w.attempts END,
    first_failure_at = CASE WHEN w.status = 'dead' THEN NULL ELSE w.first_failure_at END,
    next_attempt_at = CASE WHEN w.status IN ('dead', 'delivered') THEN EXCLUDED.next_attempt_at
                           ELSE w.next_attempt_at END,
    updated_at = EXCLUDED.updated_at;

-- name: claim_writebacks
-- Due jobs, and jobs whose delivery lease ran out (a worker died mid-delivery): one worker per patient at a time.
WITH due AS (
    SELECT patient_id FROM writeback
     WHERE ((status = 'pending' AND next_attempt_at <= %(now)s) OR (status = 'delivering' AND lease_until < %(now)s))
       AND (%(patient_ids)s::text[] IS NULL OR patient_id = ANY(%(patient_ids)s::text[]))
     ORDER BY next_attempt_at
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
UPDATE writeback w SET status = 'delivering', lease_until = %(lease_until)s, updated_at = %(now)s
  FROM due WHERE w.patient_id = due.patient_id
RETURNING w.patient_id, w.wanted_seq, w.attempts, w.first_failure_at;

-- name: writeback_done
UPDATE writeback SET sent_seq = %(seq)s, attempts = 0, first_failure_at = NULL, last_error = NULL,
                     last_status = NULL, last_answer = NULL, lease_until = NULL, updated_at = %(now)s,
                     status = CASE WHEN wanted_seq > %(seq)s THEN 'pending' ELSE 'delivered' END,
                     next_attempt_at = %(now)s
 WHERE patient_id = %(patient_id)s;

-- name: writeback_retry
UPDATE writeback SET status = CASE WHEN status = 'delivering' THEN 'pending' ELSE status END,
                     attempts = attempts + 1, next_attempt_at = %(next_attempt_at)s, lease_until = NULL,
                     first_failure_at = coalesce(first_failure_at, %(now)s), last_error = %(error)s,
                     last_status = %(status)s, last_answer = %(answer)s, updated_at = %(now)s
 WHERE patient_id = %(patient_id)s;

-- name: writeback_dead
UPDATE writeback SET status = 'dead', attempts = attempts + 1, lease_until = NULL, last_error = %(error)s,
                     last_status = %(status)s, last_answer = %(answer)s, updated_at = %(now)s,
                     first_failure_at = coalesce(first_failure_at, %(now)s)
 WHERE patient_id = %(patient_id)s;

-- name: writeback_release
-- Nothing was attempted (the circuit is open): hand the job back without counting an attempt.
UPDATE writeback SET status = 'pending', lease_until = NULL, next_attempt_at = %(next_attempt_at)s,
                     updated_at = %(now)s
 WHERE patient_id = %(patient_id)s AND status = 'delivering';

-- name: writeback_state
SELECT a.id AS assessment_id, a.resource AS risk_assessment, a.ehr_id AS assessment_ehr_id,
       a.patient_id AS assessment_patient_id, a.model_version, a.inputs_hash,
       CASE WHEN a.resource IS NULL THEN a.result END AS assessment_result,
       a.delivered_at AS assessment_delivered_at,
       (SELECT d.ehr_id FROM assessment d WHERE d.patient_id = %(patient_id)s AND d.delivered_at IS NOT NULL
         ORDER BY d.sequence_no DESC LIMIT 1) AS last_delivered_ehr_id,
       p.id AS plan_id, p.version AS plan_version, p.resource AS care_plan, p.ehr_id AS plan_ehr_id,
       p.ehr_version AS plan_ehr_version, p.delivered_version AS plan_delivered_version
  FROM (SELECT %(patient_id)s::text AS patient_id) k
  LEFT JOIN LATERAL (SELECT * FROM assessment WHERE patient_id = k.patient_id ORDER BY sequence_no DESC LIMIT 1) a
    ON true
  LEFT JOIN care_plan p ON p.patient_id = k.patient_id;

-- name: record_assessment_delivery
UPDATE assessment SET ehr_id = %(ehr_id)s, delivered_at = %(now)s WHERE id = %(id)s;

-- name: record_plan_delivery
UPDATE care_plan SET ehr_id = %(ehr_id)s, ehr_version = %(ehr_version)s, delivered_version = %(version)s
 WHERE patient_id = %(patient_id)s AND version >= %(version)s;

-- name: set_plan_ehr_version
UPDATE care_plan SET ehr_version = %(ehr_version)s, ehr_id = coalesce(%(ehr_id)s, ehr_id)
 WHERE patient_id = %(patient_id)s;

-- name: log_delivery
INSERT INTO writeback_delivery (patient_id, delivered_at, mode, assessment_id, ehr_assessment_id, care_plan_version,
                                ehr_care_plan_id, ehr_care_plan_version)
VALUES (%(patient_id)s, %(now)s, %(mode)s, %(assessment_id)s, %(ehr_assessment_id)s, %(care_plan_version)s,
        %(ehr_care_plan_id)s, %(ehr_care_plan_version)s);

-- name: writeback_counts
SELECT status, count(*) AS jobs, min(CASE WHEN status = 'pending' THEN updated_at END) AS oldest_pending_at
  FROM writeback GROUP BY status;

-- name: dead_writebacks
SELECT patient_id, attempts, last_status, last_error, last_answer, updated_at FROM writeback
 WHERE status = 'dead' ORDER BY updated_at DESC LIMIT %(limit)s;

-- name: replay_writebacks
UPDATE writeback SET status = 'pending', attempts = 0, first_failure_at = NULL, next_attempt_at = %(now)s,
                     lease_until = NULL, updated_at = %(now)s
 WHERE status = 'dead' AND (%(patient_ids)s::text[] IS NULL OR patient_id = ANY(%(patient_ids)s::text[]))
RETURNING patient_id;

-- name: save_ehr_state
INSERT INTO ehr_state (id, base_url, mode, detail, checked_at) VALUES (1, %(base_url)s, %(mode)s, %(detail)s, %(now)s)
ON CONFLICT (id) DO UPDATE SET base_url = EXCLUDED.base_url, mode = EXCLUDED.mode, detail = EXCLUDED.detail,
                               checked_at = EXCLUDED.checked_at;

-- name: read_ehr_state
SELECT base_url, mode, detail, checked_at FROM ehr_state WHERE id = 1;

-- name: upsert_demographics
INSERT INTO patient_summary AS s (patient_id, name, mrn, birth_date, sex, search, updated_at)
VALUES (%(patient_id)s, %(name)s, %(mrn)s, %(birth_date)s, %(sex)s, %(search)s, %(now)s)
ON CONFLICT (patient_id) DO UPDATE SET name = EXCLUDED.name, mrn = EXCLUDED.mrn, birth_date = EXCLUDED.birth_date,
    sex = EXCLUDED.sex, search = EXCLUDED.search, updated_at = EXCLUDED.updated_at;

-- name: upsert_risk_summary
-- One statement for the batch, in id order (see queue_writeback).
INSERT INTO patient_summary AS s (patient_id, risk_band, risk_probability, assessed_at, updated_at)
SELECT r.patient_id, r.band, r.probability, r.assessed_at, r.assessed_at
  FROM unnest(%(patient_ids)s::text[], %(bands)s::text[], %(probabilities)s::float8[], %(assessed_at)s::timestamptz[])
       AS r(patient_id, band, probability, assessed_at)
 ORDER BY r.patient_id
ON CONFLICT (patient_id) DO UPDATE SET risk_band = EXCLUDED.risk_band, risk_probability = EXCLUDED.risk_probability,
    assessed_at = EXCLUDED.assessed_at, updated_at = EXCLUDED.updated_at;

-- name: upsert_care_summary
INSERT INTO patient_summary AS s (patient_id, last_dose_date, last_dose_drug, index_date, updated_at)
VALUES (%(patient_id)s, %(last_dose_date)s, %(last_dose_drug)s, %(index_date)s, %(now)s)
ON CONFLICT (patient_id) DO UPDATE SET last_dose_date = EXCLUDED.last_dose_date,
    last_dose_drug = EXCLUDED.last_dose_drug, index_date = EXCLUDED.index_date, updated_at = EXCLUDED.updated_at
WHERE (s.last_dose_date, s.last_dose_drug, s.index_date)
      IS DISTINCT FROM (EXCLUDED.last_dose_date, EXCLUDED.last_dose_drug, EXCLUDED.index_date);
