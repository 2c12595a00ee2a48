"""In-memory stand-ins for the use cases' ports, for fast unit tests of the use cases themselves.

MemoryIngestStore (ingest only) and MemoryStore (ingest, assessments, alerts, the patient pipeline and the
write-back outbox) keep what the PostgreSQL adapters keep, over one MemoryDatabase with the same transaction rule.
MemoryOutboxStore (the patient-change outbox), MemoryFeedStore (event feeds), MemoryImportStore/MemoryExportStore
(bulk import and export), MemoryAuditStore (the hash-chained audit log), MemoryNotificationStore with
RecordingSender (the daily digests), MemoryRefusalStore, the worklist, calibration, monitoring, measures and CDS
Hooks stores (and FakeHookFhir) each keep what their PostgreSQL adapter's queries do for their own feature. FakeEhr
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
from tests.support.fakes.calibration import MemoryCalibrationStore, MemoryFactReader
from tests.support.fakes.cds import FakeHookFhir, MemoryCdsStore
from tests.support.fakes.ehr import EhrFault, EhrRequest, FakeEhr
from tests.support.fakes.feeds import FeedTables, MemoryFeedStore
from tests.support.fakes.ingest import MemoryIngestStore
from tests.support.fakes.measures import MemoryMeasureStore
from tests.support.fakes.metrics import RecordingMetrics
from tests.support.fakes.monitoring import MemoryMonitoringStore, StoredAssessment
from tests.support.fakes.notifications import MemoryNotificationStore, RecordingSender
from tests.support.fakes.outbox import ChangeRow, MemoryOutboxStore
from tests.support.fakes.refusals import MemoryRefusalStore
from tests.support.fakes.store import MemoryStore
from tests.support.fakes.tables import MemoryDatabase, Tables
from tests.support.fakes.worklist import MemorySearchStore, MemoryWorklistStore

__all__ = [
    "BytesLineSource",
    "ChangeRow",
    "EhrFault",
    "EhrRequest",
    "FakeEhr",
    "FakeHookFhir",
    "FeedTables",
    "FileRow",
    "MemoryAuditStore",
    "MemoryCalibrationStore",
    "MemoryCdsStore",
    "MemoryDatabase",
    "MemoryExportGateway",
    "MemoryExportStore",
    "MemoryFactReader",
    "MemoryFeedStore",
    "MemoryImportStore",
    "MemoryIngestStore",
    "MemoryMeasureStore",
    "MemoryMonitoringStore",
    "MemoryNotificationStore",
    "MemoryOutboxStore",
    "MemoryRefusalStore",
    "MemorySearchStore",
    "MemoryStore",
    "MemoryWorklistStore",
    "RecordingMetrics",
    "RecordingSender",
    "StoredAssessment",
    "Tables",
]
