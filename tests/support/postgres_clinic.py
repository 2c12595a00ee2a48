"""The PostgreSQL adapters of the clinical use cases over one pool: tests/support/clinic.py's MemoryStore counterpart,
for integration tests that wire the use cases on the real store."""

from __future__ import annotations

from service.adapters.postgres.store import (
    PostgresAlertStore,
    PostgresAssessmentStore,
    PostgresIngestStore,
    PostgresPatientStore,
    PostgresWritebackStore,
)

__all__ = ["PostgresClinic"]


class PostgresClinic(
    PostgresIngestStore, PostgresAssessmentStore, PostgresAlertStore, PostgresPatientStore, PostgresWritebackStore
):
    """The PostgreSQL adapter of each port the clinical use cases need, over one pool."""
