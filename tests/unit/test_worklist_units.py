"""Pure parts of the worklist: who a Patient is for the list, ages, and cursors."""

from __future__ import annotations

import base64
import json
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.patient import age_on
from service.fhir.demographics import demographics_of
from service.platform.errors import RefractureError
from service.usecases.ports.worklist import Sort
from service.usecases.worklist import decode_cursor, encode_cursor

MR = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}


def test_the_official_name_wins_and_reads_family_comma_given() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p",
        "name": [
            {"use": "old", "family": "Maiden", "given": ["Ada"]},
            {"use": "official", "family": "Testperson", "given": ["Ada", "Maria"]},
        ],
        "birthDate": "1944-02",
        "gender": "female",
    }
    found = demographics_of(patient)
    assert found.name == "Testperson, Ada Maria"
    assert found.birth_date == date(1944, 2, 1)  # a partial date counts from its first day
    assert found.sex == "female"


def test_a_name_given_only_as_text_is_kept() -> None:
    assert demographics_of({"id": "p", "name": [{"text": "Ada Testperson"}]}).name == "Ada Testperson"
    assert demographics_of({"id": "p"}).name is None


@pytest.mark.parametrize(
    ("identifiers", "system", "mrn"),
    [
        ([{"system": "urn:a", "value": "A1"}, {"system": "urn:mrn", "value": "M1"}], "urn:mrn", "M1"),
        ([{"system": "urn:a", "value": "A1"}, {"type": MR, "system": "urn:b", "value": "M2"}], None, "M2"),
        ([{"system": "urn:a", "value": "A1"}, {"type": MR, "system": "urn:b", "value": "M2"}], "urn:zz", "M2"),
        ([{"system": "urn:a", "value": "A1"}], None, "A1"),
        ([{"system": "urn:a"}], None, None),  # no value, no MRN
        ([], None, None),
    ],
)
def test_the_mrn_is_the_configured_system_else_typed_mr_else_the_first(
    identifiers: list[dict[str, object]], system: str | None, mrn: str | None
) -> None:
    assert demographics_of({"id": "p", "identifier": identifiers}, system).mrn == mrn


def test_age_counts_whole_years() -> None:
    assert age_on(date(1941, 7, 30), date(2026, 7, 29)) == 84
    assert age_on(date(1941, 7, 30), date(2026, 7, 30)) == 85
    assert age_on(None, date(2026, 1, 1)) is None


@given(alert=st.uuids().map(str))
def test_cursors_round_trip_for_every_sort(alert: str) -> None:
    for sort in Sort:
        cursor = encode_cursor(sort, alert)
        assert decode_cursor(cursor, sort) == alert
        # The sort and the alert id, nothing of the patient (cursors travel in URLs).
        assert json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))) == [sort.value, alert]


def _raw(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!",
        _raw([]),
        _raw({"due": 1}),
        _raw(["due"]),
        _raw(["due", "2026-01-01"]),  # not an alert id
        _raw(["due", 1]),
        _raw(["due", "2026-01-01", "x"]),  # the old keyset cursors
        _raw(["due", "0b8f6c1e-5f0e-4a7e-9d59-3a0d3c1f2b7a", "extra"]),
        _raw(["risk", [1]]),
        _raw(["name", "0b8f6c1e-5f0e-4a7e-9d59-3a0d3c1f2b7a"]),  # another sort's cursor
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_a_cursor_that_is_not_ours_is_refused(cursor: str) -> None:
    with pytest.raises(RefractureError) as refused:
        decode_cursor(cursor or "=", Sort.DUE)
    assert "cursor" in str(refused.value)
