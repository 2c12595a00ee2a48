"""Prometheus metrics: counters and histograms kept by every process, gauges of durable state read at scrape time.

Two kinds, for two reasons (docs/operations.md):

- **Events** (requests, ingested resources, tasks, write-back outcomes, alerts) are counted in the process where they
  happen: API workers and Celery's prefork children alike. With ``PROMETHEUS_MULTIPROC_DIR`` set (before this module
  is imported) every process writes its values to files there, and a scrape sums the files of the whole pod;
  without it the process keeps them in memory (one API process, tests).
- **State** (outbox backlogs and ages, queue depth) is not counted at all: it is read from PostgreSQL and Redis when
  Prometheus scrapes, one cheap query each. Durable state is the truth, and any number of processes agree on it.

Labels come from fixed sets (resource types, route templates, task names, write modes, alert codes), never from
patients.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from service.domain.risk_model import model_version
from service.fhir.resource_types import INPUT_TYPES
from service.usecases.ports.outbox import OutboxStore
from service.usecases.ports.writeback import WritebackStore

__all__ = [
    "CONTENT_TYPE",
    "PrometheusMetrics",
    "StateCollector",
    "multiprocess_dir",
    "observe_request",
    "observe_task",
    "render",
    "resource_type_label",
]

log = logging.getLogger(__name__)

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
PREFIX: Final = "refracture"

# Our own registry (not the library's global one): the tests build many apps in one process, and a scrape in
# multiprocess mode must read the files instead of this process's values.
REGISTRY: Final = CollectorRegistry(auto_describe=True)

# Request latency buckets from 5 ms (a read) to 60 s (a 5,000-entry Bundle; performance.md).
_HTTP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_TASK_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

INGESTED: Final = Counter(
    f"{PREFIX}_ingested_resources",
    "FHIR resources received, by type and outcome (created, updated, unchanged, refused, skipped)",
    ["resource_type", "outcome"],
    registry=REGISTRY,
)
HTTP_REQUESTS: Final = Counter(
    f"{PREFIX}_http_requests",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_DURATION: Final = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method and route template",
    ["method", "route"],
    buckets=_HTTP_BUCKETS,
    registry=REGISTRY,
)
TASKS: Final = Counter(
    f"{PREFIX}_tasks",
    "Celery tasks run, by task name and outcome (success, failure, retry)",
    ["task", "outcome"],
    registry=REGISTRY,
)
TASK_DURATION: Final = Histogram(
    f"{PREFIX}_task_duration_seconds",
    "Time a Celery task ran, by task name",
    ["task"],
    buckets=_TASK_BUCKETS,
    registry=REGISTRY,
)
WRITEBACKS: Final = Counter(
    f"{PREFIX}_writebacks",
    "Write-back jobs attempted, by write mode and outcome (delivered, retried, dead)",
    ["mode", "outcome"],
    registry=REGISTRY,
)
ALERTS: Final = Counter(
    f"{PREFIX}_alerts",
    "Alerts opened or resolved by the rules, by alert code and transition",
    ["code", "transition"],
    registry=REGISTRY,
)

INGEST_OUTCOMES: Final = frozenset({"created", "updated", "unchanged", "refused", "skipped"})
TASK_OUTCOMES: Final = {"SUCCESS": "success", "FAILURE": "failure", "RETRY": "retry"}


def resource_type_label(resource_type: str | None) -> str:
    """A resource type as a label: one refracture takes, "Bundle", or "other" (types in URLs are the caller's
    choice: unbounded)."""
    if resource_type in INPUT_TYPES or resource_type == "Bundle":
        return str(resource_type)
    return "other"


class PrometheusMetrics:
    """The Metrics port over the counters above."""

    def count_ingested(self, resource_type: str, outcome: str, n: int = 1) -> None:
        """See Metrics."""
        if n > 0:
            INGESTED.labels(resource_type_label(resource_type), outcome if outcome in INGEST_OUTCOMES else "other").inc(
                n
            )

    def count_writeback(self, mode: str, outcome: str) -> None:
        """See Metrics."""
        WRITEBACKS.labels(mode, outcome).inc()

    def count_alerts(self, transition: str, by_code: Mapping[str, int]) -> None:
        """See Metrics."""
        for code, n in by_code.items():
            if n > 0:
                ALERTS.labels(code, transition).inc(n)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """One answered request (route: the template, or "unmatched": raw paths carry ids)."""
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


def observe_task(task: str, state: str, seconds: float) -> None:
    """One task run; ``state`` is Celery's (SUCCESS, FAILURE, RETRY, ...)."""
    TASKS.labels(task, TASK_OUTCOMES.get(state, "other")).inc()
    TASK_DURATION.labels(task).observe(seconds)


# ---------------------------------------------------------------------------------------------------------------
# State, read at scrape time


class StateCollector:
    """Gauges of durable state, read when Prometheus scrapes; a source that does not answer reports ``up`` 0 and
    leaves its gauges out (a missing series, not a wrong zero)."""

    def __init__(
        self,
        change_backlog: Callable[[], tuple[int, datetime | None]],
        writeback_counts: Callable[[], Mapping[str, Any]],
        queue_depths: Callable[[], Mapping[str, int]],
        clock: Callable[[], datetime],
    ) -> None:
        self._change_backlog = change_backlog
        self._writeback_counts = writeback_counts
        self._queue_depths = queue_depths
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        """Read PostgreSQL and Redis now."""
        up = GaugeMetricFamily(f"{PREFIX}_state_up", "Whether a state source answered this scrape", labels=["source"])
        info = InfoMetricFamily(f"{PREFIX}_model", "The risk model's version (with a digest of its parameter table)")
        info.add_metric([], {"version": model_version()})
        yield info
        now = self._clock()
        try:
            pending, oldest = self._change_backlog()
            writebacks = self._writeback_counts()
        except Exception as exc:  # noqa: BLE001 - a scrape reports the database as down; it never fails
            log.warning("metrics: the database did not answer (%s)", exc)
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            yield from _outbox_gauges(pending, oldest, writebacks, now)
        try:
            depths = self._queue_depths()
        except Exception as exc:  # noqa: BLE001
            log.warning("metrics: the broker did not answer (%s)", exc)
            up.add_metric(["broker"], 0)
        else:
            up.add_metric(["broker"], 1)
            depth = GaugeMetricFamily(f"{PREFIX}_queue_depth", "Tasks waiting in the Celery queue", labels=["queue"])
            for queue, n in sorted(depths.items()):
                depth.add_metric([queue], n)
            yield depth
        yield up


def _age(now: datetime, since: datetime | None) -> float:
    return max(0.0, (now - since).total_seconds()) if since is not None else 0.0


def _outbox_gauges(
    pending: int, oldest: datetime | None, writebacks: Mapping[str, Any], now: datetime
) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        f"{PREFIX}_outbox_pending_changes", "Patients whose changes the workers have not handled yet", value=pending
    )
    yield GaugeMetricFamily(
        f"{PREFIX}_outbox_oldest_change_age_seconds",
        "Age of the oldest unhandled patient change (0 when none waits)",
        value=_age(now, oldest),
    )
    jobs = GaugeMetricFamily(
        f"{PREFIX}_writeback_jobs",
        "Write-back jobs by status (pending, delivering, delivered, dead)",
        labels=["status"],
    )
    by_status: Mapping[str, int] = writebacks.get("jobs") or {}
    for status in ("pending", "delivering", "delivered", "dead"):
        jobs.add_metric([status], int(by_status.get(status, 0)))
    yield jobs
    yield GaugeMetricFamily(
        f"{PREFIX}_writeback_oldest_pending_age_seconds",
        "Age of the oldest pending write-back job (0 when none waits)",
        value=_age(now, writebacks.get("oldest_pending_at")),
    )


def redis_queue_depths(redis_url: str, queues: Sequence[str]) -> dict[str, int]:
    """LLEN of each Celery queue in Redis (its priority lists included), over a connection opened for the scrape."""
    import redis  # noqa: PLC0415 - only the scrape reads Redis from here

    # kombu's Redis transport keeps priorities other than 0 in lists named "<queue>\x06\x16<priority>".
    names = {queue: [queue, *(f"{queue}\x06\x16{p}" for p in (3, 6, 9))] for queue in queues}
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        pipe = client.pipeline(transaction=False)
        for keys in names.values():
            for key in keys:
                pipe.llen(key)
        lengths = iter(pipe.execute())
        return {queue: sum(int(next(lengths)) for _ in keys) for queue, keys in names.items()}
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------------------------
# Exposition


def multiprocess_dir() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR, when this process counts into files."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def process_registry(path: str | None = None) -> CollectorRegistry:
    """The event counters of this process, or of every process writing into ``path`` (multiprocess mode)."""
    path = path or multiprocess_dir()
    if path is None:
        return REGISTRY
    registry = CollectorRegistry(auto_describe=False)
    _multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


def render(extra: Iterable[Collector] = (), path: str | None = None) -> bytes:
    """The exposition text: the event counters (summed over the pod's processes in multiprocess mode) and the
    collectors given (state read now)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(process_registry(path))
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)


def state_collector(
    outbox: OutboxStore,
    writebacks: WritebackStore,
    redis_url: str,
    queues: Sequence[str],
    clock: Callable[[], datetime],
) -> StateCollector:
    """The scrape-time gauges over the change outbox, the write-back outbox and the broker."""

    def change_backlog() -> tuple[int, datetime | None]:
        with outbox.outbox() as changes:
            return changes.backlog()

    return StateCollector(
        change_backlog, writebacks.writeback_counts, lambda: redis_queue_depths(redis_url, queues), clock
    )
