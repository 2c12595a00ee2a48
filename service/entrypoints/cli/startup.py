"""What several commands share: the start line, the start-up self-check and Celery's options."""

from __future__ import annotations

import argparse
import logging

from service.adapters.startup_check import Role, startup_check
from service.platform.config import get_settings
from service.platform.logs import log_format

__all__ = ["add_skip_check", "celery_options", "log_start", "ready_to_start"]

log = logging.getLogger("refracture")

_SKIP_CHECK = "start without the start-up check of the broker, the database and the EHR client"


def log_start(command: str) -> None:
    """The start line: which mode, and why (a mode nobody chose is production: docs/security.md)."""
    settings = get_settings()
    extra = ""
    if settings.environment == "production" and not (settings.auth_issuer and settings.auth_audience):
        extra = "; no REFRACTURE_AUTH_ISSUER/REFRACTURE_AUTH_AUDIENCE: every bearer token is refused"
    log.info("refracture %s starting: %s%s", command, settings.environment_reason, extra)


def add_skip_check(parser: argparse.ArgumentParser) -> None:
    """The --skip-check option of the commands that run the start-up self-check."""
    parser.add_argument("--skip-check", action="store_true", help=_SKIP_CHECK)


def ready_to_start(role: Role, args: argparse.Namespace) -> bool:
    """The start-up self-check (service/adapters/startup_check.py), unless --skip-check."""
    if getattr(args, "skip_check", False):
        return True
    return startup_check(get_settings(), role)


def celery_options() -> list[str]:
    """Celery's options before its sub-command."""
    # JSON lines only: Celery's start-up banner is printed, not logged (text mode keeps it for people).
    return ["--quiet"] if log_format() == "json" else []
