"""Shared fixtures: real PostgreSQL and Redis (private ones when none answers), a fresh database per test.

Fixtures only: the helpers tests import are in tests/support/."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.adapters.postgres.migrate import migrate
from service.composition.parts import Parts
from service.devtools.local_services import LocalServices, ensure_services
from service.platform import tracing
from service.platform.config import Settings
from tests.ehr_standin import RunningStandIn
from tests.oidc_standin import RunningOidc
from tests.smart_launcher_standin import RunningLauncher
from tests.support.databases import SESSION, copy_of, create_database, drop_database
from tests.support.parts import api_app, api_client, build_parts
from tests.support.paths import ARTIFACTS
from tests.support.processes import WorkerProcess
from tests.support.queue import RecordingQueue
from tests.support.settings import make_settings, worker_env
from tests.support.tokens import AUTH


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
    with copy_of(services, template_database) as url:
        yield url


@pytest.fixture
def settings(services: LocalServices, database_url: str) -> Settings:
    """Settings pointing at this test's database."""
    return make_settings(services, database_url)


@pytest.fixture
def queue() -> RecordingQueue:
    """The doorbell, recorded."""
    return RecordingQueue()


@pytest.fixture
def parts(settings: Settings, queue: RecordingQueue) -> Iterator[Parts]:
    """The composition root over this test's database, with a recorded doorbell."""
    built = build_parts(settings, queue=queue)
    yield built
    built.close()


@pytest.fixture
def client(parts: Parts) -> Iterator[TestClient]:
    """The API over this test's parts (no server errors raised into the test: they must be answers)."""
    with TestClient(headers=AUTH, app=api_app(parts), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def small_client(services: LocalServices, database_url: str) -> Iterator[TestClient]:
    """The API with small limits (2 KiB bodies, 3 Bundle entries), for the refusals of what is too big."""
    with api_client(make_settings(services, database_url, max_body_bytes=2048, max_bundle_entries=3)) as test_client:
        yield test_client


@pytest.fixture
def worker(settings: Settings, request: pytest.FixtureRequest) -> Iterator[WorkerProcess]:
    """A real worker process over this test's settings, ready; its log in the artifacts, named after the test."""
    process = WorkerProcess(worker_env(settings), ARTIFACTS / "logs" / f"worker-{request.node.name}.log")
    process.wait_ready()
    yield process
    process.stop()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing installed for the test, every finished span kept in memory; shut down after."""
    exporter = InMemorySpanExporter()
    tracing.install(SimpleSpanProcessor(exporter), "refracture-test")
    yield exporter
    tracing.shutdown()


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


@pytest.fixture
def idp() -> Iterator[RunningOidc]:
    """The OpenID Connect provider stand-in (tests/oidc_standin.py) on a loopback port."""
    running = RunningOidc().start()
    yield running
    running.stop()


@pytest.fixture
def launcher() -> Iterator[RunningLauncher]:
    """The SMART launcher stand-in (tests/smart_launcher_standin.py): an EHR's authorisation server and FHIR base."""
    running = RunningLauncher().start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def worklist_template(services: LocalServices, template_database: str) -> Iterator[str]:
    """A database holding a loaded worklist (tests/worklist_data.py), built once and copied by each test."""
    from tests import worklist_data
    from tests.support.clock import ManualClock

    name = f"refracture_wl_{SESSION}"
    url = create_database(services, name, template_database)
    parts = build_parts(make_settings(services, url), queue=RecordingQueue(), clock=ManualClock(worklist_data.NOW))
    try:
        with TestClient(headers=AUTH, app=api_app(parts), raise_server_exceptions=False) as client:
            worklist_data.load(parts, client)
    finally:
        parts.close()
    yield name
    drop_database(services, name)


@pytest.fixture
def worklist_url(services: LocalServices, worklist_template: str) -> Iterator[str]:
    """A fresh copy of the loaded worklist for one test."""
    with copy_of(services, worklist_template) as url:
        yield url
