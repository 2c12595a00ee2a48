"""The worklist API: every filter, sort and page boundary, the counts, CSV export, actions and their conflicts."""

from __future__ import annotations

import base64
import csv
import io
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import psycopg
import pytest
from fastapi.testclient import TestClient

from service.composition.parts import Parts
from service.devtools.local_services import LocalServices
from tests.support.clock import ManualClock
from tests.support.databases import query_one
from tests.support.http import FHIR_JSON
from tests.support.parts import api_app, build_parts
from tests.support.queue import RecordingQueue
from tests.support.settings import make_settings
from tests.support.tokens import AUTH, COORDINATOR
from tests.worklist_data import NOW, TODAY, edge_patient

pytestmark = pytest.mark.integration

USER = "coordinator.one"  # the subject of the test-coordinator token
Item = dict[str, Any]


class Worklist(NamedTuple):
    parts: Parts
    client: TestClient
    url: str
    clock: ManualClock


@pytest.fixture
def wl(services: LocalServices, worklist_url: str) -> Iterator[Worklist]:
    clock = ManualClock(NOW)
    parts = build_parts(make_settings(services, worklist_url), queue=RecordingQueue(), clock=clock)
    with TestClient(headers=COORDINATOR, app=api_app(parts), raise_server_exceptions=False) as client:
        yield Worklist(parts, client, worklist_url, clock)


def everything(client: TestClient, **params: Any) -> list[Item]:
    response = client.get("/api/worklist", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    return list(body["items"])


def ids(items: list[Item]) -> list[str]:
    return [i["alert_id"] for i in items]


# --- filters: each one against the same predicate applied to the unfiltered list ------------------------------


FILTERS: list[tuple[dict[str, Any], Callable[[Item], bool]]] = [
    ({"code": "treatment-gap"}, lambda i: i["code"] == "treatment-gap"),
    ({"code": "denosumab-overdue"}, lambda i: i["code"] == "denosumab-overdue"),
    ({"priority": "urgent"}, lambda i: i["priority"] == "urgent"),
    ({"priority": "routine"}, lambda i: i["priority"] == "routine"),
    ({"risk_band": "high"}, lambda i: i["risk_band"] == "high"),
    ({"risk_band": "low"}, lambda i: i["risk_band"] == "low"),
    ({"due_before": "2026-01-01"}, lambda i: i["due_date"] <= "2026-01-01"),
    ({"q": "zeta"}, lambda i: "zeta" in (i["name"] or "").lower()),
    ({"q": "Z-0002"}, lambda i: i["mrn"] == "Z-0002"),
    ({"q": "%"}, lambda i: "%" in (i["name"] or "") + (i["mrn"] or "")),  # literally a percent sign
    ({"q": "_5"}, lambda i: "_5" in (i["mrn"] or "")),  # literally an underscore
    ({"q": "nobody-is-called-this"}, lambda i: False),
    (
        {"code": "treatment-gap", "risk_band": "moderate"},
        lambda i: i["code"] == "treatment-gap" and i["risk_band"] == "moderate",
    ),
]


@pytest.mark.parametrize(("params", "predicate"), FILTERS, ids=[str(p) for p, _ in FILTERS])
def test_each_filter_returns_exactly_the_matching_alerts(
    wl: Worklist, params: dict[str, Any], predicate: Callable[[Item], bool]
) -> None:
    every = everything(wl.client)
    expected = [i for i in every if predicate(i)]
    assert ids(everything(wl.client, **params)) == ids(expected)


def test_the_loaded_worklist_is_varied_enough_to_test_against(wl: Worklist) -> None:
    every = everything(wl.client)
    assert len(every) >= 30
    assert len({i["code"] for i in every}) >= 5
    assert {i["risk_band"] for i in every} >= {"low", "moderate", "high"}
    assert any(i["name"] is None for i in every)
    assert any(i["overdue"] for i in every)
    assert not all(i["overdue"] for i in every)


def test_state_and_assignee_filters_follow_the_actions(wl: Worklist) -> None:
    every = everything(wl.client)
    first, second, third = every[0], every[1], every[2]
    act(wl.client, first, "acknowledge")
    act(wl.client, second, "assign", assignee="nurse.b")
    act(wl.client, third, "snooze", until=(TODAY + timedelta(days=14)).isoformat())

    assert ids(everything(wl.client, state="acknowledged")) == [first["alert_id"]]
    assert ids(everything(wl.client, state="assigned")) == [second["alert_id"]]
    assert ids(everything(wl.client, state="snoozed")) == [third["alert_id"]]
    assert len(everything(wl.client, state="open")) == len(every) - 3
    assert ids(everything(wl.client, assignee="nurse.b")) == [second["alert_id"]]
    assert second["alert_id"] not in ids(everything(wl.client, assignee="-"))
    assert len(everything(wl.client, assignee="-")) == len(every) - 1
    assert everything(wl.client, assignee="nurse.nobody") == []


@pytest.mark.parametrize(
    "params",
    [
        {"code": "not-an-alert"},
        {"priority": "high"},
        {"state": "resolved"},  # closed alerts are not on the worklist
        {"risk_band": "extreme"},
        {"due_before": "yesterday"},
        {"sort": "age"},
        {"limit": 0},
        {"limit": 501},
        {"q": "x" * 201},
    ],
)
def test_bad_filters_get_a_clear_400(wl: Worklist, params: dict[str, Any]) -> None:
    response = wl.client.get("/api/worklist", params=params)
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert next(iter(params)) in outcome["issue"][0]["details"]["text"]


# --- sorts and keyset pages --------------------------------------------------------------------------------------


def _risk_key(i: Item) -> tuple[float, str, str]:
    return (-(i["risk_probability"] if i["risk_probability"] is not None else -1.0), i["patient_id"], i["alert_id"])


SORTS: dict[str, Callable[[Item], Any]] = {
    "due": lambda i: (i["due_date"], i["alert_id"]),
    "priority": lambda i: (0 if i["priority"] == "urgent" else 1, i["due_date"], i["alert_id"]),
    "risk": _risk_key,
    # Names sort in the database's collation; test_name_order_is_the_databases checks that part.
    "name": lambda i: (i["patient_id"], i["alert_id"]),
}


def collated(database_url: str, names: list[str]) -> list[str]:
    with psycopg.connect(database_url) as conn:
        return [r[0] for r in conn.execute("SELECT n FROM unnest(%s::text[]) AS n ORDER BY n", (names,))]


def walk(client: TestClient, limit: int, **params: Any) -> tuple[list[Item], int]:
    """Every page in turn; the items and how many pages it took."""
    items: list[Item] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/worklist", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        assert len(body["items"]) <= limit
        if body["next_cursor"]:
            assert len(body["items"]) == limit  # only a full page can have a next one
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages


@pytest.mark.parametrize("sort", list(SORTS))
def test_each_sort_orders_by_its_key_and_pages_cover_it_exactly_once(wl: Worklist, sort: str) -> None:
    every = everything(wl.client, sort=sort)
    if sort == "name":
        by_name: dict[str, list[Item]] = {}
        for i in every:
            by_name.setdefault((i["name"] or "").lower(), []).append(i)
        assert list(by_name) == collated(wl.url, list(by_name))  # each name once, in collation order
        assert ids(every) == [i["alert_id"] for group in by_name.values() for i in sorted(group, key=SORTS[sort])]
    else:
        assert ids(every) == ids(sorted(every, key=SORTS[sort]))
    if sort == "due":  # overdue first
        overdue = [i["overdue"] for i in every]
        assert overdue == sorted(overdue, reverse=True)
    total = len(every)
    for limit in (1, 2, 7, total - 1, total, total + 1):
        items, pages = walk(wl.client, limit, sort=sort)
        assert ids(items) == ids(every), f"limit {limit}"
        # A page boundary exactly at the end gives no empty last page.
        assert pages == -(-total // limit), f"limit {limit}"


def test_ties_in_the_sort_key_neither_repeat_nor_skip_across_pages(wl: Worklist) -> None:
    # The two Zeta patients share name and due date: the alert id breaks the tie.
    zetas = everything(wl.client, q="zeta", code="denosumab-overdue", sort="name")
    assert len(zetas) == 2
    assert zetas[0]["name"] == zetas[1]["name"]
    assert zetas[0]["due_date"] == zetas[1]["due_date"]
    for sort in ("name", "due"):
        items, pages = walk(wl.client, 1, q="zeta", code="denosumab-overdue", sort=sort)
        assert sorted(ids(items)) == sorted(ids(zetas))
        assert pages == 2


def test_filters_apply_across_pages(wl: Worklist) -> None:
    items, _ = walk(wl.client, 3, priority="urgent", sort="risk")
    assert ids(items) == ids(everything(wl.client, priority="urgent", sort="risk"))


def test_a_page_reflects_changes_made_since_the_previous_one(wl: Worklist) -> None:
    first = wl.client.get("/api/worklist", params={"limit": 5}).json()
    dismissed = first["items"][0]
    act(wl.client, dismissed, "dismiss", reason="treated elsewhere")
    rest, _ = walk(wl.client, 5, cursor=first["next_cursor"])
    # Keyset pages carry on from the last row seen: nothing is skipped because a row before it left.
    expected = [i for i in everything(wl.client) if i["alert_id"] not in ids(first["items"])]
    assert ids(rest) == ids(expected)


@pytest.mark.parametrize("cursor", ["garbage", "WyJkdWUiXQ", "W10", "eyJhIjoxfQ"])
def test_a_cursor_that_is_not_ours_gets_a_400(wl: Worklist, cursor: str) -> None:
    response = wl.client.get("/api/worklist", params={"cursor": cursor})
    assert response.status_code == 400
    assert "cursor" in response.json()["issue"][0]["details"]["text"]


@pytest.mark.parametrize("sort", ["due", "priority", "risk", "name"])
def test_cursors_carry_nothing_of_the_patient(wl: Worklist, sort: str) -> None:
    # The name order's cursor was base64 JSON holding the last patient's name (and the risk and name orders' held
    # the patient id): cursors travel in URLs, which proxies and browsers keep.
    page = wl.client.get("/api/worklist", params={"limit": 3, "sort": sort}).json()
    cursor = page["next_cursor"]
    decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    for item in page["items"]:
        for value in (item["name"], item["mrn"], item["patient_id"]):
            if value:
                assert value.lower() not in decoded.lower()
                assert value.lower() not in cursor.lower()
    assert json.loads(decoded) == [sort, page["items"][-1]["alert_id"]]


def test_a_cursor_naming_no_alert_gets_a_400(wl: Worklist) -> None:
    cursor = base64.urlsafe_b64encode(json.dumps(["due", str(uuid.uuid4())]).encode()).decode().rstrip("=")
    response = wl.client.get("/api/worklist", params={"cursor": cursor})
    assert response.status_code == 400
    assert "cursor" in response.json()["issue"][0]["details"]["text"]


def test_a_cursor_of_another_sort_gets_a_400(wl: Worklist) -> None:
    cursor = wl.client.get("/api/worklist", params={"limit": 2, "sort": "risk"}).json()["next_cursor"]
    response = wl.client.get("/api/worklist", params={"cursor": cursor, "sort": "name"})
    assert response.status_code == 400


# --- what each row carries, counts, CSV ---------------------------------------------------------------------------


def test_rows_carry_the_patient_the_risk_and_the_last_dose(wl: Worklist) -> None:
    [row] = everything(wl.client, q="Z-0001", code="denosumab-overdue")
    assert row["name"] == "Zeta, Ines"
    assert row["sex"] == "female"
    assert row["mrn"] == "Z-0001"
    assert row["age"] == 84  # born 1941-07-30, on 2026-05-04
    assert row["code"] == "denosumab-overdue"
    assert row["title"] == "Denosumab dose overdue"
    assert row["priority"] == "urgent"
    assert row["state"] == "open"
    assert row["assignee"] is None
    assert row["last_dose_drug"] == "denosumab-60mg"
    assert row["last_dose_date"] == (TODAY - timedelta(days=240)).isoformat()
    assert row["risk_band"] in ("low", "moderate", "high")
    assert 0 < row["risk_probability"] < 1
    assert row["index_date"] == (TODAY - timedelta(days=280)).isoformat()
    assert row["overdue"] is (date.fromisoformat(row["due_date"]) < TODAY)


def test_counts_per_code_and_priority_add_up_to_the_worklist(wl: Worklist) -> None:
    every = everything(wl.client)
    counts = wl.client.get("/api/worklist/counts").json()
    assert {(c["code"], c["priority"]): c["open"] for c in counts} == Counter((i["code"], i["priority"]) for i in every)
    assert all(c["title"] for c in counts)
    act(wl.client, every[0], "dismiss", reason="duplicate record")
    after = wl.client.get("/api/worklist/counts").json()
    assert sum(c["open"] for c in after) == len(every) - 1


def test_csv_exports_exactly_the_current_filter(wl: Worklist) -> None:
    response = wl.client.get("/api/worklist.csv", params={"priority": "urgent", "sort": "name"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    expected = everything(wl.client, priority="urgent", sort="name")
    assert [r["alert_id"] for r in rows] == ids(expected)
    assert rows[0]["title"] == expected[0]["title"]
    assert rows[0]["mrn"] == (expected[0]["mrn"] or "")
    assert wl.client.get("/api/worklist.csv", params={"code": "nope"}).status_code == 400
    empty = wl.client.get("/api/worklist.csv", params={"q": "nobody-is-called-this"})
    assert empty.text.strip().count("\n") == 0  # the header alone


HOSTILE_CELLS = ['=HYPERLINK("https://evil.example/","x")', "+1+1", "-2+3", "@SUM(1)", "\tx", "\rx", "＝1+1", "＠x"]


def test_csv_cells_a_spreadsheet_would_run_are_neutralised(wl: Worklist) -> None:
    # OWASP CSV Injection: names, MRNs and assignees starting with = + - @ TAB CR (or full-width = + - @) were
    # exported as they came, so a spreadsheet ran "=HYPERLINK(...)" as a formula.
    fhir = {"Authorization": AUTH["Authorization"], **FHIR_JSON}
    names = {}
    for n, hostile in enumerate(HOSTILE_CELLS):
        pid = f"csv-{n}"
        bundle = edge_patient(pid, {"family": hostile}, hostile, 240)
        assert wl.client.post("/fhir", content=json.dumps(bundle), headers=fhir).status_code == 200
        names[pid] = hostile
    wl.parts.changes.process(list(names))
    item = everything(wl.client, q="Z-0001")[0]
    act(wl.client, item, "assign", assignee="=cmd|' /C calc'!A0")

    response = wl.client.get("/api/worklist.csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    by_patient = {r["patient_id"]: r for r in rows}
    for pid, hostile in names.items():
        assert by_patient[pid]["name"] == "'" + hostile, pid
        assert by_patient[pid]["mrn"] == "'" + hostile, pid
    assert next(r for r in rows if r["alert_id"] == item["alert_id"])["assignee"] == "'=cmd|' /C calc'!A0"
    for row in rows:
        for column, cell in row.items():
            assert not cell.startswith(tuple("=+-@\t\r＝＋－＠")), (column, cell)
    # Every cell is quoted too, so a separator inside a cell cannot start a new one.
    assert all(record.startswith('"') for record in response.text.split("\r\n") if record)


# --- actions -------------------------------------------------------------------------------------------------------


def act(client: TestClient, item: Item, action: str, expect: int = 200, **fields: Any) -> dict[str, Any]:
    response = client.post(f"/api/alerts/{item['alert_id']}/actions", json={"action": action, **fields})
    assert response.status_code == expect, response.text
    return dict(response.json())


def test_every_action_is_kept_with_who_and_when(wl: Worklist) -> None:
    item = everything(wl.client, q="Z-0001", code="denosumab-overdue")[0]
    until = (TODAY + timedelta(days=10)).isoformat()
    steps = [
        ("acknowledge", {}, "acknowledged"),
        ("assign", {"assignee": "nurse.b"}, "assigned"),
        ("note", {"note": "left a voicemail"}, "assigned"),
        ("snooze", {"until": until}, "snoozed"),
        ("dismiss", {"reason": "patient declined treatment"}, "dismissed"),
        ("reopen", {}, "open"),
    ]
    for action, fields, state in steps:
        alert = act(wl.client, item, action, **fields)
        assert alert["state"] == state, action
    history = alert["history"]
    assert [e["action"] for e in history] == ["opened", *[a for a, _, _ in steps]]
    assert all(e["actor"] == USER for e in history[1:])
    assert all(e["at"].startswith(TODAY.isoformat()) for e in history)
    notes = {e["action"]: e["note"] for e in history}
    assert notes["assign"] == "nurse.b"
    assert notes["note"] == "left a voicemail"
    assert notes["snooze"] == until
    assert notes["dismiss"] == "patient declined treatment"
    assert alert["revision"] == 1 + len(steps)
    # The patient page shows the same history.
    page = wl.client.get(f"/api/patients/{item['patient_id']}").json()
    [shown] = [a for a in page["alerts"] if a["id"] == item["alert_id"]]
    assert [e["action"] for e in shown["history"]] == [e["action"] for e in history]


def test_actions_that_do_not_fit_get_a_clear_refusal(wl: Worklist) -> None:
    item = everything(wl.client)[0]
    for action, fields in [
        ("dismiss", {}),  # a reason is required
        ("dismiss", {"reason": "   "}),
        ("assign", {}),  # to whom?
        ("snooze", {}),  # until when?
        ("snooze", {"until": (TODAY - timedelta(days=1)).isoformat()}),  # not in the past
        ("reopen", {}),  # it is open
    ]:
        response = wl.client.post(f"/api/alerts/{item['alert_id']}/actions", json={"action": action, **fields})
        assert response.status_code in (409, 422), (action, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    assert wl.client.post(f"/api/alerts/{item['alert_id']}/actions", json={"action": "delete"}).status_code == 400
    unknown = "00000000-0000-0000-0000-000000000000"
    assert wl.client.post(f"/api/alerts/{unknown}/actions", json={"action": "acknowledge"}).status_code == 404
    assert wl.client.post("/api/alerts/not-a-uuid/actions", json={"action": "acknowledge"}).status_code == 404
    # None of these changed the alert.
    assert everything(wl.client)[0]["revision"] == item["revision"]


def test_an_action_on_a_stale_revision_is_refused_not_applied(wl: Worklist) -> None:
    item = everything(wl.client)[0]
    act(wl.client, item, "assign", assignee="nurse.b", revision=item["revision"])
    # A second coordinator still looking at the old revision.
    refused = act(wl.client, item, "dismiss", expect=409, reason="not needed", revision=item["revision"])
    assert "reload" in refused["issue"][0]["details"]["text"]
    [now] = [i for i in everything(wl.client) if i["alert_id"] == item["alert_id"]]
    assert now["state"] == "assigned"
    assert now["assignee"] == "nurse.b"


def test_simultaneous_conflicting_actions_let_exactly_one_through(wl: Worklist) -> None:
    item = everything(wl.client)[0]
    barrier = threading.Barrier(2)
    results: dict[str, int] = {}

    def send(action: str, fields: dict[str, Any]) -> None:
        barrier.wait()
        body = {"action": action, "revision": item["revision"], **fields}
        results[action] = wl.client.post(f"/api/alerts/{item['alert_id']}/actions", json=body).status_code

    threads = [
        threading.Thread(target=send, args=("dismiss", {"reason": "already on treatment elsewhere"})),
        threading.Thread(target=send, args=("assign", {"assignee": "nurse.c"})),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == [200, 409]
    winner = next(a for a, s in results.items() if s == 200)
    events = query_one(
        wl.url, "SELECT count(*) FROM alert_event WHERE alert_id = %s::uuid AND action <> 'opened'", item["alert_id"]
    )
    assert events == 1
    assert query_one(wl.url, "SELECT status FROM alert WHERE id = %s::uuid", item["alert_id"]) == (
        "dismissed" if winner == "dismiss" else "assigned"
    )


def test_an_action_updates_the_patients_care_plan(wl: Worklist) -> None:
    item = everything(wl.client, q="Z-0002", code="denosumab-overdue")[0]
    act(wl.client, item, "snooze", until=(TODAY + timedelta(days=30)).isoformat())
    page = wl.client.get(f"/api/patients/{item['patient_id']}").json()
    [activity] = [a for a in page["care_plan_activities"] if a["alert"] == item["code"]]
    assert activity["status"] == "on-hold"


# --- the patient ---------------------------------------------------------------------------------------------------


def test_the_patient_endpoint_has_everything_the_page_shows(wl: Worklist) -> None:
    item = everything(wl.client, q="Z-0001", code="denosumab-overdue")[0]
    page = wl.client.get(f"/api/patients/{item['patient_id']}").json()
    assert page["name"] == "Zeta, Ines"
    assert page["mrn"] == "Z-0001"
    assert page["age"] == 84
    risk = page["risk"]
    assert risk["band"] == item["risk_band"]
    # The RiskAssessment states two significant figures; the list keeps four decimals to sort by.
    assert risk["probability"] == pytest.approx(item["risk_probability"], rel=0.05)
    assert risk["contributions"]
    assert risk["missing"]
    assert risk["explanation"]
    assert risk["index"]["method"] == "PKP"
    [alert] = [a for a in page["alerts"] if a["id"] == item["alert_id"]]
    assert alert["evidence"]
    assert alert["history"][0]["action"] == "opened"
    assert [(m["drug"], m["event"]) for m in page["medications"]] == [("denosumab-60mg", "administration")]
    assert any(a["alert"] == "denosumab-overdue" for a in page["care_plan_activities"])


def test_an_unknown_patient_is_a_404(wl: Worklist) -> None:
    response = wl.client.get("/api/patients/nobody")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


def test_overdue_is_counted_in_the_hospitals_time_zone(services: LocalServices, worklist_url: str) -> None:
    # 23:30 UTC on the 3rd is already the 4th in Berlin: an alert due on the 3rd is overdue there.
    late_evening = ManualClock(datetime(2026, 5, 3, 23, 30, tzinfo=UTC))
    berlin = build_parts(
        make_settings(services, worklist_url, timezone="Europe/Berlin"), queue=RecordingQueue(), clock=late_evening
    )
    utc = build_parts(make_settings(services, worklist_url), queue=RecordingQueue(), clock=late_evening)
    try:
        assert berlin.core.today() == date(2026, 5, 4)
        assert utc.core.today() == date(2026, 5, 3)
        with TestClient(headers=AUTH, app=api_app(berlin)) as client:
            due_on_the_3rd = [i for i in everything(client) if i["due_date"] == "2026-05-03"]
            assert all(i["overdue"] for i in due_on_the_3rd)
    finally:
        utc.close()
