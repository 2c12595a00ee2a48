"""The pure checks behind the attack catalogue: narratives, one patient per resource, JSON limits, far dates."""

from __future__ import annotations

import contextlib
import time
from decimal import Decimal
from typing import Any

import pytest

from service.fhir.dates import parse_time
from service.fhir.demographics import MAX_NAME_LENGTH, demographics_of
from service.fhir.jsonio import dumps, parse
from service.fhir.narrative import narrative_issues
from service.fhir.outcome import MAX_ISSUES, operation_outcome
from service.fhir.patient_rules import moved_patient_issues, other_patient_issues
from service.fhir.validation import validate_resource
from service.platform.errors import Issue, RefractureError

DIV = '<div xmlns="http://www.w3.org/1999/xhtml">'


@pytest.mark.parametrize(
    "div",
    [
        f"{DIV}<p>T-score <b>&#8722;2.5</b> &amp; &lt;ok&gt;</p></div>",
        f'{DIV}<table><tr><td colspan="2" valign="top" style="color: red">x</td></tr></table></div>',
        f'{DIV}<a href="https://ehr.example/x">a</a><a href="#n">b</a><a href="Patient/1">c</a></div>',
        f'{DIV}<a href="mailto:care@example.org">mail</a><a name="n">anchor</a></div>',
        f'{DIV}<img src="data:image/png;base64,AAAA" alt="x"/></div>',
        f"{DIV}<!-- a comment --><ul><li>one</li></ul></div>",
    ],
)
def test_safe_narratives_pass(div: str) -> None:
    assert narrative_issues(div, "Patient.text.div") == []


@pytest.mark.parametrize(
    ("div", "says"),
    [
        (f"{DIV}<script>alert(1)</script></div>", "<script>"),
        (f'{DIV}<p onclick="x()">x</p></div>', "onclick"),
        (f'{DIV}<p ONCLICK="x()">x</p></div>', "ONCLICK"),
        (f'{DIV}<a href="JaVaScRiPt:alert(1)">x</a></div>', "href"),
        (f'{DIV}<a href="java&#x0A;script:alert(1)">x</a></div>', "href"),
        (f'{DIV}<a href="vbscript:x">x</a></div>', "href"),
        (f'{DIV}<a href="data:text/html,&lt;script&gt;">x</a></div>', "href"),
        (f'{DIV}<img src="data:image/svg+xml,x"/></div>', "src"),
        (f'{DIV}<p style="width: expression(alert(1))">x</p></div>', "style"),
        (f'{DIV}<p style="background: u\\72l(x)">x</p></div>', "style"),
        (f"{DIV}<iframe>x</iframe></div>", "<iframe>"),
        (f"{DIV}<form><input/></form>x</div>", "<form>"),
        (f'{DIV}<base href="https://evil.example/"/>x</div>', "<base>"),
        (f'{DIV}<p xlink:href="x">x</p></div>', "xlink:href"),
        (f"{DIV}<![CDATA[x]]></div>", "CDATA"),
        (f"{DIV}<?xml-stylesheet href='x'?>x</div>", "processing"),
        (f'<!DOCTYPE div SYSTEM "http://evil.example/x.dtd">{DIV}x</div>', "DOCTYPE"),
        ('<div xmlns="http://www.w3.org/2000/svg">x</div>', "namespace"),
        ("<span>x</span>", "<div>"),
        (f"{DIV}x&nbsp;y</div>", "well-formed"),
        (f"{DIV}<p>x</div>", "well-formed"),
        (f"{DIV}x</div>y", "well-formed"),
        ("", "well-formed"),
        (f"{DIV}<br/> </div>", "txt-2"),
        (f"{DIV}\ud800</div>", "surrogate"),
    ],
)
def test_unsafe_narratives_are_named(div: str, says: str) -> None:
    issues = narrative_issues(div, "Patient.text.div")
    assert issues
    assert all(i.expression == "Patient.text.div" for i in issues)
    assert any(says in i.text for i in issues), [i.text for i in issues]


@pytest.mark.parametrize(
    "hostile",
    ["<!--" * 200_000, "</" * 200_000, "<a " * 200_000, DIV + "<p>" * 200_000 + "</p>" * 200_000 + "</div>"],
)
def test_narrative_checks_take_linear_time(hostile: str) -> None:
    # The standard library's HTML tokenizer took minutes on the first of these.
    started = time.monotonic()
    narrative_issues(hostile, "x")
    assert time.monotonic() - started < 2.0


MIB = 1024 * 1024


def _linear(run: Any, hostile: str) -> None:
    started = time.monotonic()
    run(hostile)
    # Generous for a shared CI machine (each takes well under a second alone); quadratic took hours.
    assert time.monotonic() - started < 2.0, "a parser is not linear on crafted input"


def _medication_text(text: str) -> Any:
    from service.fhir.medications import classify

    return classify([{"text": text}])


def _level_text(text: str) -> Any:
    from service.fhir.levels import levels_of

    return levels_of({"text": text})


def _reference(text: str) -> Any:
    from service.fhir.references import split_reference

    return split_reference(text)


def _location(text: str) -> Any:
    from service.fhir.writeback import parse_location

    return parse_location(text)


def _json_body(text: str) -> Any:
    with contextlib.suppress(RefractureError):
        parse(('{"a": "' + text + '"}').encode())


def _narrative_href(text: str) -> Any:
    return narrative_issues(f'{DIV}<a href="{text}">x</a></div>', "x")


def _drug_label(text: str) -> Any:
    from service.entrypoints.api.web import _drug_name

    return _drug_name(text)


def _warning_line(text: str) -> Any:
    import logging

    from service.platform.logs import JsonFormatter

    record = logging.LogRecord("py.warnings", logging.WARNING, __file__, 1, text, None, None)
    return JsonFormatter().format(record)


def _scope(text: str) -> Any:
    from service.security.principal import principal_from_claims

    return principal_from_claims({"sub": "x", "scope": text}, "roles")


def _fhir_patterns(text: str) -> Any:
    # The FHIR models' own patterns (dates, ids, codes) run in pydantic-core's regex engine, which does not
    # backtrack.
    return validate_resource({"resourceType": "Patient", "id": "p", "birthDate": text, "gender": text})


# Every regular expression that runs over text from outside (EHR input, feeds, bulk files, CDS Hooks, headers),
# each with input crafted against it; a megabyte (the FHIR string limit) in well under a second each. The first two
# took hours before their quantifiers were bounded ("denosumab" and 15,000 digits: 12.6 s end to end).
@pytest.mark.parametrize(
    ("run", "hostile"),
    [
        pytest.param(_medication_text, "denosumab " + "1" * MIB, id="medication-amount-digits"),
        pytest.param(_medication_text, "denosumab " + "1." * (MIB // 2), id="medication-amount-points"),
        pytest.param(_medication_text, "denosumab 1" + " " * MIB + "x", id="medication-amount-spaces"),
        pytest.param(_medication_text, "denosumab " + "1 MG/" * (MIB // 5), id="medication-concentration"),
        pytest.param(_medication_text, "denosumab " + "1 " * (MIB // 2), id="medication-volume"),
        pytest.param(_medication_text, "denosumab " + "1 MG/1 ML " * (MIB // 10), id="medication-amount-times-volume"),
        pytest.param(_medication_text, "prednisolone " + "inhal" * (MIB // 5), id="medication-names"),
        pytest.param(_level_text, "T1" + " " * MIB + "-", id="levels-range-spaces"),
        pytest.param(_level_text, "T1 - " * (MIB // 5), id="levels-ranges"),
        pytest.param(_level_text, "T" + "1" * MIB, id="levels-digits"),
        pytest.param(_reference, "/A" + "a" * MIB, id="reference-type"),
        pytest.param(_reference, "/Aa/b" * (MIB // 5), id="reference-segments"),
        pytest.param(_location, "/A" + "a" * MIB, id="location-type"),
        pytest.param(_location, "/Aa/" * (MIB // 4), id="location-segments"),
        pytest.param(_json_body, "\\\\" * (MIB // 4) + "\\u0000", id="json-nul-escapes"),
        pytest.param(_narrative_href, "a" * MIB, id="narrative-scheme"),
        pytest.param(_narrative_href, "\t" * MIB + "javascript:x", id="narrative-url-noise"),
        pytest.param(_drug_label, "1" * MIB + "x", id="drug-label"),
        pytest.param(_warning_line, ":1" * (MIB // 2), id="warning-location"),
        pytest.param(_scope, "system/" + "A" * MIB, id="smart-scope"),
        pytest.param(_scope, "system/Patient.read?" + "x" * MIB, id="smart-scope-query"),
        pytest.param(_fhir_patterns, "1" * MIB, id="fhir-date-and-code"),
    ],
)
def test_text_parsers_take_linear_time(run: Any, hostile: str) -> None:
    _linear(run, hostile)


def test_validation_reaches_narratives_wherever_they_are() -> None:
    bad = {"status": "generated", "div": f"{DIV}<script>x</script></div>"}
    resource = {"resourceType": "Patient", "contained": [{"resourceType": "Medication", "id": "m", "text": bad}]}
    assert "Patient.contained[0].text.div" in [i.expression for i in validate_resource(resource)]


def observation(subject: str | None = "A", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "id": "o1", "status": "final", **extra}
    if subject is not None:
        resource["subject"] = {"reference": f"Patient/{subject}"}
    return resource


def expressions(issues: list[Issue]) -> list[str | None]:
    return [i.expression for i in issues]


def test_a_second_patient_is_named_by_its_path() -> None:
    resource = observation(performer=[{"reference": "Practitioner/1"}, {"reference": "Patient/B"}])
    assert expressions(other_patient_issues(resource, "Observation")) == ["Observation.performer[1].reference"]
    assert other_patient_issues(observation(performer=[{"reference": "Patient/A"}]), "Observation") == []


def test_without_an_own_patient_the_first_one_named_counts() -> None:
    resource = observation(None, performer=[{"reference": "Patient/A"}, {"reference": "Patient/B"}])
    assert expressions(other_patient_issues(resource, "X")) == ["X.performer[1].reference"]


def test_fhirs_own_ways_to_name_someone_else_are_allowed() -> None:
    assert other_patient_issues(observation(focus=[{"reference": "Patient/B"}]), "Observation") == []
    linked = {"resourceType": "Patient", "id": "A", "link": [{"other": {"reference": "Patient/B"}, "type": "seealso"}]}
    assert other_patient_issues(linked, "Patient") == []
    # ... but only at the top: a contained Observation's focus is still a reference of this one.
    contained = {"resourceType": "Observation", "id": "c", "status": "final", "subject": {"reference": "Patient/B"}}
    assert other_patient_issues(observation(contained=[contained]), "Observation")


def test_contained_and_urn_and_logical_references_are_not_patients() -> None:
    resource = observation(
        performer=[{"reference": "#p"}, {"reference": "urn:uuid:x"}, {"identifier": {"value": "B"}}],
        derivedFrom=[{"reference": "Patient?identifier=B"}],
    )
    assert other_patient_issues(resource, "Observation") == []


def test_a_stored_resource_keeps_its_patient() -> None:
    assert moved_patient_issues(None, observation("B"), "Observation") == []
    assert moved_patient_issues("A", observation("A"), "Observation") == []
    assert expressions(moved_patient_issues("A", observation("B"), "Bundle.entry[0].resource")) == [
        "Bundle.entry[0].resource.subject"
    ]
    assert "no patient" in moved_patient_issues("A", observation(None), "Observation")[0].text


def test_integers_past_64_bits_round_trip_exactly() -> None:
    parsed = parse(b'{"a": 18446744073709551616, "b": -9223372036854775809, "c": 18446744073709551615}')
    assert parsed == {"a": Decimal(2**64), "b": Decimal(-(2**63) - 1), "c": 2**64 - 1}
    assert dumps(parsed) == b'{"a":18446744073709551616,"b":-9223372036854775809,"c":18446744073709551615}'


@pytest.mark.parametrize("raw", [b'{"a":"\\u0000"}', b'{"a\\u0000":1}', b'["x\\\\\\u0000"]', b'{"a":["b","\\u0000c"]}'])
def test_nul_is_refused(raw: bytes) -> None:
    with pytest.raises(RefractureError):
        parse(raw)


def test_the_text_backslash_u0000_is_no_nul() -> None:
    assert parse(b'{"a":"\\\\u0000"}') == {"a": "\\u0000"}


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("0001-01-01T00:00:00+14:00", False),
        ("9999-12-31T23:00:00-12:00", False),
        ("0001", False),
        ("1799-12-31", False),
        ("2201-01-01", False),
        ("1800-01-01", True),
        ("2200-12-31T23:59:59Z", True),
        ("2025-03-01T10:00:00+14:00", True),
    ],
)
def test_far_times_are_not_used(value: str, valid: bool) -> None:
    assert (parse_time(value) is not None) == valid


def test_an_outcome_lists_at_most_max_issues() -> None:
    outcome = operation_outcome([Issue("value", f"bad {i}") for i in range(1000)])
    assert len(outcome["issue"]) == MAX_ISSUES + 1
    assert outcome["issue"][-1]["details"]["text"] == "900 more issues are not listed"


def test_a_long_name_is_shortened_for_the_worklist_only() -> None:
    patient = {"resourceType": "Patient", "id": "p", "name": [{"family": "x" * 5000, "given": ["y"]}]}
    name = demographics_of(patient).name
    assert name is not None
    assert len(name) == MAX_NAME_LENGTH
    assert name.endswith("…")
