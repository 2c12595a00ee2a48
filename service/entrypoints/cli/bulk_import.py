"""`refracture import`: its arguments and its report (the work is in usecases/bulk_import.py and bulk_export.py)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from service.adapters.ndjson_files import LocalNdjsonFile, find_ndjson_files
from service.composition.cli import make_bulk_import
from service.composition.core import build_core
from service.composition.parts import Parts
from service.platform.errors import ConcurrentWrite, EhrRejected, EhrTemporaryError, RefractureError
from service.usecases.bulk_export import ExportReport
from service.usecases.bulk_import import FileResult
from service.usecases.ports.bulk import ExportGone, FileCounts

__all__ = ["add_arguments", "run"]

LOCAL_SOURCE = "files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """NDJSON paths, --export, --full, --cancel, --restart, --batch."""
    parser.description = (
        "Streams FHIR resources, one per line, into refracture: validated like the API, a batch per "
        "transaction, with a checkpoint per file that makes an interrupted import resume where it stopped (run the "
        "same command again). Other resource types are counted and skipped; invalid lines are reported with "
        "file:line and skipped. Changed patients go to the workers through the outbox. With --export, refracture "
        "asks the EHR (REFRACTURE_EHR_BASE_URL, REFRACTURE_EHR_AUTH) for a Bulk Data export, polls it and imports "
        "its files; the next --export of the same target asks only for what changed since (_since). "
        "See docs/integration-guide.md, 'Onboarding a population: Bulk Data'."
    )
    parser.add_argument("paths", nargs="*", type=Path, help="NDJSON files, or folders of *.ndjson[.gz] / *.jsonl")
    parser.add_argument(
        "--export",
        nargs="?",
        const="Patient",
        metavar="Group/ID|Patient",
        help="export from the EHR instead: every patient (Patient, the default) or one Group",
    )
    parser.add_argument("--full", action="store_true", help="with --export: everything, not only since the last")
    parser.add_argument("--cancel", action="store_true", help="with --export: cancel the running export (DELETE)")
    parser.add_argument("--restart", action="store_true", help="read the files from their first line again")
    parser.add_argument("--batch", type=int, default=2000, help="resources per transaction (default 2000)")


def run(args: argparse.Namespace) -> int:
    """Run `refracture import`; 0 when all is imported cleanly, 1 with refused lines or EHR errors, 2 for usage,
    3 when stopped (run it again to resume)."""
    if (args.export is None) == (not args.paths):
        print("refracture import needs NDJSON files or folders, or --export (not both)")
        return 2
    parts = Parts(build_core())
    bulk = make_bulk_import(parts, args.batch)
    started = time.perf_counter()
    export: ExportReport | None = None
    try:
        if args.export is not None:
            if bulk.exporter is None:
                print("refracture import --export needs REFRACTURE_EHR_BASE_URL")
                return 2
            if args.cancel:
                cancelled = bulk.exporter.cancel(args.export)
                print("cancelled the running export" if cancelled else "no export is running")
                return 0
            export = bulk.exporter.run(args.export, full=args.full)
            results = export.files
        else:
            results = [
                bulk.importer.import_file(LOCAL_SOURCE, LocalNdjsonFile(path), args.restart)
                for path in find_ndjson_files(args.paths)
            ]
    except ConcurrentWrite:
        print("import stopped: another import is reading the same file. Run the command again once it is done.")
        return 3
    except FileNotFoundError as exc:
        print(f"import stopped: no such file {exc.filename}. Run the same command again to resume where it stopped.")
        return 3
    except (EhrRejected, EhrTemporaryError, ExportGone, TimeoutError, RefractureError) as exc:
        # The kind of failure, not its text: an EHR's answer or a refusal can quote patient data.
        print(f"import stopped: {_why(exc)}. Run the same command again to resume where it stopped.")
        return 3
    finally:
        bulk.close()
        parts.close()
    return _report(results, export, time.perf_counter() - started)


def _why(exc: Exception) -> str:
    if isinstance(exc, EhrRejected):
        return "the EHR refused the export request"
    if isinstance(exc, EhrTemporaryError):
        return "the EHR is unavailable"
    if isinstance(exc, ExportGone):
        return "the EHR no longer has the export"
    if isinstance(exc, TimeoutError):
        return "the export took too long"
    return f"refused ({type(exc).__name__})"


def _report(results: list[FileResult], export: ExportReport | None, seconds: float) -> int:
    total, run = FileCounts(), FileCounts()
    patients: set[str] = set()
    for result in results:
        total.add(result.counts)
        run.add(result.run_counts)
        patients |= result.changed_patients
        c = result.counts
        state = "already imported" if result.already_complete else "imported"
        print(
            f"{result.name}: {state}: {c.created} created, {c.updated} updated, {c.unchanged} unchanged, "
            f"{c.invalid} invalid, {c.skipped} skipped"
            + (f" ({', '.join(f'{k} {n}' for k, n in sorted(result.skipped_types.items()))})" if c.skipped else "")
        )
        # Positions only: a refusal's text can quote the line (a Patient id, a name), and this output ends up in
        # terminals, CI logs and tickets. The texts are in the table bulk_import_issue, behind the database's access.
        if result.issues:
            lines = ", ".join(str(issue.line_no) for issue in result.issues)
            more = c.invalid - len(result.issues)
            print(
                f"  {result.name}: refused lines {lines}" + (f" and {more} more" if more > 0 else "") + " (why: table "
                "bulk_import_issue)"
            )
    if export is not None:
        print(
            f"export {export.source}: transactionTime {export.transaction_time} (the next _since)"
            f"{f'; asked since {export.since}' if export.since else ''}{'; resumed' if export.resumed else ''}"
        )
        for kind, count in sorted(export.skipped_files.items()):
            print(f"  skipped {kind} file(s): {count} resources (refracture does not take {kind})")
        if export.error_count:
            # Counted, not quoted: the EHR's OperationOutcomes may name the patients they are about.
            print(f"  the EHR reported {export.error_count} error(s) in the export's error files (not shown)")
    rate = run.stored / seconds if seconds > 0 else 0.0
    print(
        f"total: {total.stored} resources ({total.created} created, {total.updated} updated, {total.unchanged} "
        f"unchanged), {total.invalid} invalid lines, {total.skipped} skipped; this run: {run.stored} in "
        f"{seconds:.1f} s ({rate:,.0f} resources/s), {len(patients)} patients queued for assessment (the workers "
        "pick them up)"
    )
    return 1 if total.invalid or (export is not None and export.error_count) else 0
