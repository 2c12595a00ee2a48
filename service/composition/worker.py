"""The worker's composition: what the Celery tasks run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from service.composition.core import build_core
from service.composition.parts import Parts
from service.platform.config import Settings
from service.usecases.audit import AuditLog
from service.usecases.changes import ChangeProcessor
from service.usecases.model_monitoring import ModelMonitor
from service.usecases.notify import Notifier
from service.usecases.relay import Relay
from service.usecases.subscriptions import FeedWorker
from service.usecases.sweep import Sweeper
from service.usecases.writeback import Deliverer

__all__ = ["WorkerServices", "build_worker", "default_worker"]


@dataclass(slots=True)
class WorkerServices:
    """One use case per task (workers/tasks.py)."""

    changes: ChangeProcessor
    relay: Relay
    sweeper: Sweeper
    audit: AuditLog  # its retention purge rides on the daily sweep
    digests: Notifier
    deliverer: Deliverer
    feed_worker: FeedWorker
    monitor: ModelMonitor
    close: Callable[[], None]


def build_worker(parts: Parts) -> WorkerServices:
    """The worker's services over these parts."""
    return WorkerServices(
        changes=parts.changes,
        relay=parts.relay,
        sweeper=parts.sweeper,
        audit=parts.audit,
        digests=parts.digests,
        deliverer=parts.deliverer,
        feed_worker=parts.feed_worker,
        monitor=parts.monitor,
        close=parts.close,
    )


def default_worker(settings: Settings | None = None) -> WorkerServices:
    """The worker's services from the environment's settings."""
    return build_worker(Parts(build_core(settings)))
