"""How the EHR's answers are read: Retry-After in either form, and a malformed one never crashes a delivery."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from service.adapters.ehr.client import answer_body, retry_after


def answer(headers: dict[str, str] | None = None, content: bytes = b"") -> httpx.Response:
    return httpx.Response(503, headers=headers, content=content)


def test_retry_after_in_seconds() -> None:
    assert retry_after(answer({"Retry-After": " 120 "})) == 120.0


def test_retry_after_as_an_http_date() -> None:
    later = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert retry_after(answer({"Retry-After": later})) == pytest.approx(60, abs=2)


def test_a_past_date_means_now() -> None:
    assert retry_after(answer({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0


@pytest.mark.parametrize("value", ["", "soon", "-5", "1.5", "Someday, 99 Foo 20xx"])
def test_an_absent_or_malformed_header_leaves_the_back_off_to_us(value: str) -> None:
    assert retry_after(answer({"Retry-After": value})) is None


def test_the_body_is_json_or_the_start_of_its_text() -> None:
    assert answer_body(answer(content=b'{"resourceType": "OperationOutcome"}')) == {"resourceType": "OperationOutcome"}
    assert answer_body(answer(content=b"<html>" + b"x" * 5000)) == ("<html>" + "x" * 5000)[:4000]
    assert answer_body(answer()) is None
