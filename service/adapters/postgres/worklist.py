"""Worklist reads: open alerts joined with the patient summary, filtered and ordered for keyset pages.

The SQL is composed from fixed fragments (psycopg.sql): a fragment per filter actually given, so the planner sees
each query's real shape and uses the partial indexes; every value is a parameter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from service.domain.facts import Fact
from service.fhir.assessment_record import render_risk_assessment
from service.security.scoping import PatientScope
from service.usecases.ports.worklist import UNASSIGNED, PatientRecords, Sort, WorklistFilters, WorklistRow

__all__ = ["patient_page", "worklist_counts", "worklist_position", "worklist_rows"]

Conn = psycopg.Connection[dict[str, Any]]

_COLUMNS: Final = """
SELECT a.id::text AS alert_id, a.code, a.priority, a.priority_rank, a.status, a.due_date, a.assignee,
       a.snoozed_until, a.revision, a.detail, a.patient_id, s.name, s.mrn, s.birth_date, s.sex, s.risk_band,
       s.risk_probability, s.last_dose_date, s.last_dose_drug, s.index_date,
       coalesce(lower(s.name), '') AS name_key, -coalesce(s.risk_probability, -1) AS risk_key
  FROM alert a """
_ACTIVE: Final = " WHERE a.status IN ('open', 'acknowledged', 'assigned', 'snoozed')"
# The due and priority orders walk the alert indexes; the risk and name orders walk the patient summaries' indexes
# and fetch each patient's few alerts, which needs an inner join (every alert's patient has a summary: the
# evaluation that opens an alert writes it, and migration 0005 wrote it for older ones).
_FROM: Final[dict[Sort, sql.Composable]] = {
    Sort.DUE: sql.SQL(_COLUMNS + "LEFT JOIN patient_summary s ON s.patient_id = a.patient_id" + _ACTIVE),
    Sort.PRIORITY: sql.SQL(_COLUMNS + "LEFT JOIN patient_summary s ON s.patient_id = a.patient_id" + _ACTIVE),
    Sort.RISK: sql.SQL(_COLUMNS + "JOIN patient_summary s ON s.patient_id = a.patient_id" + _ACTIVE),
    Sort.NAME: sql.SQL(_COLUMNS + "JOIN patient_summary s ON s.patient_id = a.patient_id" + _ACTIVE),
}

_RISK: Final = sql.SQL("(-coalesce(s.risk_probability, -1))")
_NAME: Final = sql.SQL("coalesce(lower(s.name), '')")
_KEYS: Final[dict[Sort, list[sql.Composable]]] = {
    Sort.DUE: [sql.SQL("a.due_date"), sql.SQL("a.id")],
    Sort.PRIORITY: [sql.SQL("a.priority_rank"), sql.SQL("a.due_date"), sql.SQL("a.id")],
    Sort.RISK: [_RISK, sql.SQL("s.patient_id"), sql.SQL("a.id")],
    Sort.NAME: [_NAME, sql.SQL("s.patient_id"), sql.SQL("a.id")],
}


def _where(filters: WorklistFilters) -> tuple[list[sql.Composable], dict[str, Any]]:
    parts: list[sql.Composable] = []
    params: dict[str, Any] = {}

    def add(fragment: str, name: str, value: Any) -> None:
        parts.append(sql.SQL(fragment))
        params[name] = value

    if filters.code:
        add("a.code = %(code)s", "code", filters.code)
    if filters.priority:
        add("a.priority = %(priority)s", "priority", filters.priority)
    if filters.state:
        add("a.status = %(state)s", "state", filters.state)
    if filters.assignee == UNASSIGNED:
        parts.append(sql.SQL("a.assignee IS NULL"))
    elif filters.assignee:
        add("a.assignee = %(assignee)s", "assignee", filters.assignee)
    if filters.due_before:
        add("a.due_date <= %(due_before)s", "due_before", filters.due_before)
    if filters.risk_band:
        add("s.risk_band = %(risk_band)s", "risk_band", filters.risk_band)
    if filters.scope is not None and not filters.scope.everyone:
        parts.append(sql.SQL(_IN_SCOPE))
        params.update(_scope_params(filters.scope))
    if filters.text:
        # LIKE metacharacters in the text are taken literally.
        escaped = filters.text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        add("s.search LIKE %(text)s", "text", f"%{escaped}%")
    return parts, params


# A patient is in scope when named (launch context, break-the-glass) or managed by one of the scope's Organizations.
_IN_SCOPE: Final = (
    "(a.patient_id = ANY(%(scope_patients)s) OR EXISTS (SELECT 1 FROM resource p WHERE p.resource_type = 'Patient' "
    "AND p.id = a.patient_id AND p.body -> 'managingOrganization' ->> 'reference' = ANY(%(scope_organizations)s)))"
)


def _scope_params(scope: PatientScope) -> dict[str, Any]:
    return {"scope_patients": sorted(scope.patients), "scope_organizations": sorted(scope.organizations)}


def _after(sort: Sort, keys: list[sql.Composable], after: Sequence[Any], params: dict[str, Any]) -> sql.Composable:
    """Rows after a keyset position. A row comparison across the summary and the alert cannot use the summary's
    index, so the risk and name orders say it in two parts: the patient part (indexed) and the alert id within."""
    names = [f"k{i}" for i in range(len(after))]
    params.update(zip(names, after, strict=True))
    marks = [sql.Placeholder(n) for n in names]
    if sort in (Sort.RISK, Sort.NAME):
        return sql.SQL("({k0}, {k1}) >= ({p0}, {p1}) AND (({k0}, {k1}) > ({p0}, {p1}) OR {k2} > {p2})").format(
            k0=keys[0], k1=keys[1], k2=keys[2], p0=marks[0], p1=marks[1], p2=marks[2]
        )
    return sql.SQL("({}) > ({})").format(sql.SQL(", ").join(keys), sql.SQL(", ").join(marks))


def worklist_rows(
    conn: Conn, filters: WorklistFilters, sort: Sort, after: Sequence[Any] | None, limit: int | None
) -> Iterator[WorklistRow]:
    """Open alerts in order; a server-side cursor streams them when there is no limit (CSV export)."""
    parts, params = _where(filters)
    keys = _KEYS[sort]
    if after is not None:
        parts.append(_after(sort, keys, after, params))
    statement = sql.Composed(
        [_FROM[sort], *[sql.SQL(" AND ") + p for p in parts], sql.SQL(" ORDER BY "), sql.SQL(", ").join(keys)]
    )
    if limit is not None:
        statement = statement + sql.SQL(" LIMIT {}").format(sql.Literal(limit))
    # A server-side cursor streams an export of any size; a page is small enough to fetch at once.
    cursor = (
        conn.cursor(row_factory=dict_row) if limit is not None else conn.cursor("worklist_export", row_factory=dict_row)
    )
    with cursor as cur:
        cur.execute(statement, params)
        for row in cur:
            yield WorklistRow(**row)


def worklist_position(conn: Conn, sort: Sort, alert_id: str) -> list[Any] | None:
    """The sort key of an alert's row, as the keyset columns compute it (the alert id comes from a cursor)."""
    columns = [sql.SQL("{} AS {}").format(key, sql.Identifier(f"k{i}")) for i, key in enumerate(_KEYS[sort])]
    statement = sql.SQL(
        "SELECT {} FROM alert a LEFT JOIN patient_summary s ON s.patient_id = a.patient_id WHERE a.id = %(id)s"
    ).format(sql.SQL(", ").join(columns))
    row = conn.execute(statement, {"id": alert_id}).fetchone()
    return [row[f"k{i}"] for i in range(len(_KEYS[sort]))] if row is not None else None


def worklist_counts(conn: Conn, scope: PatientScope | None = None) -> list[tuple[str, str, int]]:
    """Open alerts per code and priority (of the patients in scope)."""
    if scope is not None and not scope.everyone:
        statement = sql.SQL(
            "SELECT code, priority, count(*) AS n FROM alert a WHERE status IN ('open', 'acknowledged', 'assigned', "
            "'snoozed') AND {} GROUP BY code, priority ORDER BY code, priority"
        ).format(sql.SQL(_IN_SCOPE))
        rows = conn.execute(statement, _scope_params(scope)).fetchall()
    else:
        rows = conn.execute(
            "SELECT code, priority, count(*) AS n FROM alert WHERE status IN ('open', 'acknowledged', 'assigned', "
            "'snoozed') GROUP BY code, priority ORDER BY code, priority"
        ).fetchall()
    return [(r["code"], r["priority"], int(r["n"])) for r in rows]


def _risk_assessment(patient_id: str, row: dict[str, Any]) -> dict[str, Any]:
    """As stored (before migration 0022), or rendered from the compact result."""
    if row["resource"] is not None:
        return dict(row["resource"])
    return render_risk_assessment(row["id"], patient_id, row["model_version"], row["inputs_hash"], row["result"])


def patient_page(conn: Conn, patient_id: str, facts: dict[str, list[Fact]]) -> PatientRecords:
    """The patient page's content in a handful of queries."""
    summary = conn.execute("SELECT * FROM patient_summary WHERE patient_id = %s", (patient_id,)).fetchone()
    latest = conn.execute(
        "SELECT id::text AS id, model_version, inputs_hash, resource, result FROM assessment WHERE patient_id = %s "
        "ORDER BY sequence_no DESC LIMIT 1",
        (patient_id,),
    ).fetchone()
    alerts = conn.execute(
        "SELECT id::text AS id, code, status, priority, due_date, evidence, detail, assignee, snoozed_until, "
        "dismiss_reason, opened_at, closed_at, revision FROM alert WHERE patient_id = %s "
        "ORDER BY closed_at IS NOT NULL, due_date, opened_at",
        (patient_id,),
    ).fetchall()
    history: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if alerts:
        for event in conn.execute(
            "SELECT alert_id::text AS alert_id, at, actor, action, from_status, to_status, note FROM alert_event "
            "WHERE alert_id = ANY(%s::uuid[]) ORDER BY at, id",
            ([a["id"] for a in alerts],),
        ):
            history[event["alert_id"]].append(dict(event))
    plan = conn.execute("SELECT resource FROM care_plan WHERE patient_id = %s", (patient_id,)).fetchone()
    return PatientRecords(
        summary=dict(summary) if summary else None,
        risk_assessment=_risk_assessment(patient_id, latest) if latest else None,
        assessment_result=latest["result"] if latest else None,
        alerts=[{**dict(a), "history": history.get(a["id"], [])} for a in alerts],
        facts=facts.get(patient_id, []),
        care_plan=dict(plan["resource"]) if plan else None,
    )
