"""The CDS Hooks fhirServer reader: the token goes to allow-listed servers only, never to link-local or reserved
addresses (even listed ones, checked at request time), and redirects are not followed."""

from __future__ import annotations

import httpx
import pytest

from service.adapters.ehr.cds_fhir import CdsFhirReader

LISTED = "https://ehr.hospital.example/fhir"
BUNDLE = {"resourceType": "Bundle", "type": "searchset", "entry": []}


def reader(addresses: list[str], answer: httpx.Response | None = None) -> tuple[CdsFhirReader, list[httpx.Request]]:
    sent: list[httpx.Request] = []

    def transport(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answer or httpx.Response(200, json=BUNDLE)

    http = httpx.Client(transport=httpx.MockTransport(transport))
    return CdsFhirReader([LISTED + "/"], http, resolve=lambda _: addresses), sent


def test_a_listed_server_on_the_hospital_network_is_read_with_the_token() -> None:
    read, sent = reader(["10.20.30.40"])
    assert read.active_medications(LISTED, "tok", "p1") == BUNDLE
    [request] = sent
    assert request.headers["authorization"] == "Bearer tok"
    assert request.url.params["patient"] == "p1"
    assert str(request.url).startswith(LISTED + "/MedicationRequest?")


@pytest.mark.parametrize(
    "server",
    ["https://evil.example.org/fhir", LISTED + "/../admin", "https://ehr.hospital.example/fhir2", "ftp://x/fhir", ""],
)
def test_a_server_off_the_list_is_never_called(server: str) -> None:
    read, sent = reader(["10.20.30.40"])
    assert read.active_medications(server, "tok", "p1") is None
    assert sent == []


@pytest.mark.parametrize("address", ["169.254.169.254", "fe80::1", "0.0.0.0", "224.0.0.1", "240.0.0.1"])
def test_a_listed_name_that_resolves_to_a_link_local_or_reserved_address_is_refused(address: str) -> None:
    read, sent = reader([address])
    assert read.active_medications(LISTED, "tok", "p1") is None
    assert sent == []


def test_an_unresolvable_name_is_refused() -> None:
    read, sent = reader([])
    assert read.active_medications(LISTED, "tok", "p1") is None
    assert sent == []


def test_redirects_are_not_followed() -> None:
    moved = httpx.Response(302, headers={"Location": "https://evil.example.org/steal"})
    read, sent = reader(["10.20.30.40"], moved)
    assert read.active_medications(LISTED, "tok", "p1") is None
    assert len(sent) == 1


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(401), httpx.Response(200, text="not json"), httpx.Response(200, json={"resourceType": "Patient"})],
)
def test_a_failed_read_is_no_read(answer: httpx.Response) -> None:
    read, _ = reader(["10.20.30.40"], answer)
    assert read.active_medications(LISTED, "tok", "p1") is None
