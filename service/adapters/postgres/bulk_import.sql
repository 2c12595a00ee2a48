-- Bulk import (migration 0009), in queries.sql's format: "-- name: x" starts a query.

-- name: start_file
INSERT INTO bulk_import_file AS f (source, file, fingerprint, started_at, updated_at)
VALUES (%(source)s, %(file)s, %(fingerprint)s, %(now)s, %(now)s)
ON CONFLICT (source, file) DO NOTHING;

-- name: lock_file
SELECT fingerprint, byte_offset, line_no, complete
  FROM bulk_import_file
 WHERE source = %(source)s AND file = %(file)s
   FOR UPDATE;

-- name: reset_file
-- Another file at the same path, or an explicit restart: its counts and refused lines start again too.
UPDATE bulk_import_file
   SET fingerprint = %(fingerprint)s, byte_offset = 0, line_no = 0, complete = false, created = 0, updated = 0,
       unchanged = 0, invalid = 0, skipped = 0, started_at = %(now)s, updated_at = %(now)s
 WHERE source = %(source)s AND file = %(file)s;

-- name: forget_file_issues
DELETE FROM bulk_import_issue WHERE source = %(source)s AND file = %(file)s;

-- name: save_progress
-- Only from where this batch started: a second process importing the same file at the same time finds the row
-- moved on, and its transaction is rolled back instead of counting the batch twice.
UPDATE bulk_import_file
   SET byte_offset = %(byte_offset)s, line_no = %(line_no)s, complete = %(complete)s,
       created = created + %(created)s, updated = updated + %(updated)s, unchanged = unchanged + %(unchanged)s,
       invalid = invalid + %(invalid)s, skipped = skipped + %(skipped)s, updated_at = %(now)s
 WHERE source = %(source)s AND file = %(file)s AND byte_offset = %(from_offset)s AND NOT complete
RETURNING 1;

-- name: copy_issues
COPY bulk_import_issue (source, file, line_no, expression, message, recorded_at) FROM STDIN;

-- name: file_counts
SELECT created, updated, unchanged, invalid, skipped
  FROM bulk_import_file
 WHERE source = %(source)s AND file = %(file)s;

-- name: file_issues
SELECT line_no, expression, message
  FROM bulk_import_issue
 WHERE source = %(source)s AND file = %(file)s
 ORDER BY line_no, id
 LIMIT %(limit)s;

-- name: export_job
SELECT status_url, requested_since, manifest, since FROM bulk_export WHERE source = %(source)s;

-- name: save_kick_off
INSERT INTO bulk_export AS e (source, status_url, requested_since, kicked_off_at, updated_at)
VALUES (%(source)s, %(status_url)s, %(requested_since)s, %(now)s, %(now)s)
ON CONFLICT (source) DO UPDATE
   SET status_url = EXCLUDED.status_url, requested_since = EXCLUDED.requested_since,
       kicked_off_at = EXCLUDED.kicked_off_at, manifest = NULL, updated_at = EXCLUDED.updated_at;

-- name: save_manifest
UPDATE bulk_export SET manifest = %(manifest)s, updated_at = %(now)s WHERE source = %(source)s;

-- name: finish_export
-- The export is imported in full: its transactionTime becomes the next _since, and no job runs any more.
UPDATE bulk_export
   SET since = %(since)s, status_url = NULL, manifest = NULL, completed_at = %(now)s, updated_at = %(now)s
 WHERE source = %(source)s;

-- name: forget_export_job
UPDATE bulk_export SET status_url = NULL, manifest = NULL, updated_at = %(now)s WHERE source = %(source)s;
