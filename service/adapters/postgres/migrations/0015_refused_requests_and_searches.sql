-- Issue 16: requests nobody authenticated for are counted, not one permanent audit row each; the worklist page's
-- searches (a name or an MRN) are kept here for a while under a random id, so that no URL carries them.

-- One row per address, minute, route and status: a flood of anonymous 401s or unknown paths adds to a count
-- instead of adding a row per request to the six-year audit trail. Purged with the audit trail's retention.
CREATE TABLE IF NOT EXISTS refused_request_count (
    minute     timestamptz NOT NULL,
    source_ip  text        NOT NULL,
    -- the method and route template ("GET /fhir/{resource_type}/{resource_id}"), or "<method> unmatched"
    what       text        NOT NULL,
    outcome    integer     NOT NULL,
    requests   bigint      NOT NULL,
    PRIMARY KEY (minute, source_ip, what, outcome)
);

-- A search typed into the worklist page's box: the page's URLs carry the id (128 random bits), never the text.
-- Only the person who searched can use the id; it expires (service/usecases/worklist.py).
CREATE TABLE IF NOT EXISTS worklist_search (
    id          text        PRIMARY KEY,
    owner       text        NOT NULL,
    text        text        NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS worklist_search_expires_idx ON worklist_search (expires_at);
