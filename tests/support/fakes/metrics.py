"""A Metrics port that keeps what it is told, for tests that check what was counted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from service.usecases.ports.metrics import Metrics

__all__ = ["RecordingMetrics"]


class RecordingMetrics:
    """Sums every count by its labels."""

    def __init__(self) -> None:
        self.ingested: Counter[tuple[str, str]] = Counter()
        self.writebacks: Counter[tuple[str, str]] = Counter()  # (mode, outcome)
        self.alerts: Counter[tuple[str, str]] = Counter()  # (transition, code)

    def count_ingested(self, resource_type: str, outcome: str, n: int = 1) -> None:
        self.ingested[(resource_type, outcome)] += n

    def count_writeback(self, mode: str, outcome: str) -> None:
        self.writebacks[(mode, outcome)] += 1

    def count_alerts(self, transition: str, by_code: Mapping[str, int]) -> None:
        for code, n in by_code.items():
            self.alerts[(transition, code)] += n


def _conforms(metrics: RecordingMetrics) -> None:
    """Never called: mypy checks that RecordingMetrics implements the port."""
    port: Metrics = metrics
    del port
