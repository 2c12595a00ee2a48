-- Named queries of the refused-request counts and worklist searches (migration 0015), in queries.sql's format.

-- name: count_refused_request
INSERT INTO refused_request_count (minute, source_ip, what, outcome, requests)
VALUES (%(minute)s, %(source_ip)s, %(what)s, %(outcome)s, 1)
ON CONFLICT (minute, source_ip, what, outcome) DO UPDATE SET requests = refused_request_count.requests + 1;

-- name: purge_refused_requests
DELETE FROM refused_request_count WHERE minute < %(before)s;

-- name: refused_requests_since
SELECT minute, source_ip, what, outcome, requests FROM refused_request_count
 WHERE minute >= %(since)s ORDER BY minute, source_ip, what, outcome;

-- name: purge_worklist_searches
DELETE FROM worklist_search WHERE expires_at < %(now)s;

-- name: save_worklist_search
INSERT INTO worklist_search (id, owner, text, expires_at) VALUES (%(id)s, %(owner)s, %(text)s, %(expires_at)s);

-- name: find_worklist_search
SELECT text FROM worklist_search WHERE id = %(id)s AND owner = %(owner)s AND expires_at > %(now)s;
