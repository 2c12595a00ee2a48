"""What the ingest use case needs of the database: versions, facts, demographics, the outbox, audit rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from service.domain.audit_record import AuditRecord
from service.domain.facts import Fact
from service.domain.patient import Demographics
from service.usecases.ports.resources import ResourceKey, StoredText


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """What is stored for a resource now."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    content_hash: bytes
    patient_id: str | None


@dataclass(frozen=True, slots=True)
class ResourceWrite:
    """A new version of a resource to store (``body`` already carries meta.versionId/lastUpdated)."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    content_hash: bytes
    patient_id: str | None
    status: str | None
    entered_in_error: bool
    medication_ref: str | None
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SourcedFact:
    """A fact with the patient and the resource version it came from."""

    patient_id: str
    fact: Fact
    source_type: str
    source_id: str
    source_version: int


@dataclass(frozen=True, slots=True)
class UnrecognisedCount:
    """How often a code was seen and not recognised."""

    resource_type: str
    system: str
    code: str
    display: str | None
    occurrences: int
    first_seen: datetime | None = None
    last_seen: datetime | None = None


class IngestSession(Protocol):
    """One database transaction of the ingest use case."""

    def current_versions(self, keys: Sequence[ResourceKey]) -> dict[ResourceKey, StoredVersion]:
        """The stored version of each key that exists, locked until the transaction ends."""

    def write_resources(self, inserts: Sequence[ResourceWrite], updates: Sequence[ResourceWrite]) -> None:
        """Store new resources and new versions (superseded versions go to history)."""

    def replace_facts(self, sources: Sequence[ResourceKey], facts: Sequence[SourcedFact], now: datetime) -> set[str]:
        """Drop the facts of these resources and add the new ones; returns the patients of the dropped facts.
        Resources stored for the first time have no facts to drop: callers leave them out of ``sources``."""

    def count_unrecognised(self, counts: Sequence[UnrecognisedCount], now: datetime) -> None:
        """Add to the counts of unrecognised codes."""

    def mark_patients_changed(self, patient_ids: Iterable[str], now: datetime, claimed: bool = False) -> None:
        """Record in the outbox that these patients' records changed; ``claimed``: their doorbell counts as rung
        (the caller rings it right after the commit, and releases the rows if it cannot)."""

    def append_audit(self, records: Sequence[AuditRecord]) -> None:
        """Audit rows written in this transaction: they commit, or roll back, with the write they record."""

    def upsert_demographics(self, rows: Sequence[Demographics], now: datetime) -> None:
        """Keep the worklist's patient summary in step with the Patient resources."""

    def medication(self, ref: str) -> dict[str, Any] | None:
        """A stored Medication by "Medication/id"."""

    def dependents_of_medication(self, ref: str) -> list[dict[str, Any]]:
        """Resources whose facts were drawn with this Medication, locked."""

    def read_text(self, key: ResourceKey) -> StoredText | None:
        """A stored resource as JSON text."""

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: an error inside undoes only its own writes."""


class Store(Protocol):
    """The database: transactions and reads."""

    def session(self, pipelined: bool = False) -> AbstractContextManager[IngestSession]:
        """A transaction, committed when the block ends without an error; ``pipelined``: statements whose results
        are not read are sent together with the next read or the commit (one round trip instead of one each), for
        small writes such as one resource."""

    def read_text(self, key: ResourceKey) -> StoredText | None:
        """A stored resource as JSON text, outside any transaction."""

    def unrecognised_codes(self, limit: int) -> list[UnrecognisedCount]:
        """The unrecognised codes seen most often."""
