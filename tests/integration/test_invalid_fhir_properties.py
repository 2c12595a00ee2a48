"""Hypothesis builds invalid FHIR — wrong JSON types, unknown elements, bad dates, huge strings and numbers, missing
required elements, codes outside required bindings, NUL and script, wrong resourceType in Bundle entries — from
resources that are valid, and posts each to create, update, a transaction and a batch. Every answer is a 4xx with
an OperationOutcome (in a batch: the entry's), never a 5xx, and nothing is written."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.fhir import r4
from service.fhir.resource_types import INPUT_TYPES
from service.fhir.validation import MAX_STRING_LENGTH
from tests.support.databases import table_counts
from tests.support.http import FHIR_JSON

pytestmark = [
    pytest.mark.integration,
    # psycopg_pool's threads draw from the global `random` (connection-lifetime jitter) while Hypothesis draws an
    # example; Hypothesis takes the changed global state for a strategy using `random`. None of these does.
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

FHIR = FHIR_JSON
SUBJECT = {"subject": {"reference": "Patient/p1"}}
DRUG = {"medicationCodeableConcept": {"text": "denosumab 60 mg"}}
CODE = {"code": {"coding": [{"system": "http://loinc.org", "code": "38267-1", "display": "T-score"}]}}

# A valid resource of every input type, with the elements the mutations below work on.
BASES: dict[str, dict[str, Any]] = {
    "Patient": {
        "resourceType": "Patient",
        "id": "x1",
        "active": True,
        "gender": "female",
        "birthDate": "1941-07-30",
        "multipleBirthInteger": 1,
        "name": [{"family": "Doe", "given": ["Jane"]}],
    },
    "Observation": {
        "resourceType": "Observation",
        "id": "x1",
        "status": "final",
        **CODE,
        **SUBJECT,
        "effectiveDateTime": "2025-03-01T10:00:00Z",
        "valueQuantity": {"value": -2.5, "unit": "{T-score}"},
        "note": [{"text": "lumbar spine"}],
    },
    "Procedure": {
        "resourceType": "Procedure",
        "id": "x1",
        "status": "completed",
        **SUBJECT,
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "22514"}]},
        "performedDateTime": "2025-02-01",
        "bodySite": [{"text": "L1"}],
    },
    "Condition": {
        "resourceType": "Condition",
        "id": "x1",
        **SUBJECT,
        "code": {"text": "osteoporosis"},
        "onsetDateTime": "2024-11-05",
    },
    "MedicationRequest": {
        "resourceType": "MedicationRequest",
        "id": "x1",
        "status": "active",
        "intent": "order",
        **DRUG,
        **SUBJECT,
        "authoredOn": "2025-03-02",
        "dispenseRequest": {"numberOfRepeatsAllowed": 3},
    },
    "MedicationAdministration": {
        "resourceType": "MedicationAdministration",
        "id": "x1",
        "status": "completed",
        **DRUG,
        **SUBJECT,
        "effectiveDateTime": "2025-03-02",
        "dosage": {"dose": {"value": 60, "unit": "mg"}},
    },
    "MedicationStatement": {
        "resourceType": "MedicationStatement",
        "id": "x1",
        "status": "active",
        **DRUG,
        **SUBJECT,
        "effectiveDateTime": "2024-09-01",
    },
    "MedicationDispense": {
        "resourceType": "MedicationDispense",
        "id": "x1",
        "status": "completed",
        **DRUG,
        **SUBJECT,
        "whenHandedOver": "2025-03-02T09:30:00+01:00",
    },
    "Medication": {
        "resourceType": "Medication",
        "id": "x1",
        "code": {"text": "denosumab 60 mg/mL"},
        "ingredient": [
            {"itemCodeableConcept": {"text": "denosumab"}, "strength": {"numerator": {"value": 60, "unit": "mg"}}}
        ],
    },
}
assert set(BASES) == INPUT_TYPES

# Elements each type requires (R4), of those in the bases.
REQUIRED: dict[str, list[str]] = {
    "Observation": ["status", "code"],
    "Procedure": ["status", "subject"],
    "Condition": ["subject"],
    "MedicationRequest": ["status", "intent", "subject", "medicationCodeableConcept"],
    "MedicationAdministration": ["status", "subject", "medicationCodeableConcept", "effectiveDateTime"],
    "MedicationStatement": ["status", "subject", "medicationCodeableConcept"],
    "MedicationDispense": ["status", "medicationCodeableConcept"],
}
DATES: dict[str, str] = {
    "Patient": "birthDate",
    "Observation": "effectiveDateTime",
    "Procedure": "performedDateTime",
    "Condition": "onsetDateTime",
    "MedicationRequest": "authoredOn",
    "MedicationAdministration": "effectiveDateTime",
    "MedicationStatement": "effectiveDateTime",
    "MedicationDispense": "whenHandedOver",
}
# Where a decimal and an integer live in each base: paths of keys from the resource down.
DECIMALS: dict[str, tuple[str | int, ...]] = {
    "Observation": ("valueQuantity", "value"),
    "MedicationAdministration": ("dosage", "dose", "value"),
    "Medication": ("ingredient", 0, "strength", "numerator", "value"),
}
INTEGERS: dict[str, tuple[str | int, ...]] = {
    "Patient": ("multipleBirthInteger",),
    "MedicationRequest": ("dispenseRequest", "numberOfRepeatsAllowed"),
}
# Elements bound to a required code list, with the list.
CODED: dict[str, tuple[str, frozenset[str]]] = {
    "Patient": ("gender", frozenset({"male", "female", "other", "unknown"})),
    "Observation": ("status", frozenset({"registered", "preliminary", "final", "amended", "corrected"})),
    "Procedure": ("status", frozenset({"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed"})),
    "MedicationRequest": ("intent", frozenset({"proposal", "plan", "order", "original-order", "reflex-order"})),
}
# FHIR R4's dateTime (a date is its first part): anything the pattern refuses is a bad date.
DATE_TIME = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)
XHTML_NS = 'xmlns="http://www.w3.org/1999/xhtml"'
NUMBER = "__number__"  # stands for a numeric literal json.dumps cannot write; replaced in the text


@dataclass(frozen=True)
class Invalid:
    """An invalid resource as JSON text, what makes it invalid, and the type and id it claims."""

    what: str
    resource_type: str
    resource_id: str
    text: str


def encode(resource: dict[str, Any], number: str | None = None) -> str:
    text = json.dumps(resource)
    return text.replace(f'"{NUMBER}"', number) if number is not None else text


def replaced(resource: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    out: Any = json.loads(json.dumps(resource))
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return dict(out)


def paths_of(value: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every element below the resource (not resourceType): objects, arrays and primitives alike."""
    found: list[tuple[str | int, ...]] = []
    items: list[tuple[str | int, Any]] = (
        list(value.items()) if isinstance(value, dict) else list(enumerate(value)) if isinstance(value, list) else []
    )
    for key, child in items:
        if prefix == () and key == "resourceType":
            continue
        found.append((*prefix, key))
        found += paths_of(child, (*prefix, key))
    return found


def value_at(resource: dict[str, Any], path: tuple[str | int, ...]) -> Any:
    node: Any = resource
    for key in path:
        node = node[key]
    return node


def kind_of(value: Any) -> str:
    return "bool" if isinstance(value, bool) else type(value).__name__


SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "str": st.text(min_size=1, max_size=8).filter(str.strip),
    "int": st.integers(-5, 5),
    "float": st.floats(-1e6, 1e6, allow_nan=False).filter(lambda f: f != int(f)),
    "bool": st.booleans(),
    "dict": st.dictionaries(st.sampled_from(["a", "value", "reference"]), st.integers(), min_size=1, max_size=2),
    "list": st.lists(st.integers(), min_size=1, max_size=2),
}


def other_kind(value: Any) -> st.SearchStrategy[Any]:
    """A value of another JSON type than ``value`` (int and float count as one: both are numbers)."""
    kind = kind_of(value)
    numbers = {"int", "float"}
    return st.one_of(
        [s for k, s in SCALARS.items() if k != kind and not (kind in numbers and k in numbers)]
        + [st.none(), st.just(""), st.just([]), st.just({})]
    )


@st.composite
def wrong_types(draw: st.DrawFn) -> Invalid:
    resource_type = draw(st.sampled_from(sorted(BASES)))
    base = BASES[resource_type]
    path = draw(st.sampled_from(paths_of(base)))
    value = draw(other_kind(value_at(base, path)))
    return Invalid(f"{path} = {value!r}", resource_type, "x1", encode(replaced(base, path, value)))


@st.composite
def unknown_elements(draw: st.DrawFn) -> Invalid:
    resource_type = draw(st.sampled_from(sorted(BASES)))
    base = BASES[resource_type]
    # Top level or inside a data type; names that are no element of it (primitive extensions '_x' included).
    where = draw(st.sampled_from([(), *[(k,) for k, v in base.items() if isinstance(v, dict)]]))
    model = resource_type if not where else _model_of(resource_type, str(where[0]))
    known = set(r4.field_specs(model))
    name = draw(st.from_regex(r"\A_?[a-zA-Z][a-zA-Z0-9]{0,12}\Z").filter(lambda n: n not in known))
    value = draw(st.one_of(*SCALARS.values()))
    return Invalid(f"unknown {where}.{name}", resource_type, "x1", encode(replaced(base, (*where, name), value)))


def _model_of(resource_type: str, element: str) -> str:
    spec = r4.field_specs(resource_type)[element]
    assert spec.model is not None
    return spec.model


IMPOSSIBLE_DAYS = st.one_of(
    st.builds(lambda y, d: f"{y:04d}-02-{d:02d}", st.integers(1900, 2100), st.integers(30, 31)),
    st.builds(lambda y, m: f"{y:04d}-{m:02d}-31", st.integers(1900, 2100), st.sampled_from([4, 6, 9, 11])),
    st.builds(lambda y, m: f"{y:04d}-{m:02d}-01", st.integers(1900, 2100), st.integers(13, 99)),
    st.builds(lambda y, d: f"{y:04d}-01-{d:02d}", st.integers(1900, 2100), st.integers(32, 99)),
)
BAD_DATE_TEXT = st.one_of(
    st.sampled_from(
        [
            "yesterday",
            "2025/03/01",
            "20250301",
            "01-03-2025",
            "2025-3-1",
            "2025-03-01T10:00",  # a time needs seconds and a zone
            "2025-03-01T10:00:00",
            "2025-03-01T24:00:00Z",
            "2025-03-01T10:00:00+15:00",
            "2025-03-01 10:00:00Z",
            " 2025-03-01",
            "0000-01-01",
            "+2025-03-01",
            "2025-03-01T10:00:00.Z",
        ]
    ),
    st.text(max_size=25).filter(lambda t: DATE_TIME.fullmatch(t) is None),
)


@st.composite
def bad_dates(draw: st.DrawFn) -> Invalid:
    resource_type = draw(st.sampled_from(sorted(DATES)))
    element = DATES[resource_type]
    value = draw(st.one_of(IMPOSSIBLE_DAYS, BAD_DATE_TEXT))
    if resource_type == "Patient" and draw(st.booleans()):
        value = "1941-07-30T10:00:00Z"  # birthDate is a date: no time
    return Invalid(f"{element} = {value!r}", resource_type, "x1", encode({**BASES[resource_type], element: value}))


HUGE_DECIMALS = st.one_of(
    st.builds(lambda e: f"1e{e}", st.integers(309, 100_000)),
    st.builds(lambda e: f"-1.5E-{e}", st.integers(309, 100_000)),
    st.builds(lambda n: "1" + "0" * n, st.integers(64, 4000)),  # an integer literal of 65 to 4,001 digits
    st.builds(lambda n: "0." + "7" * n, st.integers(65, 20_000)),
    st.builds(lambda n: "9" * n, st.integers(4301, 6000)),  # past Python's own integer limit
)
HUGE_INTEGERS = st.one_of(
    st.integers(2**31, 2**200).map(str),
    st.integers(-(2**200), -(2**31) - 1).map(str),
    st.builds(lambda e: f"1E{e}", st.integers(10, 400)),
    st.sampled_from(["1.5", "-0.5", "2.0e0"]),
)


@st.composite
def huge_numbers(draw: st.DrawFn) -> Invalid:
    if draw(st.booleans()):
        resource_type = draw(st.sampled_from(sorted(DECIMALS)))
        path, literal = DECIMALS[resource_type], draw(HUGE_DECIMALS)
    else:
        resource_type = draw(st.sampled_from(sorted(INTEGERS)))
        path, literal = INTEGERS[resource_type], draw(HUGE_INTEGERS)
    resource = replaced(BASES[resource_type], path, NUMBER)
    return Invalid(f"{path} = {literal[:40]}", resource_type, "x1", encode(resource, literal))


@st.composite
def missing_required(draw: st.DrawFn) -> Invalid:
    resource_type = draw(st.sampled_from(sorted(REQUIRED)))
    gone = draw(st.sets(st.sampled_from(REQUIRED[resource_type]), min_size=1))
    resource = {k: v for k, v in BASES[resource_type].items() if k not in gone}
    return Invalid(f"without {sorted(gone)}", resource_type, "x1", encode(resource))


@st.composite
def bad_codes(draw: st.DrawFn) -> Invalid:
    resource_type = draw(st.sampled_from(sorted(CODED)))
    element, allowed = CODED[resource_type]
    everything = allowed | {"unknown", "entered-in-error", "cancelled", "draft", "active"}
    code = draw(st.text(min_size=1, max_size=12).filter(lambda c: c.strip() and c not in everything))
    return Invalid(f"{element} = {code!r}", resource_type, "x1", encode({**BASES[resource_type], element: code}))


HOSTILE_STRINGS = st.sampled_from(
    [
        "a\u0000b",
        "\ud800",
        "\udfff tail",
    ]
)
SCRIPTED_DIVS = st.sampled_from(
    [
        '<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div>',
        '<div xmlns="http://www.w3.org/1999/xhtml"><p onmouseover="alert(1)">x</p></div>',
        '<div xmlns="http://www.w3.org/1999/xhtml"><a href="javascript:alert(1)">x</a></div>',
        '<div xmlns="http://www.w3.org/1999/xhtml"><iframe src="//evil.example"/>x</div>',
        "<script>alert(1)</script>",
        '<div xmlns="http://www.w3.org/1999/xhtml">x</div><img src="x" onerror="alert(1)"/>',
    ]
)


@st.composite
def hostile_text(draw: st.DrawFn) -> Invalid:
    resource_type = draw(st.sampled_from(sorted(BASES)))
    base = BASES[resource_type]
    if draw(st.booleans()):
        div = draw(st.one_of(SCRIPTED_DIVS, HOSTILE_STRINGS.map(lambda t: f"<div {XHTML_NS}>{t}</div>")))
        return Invalid(
            f"text.div = {div!r}", resource_type, "x1", encode({**base, "text": {"status": "generated", "div": div}})
        )
    if draw(st.booleans()):  # a key with a lone surrogate: it must not reach a serialiser as an expression
        key = draw(st.sampled_from(sorted(k for k in base if k != "resourceType")))
        renamed = {(f"{k}\ud800" if k == key else k): v for k, v in base.items()}
        return Invalid(f"key {key!r} + surrogate", resource_type, "x1", encode(renamed))
    strings = [p for p in paths_of(base) if isinstance(value_at(base, p), str) and p != ("id",)]
    path = draw(st.sampled_from(strings))
    value = value_at(base, path) + draw(HOSTILE_STRINGS)
    # json.dumps writes U+0000 and lone surrogates as \u escapes, exactly as a hostile sender would.
    return Invalid(f"{path} += {value!r}", resource_type, "x1", encode(replaced(base, path, value)))


@st.composite
def bad_ids(draw: st.DrawFn) -> Invalid:
    resource_type = draw(st.sampled_from(sorted(BASES)))
    bad = draw(
        st.one_of(
            st.sampled_from(["", " ", ".", "..", "a/b", "a b", "a?b", "a#b", "ü", "x" * 65]),
            st.text(min_size=1, max_size=70).filter(lambda t: re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", t) is None),
        )
    )
    return Invalid(f"id = {bad!r}", resource_type, bad, encode({**BASES[resource_type], "id": bad}))


INVALID = st.one_of(
    wrong_types(), unknown_elements(), bad_dates(), huge_numbers(), missing_required(), bad_codes(), hostile_text()
)


def check_refused(response: Any, statuses: tuple[int, ...] = (400, 422)) -> None:
    assert response.status_code in statuses, (response.status_code, response.text[:1500])
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    assert outcome["issue"], outcome


def bundle_text(bundle_type: str, entries: list[tuple[str, str, str]]) -> str:
    """A Bundle around resources given as JSON text: (method, url, resource text)."""
    parts = [
        f'{{"resource":{text},"request":{{"method":"{method}","url":{json.dumps(url)}}}}}'
        for method, url, text in entries
    ]
    return f'{{"resourceType":"Bundle","type":"{bundle_type}","entry":[{",".join(parts)}]}}'


def post_everywhere(client: TestClient, invalid: Invalid) -> None:
    """Create, update, transaction (alone and after a valid entry) and batch: all refuse it."""
    body = invalid.text.encode()
    check_refused(client.post(f"/fhir/{invalid.resource_type}", content=body, headers=FHIR))
    if re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", invalid.resource_id) and invalid.resource_id not in (".", ".."):
        check_refused(client.put(f"/fhir/{invalid.resource_type}/{invalid.resource_id}", content=body, headers=FHIR))
    url = f"{invalid.resource_type}/{invalid.resource_id}"
    valid = json.dumps(BASES["Patient"] | {"id": "p1"})
    transaction = bundle_text("transaction", [("PUT", "Patient/p1", valid), ("PUT", url, invalid.text)])
    check_refused(client.post("/fhir", content=transaction.encode(), headers=FHIR))
    batch = client.post("/fhir", content=bundle_text("batch", [("PUT", url, invalid.text)]).encode(), headers=FHIR)
    if batch.status_code == 200:  # the entry answers for itself
        entry = batch.json()["entry"][0]["response"]
        assert entry["status"][:3] in ("400", "422"), entry
        assert entry["outcome"]["resourceType"] == "OperationOutcome"
    else:  # some damage is found in the envelope (e.g. U+0000 anywhere in the body)
        check_refused(batch)


def run(client: TestClient, database_url: str, invalid: Invalid) -> None:
    before = table_counts(database_url)
    post_everywhere(client, invalid)
    assert table_counts(database_url) == before, invalid.what


PROPERTY = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_the_bases_are_valid_so_each_refusal_is_the_mutations_doing(client: TestClient) -> None:
    for resource_type, base in BASES.items():
        response = client.put(f"/fhir/{resource_type}/x1", content=json.dumps(base), headers=FHIR)
        assert response.status_code == 201, (resource_type, response.text)


@PROPERTY
@given(invalid=INVALID)
def test_invalid_fhir_is_refused_everywhere(client: TestClient, database_url: str, invalid: Invalid) -> None:
    run(client, database_url, invalid)


@PROPERTY
@given(invalid=bad_ids())
def test_invalid_ids_are_refused(client: TestClient, database_url: str, invalid: Invalid) -> None:
    run(client, database_url, invalid)


@settings(PROPERTY, max_examples=4)
@given(
    resource_type=st.sampled_from(sorted(BASES)),
    element=st.sampled_from(["note", "name", "code"]),
    extra=st.integers(1, 5000),
)
def test_strings_over_1_mb_are_refused(
    client: TestClient, database_url: str, resource_type: str, element: str, extra: int
) -> None:
    huge = "x" * (MAX_STRING_LENGTH + extra)
    value: Any = {"note": [{"text": huge}], "name": [{"family": huge}], "code": {"text": huge}}[element]
    if element not in r4.field_specs(resource_type):
        value, element = {"text": huge}, "code" if "code" in r4.field_specs(resource_type) else "text"
        if element == "text":
            value = {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{huge}</div>'}
    run(
        client,
        database_url,
        Invalid(f"{element} over 1 MB", resource_type, "x1", encode({**BASES[resource_type], element: value})),
    )


PICK_OTHER: Callable[[str], st.SearchStrategy[str]] = lambda t: st.sampled_from(sorted(set(BASES) - {t}))  # noqa: E731


@PROPERTY
@given(data=st.data(), method=st.sampled_from(["PUT", "POST"]), bundle_type=st.sampled_from(["transaction", "batch"]))
def test_a_bundle_entry_whose_resource_is_another_type_is_refused(
    client: TestClient, database_url: str, data: st.DataObject, method: str, bundle_type: str
) -> None:
    resource_type = data.draw(st.sampled_from(sorted(BASES)))
    claimed = data.draw(
        st.one_of(
            PICK_OTHER(resource_type), st.from_regex(r"\A[A-Z][a-zA-Z]{0,15}\Z").filter(lambda t: t != resource_type)
        )
    )
    resource = json.dumps(BASES[resource_type])
    url = f"{claimed}/x1" if method == "PUT" else claimed
    before = table_counts(database_url)
    response = client.post("/fhir", content=bundle_text(bundle_type, [(method, url, resource)]).encode(), headers=FHIR)
    if bundle_type == "transaction":
        check_refused(response)
        assert "Bundle.entry[0].request.url" in response.text
    else:
        assert response.status_code == 200, response.text
        entry = response.json()["entry"][0]["response"]
        assert entry["status"].startswith("400"), entry
    assert table_counts(database_url) == before
