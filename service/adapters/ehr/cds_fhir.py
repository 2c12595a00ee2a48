"""Reads from the EHR's FHIR server during a CDS Hooks call, with the call's ``fhirServer`` and ``fhirAuthorization``.

The hook request names the server and hands over an access token; both are the caller's word. So:

- the ``fhirServer`` must be one of REFRACTURE_CDS_FHIR_SERVERS (exact base URLs): any other is not called, and the
  token is never sent anywhere but under an allow-listed base (an httpx request hook checks every request);
- redirects are not followed (a 3xx is a failed read), so the token cannot be walked to another host;
- a host that resolves to a link-local, multicast, unspecified or reserved address (a cloud metadata service at
  169.254.169.254, say) is refused even when listed, checked on every address at request time (DNS may change).
  Private and loopback addresses are allowed when the operator listed the server: hospital EHRs live there. Servers
  that are not listed are refused whatever their address, which covers the Bulk Data client's rule
  (service/adapters/ehr/bulk.py) for URLs the EHR names;
- a read that fails in any way (refused, time-out, not 200, not a Bundle) is no read: the answer comes from stored
  state and the prefetch, as before. The time-out is short (CDS Hooks asks for answers in about 500 ms).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from service.adapters.ehr.bulk import Resolver, _resolve
from service.adapters.smart import normalise_base

__all__ = ["CdsFhirReader", "FhirServerRefused", "make_cds_fhir_reader"]

log = logging.getLogger(__name__)

_TIMEOUT: Final = httpx.Timeout(2.0, connect=1.0)


class FhirServerRefused(Exception):
    """The URL may not be called with the hook's token."""


def _never(address: str) -> bool:
    ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved


def _canonical(url: str) -> str:
    # As httpx writes it (lower-case host, default port dropped), so a request URL compares with its base.
    return str(httpx.URL(normalise_base(url)))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class CdsFhirReader:
    """FHIR searches at an allow-listed ``fhirServer`` with the hook's bearer token."""

    def __init__(self, servers: Sequence[str], http: httpx.Client | None = None, resolve: Resolver = _resolve) -> None:
        self._servers = tuple(sorted({_canonical(s) for s in servers}))
        self._resolve = resolve
        self._http = http or httpx.Client(timeout=_TIMEOUT, follow_redirects=False)
        self._owns_http = http is None
        self._http.follow_redirects = False
        hooks = self._http.event_hooks
        self._http.event_hooks = {**hooks, "request": [*hooks.get("request", []), self._guard]}

    def allowed(self, fhir_server: str | None) -> str | None:
        """The allow-listed base ``fhir_server`` names, or None."""
        if not fhir_server or len(fhir_server) > 2000:
            return None
        try:
            base = _canonical(fhir_server)
        except httpx.InvalidURL:
            return None
        return base if base in self._servers else None

    def _check(self, url: str) -> None:
        if not any(url.startswith(base + "/") for base in self._servers):
            raise FhirServerRefused("not under an allow-listed fhirServer")
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not host:
            raise FhirServerRefused("not HTTP(S)")
        addresses: Iterable[str] = [host] if _is_ip(host) else self._resolve(host)
        found = list(addresses)
        if not found or any(_never(a) for a in found):
            raise FhirServerRefused("a link-local, reserved or unresolvable address")

    def _guard(self, request: httpx.Request) -> None:
        # Every request (a first one included) is checked before it leaves: the token goes nowhere else.
        self._check(str(request.url))

    def search(
        self, fhir_server: str, access_token: str, resource_type: str, params: Mapping[str, str]
    ) -> dict[str, Any] | None:
        """A searchset Bundle, or None when the server is not allowed or the read fails."""
        base = self.allowed(fhir_server)
        if base is None:
            return None
        try:
            response = self._http.get(
                f"{base}/{resource_type}",
                params=dict(params),
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/fhir+json"},
            )
        except (httpx.HTTPError, FhirServerRefused) as exc:
            log.warning("CDS Hooks read at the fhirServer failed (%s)", type(exc).__name__)
            return None
        if response.status_code != 200:
            log.warning("CDS Hooks read at the fhirServer answered %d", response.status_code)
            return None
        try:
            body = response.json()
        except ValueError:
            return None
        if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
            return None
        return body

    def active_medications(self, fhir_server: str, access_token: str, patient_id: str) -> dict[str, Any] | None:
        """The patient's active MedicationRequests (what the order hooks' ``medications`` prefetch holds)."""
        return self.search(fhir_server, access_token, "MedicationRequest", {"patient": patient_id, "status": "active"})

    def close(self) -> None:
        """Close the connections this reader opened."""
        if self._owns_http:
            self._http.close()


def make_cds_fhir_reader(servers: Sequence[str]) -> CdsFhirReader | None:
    """The reader for REFRACTURE_CDS_FHIR_SERVERS, or None when none is listed."""
    return CdsFhirReader(servers) if servers else None
