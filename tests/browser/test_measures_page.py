"""The FLS lead's quality-measures page in a real browser: each measure's chart (trend line, target lines) for every
site and for one site, the drill-down to the patients behind a count (role-checked, audited) and the CSV export.

Synthetic timelines with known answers (tests/measure_data.py, docs/measures.md) are loaded through the FHIR API and
the monthly MeasureReports kept as `refracture measures` would, before the page is opened.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, expect

from service.devtools.local_services import LocalServices
from service.domain.fls_measures import Period, months
from tests.measure_data import TIMELINES, Timeline, patient_bundle
from tests.support.clock import ManualClock
from tests.support.databases import query_one
from tests.support.http import FHIR_JSON
from tests.support.parts import api_app, build_parts
from tests.support.queue import RecordingQueue
from tests.support.servers import serving
from tests.support.settings import make_settings
from tests.support.tokens import AUTH, TOKENS

pytestmark = pytest.mark.integration

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
YEAR = Period(date(2025, 1, 1), date(2025, 12, 31))
LEAD_TOKEN = "test-fls-lead"  # fls.lead, every site (tests/support/tokens.py)
NORTH_TOKEN = "north-lead"  # lead.north, the north site only
COORDINATOR_TOKEN = "test-coordinator"  # no measures role

# February, on top of January's timelines: n3 north has a DXA (day 15) and denosumab, s3 south has nothing.
# DXA within 12 weeks, every site: January 1 of 3 (33 %), February 1 of 2 (50 %); north alone: 50 % then 100 %.
FEBRUARY: list[Timeline] = [
    ("n3", "north-hospital", "1950-06-01", date(2025, 2, 5), date(2025, 2, 20), [date(2025, 2, 10)]),
    ("s3", "south", "1950-06-01", date(2025, 2, 12), None, []),
]


@pytest.fixture
def measures_server(services: LocalServices, database_url: str) -> Iterator[str]:
    """The service in a real HTTP server over the timelines, with the year's monthly reports kept."""
    tokens = {**TOKENS, NORTH_TOKEN: {"sub": "lead.north", "roles": ["fls-lead"], "sites": ["north"]}}
    settings = make_settings(
        services, database_url, auth_dev_tokens=tokens, sites={"north": ["Organization/north-hospital"]}
    )
    parts = build_parts(settings, queue=RecordingQueue(), clock=ManualClock(NOW))
    try:
        with TestClient(headers=AUTH, app=api_app(parts)) as client:
            for timeline in [*TIMELINES, *FEBRUARY]:
                answer = client.post(
                    "/fhir",
                    content=json.dumps(patient_bundle(*timeline)),
                    headers=FHIR_JSON,
                )
                assert answer.status_code == 200, answer.text
            parts.changes.process([t[0] for t in [*TIMELINES, *FEBRUARY]])
            parts.measures.evaluate(YEAR, months(YEAR))  # what the monthly `refracture measures` keeps
            with serving(api_app(parts), log_level="warning") as url:
                yield url
    finally:
        parts.close()


def sign_in(page: Page, server: str, token: str, path: str = "/worklist/measures?year=2025") -> None:
    page.goto(f"{server}{path}")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_the_lead_reads_the_charts_drills_down_and_exports(
    page: Page, measures_server: str, database_url: str, artifacts: Path
) -> None:
    sign_in(page, measures_server, LEAD_TOKEN)
    expect(page.get_by_role("heading", level=1)).to_have_text("Fracture-liaison quality measures, 2025 · every site")

    # A chart per measure, drawn and sized for a laptop.
    charts = page.locator("figure svg[role=img]")
    expect(charts).to_have_count(12)
    dxa = page.locator("section#fls-dxa-12w")
    chart = dxa.locator("svg[role=img]")
    expect(chart).to_be_visible()
    box = chart.bounding_box()
    assert box is not None
    assert box["width"] > 400
    assert box["height"] > 100
    # The trend: January 33 % (1 of 3), February 50 % (1 of 2), joined by a line; IOF's two target lines.
    expect(chart.locator("desc")).to_contain_text("Jan: 33 %; Feb: 50 %")
    expect(chart.locator("desc")).to_contain_text("Targets: 50 %, 80 %")
    assert chart.locator("polyline").count() >= 1
    expect(chart.locator("line.target")).to_have_count(2)
    expect(chart.locator("text", has_text="target 80 %")).to_be_visible()
    # The line goes up from January to February: SVG y grows downwards.
    points = chart.locator("circle.point")
    assert points.count() >= 2
    january, february = (float(points.nth(n).get_attribute("cy") or "nan") for n in (0, 1))
    assert february < january
    january_row = dxa.locator("tbody tr", has=page.get_by_role("rowheader", name="Jan"))
    expect(january_row).to_contain_text("denominator 3")
    expect(january_row).to_contain_text("numerator 1")
    expect(january_row).to_contain_text("33 %")
    page.screenshot(path=str(artifacts / "measures-every-site.png"), full_page=True)

    # One site: the north hospital's charts (two of its patients in January, one in February).
    page.get_by_label("Site").select_option("north")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Fracture-liaison quality measures, 2025 · site north")
    north = page.locator("section#fls-dxa-12w svg[role=img] desc")
    expect(north).to_contain_text("Jan: 50 %; Feb: 100 %")
    page.screenshot(path=str(artifacts / "measures-north.png"), full_page=True)

    # The export of what the page shows: one row per measure and month of the north site.
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    assert download.value.suggested_filename == "measures-2025.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    february_dxa = next(r for r in rows if r["measure"] == "fls-dxa-12w" and r["period_start"] == "2025-02-01")
    assert (february_dxa["site"], february_dxa["denominator"], february_dxa["numerator"]) == ("north", "1", "1")
    assert {r["site"] for r in rows} == {"north"}

    # Drill down from a count to the patients behind it: north's January DXA denominator.
    page.goto(f"{measures_server}/worklist/measures?year=2025")
    dxa.locator("tbody tr", has=page.get_by_role("rowheader", name="Jan")).get_by_role(
        "link", name="denominator 3"
    ).click()
    listed = json.loads(page.locator("body").inner_text())
    assert listed["measure"] == "fls-dxa-12w"
    assert listed["population"] == "denominator"
    assert listed["patients"] == ["n1", "n2", "s1"]
    audited = query_one(
        database_url,
        "SELECT array_agg(DISTINCT patient_id ORDER BY patient_id) FROM audit_event "
        "WHERE actor = 'fls.lead' AND what = 'GET /api/measures/{measure_id}/patients' AND patient_id IS NOT NULL",
    )
    assert audited == ["n1", "n2", "s1"]


def test_the_page_and_its_drill_down_follow_the_roles(browser: Browser, measures_server: str) -> None:
    drill = "/api/measures/fls-dxa-12w/patients?periodStart=2025-01-01&periodEnd=2025-01-31&population=denominator"

    # A lead limited to the north site: only north's charts, patients and export.
    north = browser.new_context(viewport={"width": 1366, "height": 768})
    try:
        page = north.new_page()
        sign_in(page, measures_server, NORTH_TOKEN)
        expect(page.get_by_role("heading", level=1)).to_contain_text("site north")
        expect(page.locator("section#fls-identified tbody tr").first).to_contain_text("initial-population 2")
        assert [o.strip() for o in page.get_by_label("Site").locator("option").all_inner_texts()] == ["north"]
        assert page.request.get(f"{measures_server}{drill}").json()["patients"] == ["n1", "n2"]
        assert page.request.get(f"{measures_server}{drill}&site=south").status == 403
        assert page.request.get(f"{measures_server}/worklist/measures?site=south").status == 403
        assert page.request.get(f"{measures_server}/worklist/measures.csv?site=south").status == 403
    finally:
        north.close()

    # A care coordinator has no measures role: neither the page nor the patients behind its counts.
    coordinator = browser.new_context(viewport={"width": 1366, "height": 768})
    try:
        page = coordinator.new_page()
        sign_in(page, measures_server, COORDINATOR_TOKEN, "/worklist")
        expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
        assert page.request.get(f"{measures_server}/worklist/measures").status == 403
        assert page.request.get(f"{measures_server}{drill}").status == 403
    finally:
        coordinator.close()
