"""The EHR's FHIR Bulk Data endpoints over httpx: kick-off, status, NDJSON downloads (streamed), DELETE.

Failures are classified as the write-back client does (client.py): transport errors, 429 and 5xx are temporary with
Retry-After kept; 404/410 mean the job or file is gone (ExportGone); other 4xx are refusals. A 401 drops the token
and asks again once.

The EHR names the status and file URLs, so they are not trusted blindly (a compromised or misconfigured EHR must not
collect refracture's population-wide token, nor point it at the cloud metadata service): the token goes only to the
EHR base's origin and the origins listed in REFRACTURE_EHR_BULK_FILE_HOSTS; a status URL elsewhere is refused; a
file elsewhere is fetched without the token, and only when it does not need one and its host is not at a private,
loopback or link-local address. Redirects are checked the same way, hop by hop (an httpx request hook).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Final
from urllib.parse import urlsplit

import httpx

from service.adapters.ehr.auth import Auth
from service.adapters.ehr.client import answer_body, retry_after
from service.adapters.ehr.factory import make_auth
from service.fhir.resource_types import INPUT_TYPES
from service.platform.config import Settings
from service.platform.errors import EhrRejected, EhrTemporaryError
from service.usecases.ports.bulk import ExportGone, ExportStatus

__all__ = ["BulkDataClient", "RemoteNdjsonFile", "UrlPolicy", "bulk_scopes", "make_bulk_client"]

FHIR_JSON: Final = "application/fhir+json"
NDJSON: Final = "application/fhir+ndjson"


def bulk_scopes(style: str) -> str:
    """The SMART scopes an export of refracture's input types needs (v2 `.rs`, v1 `.read`)."""
    suffix = ".rs" if style == "v2" else ".read"
    return " ".join(f"system/{kind}{suffix}" for kind in sorted(INPUT_TYPES))


Resolver = Callable[[str], Iterable[str]]


def _resolve(host: str) -> list[str]:
    try:
        return [str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)]
    except OSError:
        return []


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"https": 443, "http": 80}.get(scheme)
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port


class UrlPolicy:
    """Which URLs the EHR returns may be called, and which may carry the token."""

    def __init__(self, base_url: str, file_hosts: Iterable[str] = (), resolve: Resolver = _resolve) -> None:
        self._trusted = {_origin(base_url), *(_origin(h) for h in file_hosts)}
        self._resolve = resolve

    def trusted(self, url: str) -> bool:
        """The EHR base's origin or a listed file host: the token may go there."""
        return _origin(url) in self._trusted

    def check(self, url: str) -> None:
        """Refuse an untrusted URL that is not plain HTTP(S) or whose host is at an internal address.

        Raises:
            EhrRejected: the URL may not be called.
        """
        if self.trusted(url):
            return
        scheme, host, port = _origin(url)
        if scheme not in ("http", "https") or not host or port == -1:
            raise EhrRejected("the EHR named an export URL that is not HTTP(S)", 0)
        addresses = [host] if _is_ip(host) else list(self._resolve(host))
        if not addresses or any(_internal(a) for a in addresses):
            raise EhrRejected("the EHR named an export URL at an internal or unresolvable address; refused", 0)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def _guard(policy: UrlPolicy) -> Callable[[httpx.Request], None]:
    """An httpx request hook: every request, redirects included, is checked; the token never leaves the trusted
    origins (httpx drops it on a cross-origin redirect; this also covers a first request)."""

    def hook(request: httpx.Request) -> None:
        url = str(request.url)
        policy.check(url)
        if not policy.trusted(url) and "authorization" in request.headers:
            del request.headers["authorization"]

    return hook


def make_bulk_client(settings: Settings) -> BulkDataClient | None:
    """A Bulk Data client for REFRACTURE_EHR_BASE_URL with the configured authentication (None without an EHR).

    Raises:
        ValueError: the authentication settings are incomplete.
    """
    if not settings.ehr_base_url:
        return None
    # Files can be large and slow to start: the read timeout is per chunk, not per file.
    timeout = httpx.Timeout(settings.ehr_read_timeout_s, connect=settings.ehr_connect_timeout_s)
    # The token endpoint is configured, not named by the EHR: trusted like the base.
    trusted = [*settings.ehr_bulk_file_hosts, *([settings.ehr_token_url] if settings.ehr_token_url else [])]
    policy = UrlPolicy(settings.ehr_base_url, trusted)
    http = httpx.Client(timeout=timeout, follow_redirects=True)
    auth = make_auth(settings, http, bulk_scopes(settings.ehr_scope_style))
    return BulkDataClient(settings.ehr_base_url, auth, http, policy)


class BulkDataClient:
    """Implements the ExportGateway port."""

    def __init__(self, base_url: str, auth: Auth, http: httpx.Client, policy: UrlPolicy | None = None) -> None:
        self._base = base_url.rstrip("/")
        self._auth = auth
        self._http = http
        self._policy = policy or UrlPolicy(base_url)
        hooks = http.event_hooks
        http.event_hooks = {**hooks, "request": [*hooks.get("request", []), _guard(self._policy)]}

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

    def _status_url(self, url: str) -> str:
        # The status URL gets the token on every poll: only the EHR's own origin (or a listed host).
        if not self._policy.trusted(url):
            raise EhrRejected("the EHR named a status URL outside its own origin and the listed file hosts", 0)
        return url

    def poll(self, status_url: str) -> ExportStatus:
        """See ExportGateway."""
        self._status_url(status_url)
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
        """See ExportGateway.

        Raises:
            EhrRejected: the file needs the token but is not at a trusted origin, or is at an internal address.
        """
        if with_token and not self._policy.trusted(url):
            raise EhrRejected("an export file that needs the token is outside the EHR's origin and the listed hosts", 0)
        self._policy.check(url)
        return RemoteNdjsonFile(self._http, self._auth if with_token else None, url)

    def cancel(self, status_url: str) -> None:
        """See ExportGateway."""
        self._status_url(status_url)
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
