"""A fresh PostgreSQL database for one benchmark run, next to the Redis the run should use.

Every benchmark seeds its own data, so each gets a database of its own that it can fill and time without touching
the demo's or another run's, and that is dropped afterwards even when the benchmark fails halfway.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from service.adapters.postgres.migrate import migrate
from service.devtools.local_services import LocalServices, ensure_services

__all__ = ["BENCH_AUTH", "api_env", "private_database"]

# A development token made for this run only, with every role: benchmarks measure the work, not who may do it.
_BENCH_TOKEN = secrets.token_urlsafe(18)
BENCH_AUTH = {"Authorization": f"Bearer {_BENCH_TOKEN}"}

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"  # a numbered database of its own, away from the demo's keys


@contextmanager
def private_database(*, migrated: bool = True) -> Iterator[tuple[LocalServices, str]]:
    """PostgreSQL and Redis (the local ones, or private ones started from pip packages) and a fresh database for one
    benchmark run, dropped afterwards.

    The servers are the ones REFRACTURE_DATABASE_URL and REFRACTURE_REDIS_URL name (local defaults otherwise); when
    they do not answer, private ones are started and stopped again on exit.

    Args:
        migrated: apply the schema migrations before handing the database over; False for a benchmark that has
            something to do first (the schema is then the caller's to apply).

    Yields:
        The services in use (their `redis_url` is the broker to use) and the URL of the new database.
    """
    services = ensure_services(
        os.environ.get("REFRACTURE_DATABASE_URL", DEFAULT_DATABASE_URL),
        os.environ.get("REFRACTURE_REDIS_URL", DEFAULT_REDIS_URL),
    )
    try:
        # A random name, so that runs side by side (or one left behind by a killed run) never collide.
        dbname = f"refracture_bench_{uuid.uuid4().hex[:8]}"
        # CREATE and DROP DATABASE cannot run inside the database concerned, nor inside a transaction.
        admin = make_conninfo(services.database_url, dbname="postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        try:
            database_url = make_conninfo(services.database_url, dbname=dbname)
            if migrated:
                with psycopg.connect(database_url, autocommit=True) as conn:
                    migrate(conn)
            yield services, database_url
        finally:
            # FORCE: an API or worker process the benchmark started may still hold connections to it.
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
    finally:
        services.close()


def api_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a refracture process a benchmark starts: its database and broker, the run's token (whose
    calls are not rate-limited, so the figures are the service's own), and any extra REFRACTURE_ settings."""
    return {
        **os.environ,
        "REFRACTURE_DATABASE_URL": database_url,
        "REFRACTURE_REDIS_URL": redis_url,
        "REFRACTURE_AUTH_DEV_TOKENS": json.dumps(
            {_BENCH_TOKEN: {"sub": "bench", "roles": ["integration-client", "care-coordinator", "administrator"]}}
        ),
        "REFRACTURE_RATE_LIMIT_PER_MINUTE": "0",
        # Development tokens need a mode that takes them, by name: production is the default.
        "REFRACTURE_ENVIRONMENT": "test",
        **extra,
    }
