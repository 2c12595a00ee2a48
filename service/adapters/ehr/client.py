"""An httpx client for the EHR's FHIR server: pooled connections, timeouts, authentication, failures classified.

Classification after cumulus-fhir-support's http.py: transport errors, 408, 429 and 5xx are temporary (with
Retry-After honoured); 409/412 mean the resource changed at the EHR; other 4xx cannot succeed by retrying. A 401
gets one token refresh and one more try.
"""

from __future__ import annotations

import email.utils
import re
import time
from typing import Any, Final

import httpx

from service.adapters.ehr.auth import Auth
from service.fhir.jsonio import dumps
from service.platform import tracing
from service.platform.errors import EhrConflict, EhrRejected, EhrTemporaryError
from service.usecases.ports.ehr import EhrAnswer

__all__ = ["EhrClient", "answer_body", "retry_after"]

FHIR_JSON = "application/fhir+json"
# What of a path may name a span: the resource type (or "metadata"), never ids or search values.
_SPAN_TARGET: Final = re.compile(r"^/?([A-Z][A-Za-z]{1,63}|metadata)(?:[/?]|$)")


class EhrClient:
    """Talks FHIR R4 to one EHR."""

    def __init__(self, base_url: str, auth: Auth, http: httpx.Client) -> None:
        self._base = base_url.rstrip("/")
        self._auth = auth
        self._http = http

    @property
    def base_url(self) -> str:
        """The EHR's FHIR base."""
        return self._base

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def metadata(self) -> Any:
        """The EHR's CapabilityStatement."""
        return self.request("GET", "/metadata").body

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> EhrAnswer:
        """One request; raises EhrTemporaryError, EhrRejected or EhrConflict for failures."""
        if not tracing.active():
            return self._request(method, path, body, headers)
        found = _SPAN_TARGET.match(path)
        name = f"EHR {method} {found.group(1)}" if found else f"EHR {method}"
        with tracing.span(name, "client", attributes={"http.request.method": method}) as span:
            answer = self._request(method, path, body, headers)
            if span is not None:
                span.set("http.response.status_code", answer.status)
            return answer

    def _request(self, method: str, path: str, body: Any, headers: dict[str, str] | None) -> EhrAnswer:
        url = f"{self._base}{path}"
        content = dumps(body) if body is not None else None
        extra = {"Accept": FHIR_JSON, **({"Content-Type": FHIR_JSON} if content is not None else {}), **(headers or {})}
        tracing.inject(extra)  # the EHR's own traces can join ours
        for attempt in (1, 2):
            try:
                response = self._http.request(method, url, content=content, headers={**extra, **self._auth.header()})
            except httpx.TimeoutException as exc:
                raise EhrTemporaryError(f"the EHR did not answer in time ({type(exc).__name__})") from exc
            except httpx.HTTPError as exc:
                # Includes a connection dropped after the EHR may have committed: the retry must be idempotent.
                raise EhrTemporaryError(f"the EHR could not be reached ({type(exc).__name__})") from exc
            if response.status_code == 401 and attempt == 1:
                self._auth.invalidate()  # a token the EHR no longer accepts: renew it once
                continue
            return _classify(response)
        raise AssertionError("unreachable")  # pragma: no cover


def answer_body(response: httpx.Response) -> Any:
    """The answer as JSON, or the start of its text when it is not JSON (for the dead letter); None when empty."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text[:4000]


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date); None when absent or not understood."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # a malformed header is the EHR's slip: fall back to our own back-off, never crash on it
    return max(0.0, moment.timestamp() - time.time())


def _classify(response: httpx.Response) -> EhrAnswer:
    status = response.status_code
    if status < 300:
        return EhrAnswer(status, dict(response.headers), answer_body(response), response.content)
    body = answer_body(response)
    if status in (408, 429) or status >= 500:
        raise EhrTemporaryError(f"the EHR answered {status}", status, body, retry_after(response))
    if status in (409, 412):
        raise EhrConflict(f"the EHR answered {status}: the resource changed there", status, body)
    raise EhrRejected(f"the EHR refused the write ({status})", status, body)
