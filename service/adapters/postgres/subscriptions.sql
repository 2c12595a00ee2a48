-- Named queries of the event feeds (subscriptions.py; migration 0008); the format of queries.sql.

-- name: ensure_feed
INSERT INTO subscription_feed (feed_id, created_at) VALUES (%(feed_id)s, %(now)s) ON CONFLICT (feed_id) DO NOTHING;

-- name: lock_feed
SELECT contiguous, highest FROM subscription_feed WHERE feed_id = %(feed_id)s FOR UPDATE;

-- name: feed_position
SELECT contiguous, highest FROM subscription_feed WHERE feed_id = %(feed_id)s;

-- name: events_above
SELECT event_number FROM subscription_event WHERE feed_id = %(feed_id)s;

-- name: count_notification
UPDATE subscription_feed
   SET notifications = notifications + 1, last_kind = %(kind)s, last_notification_at = %(now)s
 WHERE feed_id = %(feed_id)s;

-- name: save_feed
UPDATE subscription_feed
   SET contiguous = %(contiguous)s, highest = %(highest)s, notifications = notifications + 1,
       last_kind = %(kind)s, last_notification_at = %(now)s, last_topic_at = %(now)s,
       ehr_subscription = coalesce(%(ehr_subscription)s, ehr_subscription), topic = coalesce(%(topic)s, topic),
       ehr_status = coalesce(%(status)s, ehr_status)
 WHERE feed_id = %(feed_id)s;

-- name: drop_events_upto
DELETE FROM subscription_event WHERE feed_id = %(feed_id)s AND event_number <= %(contiguous)s;

-- name: drop_events
DELETE FROM subscription_event WHERE feed_id = %(feed_id)s;

-- name: insert_event
INSERT INTO subscription_event (feed_id, event_number, received_at) VALUES (%(feed_id)s, %(number)s, %(now)s)
ON CONFLICT DO NOTHING;

-- name: queue_fetch
INSERT INTO subscription_fetch (resource_type, resource_id, requested_at, next_attempt_at)
VALUES (%(resource_type)s, %(resource_id)s, %(now)s, %(now)s)
ON CONFLICT (resource_type, resource_id) DO UPDATE
   SET requested_at = EXCLUDED.requested_at, failed = false, last_error = NULL,
       attempts = CASE WHEN subscription_fetch.failed THEN 0 ELSE subscription_fetch.attempts END,
       next_attempt_at = CASE WHEN subscription_fetch.failed THEN EXCLUDED.next_attempt_at
                              ELSE least(subscription_fetch.next_attempt_at, EXCLUDED.next_attempt_at) END;

-- name: request_catchup
-- While a poll runs, a request made now must outlive it (it may announce a change the poll already passed by).
UPDATE subscription_poll
   SET due_at = CASE WHEN lease_until IS NOT NULL THEN %(due_at)s
                     ELSE least(coalesce(due_at, %(due_at)s), %(due_at)s) END,
       reason = %(reason)s;

-- name: claim_fetches
UPDATE subscription_fetch f SET lease_until = %(lease_until)s
  FROM (SELECT resource_type, resource_id FROM subscription_fetch
         WHERE NOT failed AND next_attempt_at <= %(now)s AND (lease_until IS NULL OR lease_until < %(now)s)
         ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) due
 WHERE f.resource_type = due.resource_type AND f.resource_id = due.resource_id
RETURNING f.resource_type, f.resource_id, f.requested_at, f.attempts;

-- name: finish_fetch
DELETE FROM subscription_fetch
 WHERE resource_type = %(resource_type)s AND resource_id = %(resource_id)s AND requested_at = %(requested_at)s;

-- name: release_fetch
UPDATE subscription_fetch SET lease_until = NULL
 WHERE resource_type = %(resource_type)s AND resource_id = %(resource_id)s;

-- name: retry_fetch
UPDATE subscription_fetch
   SET attempts = attempts + 1, next_attempt_at = %(next_attempt_at)s, last_error = %(error)s, lease_until = NULL
 WHERE resource_type = %(resource_type)s AND resource_id = %(resource_id)s;

-- name: fail_fetch
UPDATE subscription_fetch SET attempts = attempts + 1, failed = true, last_error = %(error)s, lease_until = NULL
 WHERE resource_type = %(resource_type)s AND resource_id = %(resource_id)s AND requested_at = %(requested_at)s;

-- name: note_silent_feeds
UPDATE subscription_feed SET silence_noted_at = %(now)s
 WHERE last_topic_at < %(silent_since)s AND (silence_noted_at IS NULL OR silence_noted_at < last_topic_at)
RETURNING feed_id;

-- name: claim_poll
UPDATE subscription_poll SET lease_until = %(lease_until)s, started_at = %(now)s
 WHERE (lease_until IS NULL OR lease_until < %(now)s)
   AND (due_at <= %(now)s OR (%(periodic_before)s::timestamptz IS NOT NULL
        AND (polled_at IS NULL OR polled_at <= %(periodic_before)s::timestamptz)))
RETURNING started_at, due_at;

-- name: finish_poll_ok
UPDATE subscription_poll
   SET lease_until = NULL, polled_at = started_at, last_error = NULL,
       due_at = CASE WHEN due_at <= started_at THEN NULL ELSE due_at END
 WHERE started_at = %(started_at)s;

-- name: finish_poll_failed
UPDATE subscription_poll SET lease_until = NULL, last_error = %(error)s WHERE started_at = %(started_at)s;

-- name: high_water
SELECT resource_type, high_water FROM subscription_high_water;

-- name: save_high_water
INSERT INTO subscription_high_water (resource_type, high_water) VALUES (%(resource_type)s, %(mark)s)
ON CONFLICT (resource_type) DO UPDATE SET high_water = greatest(subscription_high_water.high_water, EXCLUDED.high_water);

-- name: ensure_high_water
INSERT INTO subscription_high_water (resource_type, high_water) VALUES (%(resource_type)s, %(mark)s)
ON CONFLICT (resource_type) DO NOTHING;
