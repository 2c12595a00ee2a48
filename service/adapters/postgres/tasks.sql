-- Issue 18: the alerts' Tasks (migration 0016_alert_task.sql).

-- name: tasks_of_patients
SELECT alert_id, patient_id, id, version, content_hash, resource, ehr_id, ehr_version, delivered_version,
       synced_ehr_version, ehr_final_status
  FROM alert_task WHERE patient_id = ANY(%(patient_ids)s::text[]);

-- name: save_task
INSERT INTO alert_task (alert_id, patient_id, id, version, content_hash, status, updated_at, resource,
                        delivered_version)
VALUES (%(alert_id)s, %(patient_id)s, %(id)s, %(version)s, %(content_hash)s, %(status)s, %(now)s, %(resource)s,
        %(delivered_version)s)
ON CONFLICT (alert_id) DO UPDATE SET version = EXCLUDED.version, content_hash = EXCLUDED.content_hash,
    status = EXCLUDED.status, updated_at = EXCLUDED.updated_at, resource = EXCLUDED.resource,
    delivered_version = EXCLUDED.delivered_version;

-- name: task_for_update
SELECT alert_id, patient_id, id, version, content_hash, resource, ehr_id, ehr_version, delivered_version,
       synced_ehr_version, ehr_final_status
  FROM alert_task WHERE id = %(id)s FOR UPDATE;

-- name: mark_task_synced
-- ehr_version stays the one refracture last wrote: its next write then meets the EHR's change (412) and merges it.
UPDATE alert_task SET synced_ehr_version = %(ehr_version)s, ehr_id = coalesce(ehr_id, %(ehr_id)s),
                      ehr_final_status = coalesce(%(final_status)s, ehr_final_status)
 WHERE alert_id = %(alert_id)s;

-- name: patient_organizations
SELECT id, body -> 'managingOrganization' ->> 'reference' AS organization FROM resource
 WHERE resource_type = 'Patient' AND id = ANY(%(patient_ids)s::text[])
   AND body -> 'managingOrganization' ->> 'reference' IS NOT NULL;

-- name: undelivered_tasks
SELECT alert_id, patient_id, id, version, content_hash, resource, ehr_id, ehr_version, delivered_version,
       synced_ehr_version, ehr_final_status
  FROM alert_task WHERE patient_id = %(patient_id)s AND delivered_version IS DISTINCT FROM version
 ORDER BY alert_id;

-- name: record_task_delivery
UPDATE alert_task SET ehr_id = coalesce(%(ehr_id)s, ehr_id), ehr_version = %(ehr_version)s,
                      -- never lower: a version settled meanwhile (closed at the EHR) stays delivered
                      delivered_version = greatest(delivered_version, %(version)s),
                      -- our own write is not an EHR action: its version is already looked at
                      synced_ehr_version = coalesce(%(ehr_version)s, synced_ehr_version)
 WHERE alert_id = %(alert_id)s AND version >= %(version)s;

-- name: set_task_ehr_version
UPDATE alert_task SET ehr_version = %(ehr_version)s, ehr_id = coalesce(%(ehr_id)s, ehr_id)
 WHERE alert_id = %(alert_id)s;

-- name: read_task
SELECT resource::text AS body, version, updated_at FROM alert_task WHERE id = %(id)s;

-- name: search_tasks
SELECT resource::text AS body FROM alert_task
 WHERE (%(patient_id)s::text IS NULL OR patient_id = %(patient_id)s)
   AND (%(status)s::text[] IS NULL OR status = ANY(%(status)s::text[]))
   AND (%(id)s::uuid IS NULL OR id = %(id)s::uuid)
 ORDER BY updated_at DESC, id
 LIMIT %(limit)s;
