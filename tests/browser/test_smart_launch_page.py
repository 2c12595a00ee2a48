"""The worklist opened by SMART EHR launch in a real browser: the EHR (tests/smart_launcher_standin.py) opens
/launch with a patient in context, the clinician signs in at the EHR, and refracture opens that patient's page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page, expect

from service.devtools.local_services import LocalServices
from tests.smart_launcher_standin import RunningLauncher
from tests.support.clock import ManualClock
from tests.support.databases import query_one
from tests.support.parts import api_app, build_parts
from tests.support.queue import RecordingQueue
from tests.support.servers import serving
from tests.support.settings import make_settings
from tests.worklist_data import NOW

pytestmark = pytest.mark.integration

PATIENT = "edge-same-day-1"  # Zeta, Ines in the loaded worklist


@pytest.fixture
def smart_server(services: LocalServices, worklist_url: str, launcher: RunningLauncher) -> Iterator[str]:
    """The service in a real HTTP server, with the stand-in EHR allowed to launch it."""
    settings = make_settings(
        services,
        worklist_url,
        **launcher.launch_settings(launcher.fhir),
    )
    parts = build_parts(settings, queue=RecordingQueue(), clock=ManualClock(NOW))
    with serving(api_app(parts), log_level="warning") as url:
        yield url


def test_the_ehr_launches_the_worklist_on_the_patient_in_context(
    page: Page, smart_server: str, launcher: RunningLauncher, worklist_url: str, artifacts: Path
) -> None:
    # The EHR opens refracture's launch URL from Zeta, Ines's chart.
    launch = launcher.ehr.launch(PATIENT)
    page.goto(f"{smart_server}/launch?{urlencode({'iss': launcher.fhir, 'launch': launch})}")

    # Through the EHR's authorisation server and back: the patient's page, signed in as the EHR's user.
    expect(page.get_by_role("heading", level=1)).to_have_text("Zeta, Ines")
    assert page.url == f"{smart_server}/worklist/patients/{PATIENT}"
    expect(page.get_by_text("Signed in as")).to_contain_text("Dr Grace Hopper")
    page.screenshot(path=str(artifacts / "smart-launch-patient.png"), full_page=True)

    # The clinician acts on the alert; the history names their fhirUser.
    alert = page.locator("article.alert", has=page.get_by_role("heading", name="Denosumab dose overdue"))
    alert.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("status")).to_have_text("Alert acknowledged.")
    expect(alert.locator("table.history")).to_contain_text("Practitioner/dr-grace")

    # The launch is bound to this patient: the whole worklist is not theirs to see (asked with the page's cookies,
    # outside the page, so that the refusal is not a console error).
    refused = page.request.get(f"{smart_server}/worklist", max_redirects=0)
    assert refused.status == 403
    assert "Not available" in refused.text()
    signed_in = "SELECT count(*) FROM audit_event WHERE actor = 'Practitioner/dr-grace' AND action = 'sign-in'"
    assert query_one(worklist_url, signed_in) == 1
