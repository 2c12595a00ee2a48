"""The `refracture` command: migrate, api, worker, beat, relay, rescore, sweep, measures, writeback, demo, synth,
model-card, openapi."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from pydantic import ValidationError

from service.platform.config import get_settings
from service.platform.log_redaction import handling_patient_data
from service.platform.logs import configure_logging, log_format, log_level, logging_config

if TYPE_CHECKING:
    from service.adapters.startup_check import Role

__all__ = ["main"]

log = logging.getLogger("refracture")


def _celery_options() -> list[str]:
    # JSON lines only: Celery's start-up banner is printed, not logged (text mode keeps it for people).
    return ["--quiet"] if log_format() == "json" else []


def cmd_migrate(_: argparse.Namespace) -> int:
    """Create the database if needed and apply the migrations."""
    from service.adapters.postgres.migrate import create_database_if_missing, migrate  # noqa: PLC0415

    settings = get_settings()
    # The schema owner migrates (REFRACTURE_MIGRATE_DATABASE_URL); the runtime role could not.
    create_database_if_missing(settings.migration_url)
    with psycopg.connect(settings.migration_url, autocommit=True) as conn:
        applied = migrate(conn)
    print(f"migrations applied: {applied or 'none (up to date)'}")
    return 0


def _ready_to_start(role: Role, args: argparse.Namespace) -> bool:
    """The start-up self-check (service/adapters/startup_check.py), unless --skip-check."""
    if getattr(args, "skip_check", False):
        return True
    from service.adapters.startup_check import startup_check  # noqa: PLC0415

    return startup_check(get_settings(), role)


def cmd_api(args: argparse.Namespace) -> int:
    """Serve the HTTP API."""
    if not _ready_to_start("api", args):
        return 1
    import uvicorn  # noqa: PLC0415

    settings = get_settings()
    uvicorn.run(
        "service.entrypoints.api.app:create_app",
        factory=True,
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        workers=args.workers,
        # Access logs carry query strings, which can carry patient identifiers: AccessLogMiddleware logs instead.
        access_log=False,
        # uvicorn's worker processes configure their logging from this too.
        log_config=logging_config(),
        log_level=log_level().lower(),
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a Celery worker (with --metrics-port: and serve its processes' metrics there)."""
    if not _ready_to_start("worker", args):
        return 1
    stop_metrics = None
    if args.metrics_port:
        from service.adapters.metrics_server import serve_worker_metrics  # noqa: PLC0415

        # Before anything imports prometheus_client: the pool's children must count into the shared folder.
        stop_metrics = serve_worker_metrics(args.metrics_port)
    from workers.celery_app import app  # noqa: PLC0415

    argv = [
        *_celery_options(),
        "worker",
        "--loglevel",
        log_level(),
        "-Q",
        get_settings().celery_queue,
        "--concurrency",
        str(args.concurrency),
    ]
    if args.pool:
        argv += ["--pool", args.pool]
    try:
        app.worker_main(argv)
    finally:
        if stop_metrics is not None:
            stop_metrics()
    return 0


def cmd_beat(args: argparse.Namespace) -> int:
    """Run Celery beat (exactly one per deployment: two would duplicate every schedule)."""
    if not _ready_to_start("beat", args):
        return 1
    from workers.celery_app import app  # noqa: PLC0415

    app.start(
        [
            *_celery_options(),
            "beat",
            "--loglevel",
            log_level(),
            "--schedule",
            str(Path(tempfile.gettempdir()) / "refracture-beat-schedule"),
        ]
    )
    return 0


def cmd_relay(_: argparse.Namespace) -> int:
    """Publish every pending change once (what beat does on a schedule)."""
    from service.composition.bootstrap import bootstrap  # noqa: PLC0415

    container = bootstrap()
    try:
        print(f"published {container.relay.ring()} patient changes")
    finally:
        container.close()
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    """Re-assess every patient (or the ones named) with the current model."""
    import time  # noqa: PLC0415

    from service.entrypoints.parallel_rescore import rescore_in_parallel  # noqa: PLC0415

    started = time.perf_counter()
    outcome = rescore_in_parallel(get_settings(), args.patient or None, args.batch, args.workers)
    seconds = time.perf_counter() - started
    handled = outcome.assessed + outcome.unchanged + outcome.not_applicable
    print(
        f"rescored {handled} patients in {seconds:.1f} s: {outcome.assessed} new assessments, "
        f"{outcome.unchanged} unchanged, {outcome.not_applicable} without an augmentation"
    )
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the daily sweep once (what beat runs every day)."""
    from service.composition.bootstrap import bootstrap  # noqa: PLC0415

    container = bootstrap()
    try:
        outcome = container.sweeper.sweep(everyone=args.all)
    finally:
        container.close()
    print(
        f"swept {outcome.patients} patients: {outcome.opened} alerts opened, {outcome.resolved} resolved, "
        f"{outcome.care_plans} care plans updated"
    )
    return 0


def cmd_measures(args: argparse.Namespace) -> int:
    """Compute the FLS quality measures for each month of a period, by site, and keep the MeasureReports
    (docs/measures.md): what a monthly scheduler runs."""
    from service.composition.bootstrap import bootstrap  # noqa: PLC0415
    from service.domain.fls_measures import Period, months  # noqa: PLC0415

    period = Period(args.start, args.end)
    if period.end < period.start:
        print("--end must be on or after --start", file=sys.stderr)
        return 2
    container = bootstrap()
    try:
        started = time.perf_counter()
        rows = container.measures.evaluate(period, months(period))
    finally:
        container.close()
    pending = sum(1 for r in rows if r.resource["status"] == "pending")
    print(
        f"kept {len(rows)} MeasureReports for {len(months(period))} month(s) in {time.perf_counter() - started:.1f} s "
        f"({pending} pending: windows still open); served at /fhir/MeasureReport"
    )
    return 0


def cmd_notify(args: argparse.Namespace) -> int:
    """Send today's notification digests once (what beat runs every day); --dry-run only says what would go."""
    from service.composition.bootstrap import bootstrap  # noqa: PLC0415

    container = bootstrap()
    try:
        outcome = container.digests.run(dry_run=args.dry_run)
    finally:
        container.close()
    verb = "would send" if args.dry_run else "new"
    for owner, channel, items in outcome.planned:
        print(f"{verb}: {channel} to {owner}, {items} item{'s' if items != 1 else ''}")
    if not args.dry_run:
        print(f"notifications of {outcome.day.isoformat()}: {outcome.sent} sent, {outcome.failed} failed")
    return 1 if outcome.failed else 0


def cmd_writeback(args: argparse.Namespace) -> int:
    """Show the write-back outbox, or put dead-lettered jobs back in the queue."""
    from service.composition.bootstrap import bootstrap  # noqa: PLC0415

    container = bootstrap()
    try:
        store = container.store
        if args.action == "replay":
            replayed = store.replay_writebacks(args.patient or None, container.clock())
            print(f"replayed {len(replayed)} write-back(s): they are sent at the next delivery run")
            return 0
        state = store.read_ehr_state()
        counts = store.writeback_counts()
        print(f"EHR: {container.settings.ehr_base_url or '(none: pull mode)'}")
        if state:
            print(f"write mode: {state['mode']} ({state['detail']}; checked {state['checked_at']:%Y-%m-%d %H:%M})")
        print(f"jobs: {counts['jobs'] or 'none'}; oldest pending since {counts['oldest_pending_at'] or '-'}")
        dead = store.dead_writebacks(args.limit)
        for job in dead:
            # Patient ids are the EHR's own, shown to the operator who must act on them; no clinical data.
            print(
                f"  dead: Patient/{job['patient_id']} after {job['attempts']} attempt(s), "
                f"{job['last_status'] or '-'}: {job['last_error']}"
            )
        # Whose ids were shown on a terminal joins the audit trail, under refracture's own name.
        from service.usecases.audit import system_record  # noqa: PLC0415

        now = container.clock()
        container.audit.record(
            [system_record(now, "export", "refracture writeback status", patient_id=j["patient_id"]) for j in dead]
        )
    finally:
        container.close()
    return 0


def cmd_recalibrate(args: argparse.Namespace) -> int:
    """Recalibrate the risk model on the stored outcomes; register it when better on held-out patients."""
    from service.composition.bootstrap import bootstrap  # noqa: PLC0415
    from service.usecases.recalibrate import report_lines  # noqa: PLC0415

    container = bootstrap()
    try:
        if args.retire:
            retired = container.calibrations.retire_all(container.clock())
            print(f"retired {len(retired)} calibration(s); the literature model applies: run `refracture rescore`")
            return 0
        report = container.recalibrator.run(seed=args.seed, held_out_share=args.held_out, dry_run=args.dry_run)
    finally:
        container.close()
    print("\n".join(report_lines(report)))
    return 0


def cmd_subscribe(_: argparse.Namespace) -> int:
    """Register refracture's Subscriptions at the EHR (or update them); idempotent."""
    from service.composition.bootstrap import bootstrap  # noqa: PLC0415
    from service.fhir.resource_types import INPUT_TYPES  # noqa: PLC0415
    from service.usecases.subscribe import Subscriber, SubscriptionPlan, rotate_secret  # noqa: PLC0415

    container = bootstrap()
    try:
        settings = container.settings
        if container.ehr is None or not settings.subscription_public_url:
            print("refracture subscribe needs REFRACTURE_EHR_BASE_URL and REFRACTURE_SUBSCRIPTION_PUBLIC_URL")
            return 2
        # A fresh shared secret on every run (rotation); the EHR gets it in the Subscriptions' channel header.
        secret = rotate_secret(
            container.subscription_secrets,
            settings.subscription_feed,
            container.clock,
            timedelta(seconds=settings.subscription_secret_grace_s),
        )
        bearer = settings.subscription_header.lower() == "authorization"
        header = f"{settings.subscription_header}: {'Bearer ' if bearer else ''}{secret}"
        plan = SubscriptionPlan(
            feed_id=settings.subscription_feed,
            endpoint=f"{settings.subscription_public_url.rstrip('/')}/fhir/$subscription-hook/{settings.subscription_feed}",
            header=header,
            resource_types=tuple(sorted(INPUT_TYPES)),
            topic=settings.subscription_topic,
            heartbeat_s=settings.subscription_heartbeat_period_s,
            content=settings.subscription_content,
        )
        registered = Subscriber(container.ehr, container.feeds, container.clock).register(plan)
    finally:
        container.close()
    for one in registered:
        print(f"{one.action}: Subscription/{one.ehr_id} ({one.criteria})")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Verify the audit trail's hash chain, or export it as NDJSON AuditEvents for a SIEM."""
    from service.entrypoints.audit_cli import run_audit  # noqa: PLC0415

    return run_audit(args)


def cmd_import(args: argparse.Namespace) -> int:
    """Onboard a population: NDJSON files or folders, or the EHR's Bulk Data $export; resumable."""
    from service.entrypoints.bulk_cli import run_import  # noqa: PLC0415

    return run_import(args)


def cmd_model_card(args: argparse.Namespace) -> int:
    """Write the model card from the model's own parameter table."""
    from service.domain.model_card import render_model_card  # noqa: PLC0415

    text = render_model_card()
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    """Write the OpenAPI document."""
    from service.entrypoints.api.openapi import openapi_document  # noqa: PLC0415

    text = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Everything on one machine: services, migrations, API, worker, beat, and a synthetic cohort."""
    from service.entrypoints.demo import run_demo  # noqa: PLC0415

    return run_demo(patients=args.patients, port=args.port, check=args.check, timeout_s=args.timeout)


def cmd_synth(args: argparse.Namespace) -> int:
    """Write a synthetic cohort's transaction Bundles: one file per patient, or NDJSON on stdout."""
    from service.devtools.synth import iter_cohort  # noqa: PLC0415
    from service.fhir.jsonio import dumps  # noqa: PLC0415

    bundles = iter_cohort(args.patients, args.seed, args.today, args.prefix)
    if args.ndjson:
        for bundle in bundles:
            sys.stdout.write(dumps(bundle).decode() + "\n")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for bundle in bundles:
        (out / f"{bundle['entry'][0]['resource']['id']}.json").write_bytes(dumps(bundle) + b"\n")
    print(f"wrote {args.patients} transaction Bundles to {out}", file=sys.stderr)
    return 0


# Commands that read no patient data: schema changes, documents from code, synthetic patients.
_NO_PATIENT_DATA = frozenset({"migrate", "model-card", "openapi", "synth"})
_SKIP_CHECK = "start without the start-up check of the broker, the database and the EHR client"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `refracture` console script."""
    parser = argparse.ArgumentParser(prog="refracture", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create the database if needed and apply migrations").set_defaults(run=cmd_migrate)
    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.add_argument("--workers", type=int, default=1)
    api.add_argument("--skip-check", action="store_true", help=_SKIP_CHECK)
    api.set_defaults(run=cmd_api)
    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--skip-check", action="store_true", help=_SKIP_CHECK)
    worker.add_argument("--concurrency", type=int, default=2)
    worker.add_argument("--pool", choices=["prefork", "solo", "threads"])
    worker.add_argument("--metrics-port", type=int, help="serve Prometheus metrics of this worker on this port")
    worker.set_defaults(run=cmd_worker)
    beat = sub.add_parser("beat", help="run Celery beat (one per deployment)")
    beat.add_argument("--skip-check", action="store_true", help=_SKIP_CHECK)
    beat.set_defaults(run=cmd_beat)
    sub.add_parser("relay", help="publish pending changes once").set_defaults(run=cmd_relay)
    rescore = sub.add_parser("rescore", help="re-assess all patients (or --patient ...) with the current model")
    rescore.add_argument("--patient", action="append", help="a Patient id; repeat for several")
    rescore.add_argument("--batch", type=int, default=1000, help="patients per transaction")
    rescore.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: one per CPU)")
    rescore.set_defaults(run=cmd_rescore)
    sweep = sub.add_parser("sweep", help="run the daily alert sweep once")
    sweep.add_argument("--all", action="store_true", help="every patient, not only the due ones (after an upgrade)")
    sweep.set_defaults(run=cmd_sweep)
    measures = sub.add_parser("measures", help="compute the FLS quality measures by month and site; keep them")
    measures.add_argument("--start", type=date.fromisoformat, required=True, help="first day, YYYY-MM-DD")
    measures.add_argument("--end", type=date.fromisoformat, required=True, help="last day (included), YYYY-MM-DD")
    measures.set_defaults(run=cmd_measures)
    notify = sub.add_parser("notify", help="send today's notification digests once")
    notify.add_argument("--dry-run", action="store_true", help="say what would be sent, send nothing")
    notify.set_defaults(run=cmd_notify)
    writeback = sub.add_parser("writeback", help="show the write-back outbox, or replay dead-lettered jobs")
    writeback.add_argument("action", choices=["status", "replay"])
    writeback.add_argument("--patient", action="append", help="replay only this Patient id; repeat for several")
    writeback.add_argument("--limit", type=int, default=50, help="dead jobs to list")
    writeback.set_defaults(run=cmd_writeback)
    recalibrate = sub.add_parser(
        "recalibrate",
        help="recalibrate the risk model on local outcomes; register it only when better on held-out patients",
        description="Builds the development dataset from stored data (prediction at each patient's first augmentation, "
        "new vertebral fracture within 2 years after it), fits a logistic recalibration on part of the patients and "
        "registers it as a new model version only when its held-out log-loss is lower beyond chance. Then run "
        "`refracture rescore`. See docs/model-card.md, 'Local recalibration'.",
    )
    recalibrate.add_argument("--dry-run", action="store_true", help="report only; register and store nothing")
    recalibrate.add_argument("--seed", type=int, default=1, help="seed of the fit/held-out split (default 1)")
    recalibrate.add_argument(
        "--held-out", type=float, default=0.3, help="share of patients held out for the comparison (default 0.3)"
    )
    recalibrate.add_argument(
        "--retire", action="store_true", help="take every registered calibration out of use (back to the literature)"
    )
    recalibrate.set_defaults(run=cmd_recalibrate)
    sub.add_parser(
        "subscribe", help="register (or update) refracture's Subscriptions at the EHR; idempotent"
    ).set_defaults(run=cmd_subscribe)
    from service.entrypoints.audit_cli import add_audit_parser  # noqa: PLC0415
    from service.entrypoints.bulk_cli import add_import_parser  # noqa: PLC0415

    add_audit_parser(sub).set_defaults(run=cmd_audit)

    add_import_parser(sub).set_defaults(run=cmd_import)
    card = sub.add_parser("model-card", help="print or write the model card (docs/model-card.md)")
    card.add_argument("--out")
    card.set_defaults(run=cmd_model_card)
    openapi = sub.add_parser("openapi", help="print or write the OpenAPI document")
    openapi.add_argument("--out")
    openapi.set_defaults(run=cmd_openapi)
    demo = sub.add_parser("demo", help="run everything locally with a synthetic cohort")
    demo.add_argument("--patients", type=int, default=25)
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument(
        "--check",
        "--exit-after-load",
        dest="check",
        action="store_true",
        help="load, verify that the worker processed every patient, print the summary and stop (exit 0 or 1)",
    )
    demo.add_argument(
        "--timeout", type=float, default=300.0, help="seconds the worker may take for the cohort (default 300)"
    )
    demo.set_defaults(run=cmd_demo)
    synth = sub.add_parser(
        "synth",
        help="write synthetic patients' FHIR transaction Bundles (no real people)",
        description="Synthetic patients after vertebroplasty or kyphoplasty as FHIR R4 transaction Bundles, one per "
        "patient: demographics, the fracture and its operation, DXA, CT Hounsfield units, cement and alignment "
        "measures, comorbidities and medication histories (denosumab on time, late or stopped, follow-on drugs, no "
        "treatment). The same generator feeds `refracture demo` and bench/. The same --seed and --today give the "
        "same bytes. Post a file with: curl -X POST $BASE/fhir -H 'Content-Type: application/fhir+json' "
        "-H 'Authorization: Bearer TOKEN' --data-binary @FILE",
    )
    synth.add_argument("--patients", type=int, default=25, help="how many patients (default 25)")
    synth.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    synth.add_argument(
        "--today",
        type=date.fromisoformat,
        default=None,
        help="the day the records are read, YYYY-MM-DD; nothing is dated after it (default: today)",
    )
    synth.add_argument("--prefix", default="synth", help="id prefix: Patient/{prefix}-000001, ... (default synth)")
    where = synth.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="folder to write {patient id}.json into (created if missing)")
    where.add_argument("--ndjson", action="store_true", help="write one Bundle per line to stdout instead")
    synth.set_defaults(run=cmd_synth)
    args = parser.parse_args(argv)
    configure_logging()
    if args.command not in _NO_SETTINGS:
        try:
            _log_start(args.command)
        except ValidationError as exc:
            # Where and why only: a setting's value can be a secret (the input is never printed).
            for error in exc.errors():
                setting = ".".join(str(part) for part in error["loc"]) or "settings"
                log.critical("refusing to start: %s: %s", setting, error["msg"])
            return 2
    if args.command not in _NO_PATIENT_DATA:
        return int(args.run(args))
    # No patient data at hand: a failure is logged with its message (docs/security.md, "What an error may say in a
    # log"), here, while that holds; the excepthook would log it after.
    with handling_patient_data(False):
        try:
            return int(args.run(args))
        except Exception as exc:  # noqa: BLE001 - logged as an uncaught exception is, with its message
            sys.excepthook(type(exc), exc, exc.__traceback__)
            return 1


# Commands that read no settings and serve nothing (the demo sets its children's mode itself).
_NO_SETTINGS = frozenset({"model-card", "openapi", "synth", "demo"})


def _log_start(command: str) -> None:
    """The start line: which mode, and why (a mode nobody chose is production: docs/security.md)."""
    settings = get_settings()
    extra = ""
    if settings.environment == "production" and not (settings.auth_issuer and settings.auth_audience):
        extra = "; no REFRACTURE_AUTH_ISSUER/REFRACTURE_AUTH_AUDIENCE: every bearer token is refused"
    log.info("refracture %s starting: %s%s", command, settings.environment_reason, extra)
