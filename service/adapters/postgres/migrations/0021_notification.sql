-- Issue 18: the record of the daily notification digests (docs/integration-guide.md, "Notifications").
-- A message row is written as pending before it is sent and marked sent after: a crash in between leaves it
-- pending, and the next run sends it again (at least once, never silently lost). Its items (alert ids, or
-- high-risk/{patient}) are unique per owner, channel and day, so a line is never sent twice on a day.
CREATE TABLE IF NOT EXISTS notification (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner       text        NOT NULL,
    channel     text        NOT NULL CHECK (channel IN ('email', 'webhook')),
    day         date        NOT NULL,
    alert_ids   text[]      NOT NULL,
    status      text        NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts    integer     NOT NULL DEFAULT 0,
    -- the error's class and status only (never a message text, which may echo an address or a body)
    last_error  text,
    -- what is sent, kept so a pending or failed message is sent again as it was built
    subject     text        NOT NULL,
    body        text        NOT NULL,
    payload     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL,
    sent_at     timestamptz,
    -- a run sending this message holds it until then: two runs at once (beat and an operator) never both send it
    leased_until timestamptz
);
CREATE INDEX IF NOT EXISTS notification_unsent_idx ON notification (day) WHERE status <> 'sent';

CREATE TABLE IF NOT EXISTS notification_item (
    owner           text   NOT NULL,
    channel         text   NOT NULL,
    day             date   NOT NULL,
    item            text   NOT NULL,
    notification_id bigint NOT NULL REFERENCES notification (id),
    PRIMARY KEY (owner, channel, day, item)
);
-- "Was this high-risk patient ever announced to this owner?": new high-risk patients are announced once.
CREATE INDEX IF NOT EXISTS notification_item_item_idx ON notification_item (owner, channel, item);
