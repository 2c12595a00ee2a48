"""In-memory stand-ins for the use cases' ports, for fast unit tests of the use cases themselves.

MemoryIngestStore (ingest only) and MemoryStore (ingest, assessments, alerts, the patient pipeline and the
write-back outbox) keep what the PostgreSQL adapters keep, over one MemoryDatabase with the same transaction rule;
FakeEhr is the EHR's FHIR API; RecordingMetrics keeps the counts. The worklist, calibration, monitoring, measures
and CDS Hooks stores (and FakeHookFhir) each keep their own feature's rows. The SQL itself is tested in
tests/integration.
"""

from tests.support.fakes.calibration import MemoryCalibrationStore, MemoryFactReader
from tests.support.fakes.cds import FakeHookFhir, MemoryCdsStore
from tests.support.fakes.ehr import EhrFault, EhrRequest, FakeEhr
from tests.support.fakes.ingest import MemoryIngestStore
from tests.support.fakes.measures import MemoryMeasureStore
from tests.support.fakes.metrics import RecordingMetrics
from tests.support.fakes.monitoring import MemoryMonitoringStore, StoredAssessment
from tests.support.fakes.store import MemoryStore
from tests.support.fakes.tables import MemoryDatabase, Tables
from tests.support.fakes.worklist import MemorySearchStore, MemoryWorklistStore

__all__ = [
    "EhrFault",
    "EhrRequest",
    "FakeEhr",
    "FakeHookFhir",
    "MemoryCalibrationStore",
    "MemoryCdsStore",
    "MemoryDatabase",
    "MemoryFactReader",
    "MemoryIngestStore",
    "MemoryMeasureStore",
    "MemoryMonitoringStore",
    "MemorySearchStore",
    "MemoryStore",
    "MemoryWorklistStore",
    "RecordingMetrics",
    "StoredAssessment",
    "Tables",
]
