"""The connection pool, built from Settings."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any, Final

import psycopg
from psycopg_pool import ConnectionPool

from service.platform.config import Settings

__all__ = ["make_pool", "make_read_pool"]

_RECONNECT_WINDOW_S: Final = 10.0
# A connection returned to the pool less than this long ago is handed out unchecked.
_CHECK_AFTER_IDLE_S: Final = 1.0
_returned_at: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = weakref.WeakKeyDictionary()


def _note_returned(conn: psycopg.Connection[Any]) -> None:
    _returned_at[conn] = time.monotonic()


def _check_if_idle(conn: psycopg.Connection[Any]) -> None:
    returned = _returned_at.get(conn)
    if returned is None or time.monotonic() - returned >= _CHECK_AFTER_IDLE_S:
        ConnectionPool.check_connection(conn)


def make_pool(settings: Settings, *, open_now: bool = True) -> ConnectionPool:
    """A psycopg connection pool for the configured database."""
    return _pool(
        settings.database_url.get_secret_value(),
        settings.database_pool_min,
        settings.database_pool_max,
        settings,
        open_now=open_now,
        name="refracture",
    )


def make_read_pool(settings: Settings, *, open_now: bool = True) -> ConnectionPool:
    """The worklist's pool: the read replica (or the primary), its own size, read-only sessions with the read
    statement time-out."""
    timeout_ms = round(settings.read_statement_timeout_s * 1000)

    def configure(conn: psycopg.Connection[Any]) -> None:
        # Session settings, set once per connection (a startup `options` parameter would be refused by poolers such
        # as PgBouncer). Read-only: a write through this pool fails loudly here instead of only on a replica.
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false), set_config('default_transaction_read_only', 'on', "
            "false)",
            (str(timeout_ms),),
        )
        conn.commit()

    return _pool(
        settings.read_url,
        settings.read_pool_min,
        settings.read_pool_max,
        settings,
        open_now=open_now,
        name="refracture-read",
        configure=configure,
    )


def _pool(
    url: str,
    min_size: int,
    max_size: int,
    settings: Settings,
    *,
    open_now: bool,
    name: str,
    configure: Callable[[psycopg.Connection[Any]], None] | None = None,
) -> ConnectionPool:
    return ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        timeout=settings.database_pool_timeout_s,
        open=open_now,
        name=name,
        configure=configure,
        # Dead connections (a database restart) are noticed here instead of failing a request; a connection that
        # was in use moments ago is not asked again (the check is a round trip, paid by every transaction).
        check=_check_if_idle,
        reset=_note_returned,
        # A lost connection is retried with doubling waits (1, 2, 4, 8, 16 s...) for this long, then given up and
        # tried afresh by the next request. psycopg_pool's default of 5 minutes let the waits grow as long as the
        # outage: after a 16 s restart the pool sat idle 15 s more while PostgreSQL was back, answering 503s.
        reconnect_timeout=_RECONNECT_WINDOW_S,
    )
