"""Requests per minute, counted in Redis (a sliding window over two fixed one-minute windows).

Three counts: each authenticated client's requests (``allow``), each address's requests that did not authenticate
(``anonymous``: no credentials, a junk cookie, a bad token, an unknown route; counted before any credential is
looked at, so a flood of them costs one Redis round trip each and no database work), and the deployment's OIDC
sign-in starts (each one stores a pending sign-in row until it expires).

Shared by every API process, so the limits hold for the deployment, not per worker. When Redis does not answer the
request is let through: the limit protects the service, and refusing everyone because the counter is down would be
the outage it is meant to prevent.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable

import redis

__all__ = ["RateLimiter"]

log = logging.getLogger(__name__)
_WINDOW_S = 60


class RateLimiter:
    """``allow(key)`` answers None (go ahead) or the seconds to wait."""

    def __init__(
        self,
        redis_url: str,
        per_minute: int,
        clock: Callable[[], float] = time.time,
        *,
        anonymous_per_minute: int = 0,
        sign_in_per_minute: int = 0,
        namespace: str = "",
    ) -> None:
        self.per_minute = per_minute
        self.anonymous_per_minute = anonymous_per_minute
        self.sign_in_per_minute = sign_in_per_minute
        self._clock = clock
        self._namespace = namespace  # keeps deployments sharing a Redis apart (the deployment-wide sign-in count)
        needed = per_minute or anonymous_per_minute or sign_in_per_minute
        self._redis: redis.Redis | None = (
            redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5) if needed else None
        )

    def allow(self, key: str) -> float | None:
        """Count one request for ``key``; None when it is within the limit, else seconds until it would be."""
        return self._count(key, self.per_minute)

    def anonymous(self, address: str, count: bool = True) -> float | None:
        """A request from ``address`` that has not authenticated: counted (unless ``count`` is False: only asked
        whether the address is over its limit), None when within the limit, else seconds to wait."""
        return self._count(f"anonymous:{address}", self.anonymous_per_minute, count)

    def sign_in(self) -> float | None:
        """An OIDC sign-in start, deployment-wide: None when within the limit, else seconds to wait."""
        return self._count("sign-in", self.sign_in_per_minute)

    def _count(self, key: str, limit: int, count: bool = True) -> float | None:
        if self._redis is None or not limit:
            return None
        now = self._clock()
        window = int(now // _WINDOW_S)
        elapsed = (now % _WINDOW_S) / _WINDOW_S
        # The key names no person: a digest of the client id or address.
        name = "refracture:rate:" + hashlib.sha256(f"{self._namespace}\n{key}".encode()).hexdigest()[:32]
        try:
            pipe = self._redis.pipeline()
            if count:
                pipe.incr(f"{name}:{window}")
                pipe.expire(f"{name}:{window}", 2 * _WINDOW_S)
            else:
                pipe.get(f"{name}:{window}")
            pipe.get(f"{name}:{window - 1}")
            answers = pipe.execute()
        except redis.RedisError as exc:
            log.warning("rate limit not counted: Redis unavailable (%s)", exc)
            return None
        current, previous = answers[0], answers[-1]
        # Only asked: would this request, counted, be past the limit? (Counted ones are in ``current`` already.)
        estimate = int(previous or 0) * (1 - elapsed) + int(current or 0) + (0 if count else 1)
        if estimate <= limit:
            return None
        return float(max(1, math.ceil((1 - elapsed) * _WINDOW_S)))

    def close(self) -> None:
        """Close the Redis connections."""
        if self._redis is not None:
            self._redis.close()
