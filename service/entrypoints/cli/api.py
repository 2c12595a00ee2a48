"""`refracture api`: serve the HTTP API."""

from __future__ import annotations

import argparse

import uvicorn

from service.entrypoints.cli.startup import add_skip_check, ready_to_start
from service.platform.config import get_settings
from service.platform.logs import log_level, logging_config

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--host, --port, --workers, --skip-check."""
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workers", type=int, default=1)
    add_skip_check(parser)


def run(args: argparse.Namespace) -> int:
    """Serve the HTTP API."""
    if not ready_to_start("api", args):
        return 1
    settings = get_settings()
    uvicorn.run(
        "service.entrypoints.api.app:create_app",
        factory=True,
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        workers=args.workers,
        # Access logs carry query strings, which can carry patient identifiers: AccessLogMiddleware logs instead.
        access_log=False,
        # uvicorn's worker processes configure their logging from this too.
        log_config=logging_config(),
        log_level=log_level().lower(),
    )
    return 0
