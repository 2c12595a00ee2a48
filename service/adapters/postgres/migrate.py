"""Forward-only SQL migrations: numbered files applied once each, in order, under an advisory lock."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, LiteralString

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["Migration", "available_migrations", "create_database_if_missing", "migrate"]

log = logging.getLogger(__name__)

# Any constant will do; it only has to be the same for every refracture process.
_LOCK_KEY = 0x5EF4AC7
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """sha256 of the file, to notice an applied migration that was edited afterwards."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """The migrations shipped with the package, in version order."""
    folder = resources.files("service.adapters.postgres") / "migrations"
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version: {versions}")
    return found


def create_database_if_missing(database_url: str) -> bool:
    """Create the database named in the URL when the server does not have it yet.

    Returns:
        True when it was created.
    """
    params = conninfo_to_dict(database_url)
    name = str(params.get("dbname") or "")
    if not name:
        return False
    maintenance = make_conninfo(database_url, dbname="postgres")
    with psycopg.connect(maintenance, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        log.info("created database %s", name)
        return True


def _backfill_summaries(conn: psycopg.Connection[Any]) -> str:
    from service.adapters.postgres.summaries import backfill_demographics  # noqa: PLC0415 - only when it runs

    return f"summaries for {backfill_demographics(conn)} stored patients"


# Data a migration needs that SQL cannot compute (the FHIR mapping lives in Python), run in the same transaction.
_DATA_STEPS: Final[dict[int, Callable[[psycopg.Connection[Any]], str]]] = {5: _backfill_summaries}


def _literal(text: str) -> LiteralString:
    # LiteralString: the text comes from the package, never from input.
    return text


def migrate(conn: psycopg.Connection[Any]) -> list[int]:
    """Apply every migration not applied yet; safe to run concurrently and repeatedly.

    Args:
        conn: a connection (not in a transaction).

    Returns:
        The versions applied by this call.

    Raises:
        RuntimeError: an applied migration's file has changed since it was applied.
    """
    applied_now: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migration (
                version    integer PRIMARY KEY,
                name       text        NOT NULL,
                checksum   text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        rows = conn.execute("SELECT version, checksum FROM schema_migration").fetchall()
        done = {int(version): str(checksum) for version, checksum in rows}
        for migration in available_migrations():
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise RuntimeError(
                        f"migration {migration.version:04d}_{migration.name} changed after it was applied; "
                        "add a new migration instead"
                    )
                continue
            # The migration files ship with the package: their text is as trusted as a literal.
            conn.execute(_literal(migration.sql))
            step = _DATA_STEPS.get(migration.version)
            if step is not None:
                log.info("migration %04d_%s: %s", migration.version, migration.name, step(conn))
            conn.execute(
                "INSERT INTO schema_migration (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            applied_now.append(migration.version)
            log.info("applied migration %04d_%s", migration.version, migration.name)
        # Grants for the runtime and audit roles (migration 0013), again after every run: tables that later
        # migrations add are the runtime role's too, and the audit trail stays append-only for it.
        if conn.execute("SELECT to_regprocedure('refracture_apply_grants()') IS NOT NULL").fetchone() == (True,):
            conn.execute("SELECT refracture_apply_grants()")
    return applied_now
