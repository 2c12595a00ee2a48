"""What every way in counts: one place for refracture_ingested_total, so the API, Bundles, event feeds and bulk
import report the same resource the same way (the checks themselves are service/fhir/intake.py's gate)."""

from __future__ import annotations

from collections.abc import Iterable

from service.platform.errors import HTTP_STATUS, RefractureError
from service.usecases.ingest import EntryOutcome, Skipped
from service.usecases.ports.metrics import Metrics

__all__ = ["IntakeCounter", "outcome_label"]


def outcome_label(outcome: EntryOutcome) -> str:
    """The label of one stored resource: created, updated or unchanged."""
    return "created" if outcome.created else "updated" if outcome.changed else "unchanged"


class IntakeCounter:
    """Counts each resource offered by its type and outcome: created, updated, unchanged, skipped or refused."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def stored(self, resource_type: str, outcome: EntryOutcome) -> None:
        self._metrics.count_ingested(resource_type, outcome_label(outcome))

    def skipped(self, resource_type: str, n: int = 1) -> None:
        self._metrics.count_ingested(_label_type(resource_type), "skipped", n)

    def refused(self, resource_types: Iterable[object], exc: RefractureError | None = None) -> None:
        # Refused means refracture said no to the data (4xx); a 503 decided nothing, and the sender retries.
        if exc is not None and HTTP_STATUS[exc.problem] >= 500:
            return
        for resource_type in resource_types:
            self._metrics.count_ingested(_label_type(resource_type), "refused")

    def outcomes(self, resource_type: str, outcome: EntryOutcome | Skipped | RefractureError) -> None:
        """One entry's outcome, whichever it was."""
        if isinstance(outcome, Skipped):
            self.skipped(resource_type)
        elif isinstance(outcome, RefractureError):
            self.refused([resource_type], outcome)
        else:
            self.stored(resource_type, outcome)


def _label_type(resource_type: object) -> str:
    # The adapter turns a type refracture does not take into "other" (labels from a fixed set).
    return resource_type if isinstance(resource_type, str) else "other"
