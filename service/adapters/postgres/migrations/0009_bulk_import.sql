-- Bulk import (`refracture import`): where each NDJSON file stands, the lines refused, and the EHR's $export jobs.

-- One row per file of an import source ("files" for local NDJSON, or an EHR export source). byte_offset and line_no
-- are where the next unread line starts; the row is written in the same transaction as the batch of resources it
-- covers, so a process killed at any moment resumes exactly there: nothing lost, nothing written twice.
CREATE TABLE bulk_import_file (
    source       text        NOT NULL,
    file         text        NOT NULL,
    -- local files: size and sha256 of the first 64 KiB; another file at the same path starts from its first line
    fingerprint  text,
    byte_offset  bigint      NOT NULL DEFAULT 0,
    line_no      bigint      NOT NULL DEFAULT 0,
    complete     boolean     NOT NULL DEFAULT false,
    created      bigint      NOT NULL DEFAULT 0,
    updated      bigint      NOT NULL DEFAULT 0,
    unchanged    bigint      NOT NULL DEFAULT 0,
    invalid      bigint      NOT NULL DEFAULT 0,
    skipped      bigint      NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (source, file)
);

-- Lines refused (not JSON, not valid FHIR R4, breaking a patient rule), with the FHIRPath of each issue: the report
-- of an import survives the process that ran it.
CREATE TABLE bulk_import_issue (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      text        NOT NULL,
    file        text        NOT NULL,
    line_no     bigint      NOT NULL,
    expression  text,
    message     text        NOT NULL,
    recorded_at timestamptz NOT NULL
);
CREATE INDEX bulk_import_issue_file_idx ON bulk_import_issue (source, file, line_no);

-- One row per export source (the EHR's base and "Group/{id}" or "Patient"). status_url is the running job's
-- Content-Location (NULL when none runs), manifest its answer once complete; since is the transactionTime of the
-- last export imported in full, sent back as _since next time (kept as the EHR wrote it).
CREATE TABLE bulk_export (
    source          text        PRIMARY KEY,
    status_url      text,
    requested_since text,
    kicked_off_at   timestamptz,
    manifest        jsonb,
    since           text,
    completed_at    timestamptz,
    updated_at      timestamptz NOT NULL
);
