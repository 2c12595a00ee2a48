-- Issue 18: the notification digests' candidates and record (migration 0021_notification.sql).

-- name: digest_alerts
SELECT a.id::text AS alert_id, a.patient_id, a.code, a.due_date, s.name, s.mrn,
       p.body -> 'managingOrganization' ->> 'reference' AS organization
  FROM alert a
  LEFT JOIN patient_summary s ON s.patient_id = a.patient_id
  LEFT JOIN resource p ON p.resource_type = 'Patient' AND p.id = a.patient_id
 WHERE a.status IN ('open', 'acknowledged', 'assigned')
   AND a.code = ANY(%(codes)s::text[])
 ORDER BY a.due_date, a.id;

-- name: digest_high_risk
SELECT s.patient_id, s.name, s.mrn, p.body -> 'managingOrganization' ->> 'reference' AS organization
  FROM patient_summary s
  LEFT JOIN resource p ON p.resource_type = 'Patient' AND p.id = s.patient_id
 WHERE s.risk_band = 'high'
 ORDER BY s.patient_id;

-- name: lock_owner_day
SELECT pg_advisory_xact_lock(hashtextextended(%(owner)s || '|' || %(channel)s || '|' || %(day)s::text, 18));

-- name: items_already_sent
-- Today's items for this owner and channel, and high-risk patients announced on any day.
SELECT item FROM notification_item
 WHERE owner = %(owner)s AND channel = %(channel)s
   AND (day = %(day)s OR (item LIKE 'high-risk/%%' AND item = ANY(%(items)s::text[])));

-- name: insert_notification
INSERT INTO notification (owner, channel, day, alert_ids, status, subject, body, payload, created_at, leased_until)
VALUES (%(owner)s, %(channel)s, %(day)s, %(alert_ids)s, 'pending', %(subject)s, %(body)s, %(payload)s, %(now)s,
        %(leased_until)s)
RETURNING id;

-- name: insert_notification_item
INSERT INTO notification_item (owner, channel, day, item, notification_id)
VALUES (%(owner)s, %(channel)s, %(day)s, %(item)s, %(id)s);

-- name: take_unsent_notifications
-- The day's messages not sent and held by no other run (a crashed run's hold ends with its lease), taken for this one.
UPDATE notification SET leased_until = %(leased_until)s
 WHERE id IN (SELECT id FROM notification
               WHERE day = %(day)s AND status <> 'sent' AND (leased_until IS NULL OR leased_until <= %(now)s)
               ORDER BY id FOR UPDATE SKIP LOCKED)
RETURNING id, owner, channel, day, alert_ids, status, attempts, last_error, subject, body, payload;

-- name: mark_notification
UPDATE notification SET status = %(status)s, attempts = %(attempts)s, last_error = %(last_error)s,
                        sent_at = CASE WHEN %(status)s = 'sent' THEN %(now)s ELSE sent_at END,
                        leased_until = CASE WHEN %(final)s THEN NULL ELSE leased_until END
 WHERE id = %(id)s;

-- name: notifications_of_day
SELECT id, owner, channel, day, alert_ids, status, attempts, last_error, subject, body, payload
  FROM notification WHERE day = %(day)s ORDER BY id;
