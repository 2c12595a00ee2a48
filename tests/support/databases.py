"""Test databases: created (as copies of a migrated template), dropped, and read in one line."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from service.devtools.local_services import LocalServices

__all__ = ["SESSION", "copy_of", "create_database", "drop_database", "query_one", "table_counts"]

# This run's mark on the databases and queue names it makes: parallel runs on one machine never meet.
SESSION: Final = uuid.uuid4().hex[:8]


def _admin(services: LocalServices) -> str:
    return make_conninfo(services.database_url, dbname="postgres")


def create_database(services: LocalServices, name: str, template: str | None = None) -> str:
    """Create a database (optionally as a copy of a template) and return its URL."""
    with psycopg.connect(_admin(services), autocommit=True) as conn:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        conn.execute(statement)
    return make_conninfo(services.database_url, dbname=name)


def drop_database(services: LocalServices, name: str) -> None:
    """Drop a database, disconnecting whoever still uses it."""
    with psycopg.connect(_admin(services), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def copy_of(services: LocalServices, template: str) -> Iterator[str]:
    """A fresh copy of a template database under a name of this run, for one test: its URL; dropped after."""
    name = f"refracture_t_{SESSION}_{uuid.uuid4().hex[:8]}"
    url = create_database(services, name, template)
    try:
        yield url
    finally:
        drop_database(services, name)


def query_one(database_url: str, statement: str, *params: Any) -> Any:
    """The first column of the first row of a query."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(statement, params).fetchone()  # type: ignore[arg-type]
    return row[0] if row else None


def table_counts(database_url: str) -> dict[str, int]:
    """Row counts of the tables ingest writes to: proof that a refused request wrote nothing."""
    tables = ["resource", "resource_history", "fact", "unrecognised_code", "patient_change"]
    with psycopg.connect(database_url) as conn:
        return {
            t: int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0])  # type: ignore[index]
            for t in tables
        }
