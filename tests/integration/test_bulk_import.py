"""`refracture import`: NDJSON streamed into the store, bad lines reported, interruptions resumed exactly (an
injected fault and a SIGKILL), re-runs changing nothing, and the Bulk Data $export flow against a stand-in."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from service.adapters.ndjson_files import LocalNdjsonFile, find_ndjson_files
from service.composition.cli import BulkImport, make_bulk_import
from service.composition.parts import Parts
from service.devtools.synth import iter_cohort
from service.fhir.jsonio import dumps
from service.platform.config import Settings
from service.platform.errors import EhrTemporaryError
from service.usecases.bulk_import import BulkImporter
from service.usecases.ports.bulk import FileCounts, LineIssue
from tests.bulk_standin import ExportPlan, RunningBulkStandIn, ndjson
from tests.ehr_standin import Fault, generate_key
from tests.support.databases import query_one, table_counts
from tests.support.parts import build_parts
from tests.support.paths import ROOT
from tests.support.queue import RecordingQueue
from tests.support.settings import make_settings, worker_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def cohort_resources(patients: int, prefix: str) -> list[dict[str, Any]]:
    return [e["resource"] for b in iter_cohort(patients, 5, prefix=prefix) for e in b["entry"]]


def write_by_type(resources: list[dict[str, Any]], folder: Path) -> dict[str, int]:
    """One NDJSON file per type, as an export lays them out; the lines per type."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    folder.mkdir(parents=True, exist_ok=True)
    for kind, items in by_type.items():
        (folder / f"{kind}.ndjson").write_bytes(ndjson(items))
    return {kind: len(items) for kind, items in by_type.items()}


def stored(database_url: str) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE version_id <> 1), (SELECT count(*) FROM resource_history) "
            "FROM resource"
        ).fetchone()
    assert row is not None
    return {"resources": row[0], "not_version_1": row[1], "history": row[2]}


def checkpoint(database_url: str, path: Path) -> tuple[int, int, bool]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT byte_offset, line_no, complete FROM bulk_import_file WHERE file = %s", (str(path.resolve()),)
        ).fetchone()
    return (row[0], row[1], row[2]) if row else (0, 0, False)


@contextlib.contextmanager
def bulk(settings: Settings, batch: int = 2000, **kwargs: Any) -> Iterator[tuple[Parts, BulkImport]]:
    parts = build_parts(settings, queue=RecordingQueue())
    made = make_bulk_import(parts, batch, **kwargs)
    try:
        yield parts, made
    finally:
        made.close()
        parts.close()


def import_folder(made: BulkImport, folder: Path, restart: bool = False) -> list[Any]:
    return [made.importer.import_file("files", LocalNdjsonFile(p), restart) for p in find_ndjson_files([folder])]


# --- local NDJSON -----------------------------------------------------------------------------------------------
def test_a_synthetic_cohort_is_stored_line_for_line(settings: Settings, database_url: str, tmp_path: Path) -> None:
    resources = cohort_resources(25, "bulk")
    per_type = write_by_type(resources, tmp_path / "export")
    with bulk(settings, batch=100) as (_, made):
        results = import_folder(made, tmp_path / "export")
    total = FileCounts()
    for result in results:
        total.add(result.counts)
    assert total.created == len(resources) == sum(per_type.values())
    assert total.invalid == total.skipped == 0
    assert stored(database_url) == {"resources": len(resources), "not_version_1": 0, "history": 0}
    assert query_one(database_url, "SELECT count(*) FROM fact") > len(resources) // 2  # facts drawn as by the API
    # Every patient is in the outbox for the workers; demographics as the API keeps them.
    assert query_one(database_url, "SELECT count(*) FROM patient_change WHERE changed_seq > done_seq") == 25
    for path in (tmp_path / "export").iterdir():
        assert checkpoint(database_url, path) == (path.stat().st_size, per_type[path.stem], True)


def test_bad_lines_are_reported_with_file_line_and_fhirpath_and_skipped(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    good = cohort_resources(2, "bad")
    observation = next(r for r in good if r["resourceType"] == "Observation")
    lines = [
        dumps(good[0]),
        b'{"resourceType": "Observation", "id": "x1", ',  # 2: not JSON
        dumps({**observation, "id": "bad-status", "status": "bogus"}),  # 3: not valid FHIR R4
        dumps({k: v for k, v in observation.items() if k != "id"}),  # 4: no id
        dumps({"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"}}),  # 5: skipped
        b"",  # 6: blank: counts nowhere
        dumps(
            {
                **observation,
                "id": "moved",
                "subject": {"reference": "Patient/other"},
                "performer": [{"reference": "Patient/someone-else"}],
            }
        ),  # 7: names two patients
        *[dumps(r) for r in good[1:]],
    ]
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with bulk(settings, batch=3) as (_, made):
        (result,) = import_folder(made, tmp_path)
    assert result.counts.created == len(good)
    assert result.counts.skipped == 1
    assert result.skipped_types == {"Encounter": 1}
    by_line: dict[int, list[LineIssue]] = {}
    for issue in result.issues:
        by_line.setdefault(issue.line_no, []).append(issue)
    assert sorted(by_line) == [2, 3, 4, 7]
    assert result.counts.invalid == 4
    assert "not valid JSON" in by_line[2][0].message
    assert any(i.expression == "Observation.status" for i in by_line[3])
    assert by_line[4][0].expression == "Observation.id"
    assert str(by_line[7][0].expression).startswith("Observation.performer")
    assert stored(database_url)["resources"] == len(good)
    assert query_one(database_url, "SELECT count(*) FROM bulk_import_issue WHERE line_no = 3") >= 1


class FailingOnce:
    """The import store, with the third batch's transaction failing as it saves its checkpoint (a crash inside the
    transaction: nothing of that batch may remain)."""

    def __init__(self, inner: Any, fail_at: int) -> None:
        self._inner = inner
        self._batches = 0
        self._fail_at = fail_at

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @contextlib.contextmanager
    def import_session(self) -> Iterator[Any]:
        with self._inner.import_session() as session:
            self._batches += 1
            if self._batches == self._fail_at:
                original = session.save_progress

                def crash(*args: Any) -> None:
                    original(*args)
                    raise RuntimeError("injected fault after the checkpoint, before the commit")

                session.save_progress = crash
            yield session


def test_a_fault_mid_file_rolls_back_its_batch_and_the_import_resumes_exactly(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    resources = cohort_resources(15, "fault")
    path = tmp_path / "all.ndjson"
    path.write_bytes(ndjson(resources))
    with bulk(settings) as (parts, made):
        store = made.importer._store  # the real store, wrapped to fail once
        failing = BulkImporter(FailingOnce(store, 3), parts.ingestor, parts.core.clock, batch_size=50)
        with pytest.raises(RuntimeError, match="injected fault"):
            failing.import_file("files", LocalNdjsonFile(path))
        assert stored(database_url)["resources"] == 100  # two batches committed, the third rolled back whole
        offset, line_no, complete = checkpoint(database_url, path)
        assert (line_no, complete) == (100, False)
        assert offset == sum(len(dumps(r)) + 1 for r in resources[:100])
        resumed = BulkImporter(store, parts.ingestor, parts.core.clock, batch_size=50)
        result = resumed.import_file("files", LocalNdjsonFile(path))
    assert result.counts == FileCounts(created=len(resources))
    assert stored(database_url) == {"resources": len(resources), "not_version_1": 0, "history": 0}
    assert checkpoint(database_url, path) == (path.stat().st_size, len(resources), True)


def test_sigkill_mid_file_then_the_same_command_finishes_it_once(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    resources = cohort_resources(250, "kill")
    path = tmp_path / "population.ndjson"
    path.write_bytes(ndjson(resources))
    env = {**worker_env(settings), "REFRACTURE_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "service", "import", str(path), "--batch", "40"]
    log = tmp_path / "import.log"
    with log.open("wb") as out:
        first = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            assert wait_for(lambda: checkpoint(database_url, path)[1] >= 400, timeout_s=30, interval_s=0.01)
            os.kill(first.pid, signal.SIGKILL)
        finally:
            first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL
    offset, line_no, complete = checkpoint(database_url, path)
    assert not complete, "the import finished before it could be killed: make the file larger"
    # Exactly what the checkpoint says was done is stored: the batch in flight left nothing behind.
    assert stored(database_url)["resources"] == line_no
    assert offset == sum(len(dumps(r)) + 1 for r in resources[:line_no])
    second = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"{len(resources)} created, 0 updated, 0 unchanged, 0 invalid" in second.stdout
    assert stored(database_url) == {"resources": len(resources), "not_version_1": 0, "history": 0}
    assert checkpoint(database_url, path) == (path.stat().st_size, len(resources), True)


def test_running_a_finished_import_again_changes_nothing(settings: Settings, database_url: str, tmp_path: Path) -> None:
    write_by_type(cohort_resources(10, "again"), tmp_path / "export")
    with bulk(settings) as (_, made):
        import_folder(made, tmp_path / "export")
        before = table_counts(database_url)
        seqs = query_one(database_url, "SELECT sum(changed_seq) FROM patient_change")
        again = import_folder(made, tmp_path / "export")
        assert all(r.already_complete and r.run_counts == FileCounts() for r in again)
        # Even read from the first line again, identical content makes no new version and wakes no worker.
        restarted = import_folder(made, tmp_path / "export", restart=True)
    assert sum(r.run_counts.unchanged for r in restarted) == before["resource"]
    assert table_counts(database_url) == before
    assert query_one(database_url, "SELECT sum(changed_seq) FROM patient_change") == seqs


# --- Bulk Data $export ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ehr() -> Iterator[RunningBulkStandIn]:
    running = RunningBulkStandIn().start()
    yield running
    running.stop()


@pytest.fixture
def smart_settings(services: Any, database_url: str, ehr: RunningBulkStandIn, tmp_path: Path) -> Settings:
    ehr.app.reset()
    pem, public_key = generate_key("ES384")
    ehr.app.require_token = True
    ehr.app.public_key = public_key
    ehr.app.key_id = "bulk-key"
    ehr.app.client_id = "refracture-bulk"
    ehr.app.token_url = f"http://127.0.0.1:{ehr.port}/token"
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(pem)
    return make_settings(
        services,
        database_url,
        ehr_base_url=ehr.base_url,
        ehr_auth="smart",
        ehr_token_url=ehr.app.token_url,
        ehr_client_id="refracture-bulk",
        ehr_private_key_file=key_file,
        ehr_key_id="bulk-key",
        ehr_jwt_algorithm="ES384",
    )


def outcome_line(text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": text}],
    }


def test_export_kick_off_poll_and_download_with_the_smart_token(
    smart_settings: Settings, database_url: str, ehr: RunningBulkStandIn
) -> None:
    resources = cohort_resources(12, "exp")
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    encounters = [{"resourceType": "Encounter", "id": "enc-1", "status": "finished", "class": {"code": "AMB"}}]
    ehr.app.next_export = ExportPlan(
        files={**{k: ndjson(v) for k, v in by_type.items()}, "Encounter": ndjson(encounters)},
        errors=ndjson([outcome_line("Patient/exp-x could not be exported")]),
        transaction_time="2026-03-01T10:00:00.000Z",
        too_fast=1,
        pending=2,
        retry_after="3",
    )
    waits: list[float] = []
    with bulk(smart_settings, sleep=waits.append) as (_, made):
        assert made.exporter is not None
        report = made.exporter.run("Group/cohort-1")
    (kick_off,) = ehr.app.kick_offs
    assert kick_off["target"] == "Group/cohort-1"
    assert "_since" not in kick_off
    assert set(kick_off["_type"].split(",")) >= {"Patient", "Observation", "MedicationRequest", "Medication"}
    # 429: backed off (doubling, at least its Retry-After of 5 s); then the EHR's Retry-After of 3 s, twice.
    assert waits == [5.0, 3.0, 3.0]
    assert stored(database_url)["resources"] == len(resources)
    assert sum(r.counts.created for r in report.files) == len(resources)
    assert report.skipped_files == {"Encounter": 1}
    assert report.error_count == 1
    assert "could not be exported" in report.errors[0]
    # requiresAccessToken: every file download carried the SMART token (the stand-in refuses others with 401).
    downloads = ehr.app.file_requests()
    assert len(downloads) == len(by_type) + 1  # the output files of the types taken, and the error file
    assert all(h.get("authorization", "").startswith("Bearer ") for h in downloads)
    assert ehr.app.token_requests, "the token came from the SMART token endpoint"
    assert "system/Observation.rs" in ehr.app.token_requests[0]["scope"]
    # The finished job was DELETEd (its files may go) and its transactionTime is the next _since.
    assert any(r.method == "DELETE" and r.path.startswith("/bulk-status/") for r in ehr.app.requests)
    assert query_one(database_url, "SELECT since FROM bulk_export") == "2026-03-01T10:00:00.000Z"
    assert query_one(database_url, "SELECT status_url FROM bulk_export") is None


def test_an_incremental_export_asks_since_the_last_transaction_time(
    smart_settings: Settings, database_url: str, ehr: RunningBulkStandIn
) -> None:
    resources = cohort_resources(5, "inc")
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    ehr.app.next_export = ExportPlan(
        files={"Patient": ndjson(patients)}, transaction_time="2026-03-01T10:00:00.000Z", pending=0
    )
    with bulk(smart_settings, sleep=lambda _: None) as (_, made):
        assert made.exporter is not None
        made.exporter.run("Patient")
        changed = {**patients[0], "gender": "other" if patients[0].get("gender") != "other" else "female"}
        new = {**patients[1], "id": "inc-new-1"}
        ehr.app.next_export = ExportPlan(
            files={"Patient": ndjson([changed, new])}, transaction_time="2026-03-02T10:00:00.000Z", pending=0
        )
        report = made.exporter.run("Patient")
    assert [k.get("_since") for k in ehr.app.kick_offs] == [None, "2026-03-01T10:00:00.000Z"]
    assert report.since == "2026-03-01T10:00:00.000Z"
    (result,) = report.files
    assert (result.counts.created, result.counts.updated) == (1, 1)
    assert stored(database_url) == {"resources": len(patients) + 1, "not_version_1": 1, "history": 1}
    assert query_one(database_url, "SELECT since FROM bulk_export") == "2026-03-02T10:00:00.000Z"


def test_an_export_interrupted_mid_download_resumes_the_same_job(
    smart_settings: Settings, database_url: str, ehr: RunningBulkStandIn
) -> None:
    resources = cohort_resources(6, "res")
    ehr.app.next_export = ExportPlan(files={"Observation": ndjson(resources)}, pending=0)  # any types in one file
    ehr.app.faults.append(Fault("status", 503, times=3, path_prefix="/bulk-files/"))
    with bulk(smart_settings, sleep=lambda _: None) as (_, made):
        assert made.exporter is not None
        with pytest.raises(EhrTemporaryError):
            made.exporter.run("Patient")
        assert query_one(database_url, "SELECT status_url FROM bulk_export") is not None
        report = made.exporter.run("Patient")
    assert len(ehr.app.kick_offs) == 1, "the running job was resumed, not exported again"
    assert report.resumed
    assert sum(r.counts.created for r in report.files) == len(resources)
    assert stored(database_url)["resources"] == len(resources)


def test_the_same_resource_twice_in_a_file_makes_two_versions(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    patient = cohort_resources(1, "twice")[0]
    changed = {**patient, "gender": "other" if patient.get("gender") != "other" else "female"}
    (tmp_path / "Patient.ndjson").write_bytes(ndjson([patient, changed, changed]))
    with bulk(settings) as (_, made):
        (result,) = import_folder(made, tmp_path)
    assert result.counts == FileCounts(created=1, updated=1, unchanged=1)
    assert stored(database_url) == {"resources": 1, "not_version_1": 1, "history": 1}
