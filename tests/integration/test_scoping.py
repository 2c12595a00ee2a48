"""Who sees which patient (issue 16, finding 5): two sites on every read path, SMART patient context, v2 scope
constraints, break the glass. Each path is tried by a coordinator of the north site, who must see north's patients
and none of south's."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from service.composition.parts import Parts
from service.devtools.local_services import LocalServices
from tests.support.clock import ManualClock
from tests.support.databases import query_one
from tests.support.parts import api_app, build_parts
from tests.support.queue import RecordingQueue
from tests.support.settings import make_settings
from tests.support.tokens import TOKENS
from tests.worklist_data import NOW

pytestmark = pytest.mark.integration

NORTH = {"Authorization": "Bearer north-coordinator"}
SOUTH = {"Authorization": "Bearer south-coordinator"}
EVERYONE = {"Authorization": "Bearer test-coordinator"}
SCOPED_TOKENS: dict[str, dict[str, Any]] = {
    **TOKENS,
    "north-coordinator": {"sub": "north.one", "roles": ["care-coordinator"], "sites": ["north"]},
    "south-coordinator": {"sub": "south.one", "roles": ["care-coordinator"], "sites": "south"},
    "north-admin": {"sub": "north.admin", "roles": ["administrator"], "sites": ["north"]},
    "north-ehr": {
        "sub": "ehr-north",
        "client_id": "ehr-north",
        "scope": "system/*.read system/*.write",
        "sites": ["north"],
    },
    "no-sites": {"sub": "drifter", "roles": ["care-coordinator"]},
}


@dataclass
class Sites:
    client: TestClient
    parts: Parts
    url: str
    north: list[str]
    south: list[str]


@pytest.fixture
def sites(services: LocalServices, worklist_url: str) -> Iterator[Sites]:
    with psycopg.connect(worklist_url) as conn:
        ids = [r[0] for r in conn.execute("SELECT DISTINCT patient_id FROM alert ORDER BY patient_id").fetchall()]
        north, south = ids[::2], ids[1::2]
        # The north site's Organization has another id (REFRACTURE_SITES maps it); south's is Organization/south.
        for group, org in ((north, "Organization/org-north-1"), (south, "Organization/south")):
            conn.execute(
                "UPDATE resource SET body = jsonb_set(body, '{managingOrganization}', jsonb_build_object("
                "'reference', %s::text)) WHERE resource_type = 'Patient' AND id = ANY(%s)",
                (org, group),
            )
    settings = make_settings(
        services, worklist_url, auth_dev_tokens=SCOPED_TOKENS, sites={"north": ["Organization/org-north-1"]}
    )
    parts = build_parts(settings, queue=RecordingQueue(), clock=ManualClock(NOW))
    with TestClient(api_app(parts), raise_server_exceptions=False, follow_redirects=False) as client:
        yield Sites(client, parts, worklist_url, north, south)
    parts.close()


def worklist_patients(client: TestClient, headers: dict[str, str]) -> set[str]:
    seen: set[str] = set()
    cursor = None
    while True:
        page = client.get(
            "/api/worklist", params={"limit": 500, **({"cursor": cursor} if cursor else {})}, headers=headers
        )
        assert page.status_code == 200, page.text
        seen |= {item["patient_id"] for item in page.json()["items"]}
        cursor = page.json()["next_cursor"]
        if not cursor:
            return seen


def test_the_worklist_api_counts_and_csv_show_only_the_callers_sites(sites: Sites) -> None:
    client = sites.client
    assert worklist_patients(client, NORTH) == set(sites.north)
    assert worklist_patients(client, SOUTH) == set(sites.south)
    assert worklist_patients(client, EVERYONE) == set(sites.north) | set(sites.south)

    def total(headers: dict[str, str]) -> int:
        answer = client.get("/api/worklist/counts", headers=headers)
        assert answer.status_code == 200
        return sum(item["open"] for item in answer.json())

    assert total(NORTH) + total(SOUTH) == total(EVERYONE)
    assert 0 < total(NORTH) < total(EVERYONE)

    exported = client.get("/api/worklist.csv", headers=NORTH)
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows
    assert {r["patient_id"] for r in rows} == set(sites.north)


def test_a_patient_outside_ones_sites_is_refused_on_every_single_patient_path(sites: Sites) -> None:
    client = sites.client
    mine, theirs = sites.north[0], sites.south[0]
    assert client.get(f"/api/patients/{mine}", headers=NORTH).status_code == 200
    refused = client.get(f"/api/patients/{theirs}", headers=NORTH)
    assert refused.status_code == 403
    assert "outside your sites" in refused.json()["issue"][0]["details"]["text"]
    # FHIR reads and searches of our outputs and of the stored inputs.
    assert client.get(f"/fhir/Patient/{mine}", headers=NORTH).status_code == 200
    assert client.get(f"/fhir/Patient/{theirs}", headers=NORTH).status_code == 403
    for kind in ("RiskAssessment", "CarePlan"):
        assert client.get(f"/fhir/{kind}", params={"subject": f"Patient/{mine}"}, headers=NORTH).status_code == 200
        assert client.get(f"/fhir/{kind}", params={"subject": f"Patient/{theirs}"}, headers=NORTH).status_code == 403
    risk = client.get("/fhir/RiskAssessment", params={"subject": f"Patient/{theirs}"}, headers=EVERYONE).json()
    risk_id = risk["entry"][0]["resource"]["id"]
    assert client.get(f"/fhir/RiskAssessment/{risk_id}", headers=NORTH).status_code == 403
    assert client.get(f"/fhir/RiskAssessment/{risk_id}", headers=SOUTH).status_code == 200
    # An action on an alert of theirs changes nothing.
    alert = query_one(sites.url, "SELECT id::text FROM alert WHERE patient_id = %s LIMIT 1", theirs)
    acted = client.post(f"/api/alerts/{alert}/actions", json={"action": "acknowledge"}, headers=NORTH)
    assert acted.status_code == 403
    assert query_one(sites.url, "SELECT status FROM alert WHERE id = %s::uuid", alert) == "open"


def test_the_worklist_pages_show_only_the_callers_sites(sites: Sites) -> None:
    client = sites.client
    page = client.get("/worklist", headers=NORTH)
    assert page.status_code == 200
    shown = set(re.findall(r'href="/worklist/patients/([^"?#]+)"', page.text))
    assert shown
    assert shown <= set(sites.north)
    assert client.get(f"/worklist/patients/{sites.south[0]}", headers=NORTH).status_code == 403
    assert client.get(f"/worklist/patients/{sites.north[0]}", headers=NORTH).status_code == 200


def test_cds_hooks_answer_only_for_the_callers_sites(sites: Sites) -> None:
    client = sites.client
    north_ehr = {"Authorization": "Bearer north-ehr", "Content-Type": "application/json"}

    def call(patient: str) -> int:
        body = {"hook": "patient-view", "hookInstance": "h-1", "context": {"patientId": patient, "userId": "x"}}
        return client.post(
            "/cds-services/refracture-patient-view", content=json.dumps(body), headers=north_ehr
        ).status_code

    discovery = client.get("/cds-services").json()
    assert any(s["id"] == "refracture-patient-view" for s in discovery["services"])
    assert call(sites.north[0]) == 200
    assert call(sites.south[0]) == 403


def test_the_audit_export_of_a_site_administrator_is_one_patient_of_theirs(sites: Sites) -> None:
    client = sites.client
    admin = {"Authorization": "Bearer north-admin"}
    client.get(f"/api/patients/{sites.north[0]}", headers=EVERYONE)
    assert client.get("/api/audit", headers=admin).status_code == 403
    assert client.get("/api/audit", params={"patient": sites.south[0]}, headers=admin).status_code == 403
    mine = client.get("/api/audit", params={"patient": sites.north[0]}, headers=admin)
    assert mine.status_code == 200
    assert mine.json()["entry"]
    assert client.get("/api/audit", headers={"Authorization": "Bearer test-admin"}).status_code == 200


def test_sites_required_leaves_a_person_without_the_claim_seeing_nobody(services: LocalServices, sites: Sites) -> None:
    settings = make_settings(services, sites.url, auth_dev_tokens=SCOPED_TOKENS, auth_sites_required=True)
    parts = build_parts(settings, queue=RecordingQueue(), clock=ManualClock(NOW))
    try:
        with TestClient(api_app(parts), raise_server_exceptions=False) as client:
            assert worklist_patients(client, {"Authorization": "Bearer no-sites"}) == set()
            assert (
                client.get(f"/api/patients/{sites.north[0]}", headers={"Authorization": "Bearer no-sites"}).status_code
                == 403
            )
    finally:
        parts.close()


def test_breaking_the_glass_shows_one_patient_for_a_while_with_the_reason_audited(sites: Sites) -> None:
    client = sites.client
    theirs = sites.south[0]
    assert client.get(f"/api/patients/{theirs}", headers=NORTH).status_code == 403
    short = client.post(f"/api/patients/{theirs}/break-glass", json={"reason": "why"}, headers=NORTH)
    assert short.status_code == 400  # a reason is required
    granted = client.post(
        f"/api/patients/{theirs}/break-glass",
        json={"reason": "covering the south ward tonight, patient transferred"},
        headers=NORTH,
    )
    assert granted.status_code == 201, granted.text
    assert client.get(f"/api/patients/{theirs}", headers=NORTH).status_code == 200
    assert theirs in worklist_patients(client, NORTH)
    assert sites.south[1] not in worklist_patients(client, NORTH)  # one patient, not the site
    assert (
        query_one(
            sites.url,
            "SELECT detail FROM audit_event WHERE action = 'break-glass' AND patient_id = %s AND actor = 'north.one' "
            "AND outcome = 201",
            theirs,
        )
        == "covering the south ward tonight, patient transferred"
    )
    # The grant ends.
    clock: ManualClock = sites.parts.core.clock  # type: ignore[assignment]
    clock.now = clock.now + timedelta(seconds=sites.parts.core.settings.break_glass_ttl_s + 1)
    assert client.get(f"/api/patients/{theirs}", headers=NORTH).status_code == 403


# --- SMART patient context ---------------------------------------------------------------------------------------
def test_a_patient_context_token_reads_its_patient_only_and_nothing_population_wide(
    services: LocalServices, sites: Sites
) -> None:
    a, b = sites.north[0], sites.north[1]
    tokens = {
        **SCOPED_TOKENS,
        "launch-a": {
            "sub": "app",
            "roles": ["care-coordinator"],
            "scope": "patient/*.read launch/patient",
            "patient": a,
        },
        "no-patient": {"sub": "app", "roles": ["care-coordinator"], "scope": "patient/*.read"},
    }
    parts = build_parts(
        make_settings(services, sites.url, auth_dev_tokens=tokens),
        queue=RecordingQueue(),
        clock=ManualClock(NOW),
    )
    try:
        with TestClient(api_app(parts), raise_server_exceptions=False, follow_redirects=False) as c:
            launch = {"Authorization": "Bearer launch-a"}
            assert c.get(f"/fhir/Patient/{a}", headers=launch).status_code == 200
            assert c.get(f"/fhir/Patient/{b}", headers=launch).status_code == 403
            assert c.get(f"/api/patients/{a}", headers=launch).status_code == 200
            assert c.get(f"/api/patients/{b}", headers=launch).status_code == 403
            assert c.get("/fhir/RiskAssessment", params={"subject": f"Patient/{b}"}, headers=launch).status_code == 403
            for path in ("/api/worklist", "/api/worklist/counts", "/api/worklist.csv"):
                refused = c.get(path, headers=launch)
                assert refused.status_code == 403, path
                assert "patient context" in refused.json()["issue"][0]["details"]["text"]
            assert c.get("/worklist", headers=launch).status_code == 403
            none = {"Authorization": "Bearer no-patient"}
            assert c.get(f"/fhir/Patient/{a}", headers=none).status_code == 403
    finally:
        parts.close()


def test_a_v2_scope_constraint_is_refused_with_a_clear_403(services: LocalServices, sites: Sites) -> None:
    tokens = {
        **SCOPED_TOKENS,
        "labs-only": {"sub": "app", "roles": ["care-coordinator"], "scope": "user/Observation.rs?category=laboratory"},
    }
    parts = build_parts(
        make_settings(services, sites.url, auth_dev_tokens=tokens), queue=RecordingQueue(), clock=ManualClock(NOW)
    )
    try:
        with TestClient(api_app(parts), raise_server_exceptions=False) as c:
            observation = query_one(sites.url, "SELECT id FROM resource WHERE resource_type = 'Observation' LIMIT 1")
            refused = c.get(f"/fhir/Observation/{observation}", headers={"Authorization": "Bearer labs-only"})
            assert refused.status_code == 403
            assert "?category=" in refused.json()["issue"][0]["details"]["text"]
    finally:
        parts.close()


def test_the_patient_page_offers_to_break_the_glass(sites: Sites) -> None:
    client = sites.client
    theirs = sites.south[0]
    refused = client.get(f"/worklist/patients/{theirs}", headers=NORTH)
    assert refused.status_code == 403
    assert f'action="/worklist/patients/{theirs}/break-glass"' in refused.text
    url = f"/worklist/patients/{theirs}/break-glass"
    assert client.post(url, data={"reason": "short"}, headers=NORTH).status_code == 400
    cross = client.post(
        url, data={"reason": "a transfer from the south ward"}, headers={**NORTH, "Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert client.get(f"/worklist/patients/{theirs}", headers=NORTH).status_code == 403
    done = client.post(url, data={"reason": "a transfer from the south ward"}, headers=NORTH)
    assert done.status_code == 303
    assert done.headers["location"] == f"/worklist/patients/{theirs}"
    assert client.get(f"/worklist/patients/{theirs}", headers=NORTH).status_code == 200
    integration = client.post(
        url, data={"reason": "a transfer from the south ward"}, headers={"Authorization": "Bearer test-integration"}
    )
    assert integration.status_code == 403
