"""Shared fixtures: real PostgreSQL and Redis (private ones when none answers), a fresh database per test."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.conninfo import make_conninfo

from service.adapters.local_services import LocalServices, ensure_services
from service.adapters.postgres.migrate import migrate
from service.api.app import create_app
from service.bootstrap import Container, bootstrap
from service.config import Settings
from tests.ehr_standin import RunningStandIn

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SESSION = uuid.uuid4().hex[:8]

# Development tokens every test settings object carries (REFRACTURE_AUTH_DEV_TOKENS); AUTH is a caller with every
# role, for tests that are not about who may do what.
TOKENS: dict[str, dict[str, Any]] = {
    "test-all": {"sub": "tester", "roles": ["integration-client", "care-coordinator", "administrator"]},
    "test-integration": {"sub": "ehr-interface", "client_id": "ehr-interface", "scope": "system/*.read system/*.write"},
    "test-coordinator": {"sub": "coordinator.one", "roles": ["care-coordinator"]},
    "test-admin": {"sub": "admin.one", "roles": ["administrator"]},
    "test-fls-lead": {"sub": "fls.lead", "roles": ["fls-lead"]},
}
AUTH = {"Authorization": "Bearer test-all"}
COORDINATOR = {"Authorization": "Bearer test-coordinator"}


class RecordingQueue:
    """A TaskQueue that keeps what it was asked to send (for tests that do not need a worker)."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, list[Any]]] = []
        self.fail = fail

    def send(self, task_name: str, args: Sequence[Any]) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append((task_name, list(args)))


@pytest.fixture(scope="session")
def services() -> Iterator[LocalServices]:
    """PostgreSQL and Redis at their default local addresses, or private ones started for this run."""
    found = ensure_services(
        os.environ.get("REFRACTURE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        # Database 15 keeps the tests' keys apart from anything else on the machine's Redis.
        os.environ.get("REFRACTURE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    )
    yield found
    found.close()


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


@pytest.fixture(scope="session")
def template_database(services: LocalServices) -> Iterator[str]:
    """A migrated database that each test's database is copied from."""
    name = f"refracture_tmpl_{SESSION}"
    url = create_database(services, name)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
    yield name
    drop_database(services, name)


@pytest.fixture
def database_url(services: LocalServices, template_database: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"refracture_t_{SESSION}_{uuid.uuid4().hex[:8]}"
    url = create_database(services, name, template_database)
    yield url
    drop_database(services, name)


def make_settings(services: LocalServices, database_url: str, **overrides: Any) -> Settings:
    """Settings for a test database; the queue name is unique to this test run."""
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "redis_url": services.redis_url,
        "celery_queue": f"refracture-test-{SESSION}",
        "database_pool_max": 4,
        "relay_redeliver_after_s": 1.0,
        "auth_dev_tokens": TOKENS,
        # Tests send many requests from one client in a burst; the limits themselves have their own tests.
        "rate_limit_per_minute": 0,
        "rate_limit_anonymous_per_minute": 0,
        "rate_limit_sign_in_per_minute": 0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(services: LocalServices, database_url: str) -> Settings:
    """Settings pointing at this test's database."""
    return make_settings(services, database_url)


@pytest.fixture
def queue() -> RecordingQueue:
    """The doorbell, recorded."""
    return RecordingQueue()


@pytest.fixture
def container(settings: Settings, queue: RecordingQueue) -> Iterator[Container]:
    """The composition root over this test's database, with a recorded doorbell."""
    built = bootstrap(settings, queue=queue)
    yield built
    built.close()


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    """The API over this test's container (no server errors raised into the test: they must be answers)."""
    with TestClient(headers=AUTH, app=create_app(lambda: container), raise_server_exceptions=False) as test_client:
        yield test_client


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


@pytest.fixture(scope="module")
def ehr_server() -> Iterator[RunningStandIn]:
    """The EHR stand-in (tests/ehr_standin.py) served on a loopback port: one per test module."""
    running = RunningStandIn().start()
    yield running
    running.stop()


@pytest.fixture
def ehr(ehr_server: RunningStandIn) -> RunningStandIn:
    """The EHR stand-in, reset: every test starts with an empty EHR, its full CapabilityStatement and no faults."""
    ehr_server.app.reset()
    return ehr_server


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment a worker process needs to serve these settings."""
    return {
        **os.environ,
        "REFRACTURE_DATABASE_URL": settings.database_url.get_secret_value(),
        "REFRACTURE_REDIS_URL": settings.redis_url,
        "REFRACTURE_CELERY_QUEUE": settings.celery_queue,
        "REFRACTURE_ENVIRONMENT": "test",
    }


def wait_for(predicate: Any, timeout_s: float = 30.0, interval_s: float = 0.2) -> bool:
    """Poll until the predicate holds or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


@pytest.fixture(scope="session")
def worklist_template(services: LocalServices, template_database: str) -> Iterator[str]:
    """A database holding a loaded worklist (tests/worklist_data.py), built once and copied by each test."""
    from tests import worklist_data
    from tests.support.clock import ManualClock

    name = f"refracture_wl_{SESSION}"
    url = create_database(services, name, template_database)
    container = bootstrap(make_settings(services, url), queue=RecordingQueue(), clock=ManualClock(worklist_data.NOW))
    try:
        with TestClient(headers=AUTH, app=create_app(lambda: container), raise_server_exceptions=False) as client:
            worklist_data.load(container, client)
    finally:
        container.close()
    yield name
    drop_database(services, name)


@pytest.fixture
def worklist_url(services: LocalServices, worklist_template: str) -> Iterator[str]:
    """A fresh copy of the loaded worklist for one test."""
    name = f"refracture_t_{SESSION}_{uuid.uuid4().hex[:8]}"
    url = create_database(services, name, worklist_template)
    yield url
    drop_database(services, name)
