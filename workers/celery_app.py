"""The Celery app of the workers: configuration from Settings, task modules, and the beat schedule."""

from __future__ import annotations

from service.adapters.queue import make_celery
from service.config import get_settings
from service.usecases.ports import TASK_RELAY

settings = get_settings()
app = make_celery(settings)
app.conf.include = ["workers.tasks"]
app.conf.beat_schedule = {
    # The relay catches whatever the API's own doorbell missed (Redis down, a crash between commit and publish).
    "relay-outbox": {"task": TASK_RELAY, "schedule": settings.relay_interval_s},
}
