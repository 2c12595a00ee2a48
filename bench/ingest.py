"""bench/ingest: resources/s for 1,000-entry transaction Bundles through the HTTP API, next to the raw
fhir.resources parse rate of the same Bundles, measured round by round in one run.

    .venv/bin/python -m bench.ingest [--rounds 5] [--bundles 4] [--clients 2]   (from the repository root)

The API runs as one uvicorn worker (`refracture api`) on a private database; every round sends Bundles with fresh
ids, so each round really writes (re-sent content would be a cheap no-op). Target: ingest >= 0.5x raw parse.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import redis
from fhir.resources.R4B.bundle import Bundle

from bench.bundles import mixed_bundles, observation_bundles
from bench.database import BENCH_AUTH, api_env, private_database
from service.devtools.local_services import free_port
from tests.support.http import FHIR_JSON

ENTRIES = 1000


def raw_parse_rate(bundles: list[bytes]) -> float:
    start = time.perf_counter()
    for body in bundles:
        Bundle.model_validate_json(body)
    return len(bundles) * ENTRIES / (time.perf_counter() - start)


def http_rate(base: str, bundles: list[bytes], clients: int) -> float:
    def post(body: bytes) -> None:
        with httpx.Client(base_url=base, timeout=120.0, headers=BENCH_AUTH) as client:
            response = client.post("/fhir", content=body, headers=FHIR_JSON)
            response.raise_for_status()

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, bundles))
    return len(bundles) * ENTRIES / (time.perf_counter() - start)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {platform.system()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bundles", type=int, default=4, help="1,000-entry Bundles per round and kind")
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    with private_database() as (services, database_url):
        queue = f"refracture-bench-{run}"
        port = free_port()
        env = api_env(database_url, services.redis_url, REFRACTURE_CELERY_QUEUE=queue)
        api = subprocess.Popen(
            [sys.executable, "-m", "service", "api", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            print(f"bench/ingest on {machine()}")
            print(
                f"{args.bundles} x {ENTRIES}-entry transaction Bundles per round, {args.clients} HTTP clients, "
                "1 API worker; entries/s"
            )
            # Warm-up: import and first-call costs on both sides.
            warm = observation_bundles(1, ENTRIES, f"warm{run}")
            raw_parse_rate(warm)
            http_rate(base, warm, 1)
            for kind, generate in (("observations", observation_bundles), ("mixed patients", mixed_bundles)):
                raws: list[float] = []
                https: list[float] = []
                print(f"\n{kind}:\n  round  raw fhir.resources parse   HTTP ingest (stored)   ratio")
                for round_no in range(1, args.rounds + 1):
                    bundles = generate(args.bundles, ENTRIES, f"{kind[0]}{round_no}{run}")
                    raw = raw_parse_rate(bundles)
                    ingest = http_rate(base, bundles, args.clients)
                    raws.append(raw)
                    https.append(ingest)
                    print(f"  {round_no:>5}  {raw:>24,.0f}   {ingest:>20,.0f}   {ingest / raw:5.2f}")
                raw_median, http_median = statistics.median(raws), statistics.median(https)
                print(
                    f"  median {raw_median:>23,.0f}   {http_median:>20,.0f}   {http_median / raw_median:5.2f}"
                    f"   (target >= 0.50)"
                )
            with psycopg.connect(database_url) as conn:
                row = conn.execute("SELECT count(*) FROM resource").fetchone()
                facts = conn.execute("SELECT count(*) FROM fact").fetchone()
            print(f"\nstored: {row[0] if row else 0:,} resources, {facts[0] if facts else 0:,} facts")
        finally:
            api.terminate()
            api.wait(timeout=30)
            redis.Redis.from_url(services.redis_url).delete(queue)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
