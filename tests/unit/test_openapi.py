"""openapi/openapi.json is the exported API document: this fails when the code and the file drift apart."""

from __future__ import annotations

import json

from service.entrypoints.api.openapi import openapi_document
from tests.support.paths import ROOT

EXPORTED = ROOT / "openapi" / "openapi.json"


def test_the_exported_document_matches_the_code() -> None:
    current = json.loads(json.dumps(openapi_document()))
    assert EXPORTED.exists(), "run: refracture openapi --out openapi/openapi.json"
    assert json.loads(EXPORTED.read_text(encoding="utf-8")) == current, (
        "the API changed: run `refracture openapi --out openapi/openapi.json` and commit the result"
    )


def test_every_operation_has_a_stable_id_and_fhir_errors_are_documented() -> None:
    document = openapi_document()
    operations = [op for path in document["paths"].values() for op in path.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids))
    post_bundle = document["paths"]["/fhir"]["post"]
    assert "application/fhir+json" in post_bundle["requestBody"]["content"]
    assert {"400", "413", "415", "422"} <= set(post_bundle["responses"])
