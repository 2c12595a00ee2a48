"""The Worklist use case over in-memory stores: filters, keyset pages in every order, cursors, counts in scope, the
patient page and the kept searches (the SQL itself: tests/integration/test_worklist.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from service.platform.errors import RefractureError
from service.security.scoping import PatientScope
from service.usecases.ports.worklist import UNASSIGNED, PatientRecords, Sort, WorklistFilters, WorklistRow
from service.usecases.worklist import SEARCH_TTL, Worklist, encode_cursor
from tests.support.fakes import MemorySearchStore, MemoryWorklistStore

NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)
NAMES = ["Zeta", "alpha", "Beta", None, "gamma 100%", "delta"]


def row(n: int, **changes: object) -> WorklistRow:
    values: dict[str, object] = {
        "alert_id": str(uuid.UUID(int=n * 7919 % 1000 + 1)),
        "code": "treatment-gap" if n % 2 else "denosumab-overdue",
        "priority": "urgent" if n % 3 == 0 else "routine",
        "priority_rank": 0 if n % 3 == 0 else 1,
        "status": "open",
        "due_date": date(2026, 1, 1) + timedelta(days=n % 4),  # ties in every order
        "assignee": "nurse" if n % 5 == 0 else None,
        "snoozed_until": None,
        "revision": 1,
        "detail": "",
        "patient_id": f"p{n % 9}",
        "name": NAMES[n % 9 % len(NAMES)],
        "mrn": f"M_{n % 9}",
        "birth_date": None,
        "sex": None,
        "risk_band": "high" if n % 9 < 4 else "low",
        "risk_probability": None if n % 9 == 8 else (n % 9) / 10,
        "last_dose_date": None,
        "last_dose_drug": None,
        "index_date": None,
    }
    values.update(changes)
    return WorklistRow(**values)  # type: ignore[arg-type]


@pytest.fixture
def store() -> MemoryWorklistStore:
    store = MemoryWorklistStore()
    for n in range(40):
        store.add(row(n), organization="Organization/a" if n % 9 < 5 else "Organization/b")
    store.add(row(40, status="closed"))
    return store


def walk(worklist: Worklist, filters: WorklistFilters, sort: Sort, limit: int) -> list[WorklistRow]:
    rows: list[WorklistRow] = []
    cursor = None
    while True:
        page = worklist.page(filters, sort, cursor, limit)
        rows += page.rows
        if page.next_cursor is None:
            return rows
        assert len(page.rows) == limit
        cursor = page.next_cursor


@pytest.mark.parametrize("sort", list(Sort))
@pytest.mark.parametrize("limit", [1, 3, 7, 100])
def test_pages_cover_each_order_exactly_once(store: MemoryWorklistStore, sort: Sort, limit: int) -> None:
    worklist = Worklist(store)
    rows = walk(worklist, WorklistFilters(), sort, limit)
    assert rows == list(worklist.export(WorklistFilters(), sort))
    assert sorted(r.alert_id for r in rows) == sorted(
        r.alert_id for r in store.worklist_rows(WorklistFilters(), Sort.DUE, None, None)
    )
    assert len(rows) == 40  # not the closed one


def test_each_order_is_by_its_key() -> None:
    store = MemoryWorklistStore()
    for n in range(20):
        store.add(row(n))
    everything = WorklistFilters()
    due = list(store.worklist_rows(everything, Sort.DUE, None, None))
    assert [r.due_date for r in due] == sorted(r.due_date for r in due)
    urgent_first = list(store.worklist_rows(everything, Sort.PRIORITY, None, None))
    assert [r.priority_rank for r in urgent_first] == sorted(r.priority_rank for r in urgent_first)
    risky = list(store.worklist_rows(everything, Sort.RISK, None, None))
    assert risky[0].risk_probability == max(r.risk_probability or -1 for r in risky)
    assert risky[-1].risk_probability is None  # no risk sorts last
    names = [r.name_key for r in store.worklist_rows(everything, Sort.NAME, None, None)]
    assert names == sorted(names)
    assert names[0] == ""


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        (WorklistFilters(code="treatment-gap"), lambda r: r.code == "treatment-gap"),
        (WorklistFilters(priority="urgent"), lambda r: r.priority == "urgent"),
        (WorklistFilters(risk_band="low"), lambda r: r.risk_band == "low"),
        (WorklistFilters(assignee=UNASSIGNED), lambda r: r.assignee is None),
        (WorklistFilters(assignee="nurse"), lambda r: r.assignee == "nurse"),
        (WorklistFilters(due_before=date(2026, 1, 2)), lambda r: r.due_date <= date(2026, 1, 2)),
        (WorklistFilters(text="ZETA"), lambda r: r.name == "Zeta"),
        (WorklistFilters(text="%"), lambda r: "%" in (r.name or "")),
        (WorklistFilters(text="m_3"), lambda r: r.mrn == "M_3"),
        (WorklistFilters(text="nobody"), lambda r: False),
        (
            WorklistFilters(scope=PatientScope(everyone=False, organizations=frozenset({"Organization/b"}))),
            lambda r: int(r.patient_id[1:]) >= 5,
        ),
        (
            WorklistFilters(scope=PatientScope(everyone=False, patients=frozenset({"p1"}))),
            lambda r: r.patient_id == "p1",
        ),
    ],
)
def test_each_filter_returns_exactly_the_matching_alerts(
    store: MemoryWorklistStore, filters: WorklistFilters, keep: object
) -> None:
    worklist = Worklist(store)
    every = walk(worklist, WorklistFilters(), Sort.DUE, 100)
    assert walk(worklist, filters, Sort.DUE, 4) == [r for r in every if keep(r)]  # type: ignore[operator]


def test_a_page_reflects_changes_made_since_the_previous_one(store: MemoryWorklistStore) -> None:
    worklist = Worklist(store)
    first = worklist.page(WorklistFilters(), Sort.DUE, None, 5)
    later = list(store.worklist_rows(WorklistFilters(), Sort.DUE, None, None))[7]
    store.add(row(0, alert_id=later.alert_id, status="closed"))
    rest = walk(worklist, WorklistFilters(), Sort.DUE, 100)
    assert first.next_cursor is not None
    second = worklist.page(WorklistFilters(), Sort.DUE, first.next_cursor, 100).rows
    assert later.alert_id not in [r.alert_id for r in second]
    assert len(first.rows) + len(second) == len(rest) == 39


def test_cursors_are_refused_when_not_ours_of_another_sort_or_naming_no_alert(store: MemoryWorklistStore) -> None:
    worklist = Worklist(store)
    cursor = worklist.page(WorklistFilters(), Sort.NAME, None, 2).next_cursor
    assert cursor is not None
    for bad in ["garbage", encode_cursor(Sort.NAME, str(uuid.uuid4()))]:
        with pytest.raises(RefractureError):
            worklist.page(WorklistFilters(), Sort.NAME, bad, 2)
    with pytest.raises(RefractureError):
        worklist.page(WorklistFilters(), Sort.DUE, cursor, 2)


def test_counts_add_up_to_the_worklist_in_scope(store: MemoryWorklistStore) -> None:
    worklist = Worklist(store)
    assert sum(n for _, _, n in worklist.counts()) == 40
    scope = PatientScope(everyone=False, organizations=frozenset({"Organization/a"}))
    in_scope = walk(worklist, WorklistFilters(scope=scope), Sort.DUE, 100)
    assert sum(n for _, _, n in worklist.counts(scope)) == len(in_scope) > 0


def test_the_risk_and_name_orders_leave_out_alerts_without_a_summary() -> None:
    store = MemoryWorklistStore()
    store.add(row(1))
    store.add(row(2), summary=False)
    assert len(list(store.worklist_rows(WorklistFilters(), Sort.DUE, None, None))) == 2
    assert len(list(store.worklist_rows(WorklistFilters(), Sort.NAME, None, None))) == 1


def test_the_patient_page_and_an_unknown_patient() -> None:
    store = MemoryWorklistStore()
    store.set_page("p1", PatientRecords({"name": "Ann"}, None, None, [], [], None))
    assert Worklist(store).patient("p1").summary == {"name": "Ann"}
    with pytest.raises(RefractureError):
        Worklist(store).patient("p2")


def test_a_search_is_its_owners_until_it_expires() -> None:
    searches = MemorySearchStore()
    worklist = Worklist(MemoryWorklistStore(), searches)
    search_id, expires_at = worklist.remember_search("coordinator.one", "x" * 300, NOW)
    assert expires_at == NOW + SEARCH_TTL
    assert worklist.recall_search(search_id, "coordinator.one", NOW) == "x" * 200
    assert worklist.recall_search(search_id, "coordinator.two", NOW) is None
    assert worklist.recall_search("never", "coordinator.one", NOW) is None
    assert worklist.recall_search(search_id, "coordinator.one", expires_at) is None
    worklist.remember_search("coordinator.one", "later", expires_at + timedelta(seconds=1))
    assert search_id not in searches.searches  # the expired ones are dropped


def test_without_a_search_store_nothing_is_recalled() -> None:
    worklist = Worklist(MemoryWorklistStore())
    assert worklist.recall_search("any", "coordinator.one", NOW) is None
    with pytest.raises(RuntimeError):
        worklist.remember_search("coordinator.one", "text", NOW)
