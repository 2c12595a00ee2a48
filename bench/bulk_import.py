"""bench/bulk_import: `refracture import` of NDJSON files next to the per-resource API (one PUT per resource over
HTTP), resources/s and their ratio, measured round by round in one run.

    .venv/bin/python -m bench.bulk_import [--rounds 3] [--patients 2000] [--api-resources 3000] [--clients 2]

Both sides store the same kind of resources (whole synthetic patients from service/devtools/synth.py, fresh ids every
round and side, so everything is really written): validated, versioned, facts drawn, the outbox row written. The API
runs as one uvicorn worker (`refracture api`) with its clients in this process; the bulk import runs in this process, as
`refracture import` builds it, on NDJSON files written beforehand (one per resource type). Target: >= 10x.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import httpx
import psycopg
import redis

from bench.database import BENCH_AUTH, api_env, private_database
from bench.ingest import machine
from service.adapters.ndjson_files import LocalNdjsonFile, find_ndjson_files
from service.composition.cli import make_bulk_import
from service.devtools.synth import iter_cohort
from service.fhir.jsonio import dumps
from service.platform.config import Settings
from tests.support.http import FHIR_JSON
from tests.support.parts import build_parts
from tests.support.processes import ApiProcess


def resources(patients: int, prefix: str) -> Iterator[dict[str, Any]]:
    """Whole synthetic patients' resources, in their Bundles' order (each Patient before its records)."""
    for bundle in iter_cohort(patients, 11, prefix=prefix):
        for entry in bundle["entry"]:
            yield entry["resource"]


def write_ndjson(patients: int, prefix: str, folder: Path) -> int:
    """One NDJSON file per resource type, as a Bulk Data export lays them out; returns the lines written."""
    handles: dict[str, IO[bytes]] = {}
    lines = 0
    try:
        for resource in resources(patients, prefix):
            kind = resource["resourceType"]
            if kind not in handles:
                handles[kind] = (folder / f"{kind}.ndjson").open("wb")
            handles[kind].write(dumps(resource) + b"\n")
            lines += 1
    finally:
        for handle in handles.values():
            handle.close()
    return lines


def api_rate(base: str, items: list[dict[str, Any]], clients: int) -> float:
    """PUT /fhir/{type}/{id}, one resource per request, ``clients`` at a time."""
    bodies = [(f"/fhir/{r['resourceType']}/{r['id']}", dumps(r)) for r in items]
    shares = [bodies[i::clients] for i in range(clients)]

    def send(share: list[tuple[str, bytes]]) -> None:
        with httpx.Client(base_url=base, timeout=60.0, headers=BENCH_AUTH) as client:
            for path, body in share:
                client.put(path, content=body, headers=FHIR_JSON).raise_for_status()

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, shares))
    return len(bodies) / (time.perf_counter() - start)


def bulk_rate(settings: Settings, folder: Path, batch: int) -> tuple[float, int]:
    """`refracture import FOLDER` in this process; resources/s and how many were stored."""
    parts = build_parts(settings)
    bulk = make_bulk_import(parts, batch)
    try:
        start = time.perf_counter()
        results = [bulk.importer.import_file("bench", LocalNdjsonFile(p)) for p in find_ndjson_files([folder])]
        seconds = time.perf_counter() - start
    finally:
        bulk.close()
        parts.close()
    stored = sum(r.run_counts.created for r in results)
    if any(r.run_counts.invalid for r in results):
        raise SystemExit("the bulk import refused lines: the benchmark's input is broken")
    return stored / seconds, stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--patients", type=int, default=2000, help="patients per bulk round (about 15 resources each)")
    parser.add_argument("--api-resources", type=int, default=3000, help="PUTs per API round")
    parser.add_argument("--clients", type=int, default=2, help="HTTP clients sending PUTs at once")
    parser.add_argument("--batch", type=int, default=2000, help="resources per bulk transaction")
    args = parser.parse_args()

    run = uuid.uuid4().hex[:6]
    with private_database() as (services, database_url), tempfile.TemporaryDirectory() as tmp:
        queue = f"refracture-bench-{run}"
        env = api_env(database_url, services.redis_url, REFRACTURE_CELERY_QUEUE=queue)
        api = ApiProcess(env)
        base = api.base_url
        settings = Settings(database_url=database_url, redis_url=services.redis_url, celery_queue=queue)
        try:
            api.wait_ready()
            print(f"bench/bulk_import on {machine()}")
            print(
                f"per-resource API: {args.api_resources:,} PUTs per round, {args.clients} HTTP clients, 1 API worker; "
                f"bulk: {args.patients:,} synthetic patients per round as NDJSON, {args.batch:,} resources per "
                "transaction, 1 process"
            )
            api_rate(base, list(resources(20, f"warm{run}"))[:100], 1)  # imports and first-call costs
            print("\n  round   per-resource API (PUT)   bulk import (NDJSON)   ratio")
            apis: list[float] = []
            bulks: list[float] = []
            stored = 0
            for round_no in range(1, args.rounds + 1):
                items = []
                for resource in resources(args.api_resources // 5 + 1, f"a{round_no}{run}"):
                    items.append(resource)
                    if len(items) == args.api_resources:
                        break
                folder = Path(tmp) / f"round{round_no}"
                folder.mkdir()
                write_ndjson(args.patients, f"b{round_no}{run}", folder)
                per_resource = api_rate(base, items, args.clients)
                bulk, count = bulk_rate(settings, folder, args.batch)
                stored += count
                apis.append(per_resource)
                bulks.append(bulk)
                print(f"  {round_no:>5}   {per_resource:>22,.0f}   {bulk:>20,.0f}   {bulk / per_resource:5.1f}")
            api_median, bulk_median = statistics.median(apis), statistics.median(bulks)
            print(
                f"  median {api_median:>21,.0f}   {bulk_median:>20,.0f}   {bulk_median / api_median:5.1f}"
                "   (target >= 10)"
            )
            with psycopg.connect(database_url) as conn:
                row = conn.execute("SELECT count(*), count(*) FILTER (WHERE version_id > 1) FROM resource").fetchone()
                facts = conn.execute("SELECT count(*) FROM fact").fetchone()
                changes = conn.execute("SELECT count(*) FROM patient_change").fetchone()
            assert row is not None
            assert facts is not None
            assert changes is not None
            print(
                f"\nstored: {row[0]:,} resources ({stored:,} by bulk import; {row[1]} with a second version), "
                f"{facts[0]:,} facts, {changes[0]:,} patients in the outbox"
            )
        finally:
            api.stop(timeout_s=30)
            redis.Redis.from_url(services.redis_url).delete(queue)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
