"""The notification digest by webhook: a JSON POST signed with HMAC-SHA256 over timestamp and body.

The header ``Refracture-Signature: t=<unix seconds>,v1=<hex>`` carries HMAC-SHA256(secret, "<t>.<body bytes>"), as
Stripe's webhooks do: the receiver recomputes it over the raw body, compares in constant time, and refuses a
timestamp older than its tolerance (replays). docs/integration-guide.md, "Notifications", has a verification snippet.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime

import httpx

from service.usecases.ports.notifications import PermanentSendError, StoredNotification, TransientSendError

__all__ = ["SIGNATURE_HEADER", "WebhookSender", "sign", "verify"]

SIGNATURE_HEADER = "Refracture-Signature"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: bytes, header: str, body: bytes, now: int, tolerance_s: int = 300) -> bool:
    """What a receiver does: the signature matches and the timestamp is within ``tolerance_s`` of ``now``."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return abs(now - timestamp) <= tolerance_s and hmac.compare_digest(expected, parts.get("v1", ""))


class WebhookSender:
    """POSTs each owner's digest (JSON) to one URL; the body names the owner."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        clock: Callable[[], datetime],
        http: httpx.Client | None = None,
    ) -> None:
        self._url = url
        self._secret = secret
        self._clock = clock
        self._http = http or httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False)

    def reaches(self, owner: str) -> bool:
        """See usecases.notify.Sender: every owner's digest goes to the one URL."""
        del owner
        return True

    def send(self, message: StoredNotification) -> None:
        """See usecases.notify.Sender. 5xx, 408, 429 and transport errors are transient; other 4xx permanent."""
        body = json.dumps({"id": message.id, **message.payload}, separators=(",", ":"), sort_keys=True).encode()
        timestamp = int(self._clock().timestamp())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            # Stable per record row: a receiver drops a resend after a crash by this id.
            "Refracture-Delivery": f"digest-{message.id}",
        }
        try:
            response = self._http.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise TransientSendError(f"http {type(error).__name__}") from None
        if response.is_success:
            return
        reason = f"http {response.status_code}"
        if response.status_code >= 500 or response.status_code in (408, 429):
            retry_after = response.headers.get("Retry-After", "")
            raise TransientSendError(reason, float(retry_after) if retry_after.isdigit() else None)
        raise PermanentSendError(reason)
