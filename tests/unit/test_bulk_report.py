"""`refracture import`'s report: counts and positions of refused lines, never their texts (which name patients)."""

from __future__ import annotations

import pytest

from service.entrypoints.cli.bulk_import import _report
from service.usecases.bulk_export import ExportReport
from service.usecases.bulk_import import FileCounts, FileResult, LineIssue

SECRET = "Patient/MRN-778899-Quixote"


def test_refused_lines_are_reported_by_position_only(capsys: pytest.CaptureFixture[str]) -> None:
    issues = [
        LineIssue(3, "Observation.subject", f"the Observation names {SECRET}, another patient than the file's"),
        LineIssue(17, None, f"Patient {SECRET}: family name 'Quixote' is too long"),
    ]
    result = FileResult("population.ndjson", FileCounts(created=10, invalid=5), FileCounts(created=10), issues=issues)
    export = ExportReport("Patient", "2026-01-01T00:00:00Z", None, [result], error_count=2, errors=[f"{SECRET} gone"])
    assert _report([result], export, 1.0) == 1
    out = capsys.readouterr().out
    assert "refused lines 3, 17 and 3 more" in out
    assert "10 created" in out
    assert "2 error(s)" in out
    assert "MRN-778899" not in out
    assert "Quixote" not in out
