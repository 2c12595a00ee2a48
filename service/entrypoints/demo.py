"""`refracture demo`: PostgreSQL, Redis, migrations, API, worker and beat on this machine, then a cohort.

It tells the truth. "running" is printed only once the worker has processed every patient of the cohort; the wait
has a deadline and ends in a failure that says how far the worker got. When one of its processes exits, the demo
says which, shows that process's last lines, stops the others and exits non-zero. Each process's output is shown as
it comes, prefixed with its name, and its last lines are kept for that report. ``--check`` loads, verifies, prints
the summary and stops: exit 0 when every patient was processed, 1 otherwise (for CI and smoke tests).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import psycopg

from service.adapters.postgres.migrate import create_database_if_missing, migrate
from service.devtools.local_services import LocalServices, ensure_services, free_port
from service.devtools.synth import cohort
from service.fhir.jsonio import dumps
from service.platform.config import Settings
from service.platform.logs import configure_logging

__all__ = ["DemoFailure", "ProcessExited", "run_demo"]

TAIL_LINES: Final = 40  # what a failure report shows of the process concerned
_STOP_GRACE_S: Final = 15.0


class DemoFailure(Exception):
    """The demo cannot go on: the message says why; ``process`` names the process whose last lines explain it."""

    def __init__(self, message: str, process: str | None = None) -> None:
        super().__init__(message)
        self.process = process


class ProcessExited(DemoFailure):
    """One of the demo's processes exited."""


@dataclass(slots=True)
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    reader: threading.Thread | None = None


def refracture_command(args: list[str]) -> list[str]:
    """The `refracture` console script beside this interpreter (what a user runs), else this interpreter's module.

    ``-P``: the working directory is not put on sys.path, so a source checkout that happens to be the working
    directory cannot stand in for the installed package.
    """
    script = Path(sys.executable).with_name("refracture")
    if script.is_file():
        return [str(script), *args]
    return [sys.executable, "-P", "-m", "service", *args]


class _Supervisor:
    """The demo's child processes: started in their own process groups, their output shown and its tail kept."""

    def __init__(self, env: dict[str, str]) -> None:
        self._env = env
        self._lock = threading.Lock()
        self.children: list[_Child] = []

    def say(self, text: str = "") -> None:
        """Print a line of the demo's own, never in the middle of a child's line."""
        with self._lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def start(self, name: str, args: list[str], *, supervised: bool = True) -> _Child:
        """Start ``refracture ARGS``; supervised children must keep running (a one-shot is waited for instead)."""
        # Our own command and arguments: no untrusted input reaches the command line.
        process = subprocess.Popen(  # noqa: S603  # nosec B603
            refracture_command(args),
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own process group: Ctrl-C reaches the demo alone, which then stops each child and its own children
            # (the worker's pool) in order.
            start_new_session=True,
        )
        child = _Child(name, process)
        child.reader = threading.Thread(target=self._pump, args=(child,), name=f"demo-{name}", daemon=True)
        child.reader.start()
        if supervised:
            self.children.append(child)
        self.say(f"started {name} (pid {process.pid}): refracture {' '.join(args)}")
        return child

    def _pump(self, child: _Child) -> None:
        stream = child.process.stdout
        if stream is None:
            return
        with stream:
            for raw in stream:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                child.tail.append(line)
                with self._lock:
                    sys.stdout.write(f"{child.name:>6} | {line}\n")
                    sys.stdout.flush()

    def check(self) -> None:
        """Raise ProcessExited for the first supervised child that is no longer running."""
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise ProcessExited(f"the {child.name} process (pid {child.process.pid}) {_how(code)}", child.name)

    def run_once(self, name: str, args: list[str], timeout_s: float) -> None:
        """A one-shot command; raises DemoFailure when it fails, times out, or a supervised child exits meanwhile."""
        child = self.start(name, args, supervised=False)
        self.children.append(child)  # shown in a failure report; removed again once it has succeeded
        deadline = time.monotonic() + timeout_s
        try:
            while (code := child.process.poll()) is None:
                if time.monotonic() > deadline:
                    raise DemoFailure(f"refracture {' '.join(args)} did not finish within {timeout_s:.0f} s", name)
                self.check_others(child)
                time.sleep(0.2)
            if code != 0:
                raise ProcessExited(f"refracture {' '.join(args)} (pid {child.process.pid}) {_how(code)}", name)
            self.children.remove(child)
        finally:
            if child.process.poll() is None:
                self._stop(child)

    def check_others(self, one_shot: _Child) -> None:
        """Like check, for every supervised child but the one-shot being waited for."""
        for child in self.children:
            if child is not one_shot and (code := child.process.poll()) is not None:
                raise ProcessExited(f"the {child.name} process (pid {child.process.pid}) {_how(code)}", child.name)

    def last_lines(self, name: str) -> list[str]:
        """The kept tail of a child's output, once its reader has read what the pipe still holds."""
        for child in self.children:
            if child.name == name:
                if child.reader is not None and child.process.poll() is not None:
                    # The pipe ends when the process does, unless its own children still hold it: wait a little.
                    child.reader.join(timeout=3.0)
                return list(child.tail)
        return []

    def stop_all(self) -> None:
        """Stop every child (API first, beat last); kill what will not stop, and whatever it leaves behind."""
        for child in self.children:
            if child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + _STOP_GRACE_S
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(child.process)
                child.process.wait(timeout=5.0)
            # A process that dies abruptly can leave its own children (the worker's pool) in its process group.
            _kill_group(child.process)
        for child in self.children:
            if child.reader is not None:
                child.reader.join(timeout=3.0)

    def _stop(self, child: _Child) -> None:
        child.process.terminate()
        try:
            child.process.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            _kill_group(child.process)
            child.process.wait(timeout=5.0)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group the child leads (start_new_session): the child and anything it started."""
    if not hasattr(os, "killpg"):
        process.kill()
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_until_up(url: str, check: Callable[[], None], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        check()
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise DemoFailure(f"the API did not answer {url} within {timeout_s:.0f} s", "api")


def _request_processing(database_url: str, patient_ids: list[str]) -> None:
    """Make the worker handle every loaded patient in this run, also those whose data an earlier run already loaded.

    Identical data is no change, so a second run would otherwise have nothing for the worker to do and could not
    tell a working worker from a dead one. This is what the ingest does for a change (queries.sql,
    mark_patient_changed), for the patients that have nothing pending.
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE patient_change SET changed_seq = nextval('patient_change_seq'), changed_at = now(), "
            "published_at = NULL WHERE patient_id = ANY(%(ids)s::text[]) AND changed_seq <= done_seq",
            {"ids": patient_ids},
        )


def _processed(database_url: str, patient_ids: list[str]) -> int:
    """How many of these patients the worker has processed: no change of theirs is left undone."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM patient_change WHERE patient_id = ANY(%(ids)s::text[]) AND done_seq >= changed_seq",
            {"ids": patient_ids},
        ).fetchone()
    return int(row[0]) if row else 0


def _summary(database_url: str) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        resources = conn.execute("SELECT resource_type, count(*) FROM resource GROUP BY 1 ORDER BY 1").fetchall()
        facts = conn.execute("SELECT kind, count(*) FROM fact GROUP BY 1 ORDER BY 2 DESC").fetchall()
        unrecognised = conn.execute("SELECT coalesce(sum(occurrences), 0) FROM unrecognised_code").fetchone()
        open_alerts = conn.execute(
            "SELECT code, count(*) FROM alert WHERE closed_at IS NULL GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
        bands = conn.execute(
            "SELECT band, count(*) FROM (SELECT DISTINCT ON (patient_id) band FROM assessment "
            "ORDER BY patient_id, sequence_no DESC) latest GROUP BY 1 ORDER BY 1"
        ).fetchall()
    return {
        "resources": dict(Counter({str(k): int(v) for k, v in resources})),
        "facts": {str(k): int(v) for k, v in facts},
        "unrecognised_codes": int(unrecognised[0]) if unrecognised else 0,
        "risk_bands": {str(k): int(v) for k, v in bands},
        "open_alerts": {str(k): int(v) for k, v in open_alerts},
    }


def _wait_for_worker(supervisor: _Supervisor, database_url: str, patient_ids: list[str], timeout_s: float) -> None:
    total = len(patient_ids)
    deadline = time.monotonic() + timeout_s
    next_note = time.monotonic() + 10.0
    while (done := _processed(database_url, patient_ids)) < total:
        supervisor.check()
        now = time.monotonic()
        if now > deadline:
            raise DemoFailure(
                f"the worker processed {done} of {total} patients within {timeout_s:.0f} s "
                "(refracture demo --timeout SECONDS waits longer)",
                "worker",
            )
        if now > next_note:
            supervisor.say(f"waiting for the worker: {done} of {total} patients processed")
            next_note = now + 10.0
        time.sleep(0.5)


def run_demo(patients: int, port: int, check: bool = False, timeout_s: float = 300.0) -> int:
    """Run the whole service locally, load a synthetic cohort through its API and wait until the worker has it.

    Args:
        patients: how many synthetic patients to load.
        port: the API's port (a free one when it is taken).
        check: stop after the verification and summary instead of running until Ctrl-C.
        timeout_s: how long the worker may take for the whole cohort.

    Returns:
        The process exit code: 0 when every patient was processed (and, without ``check``, after Ctrl-C), 1 when
        a process exited or the worker did not finish in time.
    """
    # SIGTERM stops the demo the way Ctrl-C does: the children are stopped, the private servers removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # A person watches this terminal: readable lines (unless they asked for JSON), and not pgserver's every step.
    os.environ.setdefault("REFRACTURE_LOG_FORMAT", "text")
    configure_logging()
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    # A development tool: its fresh development tokens need the development environment, whatever the shell says.
    settings = Settings(environment="development")
    services: LocalServices = ensure_services(settings.database_url.get_secret_value(), settings.redis_url)
    for started in services.started:
        print(f"started a private {started}")
    # Fresh development tokens for this run (none is written anywhere): the loader posts as the EHR's interface,
    # a person signs in to the worklist as a coordinator, an administrator reads the audit trail.
    integration, coordinator, administrator = (secrets.token_urlsafe(18) for _ in range(3))
    tokens = {
        integration: {"sub": "demo-ehr-interface", "client_id": "demo-ehr", "scope": "system/*.read system/*.write"},
        coordinator: {"sub": "demo.coordinator", "name": "Demo Coordinator", "roles": ["care-coordinator"]},
        administrator: {"sub": "demo.admin", "roles": ["administrator"]},
    }
    env = {
        **os.environ,
        # Development tokens work only where development is asked for by name (production is the default).
        "REFRACTURE_ENVIRONMENT": "development",
        "REFRACTURE_DATABASE_URL": services.database_url,
        "REFRACTURE_REDIS_URL": services.redis_url,
        "REFRACTURE_AUTH_DEV_TOKENS": json.dumps(tokens),
    }
    supervisor = _Supervisor(env)
    closing: list[str] = []
    try:
        create_database_if_missing(services.database_url)
        with psycopg.connect(services.database_url, autocommit=True) as conn:
            migrate(conn)
        port = port if _port_free(port) else free_port()
        supervisor.start("api", ["api", "--port", str(port)])
        supervisor.start("worker", ["worker", "--concurrency", "1"])
        supervisor.start("beat", ["beat"])
        base = f"http://127.0.0.1:{port}"
        _wait_until_up(f"{base}/healthz", supervisor.check)
        bundles = cohort(patients, seed=7)
        patient_ids = [
            e["resource"]["id"] for b in bundles for e in b["entry"] if e["resource"]["resourceType"] == "Patient"
        ]
        with httpx.Client(base_url=base, timeout=60.0, headers={"Authorization": f"Bearer {integration}"}) as client:
            for bundle in bundles:
                supervisor.check()
                response = client.post(
                    "/fhir", content=dumps(bundle), headers={"Content-Type": "application/fhir+json"}
                )
                if response.status_code != 200:
                    raise DemoFailure(f"POST /fhir answered {response.status_code}: {response.text[:600]}", "api")
        _request_processing(services.database_url, patient_ids)
        supervisor.run_once("relay", ["relay"], timeout_s=120)
        supervisor.say(f"loaded {len(patient_ids)} synthetic patients; waiting for the worker to process them")
        _wait_for_worker(supervisor, services.database_url, patient_ids, timeout_s)
        # The daily sweep, once: alerts that time alone makes due are raised now rather than at REFRACTURE_SWEEP_TIME.
        supervisor.run_once("sweep", ["sweep", "--all"], timeout_s=300)
        supervisor.check()
        _print_summary(supervisor, services, base, bundles, patient_ids, (integration, coordinator, administrator))
        if check:
            closing.append(f"refracture demo --check passed: the worker processed all {len(patient_ids)} patients")
            return 0
        supervisor.say("\nrefracture demo is running: every process is up and the cohort is processed")
        supervisor.say("  press Ctrl-C to stop")
        try:
            while True:
                supervisor.check()
                time.sleep(1.0)
        except KeyboardInterrupt:
            supervisor.say("stopping")
            closing.append("refracture demo stopped")
            return 0
    except DemoFailure as failure:
        supervisor.say(f"\nrefracture demo FAILED: {failure}; stopping the other processes")
        closing.extend(_report(supervisor, failure))
        return 1
    except KeyboardInterrupt:
        supervisor.say("interrupted: stopping")
        return 130
    finally:
        supervisor.stop_all()
        services.close()
        # The verdict comes last, after the processes' own shutdown lines.
        for line in closing:
            print(line, flush=True)


def _report(supervisor: _Supervisor, failure: DemoFailure) -> list[str]:
    """What a failure shows: what happened, and the last lines of the process concerned."""
    lines = [f"\nrefracture demo FAILED: {failure}"]
    if failure.process:
        tail = supervisor.last_lines(failure.process)
        if tail:
            lines.append(f"the last {len(tail)} lines of the {failure.process} process:")
            lines.extend(f"  {line}" for line in tail)
        else:
            lines.append(f"the {failure.process} process wrote nothing")
    lines.append("the other processes were stopped; exit status 1")
    return lines


def _notification_targets() -> str:
    """Where the daily digests go (docs/integration-guide.md, "Notifications"): hosts and URLs, never recipients."""
    settings = Settings(environment="development")
    targets = []
    if settings.notify_smtp_host:
        targets.append(f"e-mail via {settings.notify_smtp_host}:{settings.notify_smtp_port}")
    if settings.notify_webhook_url:
        targets.append(f"webhook {settings.notify_webhook_url}")
    where = ", ".join(targets) or "nowhere (REFRACTURE_NOTIFY_SMTP_HOST, REFRACTURE_NOTIFY_WEBHOOK_URL unset)"
    return f"{where}, daily at {settings.notify_time}, patient data {settings.notify_patient_data}"


def _print_summary(
    supervisor: _Supervisor,
    services: LocalServices,
    base: str,
    bundles: list[dict[str, Any]],
    patient_ids: list[str],
    tokens: tuple[str, str, str],
) -> None:
    integration, coordinator, administrator = tokens
    summary = _summary(services.database_url)
    processed = _processed(services.database_url, patient_ids)
    first = patient_ids[0] if patient_ids else "synth-000001"
    lines = [
        "",
        "refracture demo: the cohort is loaded and processed",
        f"  loaded {len(bundles)} synthetic patients: {summary['resources']}",
        f"  facts drawn: {summary['facts']}",
        f"  patients processed by the worker: {processed} of {len(patient_ids)}",
        f"  re-fracture risk (latest assessment per patient): {summary['risk_bands']}",
        f"  open alerts: {summary['open_alerts']}",
        f"  codes not recognised (counted, not errors): {summary['unrecognised_codes']}",
        f"  notification digests: {_notification_targets()} (`refracture notify --dry-run`: what would go)",
        "  development tokens for this run (REFRACTURE_AUTH_DEV_TOKENS; they end with it):",
        f"    care coordinator (sign in to the worklist): {coordinator}",
        f"    EHR interface (FHIR API, Authorization: Bearer ...): {integration}",
        f"    administrator (/api/audit, /api/terminology/unrecognised): {administrator}",
        "  look at:",
        f"    {base}/worklist                      the care coordinators' worklist (sign in with the token)",
        f"    {base}/worklist/patients/{first}   one patient: risk chart, alerts, medications",
        f"    {base}/docs                          the API, with the OpenAPI document",
        f"    {base}/fhir/metadata                 the CapabilityStatement",
        f"    {base}/fhir/Patient/{first}   one synthetic patient as stored",
        f"    {base}/fhir/RiskAssessment?subject=Patient/{first}   their risk, explained",
        f"    {base}/fhir/CarePlan?subject=Patient/{first}   their care plan",
        f"    {base}/fhir/Task?subject=Patient/{first}   a Task per alert, for the EHR's work queues",
        f"    {base}/api/terminology/unrecognised  codes to map for this EHR",
        f"    {base}/readyz                        database and broker",
    ]
    supervisor.say("\n".join(lines))
    if processed < len(patient_ids):
        raise DemoFailure(f"the worker processed {processed} of {len(patient_ids)} patients", "worker")
