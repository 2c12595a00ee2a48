"""The names of the background tasks, in one place: the API rings them and beat schedules them by name, without
importing the worker code (nothing imports `workers`); workers/tasks.py registers a handler under each."""

from __future__ import annotations

from typing import Final

__all__ = [
    "TASK_DELIVER",
    "TASK_EHR_CAPABILITIES",
    "TASK_MODEL_MONITORING",
    "TASK_NOTIFY",
    "TASK_PATIENTS_CHANGED",
    "TASK_RELAY",
    "TASK_SUBSCRIPTION_WORK",
    "TASK_SWEEP",
]

TASK_PATIENTS_CHANGED: Final = "refracture.patients_changed"  # assess, alert and plan the write-back of patients
TASK_RELAY: Final = "refracture.relay"  # re-send what the outbox holds and no worker took (beat, every 15 s)
TASK_SWEEP: Final = "refracture.sweep"  # the daily sweep: time-based alerts with no new data
TASK_NOTIFY: Final = "refracture.notify"  # the daily notification digests
TASK_DELIVER: Final = "refracture.deliver"  # write-back jobs to the EHR
TASK_EHR_CAPABILITIES: Final = "refracture.ehr_capabilities"  # re-read the EHR's CapabilityStatement
TASK_SUBSCRIPTION_WORK: Final = "refracture.subscription_work"  # event feeds: fetches and the catch-up poll
TASK_MODEL_MONITORING: Final = "refracture.model_monitoring"  # daily, an hour after the sweep
