"""`refracture migrate`: create the database if needed and apply the migrations."""

from __future__ import annotations

import argparse

import psycopg

from service.adapters.postgres.migrate import create_database_if_missing, migrate
from service.platform.config import get_settings

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def run(_: argparse.Namespace) -> int:
    """Create the database if needed and apply the migrations."""
    settings = get_settings()
    # The schema owner migrates (REFRACTURE_MIGRATE_DATABASE_URL); the runtime role could not.
    create_database_if_missing(settings.migration_url)
    with psycopg.connect(settings.migration_url, autocommit=True) as conn:
        applied = migrate(conn)
    print(f"migrations applied: {applied or 'none (up to date)'}")
    return 0
