"""Requests per minute per client, counted in Redis (a sliding window over two fixed one-minute windows).

Shared by every API process, so the limit holds for the deployment, not per worker. When Redis does not answer the
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

    def __init__(self, redis_url: str, per_minute: int, clock: Callable[[], float] = time.time) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._redis: redis.Redis | None = (
            redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5) if per_minute else None
        )

    def allow(self, key: str) -> float | None:
        """Count one request for ``key``; None when it is within the limit, else seconds until it would be."""
        if self._redis is None:
            return None
        now = self._clock()
        window = int(now // _WINDOW_S)
        elapsed = (now % _WINDOW_S) / _WINDOW_S
        # The key names no person: a digest of the client id or address.
        name = "refracture:rate:" + hashlib.sha256(key.encode()).hexdigest()[:32]
        try:
            pipe = self._redis.pipeline()
            pipe.incr(f"{name}:{window}")
            pipe.expire(f"{name}:{window}", 2 * _WINDOW_S)
            pipe.get(f"{name}:{window - 1}")
            current, _, previous = pipe.execute()
        except redis.RedisError as exc:
            log.warning("rate limit not counted: Redis unavailable (%s)", exc)
            return None
        estimate = int(previous or 0) * (1 - elapsed) + int(current)
        if estimate <= self.per_minute:
            return None
        return float(max(1, math.ceil((1 - elapsed) * _WINDOW_S)))

    def close(self) -> None:
        """Close the Redis connections."""
        if self._redis is not None:
            self._redis.close()
