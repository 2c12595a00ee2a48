"""Strict JSON in, exact decimals out, and the content hash that decides whether a version is new."""

from __future__ import annotations

from decimal import Decimal

import pytest

from service.fhir.jsonio import content_hash, dumps, parse
from service.platform.errors import Problem, RefractureError


def test_decimals_keep_their_digits() -> None:
    value = parse(b'{"a": 1.50, "b": 0.0100, "c": 7}')
    assert value == {"a": Decimal("1.50"), "b": Decimal("0.0100"), "c": 7}
    assert dumps(value) == b'{"a":1.50,"b":0.0100,"c":7}'


@pytest.mark.parametrize(
    "raw",
    [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": 1, "a": 2}', b"{'a': 1}", b"\xff\xfe", b'{"a": 1', b"[" * 100000],
)
def test_not_strict_json_is_malformed(raw: bytes) -> None:
    with pytest.raises(RefractureError) as caught:
        parse(raw)
    assert caught.value.problem is Problem.MALFORMED


def test_content_hash_ignores_server_meta_only() -> None:
    base = {"resourceType": "Patient", "id": "p", "gender": "female"}
    with_meta = {**base, "meta": {"versionId": "3", "lastUpdated": "2020-01-01T00:00:00Z"}}
    with_tag = {**base, "meta": {"versionId": "3", "tag": [{"code": "x"}]}}
    assert content_hash(base) == content_hash(with_meta)
    assert content_hash(base) != content_hash(with_tag)
    assert content_hash(base) == content_hash({"gender": "female", "id": "p", "resourceType": "Patient"})
    assert content_hash(base) != content_hash({**base, "gender": "male"})
