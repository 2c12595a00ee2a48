"""The Celery doorbell against a broker that is not there: it fails at once, so the API never waits on Redis."""

from __future__ import annotations

import time

import pytest

from service.adapters.queue import CeleryTaskQueue, make_celery
from service.devtools.local_services import free_port
from service.platform.config import Settings
from service.usecases.task_names import TASK_PATIENTS_CHANGED


def test_a_dead_broker_fails_the_doorbell_at_once() -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", environment="test")
    app = make_celery(settings)
    queue = CeleryTaskQueue(app, "refracture-dead-broker")
    try:
        for _ in range(2):  # the first attempt and a later one (no connection kept in between)
            started = time.monotonic()
            with pytest.raises(Exception):  # noqa: B017 - kombu's OperationalError, whatever wraps it
                queue.send(TASK_PATIENTS_CHANGED, [["p1"]])
            # Refused connections fail in milliseconds; kombu's default 2 s wait before its retry made every API
            # request that rang the doorbell take 2 s while Redis was down.
            assert time.monotonic() - started < 1.0
    finally:
        app.close()
