"""The EHR's FHIR Bulk Data endpoints over httpx: kick-off, status, NDJSON downloads (streamed), DELETE.

Failures are classified as the write-back client does (client.py): transport errors, 429 and 5xx are temporary with
Retry-After kept; 404/410 mean the job or file is gone (ExportGone); other 4xx are refusals. A 401 drops the token
and asks again once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final
from urllib.parse import urlsplit

import httpx

from service.adapters.ehr.auth import Auth
from service.adapters.ehr.client import answer_body, retry_after
from service.adapters.ehr.factory import make_auth
from service.config import Settings
from service.errors import EhrRejected, EhrTemporaryError
from service.fhir.resource_types import INPUT_TYPES
from service.usecases.bulk_export import ExportGone, ExportStatus

__all__ = ["BulkDataClient", "RemoteNdjsonFile", "bulk_scopes", "make_bulk_client"]

FHIR_JSON: Final = "application/fhir+json"
NDJSON: Final = "application/fhir+ndjson"


def bulk_scopes(style: str) -> str:
    """The SMART scopes an export of refracture's input types needs (v2 `.rs`, v1 `.read`)."""
    suffix = ".rs" if style == "v2" else ".read"
    return " ".join(f"system/{kind}{suffix}" for kind in sorted(INPUT_TYPES))


def make_bulk_client(settings: Settings) -> BulkDataClient | None:
    """A Bulk Data client for REFRACTURE_EHR_BASE_URL with the configured authentication (None without an EHR).

    Raises:
        ValueError: the authentication settings are incomplete.
    """
    if not settings.ehr_base_url:
        return None
    # Files can be large and slow to start: the read timeout is per chunk, not per file.
    timeout = httpx.Timeout(settings.ehr_read_timeout_s, connect=settings.ehr_connect_timeout_s)
    http = httpx.Client(timeout=timeout, follow_redirects=True)
    return BulkDataClient(settings.ehr_base_url, make_auth(settings, http, bulk_scopes(settings.ehr_scope_style)), http)


class BulkDataClient:
    """Implements the ExportGateway port."""

    def __init__(self, base_url: str, auth: Auth, http: httpx.Client) -> None:
        self._base = base_url.rstrip("/")
        self._auth = auth
        self._http = http

    @property
    def base_url(self) -> str:
        """See ExportGateway."""
        return self._base

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def kick_off(self, target: str, params: Mapping[str, str]) -> str:
        """See ExportGateway."""
        headers = {"Accept": FHIR_JSON, "Prefer": "respond-async"}
        response = self._send("GET", f"{self._base}/{target.strip('/')}/$export", headers, params)
        if response.status_code != 202:
            _raise_for(response, "the export kick-off")
            raise EhrRejected(f"the export kick-off answered {response.status_code}, not 202", response.status_code)
        location = response.headers.get("content-location")
        if not location:
            raise EhrRejected("the export kick-off answered 202 without Content-Location", 202)
        return str(location)

    def poll(self, status_url: str) -> ExportStatus:
        """See ExportGateway."""
        response = self._send("GET", status_url, {"Accept": "application/json"})
        if response.status_code == 202:
            return ExportStatus(progress=response.headers.get("x-progress"), retry_after=retry_after(response))
        if response.status_code == 200:
            try:
                manifest = response.json()
            except ValueError:
                raise EhrRejected("the export's manifest is not JSON", 200) from None
            if not isinstance(manifest, dict):
                raise EhrRejected("the export's manifest is not a JSON object", 200)
            return ExportStatus(manifest=manifest)
        _raise_for(response, "the export")
        raise EhrRejected(f"the export status answered {response.status_code}", response.status_code)

    def file(self, url: str, with_token: bool) -> RemoteNdjsonFile:
        """See ExportGateway."""
        return RemoteNdjsonFile(self._http, self._auth if with_token else None, url)

    def cancel(self, status_url: str) -> None:
        """See ExportGateway."""
        response = self._send("DELETE", status_url, {"Accept": FHIR_JSON})
        if response.status_code >= 300:
            _raise_for(response, "the export's DELETE")

    def _send(
        self, method: str, url: str, headers: dict[str, str], params: Mapping[str, str] | None = None
    ) -> httpx.Response:
        for attempt in (1, 2):
            try:
                response = self._http.request(method, url, params=params, headers={**headers, **self._auth.header()})
            except httpx.HTTPError as exc:
                raise EhrTemporaryError(f"the EHR could not be reached ({type(exc).__name__})") from exc
            if response.status_code == 401 and attempt == 1:
                self._auth.invalidate()
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover


class RemoteNdjsonFile:
    """An export's output or error file, streamed (never held whole); implements LineSource."""

    def __init__(self, http: httpx.Client, auth: Auth | None, url: str) -> None:
        self._http = http
        self._auth = auth
        self._url = url

    @property
    def name(self) -> str:
        """The URL's last path segment (never its query, which may carry a signature)."""
        return urlsplit(self._url).path.rsplit("/", 1)[-1] or "export file"

    @property
    def key(self) -> str:
        """The URL: each export's files have their own."""
        return self._url

    @property
    def fingerprint(self) -> None:
        """An export never reuses a file's URL for other content."""
        return None

    def chunks(self, offset: int) -> Iterator[bytes]:
        """The file's bytes from ``offset`` on: a Range request, or the bytes before it skipped when the EHR sends
        the whole file."""
        headers = {"Accept": NDJSON, **({"Range": f"bytes={offset}-"} if offset else {})}
        if self._auth is not None:
            headers.update(self._auth.header())
        try:
            with self._http.stream("GET", self._url, headers=headers) as response:
                if response.status_code == 401 and self._auth is not None:
                    self._auth.invalidate()  # the import retries the file from its checkpoint with a new token
                    raise EhrTemporaryError("the EHR refused the access token for an export file", 401)
                if response.status_code not in (200, 206):
                    response.read()
                    _raise_for(response, "an export file")
                    raise EhrRejected(f"an export file answered {response.status_code}", response.status_code)
                skip = offset if response.status_code == 200 else 0
                for piece in response.iter_bytes():
                    if skip >= len(piece):
                        skip -= len(piece)
                        continue
                    yield piece[skip:] if skip else piece
                    skip = 0
        except httpx.HTTPError as exc:
            raise EhrTemporaryError(f"an export file's download broke off ({type(exc).__name__})") from exc


def _raise_for(response: httpx.Response, what: str) -> None:
    status = response.status_code
    if status < 300:
        return
    body = answer_body(response)
    if status in (404, 410):
        raise ExportGone(f"{what} is gone at the EHR ({status})")
    if status in (408, 429) or status >= 500:
        raise EhrTemporaryError(f"{what} answered {status}", status, body, retry_after(response))
    raise EhrRejected(f"{what} was refused ({status})", status, body)
