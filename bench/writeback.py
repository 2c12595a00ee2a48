"""bench/writeback: end-to-end latency from a POSTed Observation to the RiskAssessment and CarePlan accepted by a local
EHR stand-in, at 20 patients/s for 60 s (open loop).

    .venv/bin/python -m bench.writeback [--rate 20] [--seconds 60] [--patients 400]   (from the repository root)

Runs the API and a Celery worker as processes (as deployed), the EHR stand-in on loopback in this process, and a
private database. Each posted Observation (a new CT Hounsfield measurement of the treated vertebra) changes the
patient's risk: the clock stops when the EHR receives the transaction carrying the RiskAssessment based on it.
Target: p99 under 2 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import httpx
import psycopg
import redis

from bench.database import BENCH_AUTH, api_env, private_database
from bench.ingest import machine
from service.adapters.postgres.migrate import migrate
from service.devtools.local_services import free_port
from service.devtools.synth import cohort
from tests.support.http import FHIR_JSON


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "service", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def observation(operation: dict[str, Any], number: int, value: float) -> dict[str, Any]:
    """A pre-operative HU of the treated vertebra, lower than any so far: it changes the patient's risk."""
    pid = operation["subject"]["reference"].split("/")[1]
    return {
        "resourceType": "Observation",
        "id": f"{pid}-bench-hu-{number}",
        "status": "final",
        "code": {"coding": [{"system": "https://refracture.dev/fhir/CodeSystem/measure", "code": "vertebral-hu"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": operation["performedDateTime"],
        "bodySite": operation["bodySite"][0],
        "valueQuantity": {"value": value, "unit": "HU", "system": "http://unitsofmeasure.org", "code": "[hnsf'U]"},
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--patients", type=int, default=400)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    with private_database(migrated=False) as (services, database_url):
        # The stand-in runs in its own process, as a real EHR would: in this one it would compete for the GIL.
        standin = subprocess.Popen(
            [sys.executable, "-m", "tests.ehr_standin"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert standin.stdout is not None
        ehr_base = standin.stdout.readline().strip()
        queue = f"refracture-bench-{run}"
        port = free_port()
        env = api_env(database_url, services.redis_url, REFRACTURE_CELERY_QUEUE=queue, REFRACTURE_EHR_BASE_URL=ehr_base)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                migrate(conn)
            processes = [start(["api", "--port", str(port)], env), start(["worker", "--concurrency", "2"], env)]
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            bundles = cohort(args.patients, seed=21, today=date(2026, 11, 1), prefix=f"wb{run}")
            operations = [
                next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "Procedure") for b in bundles
            ]
            with httpx.Client(base_url=base, timeout=60, headers=BENCH_AUTH) as client:
                for bundle in bundles:
                    client.post("/fhir", content=json.dumps(bundle), headers=FHIR_JSON)
            # Let the cohort's own assessments and write-backs settle before measuring.
            settle = time.monotonic() + 180
            while time.monotonic() < settle:
                with psycopg.connect(database_url) as conn:
                    row = conn.execute("SELECT count(*) FROM writeback WHERE status <> 'delivered'").fetchone()
                    pending = conn.execute(
                        "SELECT count(*) FROM patient_change WHERE changed_seq > done_seq"
                    ).fetchone()
                if row and pending and row[0] == 0 and pending[0] == 0:
                    break
                time.sleep(0.5)
            print(f"bench/writeback on {machine()}")
            print(
                f"{args.patients} patients loaded; EHR stand-in at {ehr_base} (its own process); API 1 process, worker "
                "prefork 2; posting one Observation per patient at a fixed rate"
            )
            sent: dict[str, float] = {}
            errors = 0
            lock = threading.Lock()
            total = int(args.rate * args.seconds)
            shared = httpx.Client(
                base_url=base, timeout=30, limits=httpx.Limits(max_connections=16), headers=BENCH_AUTH
            )

            def post(number: int, at: float) -> None:
                nonlocal errors
                rounds, index = divmod(number, len(operations))
                resource = observation(operations[index], number, 14.0 - rounds)  # each round a new lowest value
                try:
                    response = shared.put(
                        f"/fhir/Observation/{resource['id']}",
                        content=json.dumps(resource),
                        headers=FHIR_JSON,
                    )
                    ok = response.status_code in (200, 201)
                except httpx.HTTPError:
                    ok = False
                with lock:
                    if ok:
                        sent[f"Observation/{resource['id']}"] = at
                    else:
                        errors += 1

            started = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                for number in range(total):
                    # Open loop: each request leaves on its schedule, whatever happened to the ones before it.
                    due = started + number / args.rate
                    time.sleep(max(0.0, due - time.monotonic()))
                    pool.submit(post, number, time.time())
            wait_until = time.monotonic() + 60
            arrivals: dict[str, float] = {}
            while time.monotonic() < wait_until:
                arrivals = httpx.get(f"{ehr_base}/__arrivals", timeout=10).json()
                if all(ref in arrivals for ref in sent):
                    break
                time.sleep(1.0)
            shared.close()
            latencies = [arrivals[ref] - at for ref, at in sent.items() if ref in arrivals]
            missing = len(sent) - len(latencies)
            risk = [e["resource"] for e in httpx.get(f"{ehr_base}/RiskAssessment", timeout=30).json().get("entry", [])]
            identifiers = [i["value"] for r in risk for i in r["identifier"]]
            print(f"\n{len(sent)} Observations posted in {args.seconds:.0f} s ({args.rate:g}/s), {errors} errors")
            if latencies:
                p50, p99 = statistics.median(latencies) * 1000, percentile(latencies, 99) * 1000
                print(
                    f"POST -> RiskAssessment + CarePlan accepted by the EHR: p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
                    f"max {max(latencies) * 1000:.0f} ms (target p99 < 2,000 ms)"
                )
            print(
                f"missing: {missing}; RiskAssessments at the EHR: {len(risk)}, duplicates: "
                f"{len(identifiers) - len(set(identifiers))}"
            )
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
            standin.terminate()
            standin.wait(timeout=20)
            redis.Redis.from_url(services.redis_url).delete(queue)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
