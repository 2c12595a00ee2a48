"""Assessments in PostgreSQL: facts in, compact assessments out, RiskAssessments rendered when read."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, LiteralString

import orjson
import psycopg
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb, set_json_loads

from service.adapters.postgres.queries import query
from service.adapters.postgres.writeback import queue_writeback
from service.domain.facts import Fact, FactKind
from service.domain.latest_only import LATEST_ONLY_KINDS, UNREAD_KINDS, AsOf
from service.fhir.assessment_record import render_risk_assessment
from service.fhir.jsonio import dumps
from service.fhir.resource_types import INPUT_TYPES
from service.usecases.ports.assessment import AssessmentRow, LatestAssessment
from service.usecases.ports.resources import StoredText

__all__ = [
    "PostgresAssessmentSession",
    "patients_to_rescore",
    "read_risk_assessment",
    "risk_assessment_of_row",
    "risk_assessments_of",
]

Conn = psycopg.Connection[dict[str, Any]]
_KINDS = {kind.value: kind for kind in FactKind}
# The kinds the facts_for_assessment query reads whole, by name rather than as "not cut, not unread": then every
# branch of the query is an index range of (patient_id, kind, effective_date). A stored kind this code does not know
# is skipped by the reader anyway.
_LATEST_ONLY = sorted(kind.value for kind in LATEST_ONLY_KINDS)
_WHOLE = sorted(kind.value for kind in FactKind if kind not in LATEST_ONLY_KINDS | UNREAD_KINDS)


def _json_text(value: Any) -> str:
    return dumps(value).decode()


class PostgresAssessmentSession:
    """One transaction: implements the AssessmentSession port."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    def lock_patients(self, patient_ids: Sequence[str]) -> None:
        """See AssessmentSession."""
        self._conn.execute(query("lock_patients"), {"patient_ids": list(patient_ids)})

    def facts_of(self, patient_ids: Sequence[str]) -> dict[str, list[Fact]]:
        """Each patient's whole record of facts (the patient page; the pipeline reads facts_for_assessment)."""
        return self._facts(query("facts_of_patients"), {"patient_ids": list(patient_ids)})

    def facts_for_assessment(self, patient_ids: Sequence[str], as_of: AsOf) -> dict[str, list[Fact]]:
        """See AssessmentSession."""
        params = {
            "patient_ids": list(patient_ids),
            "latest_only": _LATEST_ONLY,
            "whole": _WHOLE,
            "as_of": as_of.moment,
            "first_day": as_of.first_day,
            "last_day": as_of.last_day,
        }
        return self._facts(query("facts_for_assessment"), params)

    def _facts(self, statement: LiteralString, params: dict[str, Any]) -> dict[str, list[Fact]]:
        out: dict[str, list[Fact]] = defaultdict(list)
        with self._conn.cursor(row_factory=tuple_row) as cur:
            # orjson for the attrs (the normaliser's levels, codes, sites and doses): the standard library's decoder
            # was a tenth of a rescore's reading (issue 15).
            set_json_loads(orjson.loads, cur)
            cur.execute(statement, params)
            for (
                patient_id,
                kind,
                value_num,
                value_text,
                unit,
                effective_date,
                effective_at,
                end_date,
                status,
                attrs,
                source_type,
                source_id,
                recorded_at,
            ) in cur:
                fact_kind = _KINDS.get(kind)
                if fact_kind is None:
                    continue
                out[patient_id].append(
                    Fact(
                        fact_kind,
                        value_num,
                        value_text,
                        unit,
                        effective_date,
                        effective_at,
                        end_date,
                        status,
                        attrs or {},
                        f"{source_type}/{source_id}",
                        recorded_at,
                    )
                )
        return out

    def coverage_of(self, patient_ids: Sequence[str]) -> dict[str, set[str]]:
        """See AssessmentSession."""
        out: dict[str, set[str]] = defaultdict(set)
        params = {"patient_ids": list(patient_ids), "types": sorted(INPUT_TYPES)}
        for row in self._conn.execute(query("coverage_of_patients"), params):
            out[row["patient_id"]].add(row["resource_type"])
        return out

    def latest_assessments(self, patient_ids: Sequence[str]) -> dict[str, LatestAssessment]:
        """See AssessmentSession."""
        rows = self._conn.execute(query("latest_assessments"), {"patient_ids": list(patient_ids)}).fetchall()
        return {r["patient_id"]: LatestAssessment(r["model_version"], r["inputs_hash"], r["sequence_no"]) for r in rows}

    def insert_assessments(self, rows: Sequence[AssessmentRow]) -> None:
        """See AssessmentSession. COPY: a rescore writes thousands of rows per batch."""
        if not rows:
            return
        with self._conn.cursor() as cur, cur.copy(query("copy_assessments")) as copy:
            for r in rows:
                copy.write_row(
                    (
                        r.id,
                        r.patient_id,
                        r.sequence_no,
                        r.model_version,
                        r.inputs_hash,
                        r.assessed_at,
                        r.index_date,
                        r.probability,
                        r.probability_low,
                        r.probability_high,
                        r.band,
                        Jsonb(r.result, dumps=_json_text),
                    )
                )

        # The worklist's read model follows the newest assessment (same transaction, so never out of step).
        ordered = sorted(rows, key=lambda r: r.patient_id)
        self._conn.execute(
            query("upsert_risk_summary"),
            {
                "patient_ids": [r.patient_id for r in ordered],
                "bands": [r.band for r in ordered],
                "probabilities": [r.probability for r in ordered],
                "assessed_at": [r.assessed_at for r in ordered],
            },
        )

    def queue_writeback(self, patient_ids: Sequence[str], now: datetime) -> None:
        """See AssessmentSession."""
        queue_writeback(self._conn, patient_ids, now)


def risk_assessment_of_row(
    assessment_id: str, patient_id: str, model_version: str, inputs_hash: str, result: dict[str, Any]
) -> dict[str, Any]:
    """The RiskAssessment of a compactly stored assessment (migration 0022), rendered from its result."""
    return render_risk_assessment(assessment_id, patient_id, model_version, inputs_hash, result)


def _body(row: dict[str, Any]) -> str:
    if row["body"] is not None:
        return str(row["body"])  # stored before migration 0022: served as stored
    resource = risk_assessment_of_row(
        row["id"], row["patient_id"], row["model_version"], row["inputs_hash"], row["result"]
    )
    return _json_text(resource)


def read_risk_assessment(conn: Conn, assessment_id: str) -> StoredText | None:
    """One RiskAssessment as JSON text (version 1: an assessment never changes)."""
    row = conn.execute(query("read_risk_assessment"), {"id": assessment_id}).fetchone()
    return StoredText(_body(row), 1, row["assessed_at"]) if row else None


def risk_assessments_of(conn: Conn, patient_id: str, limit: int) -> list[str]:
    """A patient's RiskAssessments as JSON text, newest first."""
    rows = conn.execute(query("risk_assessments_of_patient"), {"patient_id": patient_id, "limit": limit})
    return [_body(r) for r in rows]


def patients_to_rescore(conn: Conn, after: str, limit: int, part: int = 0, parts: int = 1) -> list[str]:
    """Patient ids with an augmentation on record, after a keyset position, in one of ``parts`` partitions."""
    rows = conn.execute(query("patients_to_rescore"), {"after": after, "limit": limit, "part": part, "parts": parts})
    return [r["patient_id"] for r in rows]
