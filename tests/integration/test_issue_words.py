"""Every issue refracture returns says, in words, what is wrong (issue 13): each OperationOutcome issue — of a
refused request, of a batch entry, of a skipped entry — carries the same plain text in ``diagnostics`` and
``details.text``, over the error paths of every kind of route."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration.test_bad_input import CASES, observation, patient, put_entry, raw, transaction
from tests.support.http import FHIR_JSON
from tests.support.tokens import COORDINATOR

pytestmark = pytest.mark.integration

FHIR = FHIR_JSON


def outcomes_in(body: Any) -> Iterator[dict[str, Any]]:
    """Every OperationOutcome in an answer: the body itself, or the entries' outcomes of a Bundle."""
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        yield body
    elif isinstance(body, dict) and body.get("resourceType") == "Bundle":
        for entry in body.get("entry", []):
            outcome = entry.get("response", {}).get("outcome")
            if outcome is not None:
                yield outcome


def assert_every_issue_speaks(body: Any, where: str) -> int:
    seen = 0
    for outcome in outcomes_in(body):
        assert outcome["issue"], where
        for issue in outcome["issue"]:
            text = issue.get("diagnostics") or issue.get("details", {}).get("text")
            assert isinstance(text, str), (where, issue)
            assert text.strip(), (where, issue)
            assert issue["diagnostics"] == issue["details"]["text"], (where, issue)
            seen += 1
    return seen


def test_every_issue_on_every_error_path_has_words(client: TestClient, small_client: TestClient) -> None:
    answers: list[tuple[str, Any]] = []

    def call(where: str, method: str, path: str, *, use: TestClient = client, **kwargs: Any) -> None:
        response = use.request(method, path, **kwargs)
        if response.headers.get("content-type", "").startswith(("application/fhir+json", "application/json")):
            answers.append((where, response.json()))

    # The bad-input catalogue: malformed JSON, invalid FHIR, wrong media types, unsupported types and methods …
    for name, method, path, body, headers, _status, _expression in CASES:
        call(name, method, path, content=body, headers=headers)
    # Unknown routes, ids and methods; bad query parameters.
    for method, path in [
        ("GET", "/fhir/Patient/unknown"),
        ("GET", "/fhir/Encounter/e1"),
        ("GET", "/no/such/route"),
        ("DELETE", "/fhir/Patient/p1"),
        ("GET", "/fhir/Patient"),
        ("GET", "/fhir/RiskAssessment?subject=nonsense"),
        ("GET", "/api/worklist?limit=-1"),
        ("GET", "/api/worklist?cursor=%00"),
    ]:
        call(f"{method} {path}", method, path)
    # Who may call: no token, a bad token, a role that may not write FHIR.
    call("no token", "GET", "/fhir/Patient/p1", headers={"Authorization": ""})
    call("bad token", "GET", "/fhir/Patient/p1", headers={"Authorization": "Bearer nonsense"})
    call("wrong role", "PUT", "/fhir/Patient/p1", content=raw(patient()), headers={**FHIR, **COORDINATOR})
    # Limits.
    call(
        "body too large",
        "PUT",
        "/fhir/Patient/p1",
        use=small_client,
        content=raw(patient(name=[{"family": "x" * 5000}])),
        headers=FHIR,
    )
    bundle = transaction(*(put_entry(patient(f"p{i}")) for i in range(4)))
    call("too many entries", "POST", "/fhir", use=small_client, content=raw(bundle), headers=FHIR)
    # A stale If-Match; a batch whose entries fail each in its own way, beside skipped and good ones.
    client.put("/fhir/Patient/p1", content=raw(patient()), headers=FHIR)
    call("stale If-Match", "PUT", "/fhir/Patient/p1", content=raw(patient()), headers={**FHIR, "If-Match": 'W/"9"'})
    batch = transaction(
        put_entry(patient("p2")),
        put_entry(observation(status="done")),
        put_entry(observation("o2", subject={"reference": "urn:uuid:0b000000-0000-4000-8000-000000000001"})),
        put_entry(observation("o3", performer=[{"reference": "Patient/other"}])),
        put_entry({"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"}}),
        put_entry({"resourceType": "Spaceship", "id": "s1"}),
        {"request": {"method": "GET", "url": "Patient/nobody"}},
        {"request": {"method": "GET", "url": "Patient?name=x"}},
        {"request": {"method": "DELETE", "url": "Patient/p1"}},
        {"request": {"method": "PATCH", "url": "Patient/p1"}},
        {"resource": patient("p3"), "request": {"method": "PUT", "url": "Patient?identifier=x|1"}},
        {"resource": patient("p4"), "request": {"method": "PUT", "url": "Patient/p1", "ifMatch": 'W/"7"'}},
        bundle_type="batch",
    )
    call("a batch of every kind of entry", "POST", "/fhir", content=raw(batch), headers=FHIR)
    call("the same as a transaction", "POST", "/fhir", content=raw({**batch, "type": "transaction"}), headers=FHIR)
    # A notification without the Subscription's secret.
    call("subscription hook", "POST", "/fhir/$subscription-hook/ehr", content=b"{}", headers=FHIR)

    total = sum(assert_every_issue_speaks(body, where) for where, body in answers)
    assert len(answers) >= 50
    assert total >= 65


def test_an_issue_without_text_still_goes_out_with_words() -> None:
    from service.fhir.outcome import operation_outcome
    from service.platform.errors import Issue

    (issue,) = operation_outcome([Issue("invalid", "  ", "Patient.name")])["issue"]
    assert issue["diagnostics"] == issue["details"]["text"] == "error: invalid at Patient.name"
    assert json.dumps(operation_outcome([])["issue"][0]["diagnostics"]) == '"All OK"'
