"""The BulkImporter over the in-memory import store (tests/support/fakes/bulk.py): checkpoints written with their
batch, refused lines counted with their line numbers, a failed batch rolled back whole and resumed exactly.

Mirrors tests/integration/test_bulk_import.py; the SQL itself is tested there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from service.fhir.jsonio import dumps
from service.fhir.normalise import Normaliser
from service.fhir.terminology import Terminology
from service.platform.errors import ConcurrentWrite
from service.usecases.bulk_export import BulkExporter
from service.usecases.bulk_import import BulkImporter
from service.usecases.ingest import Ingestor
from service.usecases.ports.bulk import Checkpoint, ExportGone, FileCounts, ImportSession, LineIssue
from tests.support.clock import ManualClock
from tests.support.fakes import (
    BytesLineSource,
    MemoryExportGateway,
    MemoryExportStore,
    MemoryImportStore,
    MemoryIngestStore,
)
from tests.support.records import t_score

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1950-02-03"}


def cohort(n: int) -> list[dict[str, Any]]:
    """n patients, each with a T-score: 2n resources."""
    return [r for i in range(n) for r in (patient(f"p{i}"), t_score(f"o{i}", -2.5, pid=f"p{i}"))]


def ndjson(resources: list[dict[str, Any]]) -> bytes:
    return b"".join(dumps(r) + b"\n" for r in resources)


class Setup:
    def __init__(self) -> None:
        self.ingest = MemoryIngestStore()
        self.store = MemoryImportStore(self.ingest)
        self.clock = ManualClock(T0)
        self.ingestor = Ingestor(self.ingest, Normaliser(Terminology()), self.clock)

    def importer(self, batch: int = 2000, store: Any = None) -> BulkImporter:
        return BulkImporter(store or self.store, self.ingestor, self.clock, batch_size=batch)

    def checkpoint(self, source: BytesLineSource) -> tuple[int, int, bool]:
        row = self.store.files["files", source.key]
        return row.byte_offset, row.line_no, row.complete


@pytest.fixture
def setup() -> Setup:
    return Setup()


def test_a_cohort_is_stored_line_for_line_a_batch_per_transaction(setup: Setup) -> None:
    resources = cohort(5)
    source = BytesLineSource(ndjson(resources))
    result = setup.importer(batch=4).import_file("files", source)
    assert result.counts == result.run_counts == FileCounts(created=10)
    assert len(setup.ingest.tables.resources) == 10
    assert setup.store.batches == 3  # 4 + 4 + the last 2 with the complete checkpoint
    assert set(setup.ingest.tables.changed) == {f"p{i}" for i in range(5)}  # every patient in the outbox
    assert result.changed_patients == {f"p{i}" for i in range(5)}
    assert setup.checkpoint(source) == (len(source.content), 10, True)


def test_bad_lines_are_counted_with_their_line_numbers_and_skipped(setup: Setup) -> None:
    good = cohort(2)
    lines = [
        dumps(good[0]),
        b'{"resourceType": "Observation", "id": "x1", ',  # 2: not JSON
        dumps({**good[1], "id": "bad-status", "status": "bogus"}),  # 3: not valid FHIR R4
        dumps({k: v for k, v in good[1].items() if k != "id"}),  # 4: no id
        dumps({"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"}}),  # 5
        b"",  # 6: blank: counts nowhere
        *[dumps(r) for r in good[1:]],
    ]
    source = BytesLineSource(b"\n".join(lines) + b"\n")
    result = setup.importer(batch=2).import_file("files", source)
    assert result.counts == FileCounts(created=len(good), invalid=3, skipped=1)
    assert result.skipped_types == {"Encounter": 1}
    by_line: dict[int, list[LineIssue]] = {}
    for issue in result.issues:
        by_line.setdefault(issue.line_no, []).append(issue)
    assert sorted(by_line) == [2, 3, 4]
    assert "not valid JSON" in by_line[2][0].message
    assert any(i.expression == "Observation.status" for i in by_line[3])
    assert by_line[4][0].expression == "Observation.id"
    assert len(setup.ingest.tables.resources) == len(good)


class FailingAt:
    """The import store with one batch's transaction failing after it saved its checkpoint."""

    def __init__(self, inner: MemoryImportStore, fail_at: int) -> None:
        self._inner = inner
        self._fail_at = fail_at
        self._batches = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @contextlib.contextmanager
    def import_session(self) -> Iterator[ImportSession]:
        with self._inner.import_session() as session:
            self._batches += 1
            yield session
            if self._batches == self._fail_at:
                raise RuntimeError("injected fault after the checkpoint, before the commit")


def test_a_fault_mid_file_rolls_back_its_batch_and_the_import_resumes_exactly(setup: Setup) -> None:
    resources = cohort(8)
    source = BytesLineSource(ndjson(resources))
    with pytest.raises(RuntimeError, match="injected fault"):
        setup.importer(batch=5, store=FailingAt(setup.store, 3)).import_file("files", source)
    assert len(setup.ingest.tables.resources) == 10  # two batches committed, the third rolled back whole
    assert setup.checkpoint(source) == (len(ndjson(resources[:10])), 10, False)
    result = setup.importer(batch=5).import_file("files", source)
    assert source.reads[-1] == len(ndjson(resources[:10]))  # read on from the checkpoint, not from the start
    assert result.counts == FileCounts(created=16)
    assert result.run_counts == FileCounts(created=6)
    assert setup.checkpoint(source) == (len(source.content), 16, True)
    assert len(setup.ingest.tables.history) == 16  # no resource written twice


def test_a_finished_file_is_not_read_again_and_a_restart_changes_nothing(setup: Setup) -> None:
    source = BytesLineSource(ndjson(cohort(3)))
    setup.importer().import_file("files", source)
    changed = dict(setup.ingest.tables.changed)
    again = setup.importer().import_file("files", source)
    assert again.already_complete
    assert again.run_counts == FileCounts()
    assert len(source.reads) == 1
    restarted = setup.importer().import_file("files", source, restart=True)
    assert restarted.counts == FileCounts(unchanged=6)  # counted again from the first line
    assert setup.ingest.tables.changed == changed  # identical content wakes no worker
    assert len(setup.ingest.tables.history) == 6


def test_another_file_at_the_same_path_is_read_from_its_start(setup: Setup) -> None:
    first = BytesLineSource(ndjson(cohort(2)), fingerprint="v1")
    setup.importer().import_file("files", first)
    second = BytesLineSource(ndjson([patient("p0"), patient("p9")]), fingerprint="v2")
    result = setup.importer().import_file("files", second)
    assert result.counts == FileCounts(created=1, unchanged=1)  # the old file's totals forgotten


def test_the_same_resource_twice_in_one_batch_makes_two_versions(setup: Setup) -> None:
    source = BytesLineSource(ndjson([t_score("o1", -2.5), patient("p1"), t_score("o1", -3.0)]))
    result = setup.importer(batch=10).import_file("files", source)
    assert result.counts == FileCounts(created=2, updated=1)
    assert setup.ingest.tables.resources["Observation", "o1"].version_id == 2
    assert setup.store.batches == 2  # the batch so far committed before the second o1


def test_a_batch_that_finds_its_checkpoint_moved_is_rolled_back(setup: Setup) -> None:
    source = BytesLineSource(ndjson(cohort(2)))
    setup.store.start_file("files", source.key, None, False, T0)

    def a_batch_from_99() -> None:  # another process moved the checkpoint from 0 to 99 meanwhile
        with setup.store.import_session() as session:
            session.mark_patients_changed(["p0"], T0)
            session.save_progress("files", source.key, 99, Checkpoint(120, 4), FileCounts(created=1), [], T0)

    with pytest.raises(ConcurrentWrite):
        a_batch_from_99()
    assert setup.store.file_counts("files", source.key) == FileCounts()
    assert setup.ingest.tables.changed == {}


# --- the export side ----------------------------------------------------------------------------------------------
def exporter(
    setup: Setup, gateway: MemoryExportGateway, exports: MemoryExportStore, sleeps: list[float]
) -> BulkExporter:
    return BulkExporter(exports, gateway, setup.importer(batch=3), setup.clock, sleeps.append)


def test_an_export_is_polled_imported_patients_first_and_its_time_kept_as_the_next_since(setup: Setup) -> None:
    resources = cohort(2)
    gateway = MemoryExportGateway(
        files={
            "Observation": ndjson([r for r in resources if r["resourceType"] == "Observation"]),
            "Patient": ndjson([r for r in resources if r["resourceType"] == "Patient"]),
        }
    )
    exports, sleeps = MemoryExportStore(), list[float]()
    report = exporter(setup, gateway, exports, sleeps).run("Patient")
    assert [f.name.rsplit("/", 1)[1] for f in report.files] == ["Patient.ndjson", "Observation.ndjson"]
    assert sum(f.counts.created for f in report.files) == 4
    assert sleeps == [1.0]  # the EHR's Retry-After
    assert "_since" not in gateway.kick_offs[0][1]
    assert exports.exports[exporter(setup, gateway, exports, sleeps).source_of("Patient")].since == (
        gateway.transaction_time
    )
    assert gateway.cancelled == ["https://ehr.example/fhir/$export-status/1"]  # the finished job's files can go
    exporter(setup, gateway, exports, sleeps).run("Patient")
    assert gateway.kick_offs[1][1]["_since"] == gateway.transaction_time  # incremental from the last export


def test_an_interrupted_export_resumes_the_same_job_and_a_gone_one_is_asked_for_again(setup: Setup) -> None:
    gateway = MemoryExportGateway(files={"Patient": ndjson([patient("p1")])})
    exports, sleeps = MemoryExportStore(), list[float]()
    source = exporter(setup, gateway, exports, sleeps).source_of("Patient")
    exports.save_kick_off(source, "https://ehr.example/fhir/$export-status/old", None, T0)
    gateway.gone.add("https://ehr.example/fhir/$export-status/old")
    report = exporter(setup, gateway, exports, sleeps).run("Patient")
    assert report.resumed
    assert len(gateway.kick_offs) == 1  # the expired job was replaced by one new export
    assert report.files[0].counts == FileCounts(created=1)
    assert exports.exports[source].status_url is None


class Expiring(MemoryExportGateway):
    """Every job's files expire before they are read."""

    def file(self, url: str, with_token: bool) -> BytesLineSource:
        raise ExportGone(url)


def test_files_gone_again_after_a_new_export_give_up(setup: Setup) -> None:
    expiring = Expiring(files={"Patient": ndjson([patient("p1")])}, polls_before_done=0)
    exports = MemoryExportStore()
    with pytest.raises(ExportGone):
        exporter(setup, expiring, exports, []).run("Patient")
    assert len(expiring.kick_offs) == 2  # one new export asked for, then no more
    (row,) = exports.exports.values()
    assert (row.status_url, row.since) == ("https://ehr.example/fhir/$export-status/2", None)
