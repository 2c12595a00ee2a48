"""The command table, and the `refracture` parser built from it.

Each command is a module of this package with ``add_arguments(parser)`` and ``run(args) -> int``. Only the module of
the command named on the command line is imported: together the modules import the API, Celery and the composition
(about 2 s), which `refracture --help` and every other command would otherwise wait for.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

__all__ = ["COMMANDS", "Command", "CommandModule", "build_parser"]

# The text of `refracture --help` (kept as it was).
_DESCRIPTION = (
    "The `refracture` command: migrate, api, worker, beat, relay, rescore, sweep, measures, writeback, demo, synth,\n"
    "model-card, openapi."
)


class CommandModule(Protocol):
    """What a command's module defines."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's arguments (and its description, if any) to its parser."""

    def run(self, args: argparse.Namespace) -> int:
        """Run the command; its exit status."""


@dataclass(frozen=True, slots=True)
class Command:
    """A `refracture` sub-command."""

    name: str
    module_name: str  # in this package
    help: str  # listed by `refracture --help`, so here rather than in the module (which that would import)
    reads_settings: bool = True  # False: reads no settings and serves nothing, so no start line
    patient_data: bool = True  # False: schema changes, documents from code, synthetic patients

    def module(self) -> CommandModule:
        """The command's module (imported on first use)."""
        return cast("CommandModule", importlib.import_module(f"{__package__}.{self.module_name}"))


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("migrate", "migrate", "create the database if needed and apply migrations", patient_data=False),
        Command("api", "api", "serve the HTTP API"),
        Command("worker", "worker", "run a Celery worker"),
        Command("beat", "beat", "run Celery beat (one per deployment)"),
        Command("relay", "relay", "publish pending changes once"),
        Command("rescore", "rescore", "re-assess all patients (or --patient ...) with the current model"),
        Command("sweep", "sweep", "run the daily alert sweep once"),
        Command("measures", "measures", "compute the FLS quality measures by month and site; keep them"),
        Command("notify", "notify", "send today's notification digests once"),
        Command("writeback", "writeback", "show the write-back outbox, or replay dead-lettered jobs"),
        Command(
            "recalibrate",
            "recalibrate",
            "recalibrate the risk model on local outcomes; register it only when better on held-out patients",
        ),
        Command("subscribe", "subscribe", "register (or update) refracture's Subscriptions at the EHR; idempotent"),
        Command(
            "audit",
            "audit",
            "verify the audit trail's hash chain, or export it as NDJSON AuditEvents (for a SIEM)",
        ),
        Command(
            "import",
            "bulk_import",
            "onboard a population: NDJSON files/folders, or the EHR's Bulk Data $export (resumable)",
        ),
        Command(
            "model-card",
            "model_card",
            "print or write the model card (docs/model-card.md)",
            reads_settings=False,
            patient_data=False,
        ),
        Command("openapi", "openapi", "print or write the OpenAPI document", reads_settings=False, patient_data=False),
        # The demo sets its children's mode itself.
        Command("demo", "demo", "run everything locally with a synthetic cohort", reads_settings=False),
        Command(
            "synth",
            "synth",
            "write synthetic patients' FHIR transaction Bundles (no real people)",
            reads_settings=False,
            patient_data=False,
        ),
    )
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of every command, with the arguments of the one ``argv`` names (the others' are not needed)."""
    parser = argparse.ArgumentParser(prog="refracture", description=_DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    # The top level has no option but --help: the first word that is not an option names the command.
    named = next((word for word in argv if not word.startswith("-")), None)
    for command in COMMANDS.values():
        one = sub.add_parser(command.name, help=command.help)
        if command.name == named:
            command.module().add_arguments(one)
    return parser
