"""The connection pool, built from Settings."""

from __future__ import annotations

from psycopg_pool import ConnectionPool

from service.config import Settings

__all__ = ["make_pool"]


def make_pool(settings: Settings, *, open_now: bool = True) -> ConnectionPool:
    """A psycopg connection pool for the configured database."""
    return ConnectionPool(
        settings.database_url,
        min_size=settings.database_pool_min,
        max_size=settings.database_pool_max,
        timeout=settings.database_pool_timeout_s,
        open=open_now,
        name="refracture",
        # Dead connections (a database restart) are noticed here instead of failing a request.
        check=ConnectionPool.check_connection,
    )
