"""Thin tasks: ids in, one handler call; every task is safe to run twice."""

from __future__ import annotations

from functools import cache

from service.composition.worker import WorkerServices, default_worker
from service.platform.errors import Problem, RefractureError
from service.usecases.task_names import (
    TASK_DELIVER,
    TASK_EHR_CAPABILITIES,
    TASK_MODEL_MONITORING,
    TASK_NOTIFY,
    TASK_PATIENTS_CHANGED,
    TASK_RELAY,
    TASK_SUBSCRIPTION_WORK,
    TASK_SWEEP,
)
from workers.celery_app import app


@cache
def services() -> WorkerServices:
    """The worker process's services, built on first use (after the pool forked)."""
    return default_worker()


class _DatabaseUnavailable(Exception):
    pass


@app.task(
    name=TASK_PATIENTS_CHANGED,
    autoretry_for=(_DatabaseUnavailable,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=10,
)
def patients_changed(patient_ids: list[str]) -> int:
    """Handle the changes of these patients (the outbox rows say what is still to do)."""
    try:
        return services().changes.process(patient_ids)
    except RefractureError as exc:
        if exc.problem is Problem.UNAVAILABLE:
            raise _DatabaseUnavailable from exc
        raise


@app.task(name=TASK_RELAY)
def relay() -> int:
    """Publish every change whose doorbell was never rung or was lost."""
    return services().relay.ring()


@app.task(name=TASK_SWEEP)
def sweep() -> int:
    """Assess and evaluate every patient whose next threshold has passed (daily; safe to run twice), then drop
    audit rows past their retention (daily housekeeping rides on the daily task)."""
    built = services()
    swept = built.sweeper.sweep().patients
    built.audit.purge()
    return swept


@app.task(name=TASK_NOTIFY)
def notify() -> int:
    """Send today's notification digests (daily; a second run sends nothing new). Returns the messages sent."""
    return services().digests.run().sent


@app.task(name=TASK_DELIVER)
def deliver() -> int:
    """Send every write-back whose time has come (new ones, and retries after their backoff)."""
    return services().deliverer.deliver_due().delivered


@app.task(name=TASK_EHR_CAPABILITIES)
def ehr_capabilities() -> str:
    """Read the EHR's CapabilityStatement again and choose the write mode."""
    mode, _ = services().deliverer.refresh_mode()
    return mode


@app.task(name=TASK_SUBSCRIPTION_WORK)
def subscription_work() -> int:
    """Event feeds: fetch announced resources, run a catch-up or periodic poll when due (safe to run twice: the
    rows say what is due, and ingesting the same content again changes nothing)."""
    done = services().feed_worker.work()
    return done.fetched + done.read


@app.task(name=TASK_MODEL_MONITORING)
def model_monitoring() -> bool:
    """Compute and store the model's drift and calibration figures (daily); True when a warning fired."""
    return services().monitor.run().warning
