"""The Celery app and a producer that sends tasks by name (so the API never imports worker code)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from celery import Celery

from service.platform import tracing
from service.platform.config import Settings
from service.platform.logs import REQUEST_ID

__all__ = ["REQUEST_ID_HEADER", "CeleryTaskQueue", "headers_of", "make_celery", "task_headers"]

# Message headers, not task arguments: tasks keep taking ids only, and a task sent from no request carries none.
REQUEST_ID_HEADER: Final = "refracture_request_id"


def make_celery(settings: Settings) -> Celery:
    """The Celery app shared by producers (API, relay) and the worker."""
    app = Celery("refracture", broker=settings.redis_url)
    app.conf.update(
        task_default_queue=settings.celery_queue,
        task_ignore_result=True,
        # A task is acknowledged after it ran, and re-queued if its worker dies: every task is idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Tasks carry ids only (never patient data), and JSON only.
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        # A producer must not hang on a dead broker: the outbox keeps the work and the relay re-sends it. The one
        # retry (a pooled connection gone stale across a Redis restart) is made at once: kombu's default waits 2 s
        # first, which stalled every API request for 2 s while Redis was down.
        broker_connection_timeout=2.0,
        broker_transport_options={
            "socket_connect_timeout": 2.0,
            "socket_timeout": 5.0,
            "max_retries": 1,
            "interval_start": 0,
        },
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app


class CeleryTaskQueue:
    """TaskQueue port over Celery: publish by task name, fail fast when the broker is down."""

    def __init__(self, app: Celery, queue: str) -> None:
        self._app = app
        self._queue = queue

    def send(self, task_name: str, args: Sequence[Any]) -> None:
        """Publish one task; raises when the broker cannot take it."""
        self._app.send_task(task_name, args=list(args), queue=self._queue, retry=False, headers=task_headers())


def task_headers() -> dict[str, str]:
    """What a task carries of the work that sent it: the request id, and the trace context when tracing is on."""
    headers: dict[str, str] = {}
    request_id = REQUEST_ID.get()
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    tracing.inject(headers)
    return headers


def headers_of(request: Any) -> dict[str, str]:
    """The carried headers of a running task (its ``task.request``): Celery puts a message's own headers on the
    request itself, and ``apply()`` keeps them under ``headers``."""
    nested = getattr(request, "headers", None) or {}
    found: dict[str, str] = {}
    for key in (REQUEST_ID_HEADER, "traceparent", "tracestate"):
        value = getattr(request, key, None) or (nested.get(key) if isinstance(nested, dict) else None)
        if isinstance(value, str) and value:
            found[key] = value
    return found
