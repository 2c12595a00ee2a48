"""`refracture demo`: PostgreSQL, Redis, migrations, API, worker and beat on this machine, then a cohort."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import httpx
import psycopg

from service.adapters.local_services import LocalServices, ensure_services, free_port
from service.adapters.postgres.migrate import create_database_if_missing, migrate
from service.config import get_settings
from service.fhir.jsonio import dumps
from service.synth import cohort

__all__ = ["run_demo"]


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Our own interpreter and module: no untrusted input reaches the command line.
    return subprocess.Popen([sys.executable, "-m", "service", *args], env=env)  # noqa: S603


def _wait_until_up(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


def _backlog(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM patient_change WHERE changed_seq > done_seq").fetchone()
    return int(row[0]) if row else 0


def _summary(database_url: str) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        resources = conn.execute("SELECT resource_type, count(*) FROM resource GROUP BY 1 ORDER BY 1").fetchall()
        facts = conn.execute("SELECT kind, count(*) FROM fact GROUP BY 1 ORDER BY 2 DESC").fetchall()
        unrecognised = conn.execute("SELECT coalesce(sum(occurrences), 0) FROM unrecognised_code").fetchone()
        done = conn.execute("SELECT count(*) FROM patient_change WHERE done_seq >= changed_seq").fetchone()
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
        "patients_processed_by_worker": int(done[0]) if done else 0,
        "risk_bands": {str(k): int(v) for k, v in bands},
        "open_alerts": {str(k): int(v) for k, v in open_alerts},
    }


def run_demo(patients: int, port: int, keep_running: bool) -> int:
    """Run the whole service locally and load a synthetic cohort through its API.

    Returns:
        The process exit code.
    """
    settings = get_settings()
    services: LocalServices = ensure_services(settings.database_url, settings.redis_url)
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
        "REFRACTURE_DATABASE_URL": services.database_url,
        "REFRACTURE_REDIS_URL": services.redis_url,
        "REFRACTURE_AUTH_DEV_TOKENS": json.dumps(tokens),
        # A person watches this terminal: readable lines, unless they asked for JSON.
        "REFRACTURE_LOG_FORMAT": os.environ.get("REFRACTURE_LOG_FORMAT", "text"),
    }
    create_database_if_missing(services.database_url)
    with psycopg.connect(services.database_url, autocommit=True) as conn:
        migrate(conn)
    try:
        port = port if _port_free(port) else free_port()
        processes = [
            _start(["api", "--port", str(port)], env),
            _start(["worker", "--concurrency", "1"], env),
            _start(["beat"], env),
        ]
    except OSError as exc:
        print(f"could not start the processes: {exc}")
        services.close()
        return 1
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(f"{base}/healthz")
        bundles = cohort(patients, seed=7)
        with httpx.Client(base_url=base, timeout=60.0, headers={"Authorization": f"Bearer {integration}"}) as client:
            for bundle in bundles:
                response = client.post(
                    "/fhir", content=dumps(bundle), headers={"Content-Type": "application/fhir+json"}
                )
                response.raise_for_status()
        deadline = time.monotonic() + 120
        while _backlog(services.database_url) and time.monotonic() < deadline:
            time.sleep(0.5)
        # Data identical to an earlier demo run is no change, so nothing was assessed: bring everyone up to date
        # (a no-op for patients the worker just handled).
        _start(["sweep", "--all"], env).wait(timeout=300)
        summary = _summary(services.database_url)
        first = bundles[0]["entry"][0]["resource"]["id"] if bundles else "synth-000001"
        print("\nrefracture demo is running")
        print(f"  loaded {patients} synthetic patients: {summary['resources']}")
        print(f"  facts drawn: {summary['facts']}")
        print(f"  patients processed by the worker: {summary['patients_processed_by_worker']}")
        print(f"  re-fracture risk (latest assessment per patient): {summary['risk_bands']}")
        print(f"  open alerts: {summary['open_alerts']}")
        print(f"  codes not recognised (counted, not errors): {summary['unrecognised_codes']}")
        print("  development tokens for this run (REFRACTURE_AUTH_DEV_TOKENS; they end with it):")
        print(f"    care coordinator (sign in to the worklist): {coordinator}")
        print(f"    EHR interface (FHIR API, Authorization: Bearer ...): {integration}")
        print(f"    administrator (/api/audit, /api/terminology/unrecognised): {administrator}")
        print("  look at:")
        print(f"    {base}/worklist                      the care coordinators' worklist (sign in with the token)")
        print(f"    {base}/worklist/patients/{first}   one patient: risk chart, alerts, medications")
        print(f"    {base}/docs                          the API, with the OpenAPI document")
        print(f"    {base}/fhir/metadata                 the CapabilityStatement")
        print(f"    {base}/fhir/Patient/{first}   one synthetic patient as stored")
        print(f"    {base}/fhir/RiskAssessment?subject=Patient/{first}   their risk, explained")
        print(f"    {base}/fhir/CarePlan?subject=Patient/{first}   their care plan")
        print(f"    {base}/api/terminology/unrecognised  codes to map for this EHR")
        print(f"    {base}/readyz                        database and broker")
        if keep_running:
            print("  press Ctrl-C to stop")
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            try:
                while all(p.poll() is None for p in processes):
                    time.sleep(1.0)
            except KeyboardInterrupt:
                pass
        return 0
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        services.close()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
