"""A catalogue of hostile requests: each is refused with the right status and an OperationOutcome, writes nothing,
and none is a 5xx. test_bad_input.py holds the plain malformed-input cases; these are the attacks on top of them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from service.composition.api import build_api
from service.devtools.local_services import LocalServices
from service.entrypoints.api.app import create_app
from service.fhir.outcome import MAX_ISSUES
from service.fhir.validation import MAX_STRING_LENGTH
from tests.support.databases import query_one, table_counts
from tests.support.http import FHIR_JSON
from tests.support.parts import api_client, build_parts
from tests.support.queue import RecordingQueue
from tests.support.records import t_score
from tests.support.settings import make_settings
from tests.support.tokens import COORDINATOR

pytestmark = pytest.mark.integration

FHIR = FHIR_JSON
XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'


def raw(value: Any) -> bytes:
    return json.dumps(value).encode()


def patient(pid: str = "p1", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", **extra}


def observation(oid: str = "o1", subject: str = "p1", **extra: Any) -> dict[str, Any]:
    return t_score(oid, -2.5, subject, day="2025-03-01", **extra)


def with_narrative(div: str) -> dict[str, Any]:
    return patient(text={"status": "generated", "div": div})


def put_entry(resource: dict[str, Any], url: str | None = None, full_url: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "PUT", "url": url or f"{resource['resourceType']}/{resource['id']}"},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def bundle(*entries: dict[str, Any], bundle_type: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": bundle_type, "entry": list(entries)}


def expressions(response: Response) -> list[str]:
    return [e for issue in response.json()["issue"] for e in issue.get("expression", [])]


def assert_refused(response: Response, statuses: tuple[int, ...], expression: str | None = None) -> None:
    """The answer to a hostile request: one of the expected 4xx, as a FHIR OperationOutcome."""
    assert response.status_code in statuses, (response.status_code, response.text[:2000])
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"]
    assert all(issue["details"]["text"] for issue in outcome["issue"])
    if expression is not None:
        assert expression in expressions(response), expressions(response)


# --- bodies ---------------------------------------------------------------------------------------------------

# (name, method, path, body, statuses, expression expected in the OperationOutcome or None)
BODIES: list[tuple[str, str, str, bytes, tuple[int, ...], str | None]] = [
    # Huge strings: a FHIR string SHALL NOT exceed 1 MB.
    (
        "a string over 1 MB",
        "PUT",
        "/fhir/Patient/p1",
        raw(patient(name=[{"family": "x" * (MAX_STRING_LENGTH + 1)}])),
        (400, 413, 422),
        "Patient.name[0].family",
    ),
    (
        "a string over 1 MB in a transaction",
        "POST",
        "/fhir",
        raw(bundle(put_entry(patient(name=[{"text": "y" * (MAX_STRING_LENGTH + 1)}])))),
        (400, 413, 422),
        "Bundle.entry[0].resource.name[0].text",
    ),
    # Huge numbers.
    (
        "a decimal past a double's range",
        "PUT",
        "/fhir/Observation/o1",
        raw(observation(valueQuantity={"value": 10**400})),
        (400,),
        "Observation.valueQuantity.value",
    ),
    (
        "a decimal too small for a double",
        "PUT",
        "/fhir/Observation/o1",
        b'{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"valueQuantity":{"value":1e-400}}',
        (400,),
        "Observation.valueQuantity.value",
    ),
    (
        "a decimal with 100 digits",
        "PUT",
        "/fhir/Observation/o1",
        b'{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"valueQuantity":{"value":0.'
        + b"1" * 100
        + b"}}",
        (400,),
        "Observation.valueQuantity.value",
    ),
    (
        "a decimal with 20,000 digits after the point (more than PostgreSQL's numeric holds)",
        "PUT",
        "/fhir/Observation/o1",
        b'{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.'
        + b"3" * 20000
        + b"}}",
        (400,),
        "Observation.valueQuantity.value",
    ),
    (
        "an integer of 5,000 digits",
        "PUT",
        "/fhir/Observation/o1",
        b'{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"valueInteger":'
        + b"9" * 5000
        + b"}",
        (400,),
        None,
    ),
    (
        "an integer past 64 bits in an integer element",
        "PUT",
        "/fhir/Patient/p1",
        raw(patient(multipleBirthInteger=2**70)),
        (400,),
        "Patient.multipleBirthInteger",
    ),
    (
        "an integer past 32 bits in an integer element",
        "PUT",
        "/fhir/Patient/p1",
        raw(patient(multipleBirthInteger=2**31)),
        (400,),
        "Patient.multipleBirthInteger",
    ),
    (
        "an exponent in an integer element",
        "PUT",
        "/fhir/Patient/p1",
        b'{"resourceType":"Patient","id":"p1","multipleBirthInteger":1E400}',
        (400,),
        "Patient.multipleBirthInteger",
    ),
    ("Infinity", "PUT", "/fhir/Patient/p1", b'{"resourceType":"Patient","id":"p1","x":Infinity}', (400,), None),
    ("-Infinity", "PUT", "/fhir/Patient/p1", b'{"resourceType":"Patient","id":"p1","x":-Infinity}', (400,), None),
    # Encodings and characters.
    ("a UTF-8 byte order mark", "PUT", "/fhir/Patient/p1", b"\xef\xbb\xbf" + raw(patient()), (400,), None),
    (
        "U+0000 in a string (PostgreSQL's jsonb cannot hold it)",
        "PUT",
        "/fhir/Patient/p1",
        b'{"resourceType":"Patient","id":"p1","name":[{"family":"a\\u0000b"}]}',
        (400,),
        None,
    ),
    (
        "U+0000 in a key",
        "PUT",
        "/fhir/Patient/p1",
        b'{"resourceType":"Patient","id":"p1","gen\\u0000der":"female"}',
        (400,),
        None,
    ),
    (
        "U+0000 in a transaction entry",
        "POST",
        "/fhir",
        b'{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","id":"p1",'
        b'"name":[{"family":"\\u0000"}]},"request":{"method":"PUT","url":"Patient/p1"}}]}',
        (400,),
        None,
    ),
    (
        "a lone surrogate",
        "PUT",
        "/fhir/Patient/p1",
        b'{"resourceType":"Patient","id":"p1","name":[{"family":"a\\ud800b"}]}',
        (400,),
        "Patient.name[0].family",
    ),
    ("UTF-16", "PUT", "/fhir/Patient/p1", json.dumps(patient()).encode("utf-16"), (400,), None),
    ("trailing garbage", "PUT", "/fhir/Patient/p1", raw(patient()) + b" {}", (400,), None),
    # Keys that mean something elsewhere.
    (
        "__proto__ and constructor keys",
        "PUT",
        "/fhir/Patient/p1",
        raw(patient(__proto__={"admin": True}, constructor={"prototype": {}})),
        (400,),
        "Patient.__proto__",
    ),
    (
        "duplicate keys inside a Bundle entry",
        "POST",
        "/fhir",
        b'{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","id":"p1"},'
        b'"request":{"method":"PUT","url":"Patient/p1","url":"Patient/p2"}}]}',
        (400,),
        None,
    ),
    (
        "a primitive extension nested 300 deep",
        "PUT",
        "/fhir/Patient/p1",
        raw(
            patient(
                _gender={
                    "extension": [
                        json.loads('{"url":"http://x","extension":[' * 300 + '{"url":"http://x"}' + "]}" * 300)
                    ]
                }
            )
        ),
        (400,),
        None,
    ),
    (
        "a resourceType that only looks right (Cyrillic a)",
        "POST",
        "/fhir/Patient",
        raw({"resourceType": "P\u0430tient", "id": "p1"}),
        (400, 404),
        None,
    ),
    # Bundle entries whose resource is not what their request names.
    (
        "an Observation in a Bundle entry that PUTs a Patient",
        "POST",
        "/fhir",
        raw(bundle(put_entry(observation("p1"), url="Patient/p1"))),
        (400,),
        "Bundle.entry[0].request.url",
    ),
    (
        "a Patient in a Bundle entry that POSTs an Observation",
        "POST",
        "/fhir",
        raw(bundle({"resource": patient(), "request": {"method": "POST", "url": "Observation"}})),
        (400,),
        "Bundle.entry[0].request.url",
    ),
    (
        "an unknown resourceType in a Bundle entry",
        "POST",
        "/fhir",
        raw(bundle(put_entry({"resourceType": "Spaceship", "id": "s1"}))),
        (400, 422),
        None,
    ),
    (
        "a Bundle inside a Bundle entry",
        "POST",
        "/fhir",
        raw(bundle(put_entry({**bundle(put_entry(patient())), "id": "b1"}))),
        (400, 422),
        None,
    ),
    (
        "a PUT entry whose URL climbs out of its type",
        "POST",
        "/fhir",
        raw(bundle(put_entry(patient(), url="Patient/../Observation/o1"))),
        (400,),
        "Bundle.entry[0].request.url",
    ),
    # Narrative (txt-1, txt-2): no script, no event handlers, no active content, no javascript: URLs.
    (
        "<script> in the narrative",
        "PUT",
        "/fhir/Patient/p1",
        raw(with_narrative(f"<div {XHTML}><p>Ms X</p><script>alert(document.cookie)</script></div>")),
        (400, 422),
        "Patient.text.div",
    ),
    (
        "an event handler in the narrative",
        "PUT",
        "/fhir/Patient/p1",
        raw(with_narrative(f'<div {XHTML}><img src="x.png" onerror="alert(1)"/></div>')),
        (400, 422),
        "Patient.text.div",
    ),
    (
        "a javascript: link in the narrative",
        "PUT",
        "/fhir/Patient/p1",
        raw(with_narrative(f'<div {XHTML}><a href="javascript:alert(1)">chart</a></div>')),
        (400, 422),
        "Patient.text.div",
    ),
    (
        "a javascript: link hidden by character references and a tab",
        "PUT",
        "/fhir/Patient/p1",
        raw(with_narrative(f'<div {XHTML}><a href="&#x20;java&#9;&#115;cript&#58;alert(1)">chart</a></div>')),
        (400, 422),
        "Patient.text.div",
    ),
    (
        "an SVG image (it can carry script) as a data: URL",
        "PUT",
        "/fhir/Patient/p1",
        raw(with_narrative(f'<div {XHTML}><img src="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4="/></div>')),
        (400, 422),
        "Patient.text.div",
    ),
    (
        "an <iframe> in the narrative",
        "PUT",
        "/fhir/Patient/p1",
        raw(with_narrative(f'<div {XHTML}><iframe src="https://evil.example/"></iframe>x</div>')),
        (400, 422),
        "Patient.text.div",
    ),
    (
        "an <object> in the narrative",
        "PUT",
        "/fhir/Patient/p1",
        raw(with_narrative(f'<div {XHTML}><object data="evil.swf">x</object></div>')),
        (400, 422),
        "Patient.text.div",
    ),
    (
        "a <style> element in the narrative",
        "PUT",
        "/fhir/Patient/p1",
        raw(with_narrative(f"<div {XHTML}><style>body{{display:none}}</style>x</div>")),
        (400, 422),
        "Patient.text.div",
    ),
    (
        "a style attribute that loads a URL",
        "PUT",
        "/fhir/Patient/p1",
        raw(with_narrative(f"<div {XHTML}><p style=\"background:url('https://evil.example/t')\">x</p></div>")),
        (400, 422),
        "Patient.text.div",
    ),
    (
        "an SVG element with script in the narrative",
        "PUT",
        "/fhir/Patient/p1",
        raw(with_narrative(f'<div {XHTML}><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>x</div>')),
        (400, 422),
        "Patient.text.div",
    ),
    (
        "a CDATA section that an HTML parser ends early",
        "PUT",
        "/fhir/Patient/p1",
        raw(with_narrative(f"<div {XHTML}><![CDATA[ x > <img src=x onerror=alert(1)> ]]></div>")),
        (400, 422),
        "Patient.text.div",
    ),
    (
        "entity expansion (billion laughs) in the narrative",
        "PUT",
        "/fhir/Patient/p1",
        raw(
            with_narrative(
                '<!DOCTYPE div [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
                '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
                f"<div {XHTML}>&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;</div>"
            )
        ),
        (400, 422),
        "Patient.text.div",
    ),
    (
        "an external entity (XXE) in the narrative",
        "PUT",
        "/fhir/Patient/p1",
        raw(with_narrative(f'<!DOCTYPE div [<!ENTITY x SYSTEM "file:///etc/passwd">]><div {XHTML}>&x;</div>')),
        (400, 422),
        "Patient.text.div",
    ),
    (
        "script after the narrative's div",
        "PUT",
        "/fhir/Patient/p1",
        raw(with_narrative(f"<div {XHTML}>x</div><script>alert(1)</script>")),
        (400, 422),
        "Patient.text.div",
    ),
    (
        "a narrative that is not a div",
        "PUT",
        "/fhir/Patient/p1",
        raw(with_narrative("<p>hello</p>")),
        (400, 422),
        "Patient.text.div",
    ),
    (
        "a lone surrogate in the narrative",
        "PUT",
        "/fhir/Patient/p1",
        raw(with_narrative(f"<div {XHTML}>\ud800</div>")),
        (400, 422),
        "Patient.text.div",
    ),
    (
        "an empty narrative (txt-2)",
        "PUT",
        "/fhir/Patient/p1",
        raw(with_narrative(f"<div {XHTML}>  </div>")),
        (400, 422),
        "Patient.text.div",
    ),
    (
        "script in a contained resource's narrative",
        "PUT",
        "/fhir/Observation/o1",
        raw(
            observation(
                contained=[
                    {
                        "resourceType": "Medication",
                        "id": "m",
                        "text": {"status": "generated", "div": f"<div {XHTML}><script>x()</script></div>"},
                    }
                ]
            )
        ),
        (400, 422),
        "Observation.contained[0].text.div",
    ),
    (
        "script in a narrative inside a transaction",
        "POST",
        "/fhir",
        raw(bundle(put_entry(with_narrative(f'<div {XHTML}><p onclick="steal()">x</p></div>')))),
        (400, 422),
        "Bundle.entry[0].resource.text.div",
    ),
    # Ids and references that are path segments.
    ("an id that is '..'", "PUT", "/fhir/Patient/%2e%2e", raw(patient("..")), (400, 404), None),
    ("an id that is '.'", "POST", "/fhir/Patient", raw(patient(".")), (400,), "Patient.id"),
    (
        "a reference that climbs ('Patient/..')",
        "PUT",
        "/fhir/Observation/o1",
        raw(observation(subject="..")),
        (400,),
        "Observation.subject.reference",
    ),
    (
        "a reference with a traversal in its path",
        "PUT",
        "/fhir/Observation/o1",
        raw(observation(performer=[{"reference": "Patient/../../admin/users"}])),
        (400,),
        "Observation.performer[0].reference",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "statuses", "expression"),
    [case[1:] for case in BODIES],
    ids=[case[0] for case in BODIES],
)
def test_hostile_bodies_are_refused_and_write_nothing(
    client: TestClient,
    database_url: str,
    method: str,
    path: str,
    body: bytes,
    statuses: tuple[int, ...],
    expression: str | None,
) -> None:
    before = table_counts(database_url)
    response = client.request(method, path, content=body, headers=FHIR)
    assert_refused(response, statuses, expression)
    assert table_counts(database_url) == before


def test_what_only_looks_hostile_is_stored_as_sent(client: TestClient, database_url: str) -> None:
    # Integers past 64 bits used to fail serialisation (a 500); the text "\u0000" (an escaped backslash) is no NUL;
    # a safe narrative with a table, a link and an inline PNG passes txt-1.
    resource = observation(valueQuantity={"value": 2**64 + 1, "unit": "mg"}, note=[{"text": "literally \\u0000"}])
    narrative = (
        f'<div {XHTML}><table><tr><td colspan="2" style="color:red">T-score &#8722;2.5 &amp; &lt;tag&gt;</td>'
        '</tr></table><a href="https://ehr.example/Patient/p1">chart</a> <a href="#top">top</a>'
        '<img src="data:image/png;base64,iVBORw0KGgo=" alt="sketch"/></div>'
    )
    assert client.put("/fhir/Patient/p1", content=raw(with_narrative(narrative)), headers=FHIR).status_code == 201
    response = client.put("/fhir/Observation/o1", content=raw(resource), headers=FHIR)
    assert response.status_code == 201, response.text
    stored = client.get("/fhir/Observation/o1").json()
    assert stored["valueQuantity"]["value"] == 2**64 + 1
    assert stored["note"][0]["text"] == "literally \\u0000"
    assert table_counts(database_url)["resource"] == 2


def test_an_overlong_name_or_code_is_not_a_database_outage(client: TestClient, database_url: str) -> None:
    # Names and codes over the 2.7 kB an index entry holds used to fail the ingest with 503 "database not
    # reachable", telling the EHR to retry forever. Random letters, because PostgreSQL compresses repetitive text.
    import random
    import string

    rng = random.Random(7)
    long_text = "".join(rng.choice(string.ascii_letters) for _ in range(20000))
    name = {"family": long_text, "given": [long_text]}
    assert client.put("/fhir/Patient/p1", content=raw(patient(name=[name])), headers=FHIR).status_code == 201
    coded = observation(code={"coding": [{"system": f"http://{long_text[:3000]}", "code": long_text}]})
    assert client.put("/fhir/Observation/o1", content=raw(coded), headers=FHIR).status_code == 201
    assert len(client.get("/api/patients/p1").json()["name"]) <= 200


def test_far_dates_do_not_poison_the_patient(client: TestClient, parts: Any) -> None:
    # 0001-01-01T00:00+14:00 is valid FHIR and a year-0 instant in UTC: PostgreSQL stored it, Python could not read
    # it back, and the patient's assessment and pages failed from then on.
    for index, when in enumerate(["0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-12:00", "9999-12-31"]):
        resource = observation(f"o{index}", effectiveDateTime=when)
        assert client.put(f"/fhir/Observation/o{index}", content=raw(resource), headers=FHIR).status_code == 201
    parts.changes.process(["p1"])
    assert client.get("/api/patients/p1").status_code in (200, 404)


# --- search parameters ----------------------------------------------------------------------------------------

INJECTIONS = [
    "Patient/1' OR '1'='1",
    "Patient/1'; DROP TABLE resource; --",
    "Patient/{{7*7}}",
    "Patient/${7*7}",
    "Patient/<%= 7*7 %>",
    "Patient/1%00",
    "Patient/1\x00",
    "Patient/../../etc/passwd",
    "Patient/" + "a" * 65,
    "Patient/1 UNION SELECT body FROM resource",
]


@pytest.mark.parametrize("search", ["RiskAssessment", "CarePlan"])
@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_in_search_parameters_is_refused_not_run(
    client: TestClient, database_url: str, search: str, value: str
) -> None:
    client.put("/fhir/Patient/p1", content=raw(patient()), headers=FHIR)
    before = table_counts(database_url)
    for name in ("subject", "patient"):
        response = client.get(f"/fhir/{search}", params={name: value})
        assert_refused(response, (400,))
        assert "49" not in response.text  # a template would have said 7*7
    assert table_counts(database_url) == before


@pytest.mark.parametrize(
    "query",
    [
        "_count=1;DROP TABLE resource",
        "_count=-1",
        "_count=99999999999999999999999",
        "subject=Patient/p1&_count=1e3",
        "subject=Patient/p1&subject=Patient/p2' OR 1=1",
        "subject=Patient/p1&_sort=id;DROP TABLE resource",
        "subject=Patient/p1&_include=*",
    ],
)
def test_other_hostile_search_parameters_are_refused(client: TestClient, database_url: str, query: str) -> None:
    before = table_counts(database_url)
    assert_refused(client.get(f"/fhir/RiskAssessment?{query}"), (400,))
    assert table_counts(database_url) == before


def test_injection_where_any_text_is_allowed_finds_nothing(client: TestClient) -> None:
    client.put("/fhir/Patient/p1", content=raw(patient(name=[{"family": "Doe"}])), headers=FHIR)
    found = client.get("/fhir/CodeSystem", params={"url": "' OR '1'='1"})
    assert found.status_code == 200
    assert found.json()["total"] == 0
    worklist = client.get("/api/worklist", params={"q": "' OR '1'='1' --"})
    assert worklist.status_code == 200, worklist.text
    assert worklist.json()["items"] == []


# --- paths ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/fhir/Patient/..%2F..%2Fetc%2Fpasswd"),
        ("GET", "/fhir/Patient/%2e%2e"),
        ("GET", "/fhir/Patient/%2e"),
        ("GET", "/fhir/Patient/%2e%2e%2f%2e%2e%2fapi%2faudit"),
        ("GET", "/fhir/..%2F..%2Fapi%2Faudit"),
        ("GET", "/fhir/Patient/a%2Fb"),
        ("GET", "/fhir/Patient/a%00b"),
        ("GET", "/fhir/Patient/a%5Cb"),
        ("GET", "/fhir/Patient/%252e%252e"),
        ("GET", "/fhir/Patient/" + "a" * 65),
        ("PUT", "/fhir/Patient/..%2F..%2Fetc%2Fpasswd"),
        ("PUT", "/fhir/Patient/a%2Fb"),
        ("PUT", "/fhir/Patient/a%00b"),
        ("PUT", "/fhir/Patient/%2e"),
        ("POST", "/fhir/..%2FPatient"),
    ],
)
def test_path_traversal_in_ids_is_refused(client: TestClient, database_url: str, method: str, path: str) -> None:
    before = table_counts(database_url)
    body = raw(patient(path.rsplit("/", 1)[-1])) if method != "GET" else None
    response = client.request(method, path, content=body, headers=FHIR if body else {})
    assert_refused(response, (400, 404, 405))
    assert table_counts(database_url) == before


# --- sizes ----------------------------------------------------------------------------------------------------


@pytest.fixture
def small_client(services: LocalServices, database_url: str) -> Iterator[TestClient]:
    with api_client(make_settings(services, database_url, max_body_bytes=2048)) as test_client:
        yield test_client


def test_a_bundle_of_100k_entries_is_refused_quickly(client: TestClient, database_url: str) -> None:
    entry = {"request": {"method": "GET", "url": "Patient/p1"}}
    body = raw(bundle(*[entry] * 100_000))
    started = time.monotonic()
    response = client.post("/fhir", content=body, headers=FHIR)
    assert_refused(response, (413,), "Bundle.entry")
    assert time.monotonic() - started < 5.0
    assert table_counts(database_url)["resource"] == 0


@pytest.mark.parametrize("declared", ["10", "0", "-1", "abc", "1e3", "99999999999999999999999999", ""])
def test_a_lying_content_length_does_not_lift_the_limit(
    small_client: TestClient, database_url: str, declared: str
) -> None:
    body = raw(patient(name=[{"family": "x" * 5000}]))
    response = small_client.put("/fhir/Patient/p1", content=body, headers={**FHIR, "Content-Length": declared})
    assert_refused(response, (400, 413))
    assert table_counts(database_url)["resource"] == 0


def test_many_invalid_values_get_a_bounded_answer(client: TestClient, database_url: str) -> None:
    body = raw(patient(name=[{"family": 1}] * 100_000))
    response = client.put("/fhir/Patient/p1", content=body, headers=FHIR)
    assert_refused(response, (400,), "Patient.name[0].family")
    assert len(response.json()["issue"]) == MAX_ISSUES + 1
    assert len(response.content) < 50_000
    assert table_counts(database_url)["resource"] == 0


# --- one resource, one patient --------------------------------------------------------------------------------


def put(client: TestClient, resource: dict[str, Any]) -> Response:
    return client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", content=raw(resource), headers=FHIR)


def test_a_resource_cannot_move_to_another_patient(client: TestClient, database_url: str) -> None:
    for pid in ("A", "B"):
        assert put(client, patient(pid)).status_code == 201
    assert put(client, observation("o1", subject="A")).status_code == 201
    before = table_counts(database_url)

    moved = put(client, observation("o1", subject="B", valueQuantity={"value": -3.1, "unit": "{T-score}"}))
    assert_refused(moved, (422,), "Observation.subject")
    assert "Patient/A" in moved.text
    assert "entered-in-error" in moved.text
    detached = put(client, {k: v for k, v in observation("o1", subject="A").items() if k != "subject"})
    assert_refused(detached, (422,), "Observation.subject")
    via_transaction = client.post("/fhir", content=raw(bundle(put_entry(observation("o1", subject="B")))), headers=FHIR)
    assert_refused(via_transaction, (422,), "Bundle.entry[0].resource.subject")
    assert table_counts(database_url) == before
    assert client.get("/fhir/Observation/o1").json()["subject"]["reference"] == "Patient/A"

    # The remedy: mark it entered-in-error where it is, and send the record again under the right patient.
    assert put(client, observation("o1", subject="A", status="entered-in-error")).status_code == 200
    assert put(client, observation("o2", subject="B")).status_code == 201


def test_a_moving_entry_in_a_batch_fails_alone(client: TestClient, database_url: str) -> None:
    assert put(client, observation("o1", subject="A")).status_code == 201
    batch = bundle(
        put_entry(observation("o1", subject="B")), put_entry(observation("o2", subject="B")), bundle_type="batch"
    )
    response = client.post("/fhir", content=raw(batch), headers=FHIR)
    assert response.status_code == 200
    entries = response.json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["422 Unprocessable Entity", "201 Created"]
    assert entries[0]["response"]["outcome"]["issue"][0]["expression"] == ["Bundle.entry[0].resource.subject"]


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        (observation(performer=[{"reference": "Patient/B"}]), "Observation.performer[0].reference"),
        (
            observation(derivedFrom=[{"reference": "https://ehr.example/fhir/Patient/B/_history/2"}]),
            "Observation.derivedFrom[0].reference",
        ),
        (
            observation(contained=[{**observation("c1", subject="B"), "id": "c1"}], hasMember=[{"reference": "#c1"}]),
            "Observation.contained[0].subject.reference",
        ),
        (
            {
                "resourceType": "MedicationRequest",
                "id": "o1",
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": {"text": "denosumab 60 mg"},
                "subject": {"reference": "Patient/p1"},
                "requester": {"reference": "Patient/B"},
            },
            "MedicationRequest.requester.reference",
        ),
        (patient("p1", generalPractitioner=[{"reference": "Patient/B"}]), "Patient.generalPractitioner[0].reference"),
    ],
    ids=["performer", "absolute URL", "contained", "requester", "Patient"],
)
def test_a_resource_may_not_name_two_patients(
    client: TestClient, database_url: str, resource: dict[str, Any], expression: str
) -> None:
    before = table_counts(database_url)
    assert_refused(put(client, resource), (422,), expression)
    response = client.post("/fhir", content=raw(bundle(put_entry(resource))), headers=FHIR)
    assert_refused(response, (422,), f"Bundle.entry[0].resource{expression.removeprefix(resource['resourceType'])}")
    assert table_counts(database_url) == before


def test_two_patients_through_placeholders_in_one_transaction(client: TestClient, database_url: str) -> None:
    mixed = observation("o1", subject="x")
    mixed["subject"] = {"reference": "urn:uuid:a"}
    mixed["performer"] = [{"reference": "urn:uuid:b"}]
    moved = observation("o9", subject="B")
    transaction = bundle(
        put_entry(patient("A"), full_url="urn:uuid:a"),
        put_entry(patient("B"), full_url="urn:uuid:b"),
        put_entry(mixed),
        put_entry(moved),
    )
    assert put(client, observation("o9", subject="A")).status_code == 201
    before = table_counts(database_url)
    response = client.post("/fhir", content=raw(transaction), headers=FHIR)
    # Every offending entry is listed at once, and nothing is written.
    assert_refused(response, (422,), "Bundle.entry[2].resource.performer[0].reference")
    assert "Bundle.entry[3].resource.subject" in expressions(response)
    assert table_counts(database_url) == before


def test_what_fhir_allows_to_name_someone_else_is_kept(client: TestClient) -> None:
    # Observation.focus (a fetus, a mother, a donor) and Patient.link (another record of the person) are FHIR's
    # own ways to point at another patient; a transaction may carry several patients' records.
    focus = observation("o1", subject="A", focus=[{"reference": "Patient/B"}])
    linked = patient("A", link=[{"other": {"reference": "Patient/B"}, "type": "seealso"}])
    transaction = bundle(
        put_entry(linked), put_entry(patient("B")), put_entry(focus), put_entry(observation("o2", "B"))
    )
    response = client.post("/fhir", content=raw(transaction), headers=FHIR)
    assert response.status_code == 200, response.text
    assert [e["response"]["status"] for e in response.json()["entry"]] == ["201 Created"] * 4


# --- found by fuzzing, outside the FHIR input path ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["/api/worklist.csv?assignee=%00", "/api/audit?patient=%00", "/api/patients/a%00b", "/fhir/Patient/a%00b"],
)
def test_nul_in_api_parameters_is_refused(client: TestClient, url: str) -> None:
    # NUL would otherwise reach PostgreSQL: a CSV export failing after its answer began, an unwritable audit row.
    assert_refused(client.get(url), (400,))


@pytest.mark.parametrize(
    "body",
    [{"action": "note", "note": "a\u0000b"}, {"action": "assign", "assignee": "a\u0000b"}],
    ids=["note", "assignee"],
)
def test_nul_in_an_alert_action_is_refused_and_changes_nothing(
    services: LocalServices, worklist_url: str, body: dict[str, Any]
) -> None:
    app = create_app(lambda: build_api(build_parts(make_settings(services, worklist_url), queue=RecordingQueue())))
    with TestClient(app, headers=COORDINATOR, raise_server_exceptions=False) as client:
        alert_id = client.get("/api/worklist").json()["items"][0]["alert_id"]
        # The alerts and their history, whole: a refused action leaves both as they were.
        state = "SELECT md5(string_agg(a::text, ',' ORDER BY a::text)) FROM (SELECT * FROM alert) a"
        before = query_one(worklist_url, state), query_one(worklist_url, "SELECT count(*) FROM alert_event")
        response = client.post(f"/api/alerts/{alert_id}/actions", json=body)
        assert_refused(response, (400,))
        assert "NUL" in response.json()["issue"][0]["details"]["text"]
        after = query_one(worklist_url, state), query_one(worklist_url, "SELECT count(*) FROM alert_event")
        assert after == before


def test_ids_are_cut_to_a_bound_in_the_audit_trail(client: TestClient, database_url: str) -> None:
    # Ids from paths went into audit rows whole: a megabyte-long id was a megabyte of six-year audit trail.
    long_id = "a" * 5000
    assert client.get(f"/api/patients/{long_id}").status_code in (400, 404)
    assert client.post(f"/api/alerts/{long_id}/actions", json={"action": "acknowledge"}).status_code in (400, 404)
    longest = query_one(
        database_url,
        "SELECT max(greatest(length(patient_id), length(resource_id), length(detail), length(what))) FROM audit_event",
    )
    assert longest <= 512


def test_medication_text_of_many_digits_is_ingested_in_linear_time(
    client: TestClient, parts: Any, database_url: str
) -> None:
    # "denosumab" and 15,000 digits took 12.6 s end to end (quadratic dose regex), 40,000 took 88 s.
    assert put(client, patient()).status_code in (200, 201)
    administration = {
        "resourceType": "MedicationAdministration",
        "id": "ma1",
        "status": "completed",
        "medicationCodeableConcept": {"text": "denosumab " + "1" * 100_000 + " " + "2 MG/3 ML " * 20_000},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2025-03-01",
    }
    started = time.monotonic()
    assert put(client, administration).status_code in (200, 201)
    parts.changes.process(["p1"])
    assert time.monotonic() - started < 10.0
