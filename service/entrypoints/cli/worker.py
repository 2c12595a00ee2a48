"""`refracture worker`: run a Celery worker (with --metrics-port: and serve its processes' metrics there)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from service.adapters.metrics_server import serve_worker_metrics
from service.entrypoints.cli.startup import add_skip_check, celery_options, ready_to_start
from service.platform.config import get_settings
from service.platform.logs import log_level

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--skip-check, --concurrency, --pool, --metrics-port."""
    add_skip_check(parser)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--pool", choices=["prefork", "solo", "threads"])
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics of this worker on this port")


def run(args: argparse.Namespace) -> int:
    """Run a Celery worker (with --metrics-port: and serve its processes' metrics there)."""
    if not ready_to_start("worker", args):
        return 1
    stop_metrics: Callable[[], None] | None = None
    if args.metrics_port:
        # Before anything imports prometheus_client: the pool's children must count into the shared folder.
        stop_metrics = serve_worker_metrics(args.metrics_port)
    # Imported here, not at the top: after the metrics folder is set (above), and after the start-up check, which
    # names a missing broker transport with its fix where this import would only fail.
    from workers.celery_app import app  # noqa: PLC0415

    argv = [
        *celery_options(),
        "worker",
        "--loglevel",
        log_level(),
        "-Q",
        get_settings().celery_queue,
        "--concurrency",
        str(args.concurrency),
    ]
    if args.pool:
        argv += ["--pool", args.pool]
    try:
        app.worker_main(argv)
    finally:
        if stop_metrics is not None:
            stop_metrics()
    return 0
