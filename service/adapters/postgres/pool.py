"""The connection pool, built from Settings."""

from __future__ import annotations

from typing import Final

from psycopg_pool import ConnectionPool

from service.config import Settings

__all__ = ["make_pool"]

_RECONNECT_WINDOW_S: Final = 10.0


def make_pool(settings: Settings, *, open_now: bool = True) -> ConnectionPool:
    """A psycopg connection pool for the configured database."""
    return ConnectionPool(
        settings.database_url.get_secret_value(),
        min_size=settings.database_pool_min,
        max_size=settings.database_pool_max,
        timeout=settings.database_pool_timeout_s,
        open=open_now,
        name="refracture",
        # Dead connections (a database restart) are noticed here instead of failing a request.
        check=ConnectionPool.check_connection,
        # A lost connection is retried with doubling waits (1, 2, 4, 8, 16 s...) for this long, then given up and
        # tried afresh by the next request. psycopg_pool's default of 5 minutes let the waits grow as long as the
        # outage: after a 16 s restart the pool sat idle 15 s more while PostgreSQL was back, answering 503s.
        reconnect_timeout=_RECONNECT_WINDOW_S,
    )
