"""Counters of what the use cases did."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class Metrics(Protocol):
    """Counters of what the use cases did (service/adapters/metrics.py). Labels are types, codes and modes from
    fixed sets, never patients: the port takes nothing else."""

    def count_ingested(self, resource_type: str, outcome: str, n: int = 1) -> None:
        """Resources created, updated, unchanged or refused."""

    def count_writeback(self, mode: str, outcome: str) -> None:
        """One write-back job delivered, retried or dead, in a write mode."""

    def count_alerts(self, transition: str, by_code: Mapping[str, int]) -> None:
        """Alerts opened or resolved, per alert code (after their transaction committed)."""


class NoMetrics:
    """Counts nothing: for unit tests and for tools nobody scrapes."""

    def count_ingested(self, resource_type: str, outcome: str, n: int = 1) -> None:
        """See Metrics."""

    def count_writeback(self, mode: str, outcome: str) -> None:
        """See Metrics."""

    def count_alerts(self, transition: str, by_code: Mapping[str, int]) -> None:
        """See Metrics."""
