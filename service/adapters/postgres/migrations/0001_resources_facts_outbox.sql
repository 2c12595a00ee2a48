-- Resources as received, their history, the facts drawn from them, unrecognised codes, and the
-- patient-change outbox that hands work to the workers.

CREATE TABLE resource (
    resource_type    text        NOT NULL,
    id               text        NOT NULL,
    version_id       integer     NOT NULL,
    last_updated_at  timestamptz NOT NULL,
    -- sha256 of the canonical JSON without meta.versionId/lastUpdated: identical content makes no new version
    content_hash     bytea       NOT NULL,
    patient_id       text,
    status           text,
    entered_in_error boolean     NOT NULL DEFAULT false,
    -- the Medication ("Medication/id") this resource's facts were drawn with, re-read when it changes
    medication_ref   text,
    body             jsonb       NOT NULL,
    PRIMARY KEY (resource_type, id)
);
CREATE INDEX resource_patient_idx ON resource (patient_id) WHERE patient_id IS NOT NULL;
CREATE INDEX resource_medication_ref_idx ON resource (medication_ref) WHERE medication_ref IS NOT NULL;

CREATE TABLE resource_history (
    resource_type   text        NOT NULL,
    id              text        NOT NULL,
    version_id      integer     NOT NULL,
    last_updated_at timestamptz NOT NULL,
    body            jsonb       NOT NULL,
    PRIMARY KEY (resource_type, id, version_id)
);

-- Every superseded version is kept; the trigger makes that impossible to forget in an UPDATE.
CREATE FUNCTION resource_keep_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO resource_history (resource_type, id, version_id, last_updated_at, body)
    VALUES (OLD.resource_type, OLD.id, OLD.version_id, OLD.last_updated_at, OLD.body);
    RETURN NEW;
END;
$$;
CREATE TRIGGER resource_history_trg BEFORE UPDATE OF version_id ON resource
    FOR EACH ROW WHEN (OLD.version_id IS DISTINCT FROM NEW.version_id)
    EXECUTE FUNCTION resource_keep_history();

CREATE TABLE fact (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id      text        NOT NULL,
    kind            text        NOT NULL,
    value_num       double precision,
    value_text      text,
    unit            text,
    effective_date  date,
    effective_at    timestamptz,
    end_date        date,
    status          text,
    attrs           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    source_type     text        NOT NULL,
    source_id       text        NOT NULL,
    source_version  integer     NOT NULL,
    -- when refracture learned it: an assessment "as of" a time uses only facts known by then
    recorded_at     timestamptz NOT NULL
);
CREATE INDEX fact_patient_kind_idx ON fact (patient_id, kind);
CREATE INDEX fact_source_idx ON fact (source_type, source_id);

CREATE TABLE unrecognised_code (
    resource_type  text        NOT NULL,
    system         text        NOT NULL,
    code           text        NOT NULL,
    display        text,
    occurrences    bigint      NOT NULL,
    first_seen_at  timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    PRIMARY KEY (resource_type, system, code)
);

-- The outbox: one row per patient whose record changed. The ingest transaction bumps changed_seq; the
-- worker raises done_seq to the value it read once its work is committed; the relay rings the doorbell
-- (a Celery task) for every row with changed_seq > done_seq that was not rung recently. Redis may lose
-- the doorbell; this row is not lost.
CREATE SEQUENCE patient_change_seq;
CREATE TABLE patient_change (
    patient_id     text        PRIMARY KEY,
    changed_seq    bigint      NOT NULL,
    changed_at     timestamptz NOT NULL,
    done_seq       bigint      NOT NULL DEFAULT 0,
    done_at        timestamptz,
    published_at   timestamptz,
    publish_count  integer     NOT NULL DEFAULT 0
);
CREATE INDEX patient_change_pending_idx ON patient_change (changed_seq) WHERE changed_seq > done_seq;
