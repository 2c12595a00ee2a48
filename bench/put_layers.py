"""bench/put_layers: where a single-resource PUT's CPU goes, layer by layer, measured side by side in one run.

    .venv/bin/python -m bench.put_layers [--puts 3000] [--clients 2]

Issue 15 asks for >= 1,500 PUT/s on 2 CPUs with one API worker, which leaves about 1.33 ms of CPU per PUT for every
process together (the API, PostgreSQL, the clients). This benchmark measures, on one private database and the same
eGFR Observation bodies as bench/growth (fresh ids for each layer), what each layer of the write path costs:

  1. parse: fhir.resources' R4B ``Observation.model_validate_json`` of the bytes (the issue's "≈ 11k/s per core");
  2. intake: refracture's reading of the body (``parse`` and ``admit``: the R4 model, its own checks and bindings);
  3. the write handler alone, in this process, one PUT after another (``FhirWrites.write``: intake, the versioned
     write, its fact, the outbox row claimed and the audit row, one pipelined transaction): CPU of this process and
     of its PostgreSQL backend per PUT;
  4. the doorbell alone: the Celery publish of one changed patient to Redis (``Relay.publish_claimed``), which the
     API does after each write's commit;
  5. the whole HTTP PUT through ``refracture api`` (one uvicorn worker, its own process) from ``--clients`` client
     processes: CPU of the API process and of the database's backends per PUT, as bench/growth reports it.

Printed: each layer's rate, its CPU per PUT, and its share of the HTTP PUT's CPU; the rest of the API's CPU is the
HTTP stack (uvicorn, Starlette's middleware, FastAPI's routing and dependencies, the thread hops).
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import redis
from fhir.resources.R4B.observation import Observation

from bench.cpu import backend_pids, cpu_seconds, load_average
from bench.database import api_env, private_database
from bench.growth import measured_round, observation
from bench.ingest import machine
from service.composition.api import build_api
from service.domain.audit_record import AuditRecord
from service.entrypoints.api.fhir_handlers import FhirWrites, RequestAudit
from service.entrypoints.api.middleware import AuditNote, audit_records
from service.fhir.intake import Ids, admit
from service.fhir.jsonio import parse
from service.platform.config import Settings
from service.security.principal import Principal, Role
from service.usecases.ingest import WriteRequest
from service.usecases.intake import IntakeCounter
from tests.support.parts import build_parts
from tests.support.processes import ApiProcess

_BUDGET_MS = 2 * 1000 / 1500  # 2 CPUs' milliseconds per PUT at 1,500 PUT/s
_GROUP = 50
_PRINCIPAL = Principal("bench", frozenset({Role.INTEGRATION_CLIENT}), kind="system")


def _timed(n: int, step: Callable[[int], object]) -> tuple[float, float]:
    """Run ``step`` n times: (ops/s by the wall clock, this process's CPU ms per op)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        step(i)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n / wall, cpu * 1000 / n


def _patient(i: int) -> str:
    return f"lp{i % 5000}"


def _bodies(run: str, tag: str, n: int) -> list[tuple[str, bytes]]:
    """Fresh ids and their Observations; the i-th is for patient ``_patient(i)``."""
    return [(f"{run}{tag}-{i}", observation(f"{run}{tag}-{i}", _patient(i), i)) for i in range(n)]


def _timed_with_database(
    n: int, step: Callable[[int], object], backends: list[int], per: int = 1
) -> tuple[float, float, float]:
    """``_timed`` of n steps of ``per`` PUTs each, per PUT, with the CPU ms of these PostgreSQL backends per PUT."""
    before = cpu_seconds(backends)
    rate, cpu = _timed(n, step)
    return rate * per, cpu / per, (cpu_seconds(backends) - before) * 1000 / (n * per)


def _audit(
    status: int, action: str, patients: list[str], resource_id: str | None, detail: str | None
) -> list[AuditRecord]:
    note = AuditNote(action, "Observation", resource_id, patients, detail)
    return audit_records(note, _PRINCIPAL, "PUT /fhir/{resource_type}/{resource_id}", status, "127.0.0.1", "bench")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--puts", type=int, default=3000, help="PUTs per layer")
    parser.add_argument("--clients", type=int, default=2, help="HTTP client processes for the HTTP layer")
    parser.add_argument(
        "--connections", type=int, default=16, help="keep-alive connections per client process for layer 5c"
    )
    args = parser.parse_args()
    n = args.puts
    run = uuid.uuid4().hex[:6]
    with private_database() as (services, database_url):
        queue = f"refracture-bench-{run}"
        settings = Settings(database_url=database_url, redis_url=services.redis_url, celery_queue=queue)
        parts = build_parts(settings)
        api = build_api(parts)
        writes = FhirWrites(api.ingestor, api.resources, IntakeCounter(api.metrics), 1000, False)
        print(f"bench/put_layers on {machine()}; load average {load_average()} at the start")
        print(
            f"{n:,} PUTs of new eGFR Observations per layer (fresh ids); 1,500 PUT/s on 2 CPUs allows "
            f"{_BUDGET_MS:.2f} ms of CPU per PUT for every process together\n"
        )
        rows: list[tuple[str, float, float, float]] = []

        bodies = _bodies(run, "p", n)
        rate, cpu = _timed(n, lambda i: Observation.model_validate_json(bodies[i][1]))
        rows.append(("1 parse: R4B Observation.model_validate_json", rate, cpu, 0.0))

        rate, cpu = _timed(n, lambda i: admit(parse(bodies[i][1]), Ids.URL, url_id=bodies[i][0]))
        rows.append(("2 intake: parse + admit (R4 model and own checks)", rate, cpu, 0.0))

        def write(batch: list[tuple[str, bytes]], audit: RequestAudit | None = _audit) -> Callable[[int], object]:
            return lambda i: writes.write(batch[i][1], "Observation", batch[i][0], None, "http://bench/fhir", audit)

        warm = _bodies(run, "w", 300)
        _timed(len(warm), write(warm))  # prepared statements, pool, caches
        backends = backend_pids(database_url)
        handler = _timed_with_database(n, write(_bodies(run, "h", n)), backends)
        rows.append(("3 write handler alone (intake, write, audit; sequential)", *handler))
        measured = _timed_with_database(n, write(_bodies(run, "n", n), None), backends)
        rows.append(("3b the same without its audit row", *measured))

        # What a group-commit writer would do with PUTs waiting at the same moment: each read as the handler reads it,
        # then one pipelined transaction for the group (as the bulk import writes: bench/bulk_import).
        bodies = _bodies(run, "g", n)
        store, ingestor = parts.resources, parts.ingestor

        def group(g: int) -> None:
            chunk = bodies[g * _GROUP : (g + 1) * _GROUP]
            requests = [WriteRequest("Observation", i, admit(parse(b), Ids.URL, url_id=i).resource) for i, b in chunk]
            audit = [
                row
                for k, (i, _) in enumerate(chunk, start=g * _GROUP)
                for row in _audit(201, "update", [_patient(k)], i, None)
            ]
            with store.session() as session:
                ingestor.write_many(session, requests)
                session.append_audit(audit)

        measured = _timed_with_database(n // _GROUP, group, backends, per=_GROUP)
        rows.append((f"6 the same, {_GROUP} per transaction (a group commit)", *measured))

        relay = api.relay
        rate, cpu = _timed(n, lambda i: relay.publish_claimed([_patient(i)]))
        doorbell_ms = cpu
        rows.append(("4 doorbell alone: Celery publish to Redis", rate, cpu, 0.0))
        parts.close()

        process = ApiProcess(api_env(database_url, services.redis_url, REFRACTURE_CELERY_QUEUE=queue))
        try:
            process.wait_ready()
            paths = [(f"/fhir/Observation/{i}", b) for i, b in _bodies(run, "w2", 300)]
            measured_round(process.port, process.process.pid, database_url, paths, args.clients)  # warm
            paths = [(f"/fhir/Observation/{i}", b) for i, b in _bodies(run, "x", n)]
            r = measured_round(process.port, process.process.pid, database_url, paths, args.clients)
            paths = [(f"/fhir/Observation/{i}", b) for i, b in _bodies(run, "c", n)]
            wide = measured_round(
                process.port, process.process.pid, database_url, paths, args.clients, args.connections
            )
        finally:
            process.stop(timeout_s=30)
            redis.Redis.from_url(services.redis_url).delete(queue)
        http_row = (f"5 HTTP PUT through refracture api ({args.clients} clients)", r.rate, r.api_cpu_ms, r.db_cpu_ms)
        rows.append(http_row)
        rows.append(
            (
                f"5c the same, {args.clients} clients x {args.connections} connections",
                wide.rate,
                wide.api_cpu_ms,
                wide.db_cpu_ms,
            )
        )

        print(f"  {'layer':<58} {'ops/s':>8} {'CPU ms/PUT':>11} {'+ PostgreSQL':>13} {'of the HTTP PUT':>16}")
        for label, rate, cpu, db in rows:
            share = (cpu + db) / (r.api_cpu_ms + r.db_cpu_ms)
            print(f"  {label:<58} {rate:>8,.0f} {cpu:>11.3f} {db:>13.3f} {share:>15.0%}")
        beyond = r.api_cpu_ms - handler[1] - doorbell_ms
        print(
            f"\n  the API's CPU per PUT beyond the handler and the doorbell (HTTP stack, middleware, routing, "
            f"dependencies, thread hops): {beyond:.3f} ms"
            f"\n  HTTP PUT: p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms; CPU per PUT, all measured processes: "
            f"{r.api_cpu_ms + r.db_cpu_ms:.2f} ms against {_BUDGET_MS:.2f} ms for 1,500 PUT/s on 2 CPUs"
            f"\n  HTTP PUT over {args.clients} x {args.connections} connections: p50 {wide.p50_ms:.1f} ms, "
            f"p99 {wide.p99_ms:.1f} ms, {wide.api_cpu_ms + wide.db_cpu_ms:.2f} ms of CPU per PUT"
            f"\n  the handler and its PostgreSQL alone: {handler[1] + handler[2]:.2f} ms = at most "
            f"{2000 / (handler[1] + handler[2]):,.0f} PUT/s on 2 idle CPUs with no HTTP at all"
            f"\n  load average at the end: {load_average()} on {os.cpu_count()} CPUs; "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
