"""A small HTTP server for a worker's metrics: Celery's prefork children count into files, the parent serves them.

Kept apart from service/adapters/metrics.py on purpose: prometheus_client picks in-memory or file-backed values
when it is imported, so PROMETHEUS_MULTIPROC_DIR must be set before that import, here.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable

__all__ = ["serve_worker_metrics"]

log = logging.getLogger(__name__)


def serve_worker_metrics(port: int, host: str = "0.0.0.0") -> Callable[[], None]:  # noqa: S104 - a pod's port  # nosec B104
    """Serve /metrics for this process and every process it forks; returns the function that stops serving.

    Uses PROMETHEUS_MULTIPROC_DIR when set (an emptyDir in Kubernetes), else a fresh temporary folder removed again
    when serving stops.

    Raises:
        RuntimeError: prometheus_client was imported before the folder was chosen (its values would stay in memory).
    """
    made: str | None = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        if "prometheus_client" in sys.modules:
            raise RuntimeError("set PROMETHEUS_MULTIPROC_DIR before prometheus_client is imported")
        made = tempfile.mkdtemp(prefix="refracture-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    from prometheus_client import start_http_server  # noqa: PLC0415 - after the folder is set

    from service.adapters.metrics import process_registry  # noqa: PLC0415

    server, thread = start_http_server(port, addr=host, registry=process_registry())
    log.info("worker metrics on port %d", port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)

    return stop
