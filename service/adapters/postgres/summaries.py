"""The worklist's per-patient summary: who the patient is, written by ingest and by the migration that adds it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from service.adapters.postgres.queries import query
from service.domain.patient import Demographics
from service.fhir.demographics import demographics_of

__all__ = ["backfill_demographics", "upsert_demographics"]


def upsert_demographics(conn: psycopg.Connection[Any], rows: Sequence[Demographics], now: datetime) -> None:
    """Name, MRN, birth date and sex per patient, with the lower-case text the free-text filter searches."""
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            query("upsert_demographics"),
            [
                {
                    "patient_id": r.patient_id,
                    "name": r.name,
                    "mrn": r.mrn,
                    "birth_date": r.birth_date,
                    "sex": r.sex,
                    "search": " ".join(p for p in (r.name, r.mrn) if p).lower(),
                    "now": now,
                }
                # One order for every writer: concurrent batches lock the same rows in the same order.
                for r in sorted(rows, key=lambda r: r.patient_id)
            ],
        )


def backfill_demographics(conn: psycopg.Connection[Any], batch: int = 2000) -> int:
    """Summaries for the Patients already stored when the summary table arrived (migration 0005).

    The MRN is read without the deployment's REFRACTURE_MRN_SYSTEM (migrations have no settings): the identifier
    typed MR, else the first. The next version of each Patient writes it as configured.
    """
    now = datetime.now(UTC)
    done = 0
    with conn.cursor(name="backfill_patients", row_factory=tuple_row) as cur:
        cur.execute(
            "SELECT id, body FROM resource WHERE resource_type = 'Patient' AND NOT entered_in_error ORDER BY id"
        )
        while rows := cur.fetchmany(batch):
            upsert_demographics(conn, [demographics_of(body, None) for _, body in rows], now)
            done += len(rows)
    return done
