"""Driver errors in refracture's terms, for every adapter that talks to PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from service.platform.errors import ConcurrentWrite, Issue, Problem, RefractureError, refuse

__all__ = ["pipelined_transaction", "pooled_transaction", "translate_errors"]


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Driver errors become refracture's: concurrency → ConcurrentWrite, an unreachable database → 503."""
    try:
        yield
    except (pg_errors.UniqueViolation, pg_errors.SerializationFailure, pg_errors.DeadlockDetected) as exc:
        raise ConcurrentWrite(str(exc.sqlstate)) from exc
    except pg_errors.QueryCanceled as exc:
        # statement_timeout (the read pool's REFRACTURE_READ_STATEMENT_TIMEOUT_S) fired: the database is there but
        # this statement took too long. An OperationalError too, so it is told apart before the unreachable case.
        raise RefractureError(
            Problem.UNAVAILABLE,
            [Issue("timeout", "the database took too long to answer; try again, or narrow the filter")],
            headers={"Retry-After": "5"},
        ) from exc
    except (PoolTimeout, psycopg.OperationalError) as exc:
        raise refuse(Problem.UNAVAILABLE, "transient", "the database is not reachable; try again shortly") from exc
    except pg_errors.DataError as exc:
        # Values PostgreSQL cannot hold (e.g. a number beyond numeric's range) are the sender's to fix.
        # Some are the driver's own (NUL in text) and carry no server diagnostics, only their message.
        reason = exc.diag.message_primary or str(exc).splitlines()[0]
        raise refuse(Problem.INVALID, "value", f"a value cannot be stored: {reason}") from exc


@contextlib.contextmanager
def pooled_transaction(pool: ConnectionPool) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """One transaction on a pooled connection with rows as dicts, driver errors translated: every store's unit."""
    with translate_errors(), pool.connection() as conn:
        conn.row_factory = dict_row  # type: ignore[assignment]
        with conn.transaction():
            yield conn  # type: ignore[misc]


@contextlib.contextmanager
def pipelined_transaction(pool: ConnectionPool) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """``pooled_transaction`` in pipeline mode: BEGIN goes out with the first query, and statements whose results are
    not read go out with the next read or with the COMMIT, so a small write costs two or three round trips instead of
    one per statement. Errors of queued statements surface at that next sync, still inside this block."""
    with translate_errors(), pool.connection() as conn:
        conn.row_factory = dict_row  # type: ignore[assignment]
        with conn.pipeline(), conn.transaction():
            yield conn  # type: ignore[misc]
