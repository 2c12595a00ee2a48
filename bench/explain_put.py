"""bench/explain_put: EXPLAIN (ANALYZE, BUFFERS) of every statement on the single-resource PUT path.

    .venv/bin/python -m bench.explain_put DATABASE_URL [--patient gp123] [--long-patient growth-long]

Runs each statement the API runs for `PUT /fhir/Observation/{id}` (service/adapters/postgres/queries.sql and the
audit insert) with realistic parameters against a grown store (bench/growth leaves one with `--keep`, and calls this
at its last checkpoint with `--explain`), inside a transaction that is rolled back, so the store is left as it was.
Prints each statement's plan, its execution time and its buffers: a statement whose cost grows with the store shows
a Seq Scan or a buffer count that grows from checkpoint to checkpoint.
"""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from service.adapters.postgres.queries import query

_AUDIT = (
    "INSERT INTO audit_event (at, actor, client_id, auth_source, roles, action, what, resource_type, resource_id, "
    "patient_id, outcome, source_ip, request_id, detail) VALUES (%(now)s, 'bench', NULL, 'dev', '{integration-client}',"
    " 'update', 'PUT /fhir/{resource_type}/{resource_id}', 'Observation', %(id)s, %(patient_id)s, 201, '127.0.0.1', "
    "%(request_id)s, NULL)"
)
# COPY cannot be explained: the same rows as one INSERT (COPY is cheaper, never costlier, per row).
_FACT_INSERT = (
    "INSERT INTO fact (patient_id, kind, value_num, unit, effective_date, status, attrs, source_type, source_id, "
    "source_version, recorded_at) VALUES (%(patient_id)s, 'egfr', 61, 'mL/min/{1.73_m2}', date '2026-05-05', 'final', "
    "'{}', 'Observation', %(id)s, 1, %(now)s)"
)


def statements(patient_id: str, resource_id: str, existing: tuple[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, SQL, parameters) of each statement of one PUT, in the order the API runs them."""
    now = datetime.now(UTC)
    body = {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": 61},
    }
    write = {
        "resource_type": "Observation",
        "id": resource_id,
        "version_id": 1,
        "now": now,
        "content_hash": uuid.uuid4().bytes,
        "patient_id": patient_id,
        "status": "final",
        "entered_in_error": False,
        "medication_ref": None,
        "body": Jsonb(body),
    }
    update = {**write, "id": existing[1], "version_id": 3, "patient_id": existing[0]}
    keys = {"types": ["Observation"], "ids": [resource_id]}
    return [
        ("current_versions (a new id)", query("current_versions"), keys),
        ("current_versions (a stored id)", query("current_versions"), {"types": ["Observation"], "ids": [existing[1]]}),
        ("insert_resource", query("insert_resource"), write),
        ("update_resource (a stored id: the history trigger runs)", query("update_resource"), update),
        ("delete_facts_of_sources", query("delete_facts_of_sources"), keys),
        ("copy_facts (as an INSERT)", _FACT_INSERT, {"patient_id": patient_id, "id": resource_id, "now": now}),
        ("mark_patient_changed (claimed)", query("mark_patient_changed"), {"patient_id": patient_id, "now": now,
                                                                           "claimed": True}),
        ("audit_event insert", _AUDIT, {"now": now, "id": resource_id, "patient_id": patient_id,
                                        "request_id": str(uuid.uuid4())}),
        ("claim_given_changes (the relay's, when not claimed in the write)", query("claim_given_changes"),
         {"patient_ids": [patient_id], "now": now}),
    ]  # fmt: skip


def explain(database_url: str, patient_id: str) -> list[tuple[str, float, str]]:
    """Each statement's label, execution time (ms) and plan text, run in one transaction that is rolled back."""
    found: list[tuple[str, float, str]] = []
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT patient_id, id FROM resource WHERE patient_id = %s AND resource_type = 'Observation' LIMIT 1",
            (patient_id,),
        ).fetchone()
        existing = (str(row[0]), str(row[1])) if row else (patient_id, "none")
        for label, sql, given in statements(patient_id, f"explain-{uuid.uuid4().hex[:8]}", existing):
            params = {k: v for k, v in given.items() if f"%({k})s" in sql}
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).fetchall()
            lines = [str(r[0]) for r in rows]
            ms = next(float(x.split(":")[1].split()[0]) for x in lines if x.startswith("Execution Time"))
            found.append((label, ms, "\n".join(lines)))
        conn.rollback()
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url")
    parser.add_argument("--patient", default="gp1234")
    parser.add_argument("--long-patient", default="growth-long")
    args = parser.parse_args()
    for patient in (args.patient, args.long_patient):
        print(f"== a PUT of a new Observation of {patient}")
        for label, ms, plan in explain(args.database_url, patient):
            print(f"-- {label}: {ms:.3f} ms\n{plan}\n")
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
