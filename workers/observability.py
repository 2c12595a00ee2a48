"""What every task run leaves behind: its metrics, its span, and the request id of the API request that sent it
on every log line it writes. Connected to Celery's signals, so the tasks stay thin."""

from __future__ import annotations

import threading
import time
from contextvars import Token
from typing import Any

from celery.signals import task_postrun, task_prerun, worker_init, worker_process_shutdown, worker_shutdown

from service.adapters.metrics import observe_task
from service.adapters.queue import REQUEST_ID_HEADER, headers_of
from service.platform import tracing
from service.platform.config import get_settings
from service.platform.logs import REQUEST_ID

__all__: list[str] = []

# task id → (start, request id token, span); a task's prerun and postrun run in the same thread (any pool).
_running: dict[str, tuple[float, Token[str | None], tracing.OpenSpan | None]] = {}
_lock = threading.Lock()


@worker_init.connect
def _start_tracing(**_: Any) -> None:
    # Before the pool forks: the span processor's thread is re-made in each child (OpenTelemetry's at-fork hook).
    tracing.configure_tracing(get_settings().otel_endpoint, "refracture-worker")


@worker_process_shutdown.connect
@worker_shutdown.connect
def _flush_spans(**_: Any) -> None:
    tracing.flush()


@task_prerun.connect
def _task_started(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is None or task is None:
        return
    carried = headers_of(task.request)
    token = REQUEST_ID.set(carried.get(REQUEST_ID_HEADER))
    opened = tracing.begin(f"task {task.name}", "consumer", carried, {"celery.task_name": str(task.name)})
    with _lock:
        _running[task_id] = (time.perf_counter(), token, opened)


@task_postrun.connect
def _task_finished(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    with _lock:
        found = _running.pop(task_id or "", None)
    if found is None or task is None:
        return
    started, token, opened = found
    observe_task(str(task.name), state or "", time.perf_counter() - started)
    if opened is not None:
        opened.end("failure" if state == "FAILURE" else None)
    REQUEST_ID.reset(token)
