"""CDS Hooks in PostgreSQL (migration 0011): a patient's stored state in three indexed reads, token ids, feedback."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, LiteralString

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from service.adapters.postgres.errors import pooled_transaction
from service.adapters.postgres.queries import query
from service.domain.alert_types import AlertType
from service.domain.cds import CdsAlert, PatientState, RiskSummary, factor_of
from service.domain.facts import Fact, FactKind
from service.domain.medication_timeline import events_of
from service.fhir.jsonio import dumps
from service.usecases.ports.cds import CdsFeedback, IssuedCard

__all__ = ["PostgresCdsStore"]

Conn = psycopg.Connection[dict[str, Any]]
_ALERT_CODES = {code.value: code for code in AlertType}


def _query(name: str) -> LiteralString:
    return query(name, "cds.sql")


def _risk(row: dict[str, Any]) -> RiskSummary:
    contributions = row["contributions"] or {}
    return RiskSummary(
        assessment_id=row["id"],
        probability=float(row["probability"]),
        low=float(row["probability_low"]),
        high=float(row["probability_high"]),
        band=row["band"],
        model_version=row["model_version"],
        assessed_on=row["assessed_at"].astimezone(UTC).date(),
        factors=tuple(factor_of(code, float(value)) for code, value in contributions.items()),
        missing=tuple(factor_of(code) for code in row["missing"] or []),
    )


def _fact(row: dict[str, Any]) -> Fact:
    return Fact(
        FactKind(row["kind"]),
        row["value_num"],
        row["value_text"],
        row["unit"],
        row["effective_date"],
        row["effective_at"],
        row["end_date"],
        row["status"],
        row["attrs"] or {},
        f"{row['source_type']}/{row['source_id']}",
        row["recorded_at"],
    )


class PostgresCdsStore:
    """Implements the CdsStore port over a connection pool."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def _transaction(self) -> contextlib.AbstractContextManager[Conn]:
        return pooled_transaction(self._pool)

    def cds_patient_state(self, patient_id: str) -> PatientState:
        """See CdsStore."""
        params = {"patient_id": patient_id}
        with self._transaction() as conn:
            latest = conn.execute(_query("cds_latest_assessment"), params).fetchone()
            alerts = conn.execute(_query("cds_active_alerts"), params).fetchall()
            facts = [_fact(row) for row in conn.execute(_query("cds_medication_facts"), params)]
        return PatientState(
            patient_id,
            _risk(latest) if latest else None,
            tuple(
                CdsAlert(
                    a["id"],
                    _ALERT_CODES[a["code"]],
                    a["status"],
                    a["priority"],
                    a["due_date"],
                    a["detail"],
                    a["episode"],
                )
                for a in alerts
                if a["code"] in _ALERT_CODES
            ),
            tuple(events_of(f for f in facts if f.kind is FactKind.MEDICATION)),
            tuple(f for f in facts if f.kind is not FactKind.MEDICATION),
        )

    def claim_jti(self, issuer: str, jti: str, expires_at: datetime, now: datetime) -> bool:
        """See CdsStore."""
        with self._transaction() as conn:
            row = conn.execute(
                _query("claim_jti"), {"issuer": issuer, "jti": jti, "expires_at": expires_at, "now": now}
            ).fetchone()
        return row is not None

    def record_cds_feedback(self, items: Sequence[CdsFeedback]) -> list[tuple[str | None, str | None]]:
        """See CdsStore."""
        linked: list[tuple[str | None, str | None]] = []
        with self._transaction() as conn:
            for item in items:
                row = conn.execute(
                    _query("insert_cds_feedback"),
                    {
                        "received_at": item.received_at,
                        "caller": item.caller,
                        "service_id": item.service_id,
                        "card": item.card,
                        "outcome": item.outcome,
                        "accepted_suggestions": Jsonb(
                            list(item.accepted_suggestions), dumps=lambda v: dumps(v).decode()
                        ),
                        "override_system": item.override_system,
                        "override_code": item.override_code,
                        "override_comment": item.override_comment,
                        "outcome_at": item.outcome_at,
                    },
                ).fetchone()
                linked.append((row["patient_id"], row["alert_id"]) if row else (None, None))
        return linked

    def record_cds_cards(self, cards: Sequence[IssuedCard], now: datetime) -> None:
        """See CdsStore."""
        with self._transaction() as conn, conn.cursor() as cur:
            cur.executemany(
                _query("insert_cds_card"),
                [
                    {
                        "card": c.card,
                        "service_id": c.service_id,
                        "patient_id": c.patient_id,
                        "alert_id": c.alert_id,
                        "now": now,
                    }
                    for c in cards
                ],
            )
