"""The Celery app of the workers: configuration from Settings, task modules, and the beat schedule."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab
from celery.signals import setup_logging

from service.adapters.queue import make_celery
from service.platform.config import get_settings
from service.platform.logs import configure_logging
from service.usecases.task_names import (
    TASK_DELIVER,
    TASK_EHR_CAPABILITIES,
    TASK_MODEL_MONITORING,
    TASK_NOTIFY,
    TASK_RELAY,
    TASK_SUBSCRIPTION_WORK,
    TASK_SWEEP,
)
from workers import heartbeat, observability  # noqa: F401 - connect the worker's and tasks' signals


@setup_logging.connect
def _logging(**_: Any) -> None:
    # A receiver here makes Celery leave logging alone (no handlers, formats or stdout redirection of its own): the
    # worker, its pool processes and beat log JSON lines through service.platform.logs like the API, with the same
    # withholding of exception texts (Celery's failure lines put the exception's repr in the message).
    configure_logging()


settings = get_settings()
app = make_celery(settings)
app.conf.include = ["workers.tasks"]
# Beat reads the sweep time in the service's zone, so "02:30" stays 02:30 across daylight saving changes.
app.conf.update(timezone=settings.timezone)
_hour, _minute = (int(part) for part in settings.sweep_time.split(":"))
app.conf.beat_schedule = {
    # The relay catches whatever the API's own doorbell missed (Redis down, a crash between commit and publish).
    "relay-outbox": {"task": TASK_RELAY, "schedule": settings.relay_interval_s},
    # Time alone makes alerts fire (a dose turns overdue with no new data): once a day, whatever is due.
    "daily-sweep": {"task": TASK_SWEEP, "schedule": crontab(hour=_hour, minute=_minute)},
    # The notification digest per owner (docs/integration-guide.md, "Notifications"); safe to run twice a day.
    "daily-notify": {
        "task": TASK_NOTIFY,
        "schedule": crontab(hour=int(settings.notify_time[:2]), minute=int(settings.notify_time[3:])),
    },
    # Write-backs that failed are retried from their rows when their backoff ends.
    "deliver-due": {"task": TASK_DELIVER, "schedule": settings.writeback_interval_s},
    "ehr-capabilities": {"task": TASK_EHR_CAPABILITIES, "schedule": settings.ehr_capability_refresh_s},
    # Model monitoring (docs/model-monitoring.md): once a day, an hour after the sweep has re-assessed whoever was due.
    "model-monitoring": {"task": TASK_MODEL_MONITORING, "schedule": crontab(hour=(_hour + 1) % 24, minute=_minute)},
}
if settings.feeds_enabled:
    # Event feeds: fetch jobs whose doorbell was lost, catch-up polls asked for, the periodic _lastUpdated poll
    # (the task decides which are due; this only makes sure it runs).
    app.conf.beat_schedule["subscription-work"] = {
        "task": TASK_SUBSCRIPTION_WORK,
        "schedule": settings.relay_interval_s,
    }
