"""The worker's heartbeat: a row written when the worker is ready and every REFRACTURE_WORKER_STALE_AFTER_S / 4 after,
from a thread of the worker's main process, so that /readyz can say "no worker" (docs/operations.md)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from service.adapters.postgres.heartbeats import HeartbeatWriter
from service.composition.core import utc_now
from service.platform.config import get_settings

__all__: list[str] = []

log = logging.getLogger(__name__)


class _Heartbeat:
    def __init__(self, writer: HeartbeatWriter, interval_s: float) -> None:
        self._writer = writer
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="refracture-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval_s + 10)
        try:
            self._writer.stopped(utc_now())
        except Exception as exc:  # noqa: BLE001 - a stop that cannot be recorded just ages out
            log.warning("worker heartbeat: the stop could not be recorded (%s)", exc)
        finally:
            self._writer.close()

    def _run(self) -> None:
        failing = False
        while True:
            try:
                self._writer.beat(utc_now())
            except Exception as exc:  # noqa: BLE001 - keep beating: the database may come back
                if not failing:
                    log.warning("worker heartbeat not written (%s); /readyz may report no worker", exc)
                failing = True
            else:
                if failing:
                    log.info("worker heartbeat written again")
                failing = False
            if self._stop.wait(self._interval_s):
                return


_running: list[_Heartbeat] = []


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    settings = get_settings()
    hostname = str(getattr(sender, "hostname", None) or "worker")
    heartbeat = _Heartbeat(
        HeartbeatWriter(settings.database_url.get_secret_value(), hostname, utc_now()), settings.worker_heartbeat_s
    )
    heartbeat.start()
    _running.append(heartbeat)


@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    while _running:
        _running.pop().stop()
