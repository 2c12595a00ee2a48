"""The ingest ports (Store, IngestSession) in memory: resources, their facts, the outbox and the audit rows.

They keep what the adapters keep, with the same transaction rule: a session's changes are kept when it ends and
thrown away when it raises (a savepoint likewise). The SQL itself is tested against PostgreSQL in tests/integration.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from service.domain.audit_record import AuditRecord
from service.domain.patient import Demographics
from service.usecases.ports.ingest import ResourceWrite, SourcedFact, StoredVersion, UnrecognisedCount
from service.usecases.ports.resources import ResourceKey, StoredText
from tests.support.fakes.tables import MemoryDatabase, Tables

__all__ = ["MemoryIngestStore"]


class MemoryIngestStore:
    """The Store and IngestSession ports (service/usecases/ports/ingest.py) over dictionaries."""

    def __init__(self, database: MemoryDatabase | None = None) -> None:
        self.database = database or MemoryDatabase()
        self.sessions = 0  # transactions begun: one per request is what the write path promises

    @property
    def tables(self) -> Tables:
        """The committed tables."""
        return self.database.tables

    @contextmanager
    def session(self, pipelined: bool = False) -> Iterator[_MemorySession]:
        del pipelined  # a round-trip saving of the adapter's: nothing to save here
        self.sessions += 1
        with self.database.transaction() as working:
            yield _MemorySession(working)

    def read_text(self, key: ResourceKey) -> StoredText | None:
        with self.database.reading() as tables:
            return _text(tables, key)

    def unrecognised_codes(self, limit: int) -> list[UnrecognisedCount]:
        with self.database.reading() as tables:
            rows = sorted(tables.unrecognised.items(), key=lambda item: -item[1])[:limit]
        return [UnrecognisedCount(t, s, c, None, n) for (t, s, c), n in rows]

    # What tests look at.
    def facts_of(self, patient_id: str) -> list[SourcedFact]:
        return [f for facts in self.tables.facts.values() for f in facts if f.patient_id == patient_id]


class _MemorySession:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def current_versions(self, keys: Sequence[ResourceKey]) -> dict[ResourceKey, StoredVersion]:
        found = {}
        for key in keys:
            if (w := self._t.resources.get(key)) is not None:
                found[key] = StoredVersion(
                    w.resource_type, w.id, w.version_id, w.last_updated, w.content_hash, w.patient_id
                )
        return found

    def write_resources(self, inserts: Sequence[ResourceWrite], updates: Sequence[ResourceWrite]) -> None:
        for write in [*inserts, *updates]:
            self._t.resources[(write.resource_type, write.id)] = write
            self._t.history.append(write)

    def replace_facts(self, sources: Sequence[ResourceKey], facts: Sequence[SourcedFact], now: datetime) -> set[str]:
        before = {f.patient_id for key in sources for f in self._t.facts.get(key, [])}
        for key in sources:
            self._t.facts[key] = []
        for fact in facts:
            key = (fact.source_type, fact.source_id)
            self._t.facts.setdefault(key, []).append(fact)
            self._t.recorded[key] = now  # the fact rows' recorded_at: facts_of hands it back
        return before

    def count_unrecognised(self, counts: Sequence[UnrecognisedCount], now: datetime) -> None:
        del now
        for c in counts:
            key = (c.resource_type, c.system, c.code)
            self._t.unrecognised[key] = self._t.unrecognised.get(key, 0) + c.occurrences

    def mark_patients_changed(self, patient_ids: Iterable[str], now: datetime, claimed: bool = False) -> None:
        del now
        for patient in patient_ids:
            self._t.changed[patient] = self._t.changed.get(patient, 0) + 1
            if claimed:
                self._t.claimed.add(patient)

    def append_audit(self, records: Sequence[AuditRecord]) -> None:
        self._t.audit.extend(records)

    def upsert_demographics(self, rows: Sequence[Demographics], now: datetime) -> None:
        del now
        for row in rows:
            self._t.demographics[row.patient_id] = row

    def medication(self, ref: str) -> dict[str, Any] | None:
        kind, _, rid = ref.partition("/")
        write = self._t.resources.get((kind, rid))
        return write.body if write is not None else None

    def dependents_of_medication(self, ref: str) -> list[dict[str, Any]]:
        return [w.body for w in self._t.resources.values() if w.medication_ref == ref]

    def read_text(self, key: ResourceKey) -> StoredText | None:
        return _text(self._t, key)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        saved = copy.deepcopy(self._t)
        try:
            yield
        except Exception:
            for name in vars(saved):
                setattr(self._t, name, getattr(saved, name))
            raise


def _text(tables: Tables, key: ResourceKey) -> StoredText | None:
    write = tables.resources.get(key)
    if write is None:
        return None
    return StoredText(json.dumps(write.body, default=str), write.version_id, write.last_updated)
