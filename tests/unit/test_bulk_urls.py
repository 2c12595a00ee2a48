"""Bulk Data: the SMART token goes only to the EHR base's origin (and listed file hosts); status and file URLs the EHR
names elsewhere, at internal addresses, or reached by a redirect are refused (issue 16, finding 10)."""

from __future__ import annotations

from collections.abc import Iterable

import httpx
import pytest

from service.adapters.ehr.auth import BearerAuth
from service.adapters.ehr.bulk import BulkDataClient, UrlPolicy
from service.platform.errors import EhrRejected

BASE = "https://ehr.example.org/fhir"


def resolver(table: dict[str, list[str]]) -> Resolve:
    return Resolve(table)


class Resolve:
    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    def __call__(self, host: str) -> Iterable[str]:
        return self.table.get(host, [])


class Recorder:
    """Every request the client sends, and its Authorization header."""

    def __init__(self, answers: dict[str, httpx.Response]) -> None:
        self.answers = answers
        self.seen: list[tuple[str, str | None]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((str(request.url), request.headers.get("authorization")))
        return self.answers.get(str(request.url), httpx.Response(200, json={"transactionTime": "x", "output": []}))


def client(recorder: Recorder, policy: UrlPolicy | None = None) -> BulkDataClient:
    http = httpx.Client(transport=httpx.MockTransport(recorder), follow_redirects=True)
    return BulkDataClient(BASE, BearerAuth("population-token"), http, policy)


def test_a_status_url_on_the_ehrs_origin_gets_the_token() -> None:
    recorder = Recorder({})
    client(recorder).poll("https://ehr.example.org/bulk-status/1")
    assert recorder.seen == [("https://ehr.example.org/bulk-status/1", "Bearer population-token")]


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker.example.net/status",
        "http://ehr.example.org/bulk-status/1",  # same host, other scheme: another origin
        "https://ehr.example.org:8443/bulk-status/1",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_a_status_url_elsewhere_is_refused_and_sees_no_token(url: str) -> None:
    recorder = Recorder({})
    with pytest.raises(EhrRejected):
        client(recorder).poll(url)
    with pytest.raises(EhrRejected):
        client(recorder).cancel(url)
    assert recorder.seen == []


def test_a_file_needing_the_token_is_fetched_only_from_a_trusted_origin() -> None:
    recorder = Recorder({})
    with pytest.raises(EhrRejected):
        client(recorder).file("https://files.example.net/a.ndjson", with_token=True)
    listed = UrlPolicy(BASE, ["https://files.example.net"])
    file = client(recorder, listed).file("https://files.example.net/a.ndjson", with_token=True)
    list(file.chunks(0))
    assert recorder.seen == [("https://files.example.net/a.ndjson", "Bearer population-token")]


@pytest.mark.parametrize(
    ("url", "addresses"),
    [
        ("http://10.1.2.3/a.ndjson", []),
        ("http://192.168.0.10/a.ndjson", []),
        ("http://127.0.0.1:9000/a.ndjson", []),
        ("http://[::1]/a.ndjson", []),
        ("http://[fe80::1]/a.ndjson", []),
        ("http://[::ffff:169.254.169.254]/a.ndjson", []),
        ("http://metadata.internal/a.ndjson", ["169.254.169.254"]),
        ("http://sneaky.example.net/a.ndjson", ["93.184.216.34", "10.0.0.1"]),  # one internal answer is enough
        ("http://nowhere.example.net/a.ndjson", []),  # does not resolve
        ("file:///etc/passwd", []),
    ],
)
def test_a_file_at_an_internal_address_is_refused_even_without_the_token(url: str, addresses: list[str]) -> None:
    recorder = Recorder({})
    policy = UrlPolicy(BASE, resolve=resolver({(httpx.URL(url).host or "x"): addresses}))
    with pytest.raises(EhrRejected):
        client(recorder, policy).file(url, with_token=False)
    assert recorder.seen == []


def test_a_public_file_without_the_token_is_fetched_without_it() -> None:
    recorder = Recorder({})
    policy = UrlPolicy(BASE, resolve=resolver({"cdn.example.net": ["93.184.216.34"]}))
    list(client(recorder, policy).file("https://cdn.example.net/a.ndjson", with_token=False).chunks(0))
    assert recorder.seen == [("https://cdn.example.net/a.ndjson", None)]


def test_a_redirect_to_an_internal_address_is_refused_hop_by_hop() -> None:
    status = "https://ehr.example.org/bulk-status/1"
    recorder = Recorder({status: httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/"})})
    with pytest.raises(EhrRejected):
        client(recorder).poll(status)
    assert [url for url, _ in recorder.seen] == [status]  # the metadata address was never asked


def test_a_redirect_to_another_public_host_carries_no_token() -> None:
    status = "https://ehr.example.org/bulk-files/1/a.ndjson"
    recorder = Recorder({status: httpx.Response(307, headers={"Location": "https://elsewhere.example.net/a"})})
    policy = UrlPolicy(BASE, resolve=resolver({"elsewhere.example.net": ["93.184.216.34"]}))
    list(client(recorder, policy).file(status, with_token=True).chunks(0))
    assert recorder.seen == [(status, "Bearer population-token"), ("https://elsewhere.example.net/a", None)]
