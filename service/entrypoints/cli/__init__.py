"""The `refracture` command (the console script, and `python -m service`): one module per sub-command in this package,
the parser built from them in commands.py, what they share in startup.py."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from service.entrypoints.cli.commands import COMMANDS, build_parser
from service.entrypoints.cli.startup import log_start
from service.platform.log_redaction import handling_patient_data
from service.platform.logs import configure_logging

__all__ = ["main"]

log = logging.getLogger("refracture")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `refracture` console script."""
    words = sys.argv[1:] if argv is None else argv
    # Before the parser imports the command's module: a dependency missing there is logged like any failure, fix
    # included (service/platform/log_redaction.py, hint).
    configure_logging()
    args = build_parser(words).parse_args(words)
    command = COMMANDS[args.command]
    if command.reads_settings:
        try:
            log_start(command.name)
        except ValidationError as exc:
            # Where and why only: a setting's value can be a secret (the input is never printed).
            for error in exc.errors():
                setting = ".".join(str(part) for part in error["loc"]) or "settings"
                log.critical("refusing to start: %s: %s", setting, error["msg"])
            return 2
    run = command.module().run
    if command.patient_data:
        return int(run(args))
    # No patient data at hand: a failure is logged with its message (docs/security.md, "What an error may say in a
    # log"), here, while that holds; the excepthook would log it after.
    with handling_patient_data(False):
        try:
            return int(run(args))
        except Exception as exc:  # noqa: BLE001 - logged as an uncaught exception is, with its message
            sys.excepthook(type(exc), exc, exc.__traceback__)
            return 1
