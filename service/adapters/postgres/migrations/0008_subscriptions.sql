-- Event feeds from the EHR (docs/integration-guide.md, "Event feeds"): Subscription notifications received, the
-- resources to fetch for id-only notifications, and the catch-up poll by _lastUpdated with its high-water marks.

-- One row per receiving endpoint (/fhir/$subscription-hook/{feed_id}): where its event numbers stand.
CREATE TABLE subscription_feed (
    feed_id              text        PRIMARY KEY,
    -- every event up to this number arrived, or is covered by a catch-up poll (service/domain/event_feed.py)
    contiguous           bigint      NOT NULL DEFAULT 0,
    -- the largest event number the EHR has told of (eventsSinceSubscriptionStart)
    highest              bigint      NOT NULL DEFAULT 0,
    notifications        bigint      NOT NULL DEFAULT 0,
    -- what the last notification said: handshake, heartbeat, event-notification, ping, rest-hook
    last_kind            text,
    ehr_subscription     text,
    topic                text,
    ehr_status           text,
    created_at           timestamptz NOT NULL,
    last_notification_at timestamptz,
    -- the last topic-based notification (the heartbeat watch applies to topic feeds only)
    last_topic_at        timestamptz,
    -- when silence past the heartbeat period was noted (once per silence)
    silence_noted_at     timestamptz
);

-- Event numbers above the feed's contiguous number that arrived (duplicates are recognised by them).
CREATE TABLE subscription_event (
    feed_id      text        NOT NULL REFERENCES subscription_feed ON DELETE CASCADE,
    event_number bigint      NOT NULL,
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (feed_id, event_number)
);

-- Resources to read from the EHR (id-only notifications): the durable job a worker, or the next beat, takes.
CREATE TABLE subscription_fetch (
    resource_type   text        NOT NULL,
    resource_id     text        NOT NULL,
    -- the latest announcement: a job finished by a worker is dropped only if no newer one came meanwhile
    requested_at    timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    lease_until     timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    failed          boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (resource_type, resource_id)
);
CREATE INDEX subscription_fetch_due_idx ON subscription_fetch (next_attempt_at) WHERE NOT failed;

-- The newest meta.lastUpdated read from the EHR per resource type (the EHR's clock): the next poll starts there.
CREATE TABLE subscription_high_water (
    resource_type text        PRIMARY KEY,
    high_water    timestamptz NOT NULL
);

-- The catch-up poll: one row. due_at is set by a ping, a gap, empty content or silence; the periodic poll runs
-- when polled_at is older than the poll interval. lease_until keeps two workers from polling at once.
CREATE TABLE subscription_poll (
    singleton    boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    due_at       timestamptz,
    reason       text,
    lease_until  timestamptz,
    started_at   timestamptz,
    polled_at    timestamptz,
    last_error   text
);
INSERT INTO subscription_poll (singleton) VALUES (true);
