"""bench/growth: single-resource PUT rate and latency as the store grows (issue 15).

    .venv/bin/python -m bench.growth                      checkpoints at 30k, 100k and 1M stored resources
    .venv/bin/python -m bench.growth --quick              checkpoints at 30k and 100k, fewer PUTs (a few minutes)
    .venv/bin/python -m bench.growth --checkpoints 10000 200000 --puts 4000 --workers 2

A private database is grown by bulk SQL to each checkpoint with rows shaped as ingest writes them (resource with a
synthetic Observation body, its fact, a superseded version in resource_history for one resource in ten, the patient's
outbox row and summary, one audit row per resource) across 50,000 synthetic patients (20 resources each at 1M), plus
one patient with 20,000 Observations (a long lab series), then analysed as autovacuum would. At each checkpoint the
API (`refracture api`, its own process) takes PUTs of new Observations (fresh ids) from `--clients` client processes:
for patients spread over the store, and for the patient with the long record. Printed: PUT/s, p50 and p99 per
checkpoint and their ratio against the first checkpoint of the same run, with the load average, because the machine
is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import random
import signal
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import redis
import uvloop

from bench.cpu import backend_pids, cpu_seconds
from bench.database import BENCH_AUTH, api_env, private_database
from bench.ingest import machine
from service.platform.config import Settings
from tests.support.http import FHIR_JSON
from tests.support.parts import build_parts
from tests.support.processes import ApiProcess

PATIENTS = 50_000
LONG_PATIENT = "growth-long"
LONG_OBSERVATIONS = 20_000

# One statement per table, over generate_series: patients p in [p0, p1), resources r in [r0, r1) of each patient.
# The bodies follow service/devtools/synth.py's Observations (an eGFR lab result), so TOAST and index sizes are
# realistic.
_GROW_RESOURCES = """
INSERT INTO resource (resource_type, id, version_id, last_updated_at, content_hash, patient_id, status, body)
SELECT 'Observation', format('g%%s-%%s', p, r), CASE WHEN r %% 10 = 0 THEN 2 ELSE 1 END, now(),
       sha256(format('g%%s-%%s', p, r)::bytea), format('gp%%s', p), 'final',
       jsonb_build_object(
         'resourceType', 'Observation', 'id', format('g%%s-%%s', p, r),
         'meta', jsonb_build_object('versionId', CASE WHEN r %% 10 = 0 THEN '2' ELSE '1' END,
                                    'lastUpdated', '2026-12-01T00:00:00.000+00:00'),
         'status', 'final',
         'category', jsonb_build_array(jsonb_build_object('coding', jsonb_build_array(jsonb_build_object(
             'system', 'http://terminology.hl7.org/CodeSystem/observation-category', 'code', 'laboratory')))),
         'code', jsonb_build_object('coding', jsonb_build_array(jsonb_build_object('system', 'http://loinc.org',
             'code', '98979-8', 'display',
             'Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] by CKD-EPI 2021'))),
         'subject', jsonb_build_object('reference', format('Patient/gp%%s', p)),
         'effectiveDateTime', to_char(date '2020-01-01' + (r * 7 + p %% 7), 'YYYY-MM-DD'),
         'valueQuantity', jsonb_build_object('value', 40 + (p * 31 + r) %% 60, 'unit', 'mL/min/{1.73_m2}',
             'system', 'http://unitsofmeasure.org', 'code', 'mL/min/{1.73_m2}'))
  FROM generate_series(%(p0)s, %(p1)s - 1) AS p, generate_series(%(r0)s, %(r1)s - 1) AS r
"""
_GROW_HISTORY = """
INSERT INTO resource_history (resource_type, id, version_id, last_updated_at, body)
SELECT resource_type, id, 1, last_updated_at, body FROM resource
 WHERE resource_type = 'Observation' AND id LIKE 'g%%' AND version_id = 2
   AND last_updated_at >= %(since)s
"""
_GROW_FACTS = """
INSERT INTO fact (patient_id, kind, value_num, unit, effective_date, status, source_type, source_id,
                  source_version, recorded_at)
SELECT patient_id, 'egfr', (body #>> '{valueQuantity,value}')::float8, 'mL/min/{1.73_m2}',
       (body ->> 'effectiveDateTime')::date, 'final', resource_type, id, version_id, last_updated_at
  FROM resource WHERE resource_type = 'Observation' AND last_updated_at >= %(since)s
"""
_GROW_PATIENTS = """
INSERT INTO patient_change (patient_id, changed_seq, changed_at, done_seq, done_at)
SELECT format('gp%%s', p), nextval('patient_change_seq'), now(), currval('patient_change_seq'), now()
  FROM generate_series(%(p0)s, %(p1)s - 1) AS p
ON CONFLICT (patient_id) DO NOTHING
"""
_GROW_SUMMARIES = """
INSERT INTO patient_summary (patient_id, name, mrn, birth_date, sex, search, updated_at)
SELECT format('gp%%s', p), format('Growth%%s, Sample', p), format('G%%s', p), date '1940-01-01' + p %% 9000,
       CASE WHEN p %% 2 = 0 THEN 'female' ELSE 'male' END, lower(format('growth%%s, sample g%%s', p, p)), now()
  FROM generate_series(%(p0)s, %(p1)s - 1) AS p
ON CONFLICT (patient_id) DO NOTHING
"""
_GROW_AUDIT = """
INSERT INTO audit_event (at, actor, roles, action, what, resource_type, resource_id, patient_id, outcome, request_id)
SELECT last_updated_at, 'bench', '{integration-client}', 'update', 'PUT /fhir/{resource_type}/{resource_id}',
       resource_type, id, patient_id, 201, md5(id)
  FROM resource WHERE resource_type = 'Observation' AND last_updated_at >= %(since)s
"""


def _stored(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM resource").fetchone()
    return int(row[0]) if row else 0


def grow(database_url: str, target: int, long_record: bool) -> float:
    """Add synthetic rows until about ``target`` resources are stored; seconds taken (including ANALYZE)."""
    start = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        have = _stored(conn)
        known = conn.execute("SELECT 1 FROM patient_change WHERE patient_id = %s", (LONG_PATIENT,)).fetchone()
        if long_record and not known:
            grow_long(conn, LONG_PATIENT, "glong")
            have = _stored(conn)
        # Patients fill up round by round: every patient gets resources r0..r1 before any gets more. Their ids only
        # ("g<p>-<r>"): the long record's "glong-<r>" once made r0 20,000, dating every patient's eGFRs in 2403.
        per_patient_now = conn.execute(
            "SELECT coalesce(max(split_part(id, '-', 2)::int) + 1, 0) FROM resource WHERE id ~ '^g[0-9]+-[0-9]+$'"
        ).fetchone()
        r0 = int(per_patient_now[0]) if per_patient_now else 0
        missing = target - have
        while missing > 0:
            rows = min(missing, PATIENTS)
            step = max(1, rows // PATIENTS)
            p1 = rows if rows < PATIENTS else PATIENTS
            since = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
            with conn.transaction():
                conn.execute(_GROW_RESOURCES, {"p0": 0, "p1": p1, "r0": r0, "r1": r0 + step})
                conn.execute(_GROW_HISTORY, {"since": since})
                conn.execute(_GROW_FACTS, {"since": since})
                conn.execute(_GROW_AUDIT, {"since": since})
                conn.execute(_GROW_PATIENTS, {"p0": 0, "p1": p1})
                conn.execute(_GROW_SUMMARIES, {"p0": 0, "p1": p1})
            r0 += step
            missing -= p1 * step
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - start


def grow_long(conn: psycopg.Connection[Any], patient: str, prefix: str, dated: str | None = None) -> None:
    """20,000 eGFR Observations for one patient, ids ``<prefix>-<r>``: dated weekly from 2020, or by ``dated`` (an SQL
    expression of r, the Observation's number)."""
    since = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    resources = (
        _GROW_RESOURCES.replace("format('gp%%s', p)", f"'{patient}'")
        .replace("format('Patient/gp%%s', p)", f"'Patient/{patient}'")
        .replace("format('g%%s-%%s', p, r)", f"format('{prefix}-%%s', r)")
    )
    if dated is not None:
        resources = resources.replace("date '2020-01-01' + (r * 7 + p %% 7)", dated)
    with conn.transaction():
        conn.execute(resources, {"p0": 0, "p1": 1, "r0": 0, "r1": LONG_OBSERVATIONS})
        conn.execute(_GROW_HISTORY.replace("id LIKE 'g%%'", f"id LIKE '{prefix}-%%'"), {"since": since})
        conn.execute(_GROW_FACTS, {"since": since})
        conn.execute(_GROW_AUDIT, {"since": since})
        conn.execute(
            "INSERT INTO patient_change (patient_id, changed_seq, changed_at) "
            "VALUES (%s, nextval('patient_change_seq'), now())",
            (patient,),
        )


def observation(resource_id: str, patient_id: str, n: int) -> bytes:
    """A new eGFR Observation, as service/devtools/synth.py writes them."""
    return json.dumps(
        {
            "resourceType": "Observation",
            "id": resource_id,
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "laboratory",
                        }
                    ]
                }
            ],
            "code": {
                "coding": [
                    {
                        "system": "http://loinc.org",
                        "code": "98979-8",
                        "display": "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] by CKD-EPI 2021",
                    }
                ]
            },
            "subject": {"reference": f"Patient/{patient_id}"},
            "effectiveDateTime": f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}",
            "valueQuantity": {
                "value": 40 + n % 60,
                "unit": "mL/min/{1.73_m2}",
                "system": "http://unitsofmeasure.org",
                "code": "mL/min/{1.73_m2}",
            },
        }
    ).encode()


def _client(port: int, work: list[tuple[str, bytes]], out: Any) -> None:
    """One HTTP/1.1 keep-alive client (a process of its own, so clients do not share a GIL)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {**BENCH_AUTH, **FHIR_JSON}
    latencies: list[float] = []
    for path, body in work:
        started = time.perf_counter()
        conn.request("PUT", path, body, headers)
        response = conn.getresponse()
        response.read()
        if response.status not in (200, 201):
            raise SystemExit(f"PUT {path}: {response.status}")
        latencies.append(time.perf_counter() - started)
    conn.close()
    out.put(latencies)


def _connections_client(port: int, work: list[tuple[str, bytes]], out: Any, connections: int) -> None:
    """``connections`` keep-alive HTTP/1.1 connections in one process, each sending its share one PUT after another,
    as an interface engine with that many outbound threads does. Raw asyncio streams: a request costs the client
    far less CPU than http.client's, which matters on 2 CPUs shared with the API and PostgreSQL."""
    latencies: list[float] = []
    header = "".join(f"{k}: {v}\r\n" for k, v in {**BENCH_AUTH, **FHIR_JSON}.items())

    async def connection(share: list[tuple[str, bytes]]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for path, body in share:
            started = time.perf_counter()
            writer.write(
                f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}Content-Length: {len(body)}\r\n\r\n".encode() + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            await reader.readexactly(length)
            if status not in (200, 201):
                raise SystemExit(f"PUT {path}: {status}")
            latencies.append(time.perf_counter() - started)
        writer.close()

    async def run() -> None:
        await asyncio.gather(*(connection(work[i::connections]) for i in range(connections)))

    uvloop.run(run())  # uvicorn's own loop: the client's share of the 2 CPUs is smaller on it
    out.put(latencies)


def _processes(api_pid: int, database_url: str) -> tuple[list[int], list[int]]:
    """The API's processes (uvicorn and its workers) and the PostgreSQL backends connected to the run's database."""
    api = [api_pid]
    try:
        children = Path(f"/proc/{api_pid}/task/{api_pid}/children").read_text().split()
        api += [int(c) for c in children]
    except OSError:
        pass
    return api, backend_pids(database_url)


@dataclass(frozen=True)
class Round:
    """One round of PUTs: rate, latency, and the CPU the API and PostgreSQL spent per PUT."""

    rate: float
    p50_ms: float
    p99_ms: float
    api_cpu_ms: float
    db_cpu_ms: float


def measured_round(
    port: int, api_pid: int, database_url: str, bodies: list[tuple[str, bytes]], clients: int, connections: int = 1
) -> Round:
    """``put_round`` with the CPU time of the API process(es) and of the database's backends per PUT (from /proc):
    on a shared machine the CPU per PUT holds up better than the rate."""
    api, backends = _processes(api_pid, database_url)
    api_before, db_before = cpu_seconds(api), cpu_seconds(backends)
    rate, p50, p99 = put_round(port, bodies, clients, connections)
    api_after, db_after = cpu_seconds(api), cpu_seconds(backends)
    n = len(bodies)
    return Round(rate, p50, p99, (api_after - api_before) * 1000 / n, (db_after - db_before) * 1000 / n)


def put_round(
    port: int, bodies: list[tuple[str, bytes]], clients: int, connections: int = 1
) -> tuple[float, float, float]:
    """Send the PUTs from ``clients`` processes at once, each over ``connections`` keep-alive connections (one:
    http.client, as the issue measured); PUT/s, p50 and p99 in ms."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    shares = [bodies[i::clients] for i in range(clients)]
    processes = [
        ctx.Process(target=_client, args=(port, share, out))
        if connections == 1
        else ctx.Process(target=_connections_client, args=(port, share, out, connections))
        for share in shares
    ]
    start = time.perf_counter()
    for process in processes:
        process.start()
    latencies: list[float] = []
    for _ in processes:
        latencies += out.get()
    elapsed = time.perf_counter() - start
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise SystemExit("a client failed")
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return len(latencies) / elapsed, p50, p99


def puts(run: str, tag: str, count: int, patient: str | None) -> list[tuple[str, bytes]]:
    """``count`` new Observations (fresh ids): for random stored patients, or all for ``patient``."""
    rng = random.Random(f"{run}{tag}")
    items = []
    for n in range(count):
        patient_id = patient or f"gp{rng.randrange(PATIENTS)}"
        resource_id = f"n{run}{tag}-{n}"
        items.append((f"/fhir/Observation/{resource_id}", observation(resource_id, patient_id, n)))
    return items


_BUMP = (
    "UPDATE patient_change SET changed_seq = nextval('patient_change_seq'), changed_at = now(), published_at = now() "
    "WHERE patient_id = %s"
)


def downstream_ms(database_url: str, redis_url: str, queue: str, patient_id: str, times: int = 5) -> float:
    """Median ms of the worker's handling of one changed patient (risk assessment, alert evaluation, write-back
    queueing: ``ChangeProcessor.process`` as the worker's task runs it), in this process."""
    settings = Settings(database_url=database_url, redis_url=redis_url, celery_queue=queue)
    parts = build_parts(settings)
    took: list[float] = []
    try:
        for _ in range(times):
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(_BUMP, (patient_id,))
            started = time.perf_counter()
            if parts.changes.process([patient_id]) != 1:
                raise SystemExit(f"{patient_id} was not handled")
            took.append((time.perf_counter() - started) * 1000)
    finally:
        parts.close()
    return statistics.median(took)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _cells(r: Round) -> str:
    return f"{r.rate:>7,.0f}  {r.p50_ms:>6.1f}  {r.p99_ms:>6.1f}  {r.api_cpu_ms:>4.2f}+{r.db_cpu_ms:<4.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[30_000, 100_000, 1_000_000])
    parser.add_argument("--puts", type=int, default=6000, help="PUTs per checkpoint (spread over patients)")
    parser.add_argument("--long-puts", type=int, default=2000, help="PUTs per checkpoint to the 20k-record patient")
    parser.add_argument("--clients", type=int, default=2, help="HTTP client processes")
    parser.add_argument("--workers", type=int, default=1, help="API worker processes (uvicorn --workers)")
    parser.add_argument(
        "--connections", type=int, default=1, help="keep-alive connections per client process (1: http.client)"
    )
    parser.add_argument("--quick", action="store_true", help="checkpoints 30k and 100k, 2,000 + 500 PUTs each")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN every PUT statement at the last checkpoint")
    parser.add_argument("--keep", action="store_true", help="print the database URL and keep the API running")
    args = parser.parse_args()
    if args.quick:
        args.checkpoints, args.puts, args.long_puts = [30_000, 100_000], 2000, 500

    run = uuid.uuid4().hex[:6]
    with private_database() as (services, database_url):
        queue = f"refracture-bench-{run}"
        env = api_env(database_url, services.redis_url, REFRACTURE_CELERY_QUEUE=queue)
        api = ApiProcess(env, extra=("--workers", str(args.workers)) if args.workers > 1 else ())
        port = api.port
        try:
            api.wait_ready()
            print(f"bench/growth on {machine()}")
            print(
                f"{args.workers} API worker(s), {args.clients} HTTP client processes with {args.connections} "
                f"connection(s) each; per checkpoint "
                f"{args.puts:,} PUTs of new Observations for random patients of {PATIENTS:,} and "
                f"{args.long_puts:,} for the patient with "
                f"{LONG_OBSERVATIONS:,} Observations; the store grown by bulk SQL between checkpoints"
            )
            put_round(
                port, puts(run, "warm", 300, None), args.clients, args.connections
            )  # imports, caches, prepared statements
            print(
                "\n              spread over patients                      the 20k-Observation patient"
                "\n     stored    PUT/s  p50 ms  p99 ms  CPU ms/PUT       PUT/s  p50 ms  p99 ms  CPU ms/PUT"
                "   ratio (PUT/s, long)   load avg"
            )
            first: tuple[float, float] | None = None
            downstream: list[tuple[int, float, float]] = []
            for index, checkpoint in enumerate(args.checkpoints):
                grow(database_url, checkpoint, long_record=True)
                with psycopg.connect(database_url) as conn:
                    stored = _stored(conn)
                spread = measured_round(
                    port,
                    api.process.pid,
                    database_url,
                    puts(run, f"c{index}", args.puts, None),
                    args.clients,
                    args.connections,
                )
                long = measured_round(
                    port,
                    api.process.pid,
                    database_url,
                    puts(run, f"l{index}", args.long_puts, LONG_PATIENT),
                    args.clients,
                    args.connections,
                )
                first = first or (spread.rate, long.rate)
                load = os.getloadavg()[0]
                print(
                    f"  {stored:>9,}  {_cells(spread)}   {_cells(long)}   "
                    f"{spread.rate / first[0]:>9.2f}, {long.rate / first[1]:>5.2f}   {load:>8.1f}",
                    flush=True,
                )
                downstream.append(
                    (
                        stored,
                        downstream_ms(database_url, services.redis_url, queue, "gp1234"),
                        downstream_ms(database_url, services.redis_url, queue, LONG_PATIENT),
                    )
                )
            print(
                "\nthe worker's handling of one changed patient (assess, evaluate alerts, queue the write-back), "
                "median of 5, ms:\n     stored   a patient of 20-40 resources   the patient with 20k Observations"
            )
            for stored_then, typical, long_record in downstream:
                print(f"  {stored_then:>9,}   {typical:>28.1f}   {long_record:>33.1f}")
            print(
                "\nCPU ms/PUT: API process(es) + PostgreSQL backends of the run's database, from /proc (the clients' "
                "own CPU is not counted)"
            )
            if args.explain:
                from bench.explain_put import explain  # noqa: PLC0415

                for patient in ("gp1234", LONG_PATIENT):
                    print(
                        f"\nEXPLAIN (ANALYZE, BUFFERS) of a PUT of a new Observation of {patient} at {stored:,} stored:"
                    )
                    for label, ms, plan in explain(database_url, patient):
                        print(f"-- {label}: {ms:.3f} ms\n{plan}")
            print(
                "\ntargets (issue 15): >= 1,500 PUT/s on 2 CPUs with one API worker; at 1M stored >= 0.9 x the first "
                "checkpoint's rate; p99 <= 20 ms"
            )
            if args.keep:
                signal.signal(signal.SIGTERM, _interrupt)  # a background run ignores Ctrl-C: `kill PID` ends it too
                print(f"database {database_url}, API on port {port}; Ctrl-C or `kill {os.getpid()}` ends", flush=True)
                while True:
                    time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            api.stop(timeout_s=30)
            redis.Redis.from_url(services.redis_url).delete(queue)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
