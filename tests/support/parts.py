"""Parts for integration tests: the composition's own, with a test's doorbell, clock or EHR in place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.composition.api import build_api
from service.composition.core import build_core, utc_now
from service.composition.parts import Parts
from service.entrypoints.api.app import create_app
from service.platform.config import Settings
from service.usecases.ports.clock import Clock
from service.usecases.ports.ehr import EhrGateway
from service.usecases.ports.queue import TaskQueue
from tests.support.queue import RecordingQueue
from tests.support.tokens import AUTH

__all__ = ["api_app", "api_client", "build_parts"]


def build_parts(
    settings: Settings | None = None,
    *,
    queue: TaskQueue | None = None,
    clock: Clock = utc_now,
    ehr: EhrGateway | None = None,
) -> Parts:
    """Parts over a Core from these settings: the API's services (`build_api`) and the worker's (`build_worker`)
    built from the same Parts share one pool, clock and set of use cases, as a test of both sides needs."""
    return Parts(build_core(settings, clock=clock), queue=queue, ehr=ehr)


def api_app(parts: Parts) -> FastAPI:
    """The API application over these parts (its lifespan builds the API's services from them)."""
    return create_app(lambda: build_api(parts))


@contextmanager
def api_client(settings: Settings) -> Iterator[TestClient]:
    """A client of the API over fresh parts from these settings (a recording queue; every role's token; server
    errors are answers, not raised into the test); the parts are closed after."""
    parts = build_parts(settings, queue=RecordingQueue())
    try:
        with TestClient(headers=AUTH, app=api_app(parts), raise_server_exceptions=False) as client:
            yield client
    finally:
        parts.close()
