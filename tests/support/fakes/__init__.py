"""In-memory stand-ins for the use cases' ports, for fast unit tests of the use cases themselves.

MemoryIngestStore (ingest only) and MemoryStore (ingest, assessments, alerts, the patient pipeline and the
write-back outbox) keep what the PostgreSQL adapters keep, over one MemoryDatabase with the same transaction rule;
MemoryOutboxStore (the patient-change outbox), MemoryFeedStore (event feeds) and MemoryImportStore/MemoryExportStore
(bulk import and export), MemoryAuditStore (the hash-chained audit log), MemoryNotificationStore with
RecordingSender (the daily digests) and MemoryRefusalStore keep what their PostgreSQL adapters' queries do; FakeEhr
is the EHR's FHIR API; RecordingMetrics keeps the counts. The SQL itself is tested in tests/integration.
"""

from tests.support.fakes.audit import MemoryAuditStore
from tests.support.fakes.bulk import (
    BytesLineSource,
    FileRow,
    MemoryExportGateway,
    MemoryExportStore,
    MemoryImportStore,
)
from tests.support.fakes.ehr import EhrFault, EhrRequest, FakeEhr
from tests.support.fakes.feeds import FeedTables, MemoryFeedStore
from tests.support.fakes.ingest import MemoryIngestStore
from tests.support.fakes.metrics import RecordingMetrics
from tests.support.fakes.notifications import MemoryNotificationStore, RecordingSender
from tests.support.fakes.outbox import ChangeRow, MemoryOutboxStore
from tests.support.fakes.refusals import MemoryRefusalStore
from tests.support.fakes.store import MemoryStore
from tests.support.fakes.tables import MemoryDatabase, Tables

__all__ = [
    "BytesLineSource",
    "ChangeRow",
    "EhrFault",
    "EhrRequest",
    "FakeEhr",
    "FeedTables",
    "FileRow",
    "MemoryAuditStore",
    "MemoryDatabase",
    "MemoryExportGateway",
    "MemoryExportStore",
    "MemoryFeedStore",
    "MemoryImportStore",
    "MemoryIngestStore",
    "MemoryNotificationStore",
    "MemoryOutboxStore",
    "MemoryRefusalStore",
    "MemoryStore",
    "RecordingMetrics",
    "RecordingSender",
    "Tables",
]
