"""bench/load: a load and soak test of the whole stack on loopback — synthetic patients' Bundles at a steady rate of
ingested resources, worklist reads beside them, queue backlog and process memory sampled over the run.

    .venv/bin/python -m bench.load [--rate 200] [--duration 600] [--worklist-rate 3]   (from the repository root)
    .venv/bin/python -m bench.load --duration 60                                       (a quick run)

Starts, on a private database: the API (`refracture api`, one uvicorn process), a Celery worker (prefork, 2) and
beat (the outbox relay every 15 s), as deployed. Then, open loop (each request leaves at its scheduled time whatever
happened to the ones before, so a slow server shows up as latency and lateness, not as a lower offered load): whole
patients from service/devtools/synth.py as transaction Bundles at --rate resources/s, and GET /api/worklist at
--worklist-rate requests/s. Every --sample seconds: the outbox backlog (patient_change rows not yet handled), the
Redis queue length, write-back jobs pending, and the resident memory of the API and worker process trees (/proc).
Latency is counted from each request's scheduled time. Target: the rate held with zero errors and flat memory.
Writes a table to stdout and bench/results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from bench.database import BENCH_AUTH, api_env, private_database
from bench.machine import machine_info
from bench.worklist import seed as seed_alerts
from service.adapters.postgres.audit import append_audit
from service.adapters.postgres.errors import pooled_transaction
from service.composition.parts import Parts
from service.devtools.local_services import free_port
from service.devtools.synth import iter_cohort
from service.domain.audit_record import AuditRecord
from service.fhir.jsonio import dumps
from service.platform.config import Settings
from service.usecases.ports.worklist import Sort, WorklistFilters
from tests.support.http import FHIR_JSON
from tests.support.parts import build_parts

RESULTS = Path(__file__).parent / "results"


@dataclass
class Sample:
    """One look at the stack, every --sample seconds."""

    t: float  # seconds since the load started
    ingested_resources: int
    pending_changes: int
    redis_queue: int
    writeback_pending: int
    api_rss_mb: float
    worker_rss_mb: float
    load_average: float = 0.0  # the machine's 1-minute load average (it is shared: the figures depend on it)


@dataclass
class Stream:
    """What one kind of request saw."""

    latencies_ms: list[float] = field(default_factory=list)
    lateness_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        ok = self.latencies_ms
        return {
            "requests": sum(self.statuses.values()),
            "statuses": dict(self.statuses),
            "errors": sum(n for s, n in self.statuses.items() if s not in ("200", "201")),
            "p50_ms": round(percentile(ok, 50), 1) if ok else None,
            "p99_ms": round(percentile(ok, 99), 1) if ok else None,
            "max_ms": round(max(ok), 1) if ok else None,
            "lateness_p99_ms": round(percentile(self.lateness_ms, 99), 1) if self.lateness_ms else None,
        }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants (the worker's prefork children count), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total_kb, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
        todo += children.get(current, [])
    return total_kb / 1024


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen([sys.executable, "-m", "service", *args], env=env, stdout=handle, stderr=subprocess.STDOUT)


def wait_until_up(base: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API did not start")


class Load:
    """The open-loop load and the sampler, on one asyncio loop."""

    def __init__(self, args: argparse.Namespace, base: str, database_url: str, redis_url: str, queue: str) -> None:
        self.args = args
        self.base = base
        self.read_base = base  # --read-api: the worklist's reads go to an API process of their own
        self.database_url = database_url
        self.redis = redis.Redis.from_url(redis_url)
        self.queue = queue
        self.ingest = Stream()
        self.worklist = Stream()
        self.worklist_read_api = Stream()  # --read-api: the reads sent to the second API process
        # Where a worklist read's time goes, timed in this process beside the HTTP reads (--probe): the page's query
        # alone, on a read pool as the API's, and the audit append of its 50 rows, on the primary as the API's.
        self.probe_page = Stream()
        self.probe_audit = Stream()
        # The same append with synchronous_commit off: what the WAL flush of its own commit costs (not what the API
        # does: an audit row of a read would be lost if the database crashed within a moment of the answer).
        self.probe_audit_async = Stream()
        self.parts: Parts | None = None
        self.samples: list[Sample] = []
        self.sent_resources = 0
        self.ingested_resources = 0
        self.bundles = 0
        self.pids: dict[str, int] = {}
        self.started = 0.0

    async def run(self) -> float:
        self.started = time.monotonic()
        limits = httpx.Limits(max_connections=128, max_keepalive_connections=32)
        async with (
            httpx.AsyncClient(base_url=self.base, timeout=60, limits=limits, headers=BENCH_AUTH) as client,
            httpx.AsyncClient(base_url=self.read_base, timeout=60, limits=limits, headers=BENCH_AUTH) as reader,
        ):
            sampler = asyncio.create_task(self.sample_forever())
            second = reader if self.read_base != self.base else None
            await asyncio.gather(self.send_bundles(client), self.read_worklist(client, second), self.probe())
            elapsed = time.monotonic() - self.started
            sampler.cancel()
        return elapsed

    async def send_bundles(self, client: httpx.AsyncClient) -> None:
        args = self.args
        end = self.started + args.duration
        patients = iter_cohort(10**6, seed=args.seed, today=args.today, prefix=f"load{uuid.uuid4().hex[:6]}")
        tasks: set[asyncio.Task[None]] = set()
        while True:
            # The next Bundle is due when the resources sent so far, at the target rate, have had their time.
            due = self.started + self.sent_resources / args.rate
            if due >= end:
                break
            bundle = next(patients)
            body = dumps(bundle)
            size = len(bundle["entry"])
            self.sent_resources += size
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            task = asyncio.create_task(self.post(client, body, size, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)

    async def post(self, client: httpx.AsyncClient, body: bytes, size: int, due: float) -> None:
        sent = time.monotonic()
        self.ingest.lateness_ms.append((sent - due) * 1000)
        try:
            response = await client.post("/fhir", content=body, headers=FHIR_JSON)
            status = str(response.status_code)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        self.ingest.statuses[status] += 1
        if status == "200":
            self.ingest.latencies_ms.append((time.monotonic() - due) * 1000)
            self.ingested_resources += size
            self.bundles += 1

    async def read_worklist(self, client: httpx.AsyncClient, reader: httpx.AsyncClient | None = None) -> None:
        interval = 1 / self.args.worklist_rate
        total = int(self.args.duration * self.args.worklist_rate)
        tasks = []
        for n in range(total):
            due = self.started + n * interval
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            # The views a coordinator switches between: everything by due date, one alert type, by risk.
            params = ({}, {"code": "treatment-gap"}, {"sort": "risk"}, {"priority": "urgent"})[(n // 2) % 4]
            # With a read API, every other read goes there: both sides under the same load, side by side.
            to_reader = reader is not None and n % 2 == 1
            stream = self.worklist_read_api if to_reader else self.worklist
            target = reader if to_reader and reader is not None else client
            tasks.append(asyncio.create_task(self.get_worklist(target, params, due, stream)))
        await asyncio.gather(*tasks)

    async def get_worklist(self, client: httpx.AsyncClient, params: dict[str, str], due: float, stream: Stream) -> None:
        stream.lateness_ms.append((time.monotonic() - due) * 1000)
        try:
            response = await client.get("/api/worklist", params={**params, "limit": "50"})
            status = str(response.status_code)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        stream.statuses[status] += 1
        if status == "200":
            stream.latencies_ms.append((time.monotonic() - due) * 1000)

    async def probe(self) -> None:
        if self.parts is None:
            return
        end = self.started + self.args.duration
        n = 0
        while (due := self.started + n / self.args.probe_rate) < end:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await asyncio.to_thread(self.probe_once, n)
            n += 1

    def probe_once(self, n: int) -> None:
        assert self.parts is not None
        sort, filters = ((Sort.DUE, WorklistFilters()), (Sort.RISK, WorklistFilters()))[n % 2]
        started = time.perf_counter()
        page = self.parts.worklist.page(filters, sort, None, 50)
        self.probe_page.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.probe_page.statuses["200"] += 1
        at = datetime.now(UTC)
        records = [
            AuditRecord(at, "bench", "search", "GET /api/worklist", 200, patient_id=row.patient_id, detail="worklist")
            for row in page.rows
        ]
        started = time.perf_counter()
        self.parts.audit.record(records)
        self.probe_audit.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.probe_audit.statuses["200"] += 1
        started = time.perf_counter()
        with pooled_transaction(self.parts.core.pool) as conn:
            conn.execute("SET LOCAL synchronous_commit = off")
            append_audit(conn, records)
        self.probe_audit_async.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.probe_audit_async.statuses["200"] += 1

    async def sample_forever(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(self.args.sample)

    def sample(self) -> None:
        with psycopg.connect(self.database_url) as conn:
            pending = conn.execute("SELECT count(*) FROM patient_change WHERE changed_seq > done_seq").fetchone()
            writeback = conn.execute(
                "SELECT count(*) FROM writeback WHERE status IN ('pending', 'delivering')"
            ).fetchone()
        self.samples.append(
            Sample(
                t=round(time.monotonic() - self.started, 1),
                ingested_resources=self.ingested_resources,
                pending_changes=int(pending[0]) if pending else 0,
                redis_queue=int(self.redis.llen(self.queue)),
                writeback_pending=int(writeback[0]) if writeback else 0,
                api_rss_mb=round(tree_rss_mb(self.pids["api"]), 1),
                worker_rss_mb=round(tree_rss_mb(self.pids["worker"]), 1),
                load_average=round(os.getloadavg()[0], 2),
            )
        )


def minute_mean(samples: list[dict[str, Any]], attr: str, last: bool) -> float:
    """Mean of one measure over the first or the last minute of the load.

    The sample at 0 s is taken before the first request (the processes as started, before imports and caches warm
    up): it is shown in the table but left out of the first minute, which would otherwise measure warm-up as growth.
    """
    loaded = [s for s in samples if s["t"] > 0]
    if not loaded:
        return 0.0
    edge = loaded[-1]["t"] - 60 if last else 60
    chosen = [s for s in loaded if (s["t"] >= edge if last else s["t"] <= edge)] or loaded[-1:]
    return statistics.mean(float(s[attr]) for s in chosen)


def memory_summary(samples: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """First-minute and last-minute resident memory of the API and the worker, and the change between them."""
    memory: dict[str, dict[str, float | None]] = {}
    for name in ("api", "worker"):
        first = round(minute_mean(samples, f"{name}_rss_mb", last=False), 1)
        last = round(minute_mean(samples, f"{name}_rss_mb", last=True), 1)
        change = round((last - first) / first * 100, 1) if first else None
        memory[name] = {"first_minute_mb": first, "last_minute_mb": last, "change_pct": change}
    return memory


def drain(load: Load, timeout_s: float) -> float | None:
    """Seconds until the worker has handled every change after the load stopped (None: not within the timeout)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        with psycopg.connect(load.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM patient_change WHERE changed_seq > done_seq").fetchone()
        if row and row[0] == 0:
            return time.monotonic() - started
        time.sleep(1.0)
    return None


def report(
    load: Load, elapsed: float, drained_s: float | None, args: argparse.Namespace, machine: dict[str, Any]
) -> dict[str, Any]:
    samples = load.samples
    memory = memory_summary([asdict(s) for s in samples])
    backlog = [s.pending_changes for s in samples]
    return {
        "benchmark": "load",
        "date": datetime.now(UTC).date().isoformat(),
        "machine": machine,
        "settings": {
            "rate_resources_per_s": args.rate,
            "duration_s": args.duration,
            "worklist_rate_per_s": args.worklist_rate,
            "sample_s": args.sample,
            "seed": args.seed,
            "api": "1 uvicorn process" + (", every other worklist read on a second one" if args.read_api else ""),
            "worker": "Celery prefork, concurrency 2",
            "beat": "relay every 15 s",
            "ehr": "the tests' EHR stand-in, its own process" if args.ehr else "none (pull mode)",
            "open_alerts_seeded": args.open_alerts,
        },
        "load_average": {
            "max": max((s.load_average for s in samples), default=None),
            "mean": round(statistics.mean(s.load_average for s in samples), 2) if samples else None,
        },
        "elapsed_s": round(elapsed, 1),
        "bundles_ingested": load.bundles,
        "resources_offered": load.sent_resources,
        "resources_ingested": load.ingested_resources,
        "throughput_resources_per_s": round(load.ingested_resources / elapsed, 1),
        "ingest": load.ingest.summary(),
        "worklist": load.worklist.summary(),
        "worklist_read_api": load.worklist_read_api.summary(),
        "probe_page": load.probe_page.summary(),
        "probe_audit": load.probe_audit.summary(),
        "probe_audit_async": load.probe_audit_async.summary(),
        "backlog": {
            "max_pending_changes": max(backlog, default=0),
            "last_pending_changes": backlog[-1] if backlog else 0,
            "max_redis_queue": max((s.redis_queue for s in samples), default=0),
            "max_writeback_pending": max((s.writeback_pending for s in samples), default=0),
            "drained_after_s": None if drained_s is None else round(drained_s, 1),
        },
        "memory": memory,
        "samples": [asdict(s) for s in samples],
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"\nbench/load on {result['machine']['summary']}")
    s = result["settings"]
    print(
        f"offered {s['rate_resources_per_s']:g} resources/s for {s['duration_s']:g} s (open loop) and "
        f"{s['worklist_rate_per_s']:g} worklist reads/s; API {s['api']}, worker {s['worker']}"
    )
    print(
        f"worklist over {s.get('open_alerts_seeded', 0):,} seeded open alerts; load average over the run: "
        f"mean {result.get('load_average', {}).get('mean')}, max {result.get('load_average', {}).get('max')}"
    )
    print(
        f"\ningested {result['resources_ingested']:,} resources in {result['bundles_ingested']:,} Bundles: "
        f"{result['throughput_resources_per_s']:,.1f} resources/s"
    )
    print("\n  probe_page: the worklist page's query alone; probe_audit: its 50 audit rows (in the bench process);")
    print("  probe_audit_async: the same rows with synchronous_commit off (an experiment, not what the API does)")
    print("  stream             requests  errors  p50 ms  p99 ms  max ms  lateness p99 ms  statuses")
    for name in ("ingest", "worklist", "worklist_read_api", "probe_page", "probe_audit", "probe_audit_async"):
        r = result.get(name)
        if not r or not r["requests"]:
            continue
        print(
            f"  {name:<17} {r['requests']:>9,} {r['errors']:>7} {r['p50_ms'] or 0:>7.1f} {r['p99_ms'] or 0:>7.1f} "
            f"{r['max_ms'] or 0:>7.1f} {r['lateness_p99_ms'] or 0:>16.1f}  {r['statuses']}"
        )
    print("\n      t s  resources  pending changes  redis queue  write-back pending  API MB  worker MB")
    for sample in result["samples"]:
        print(
            f"  {sample['t']:>7.0f} {sample['ingested_resources']:>10,} {sample['pending_changes']:>16,} "
            f"{sample['redis_queue']:>12,} {sample['writeback_pending']:>19,} {sample['api_rss_mb']:>7.1f} "
            f"{sample['worker_rss_mb']:>10.1f}"
        )
    b = result["backlog"]
    print(
        f"\nbacklog: max {b['max_pending_changes']:,} pending changes, max Redis queue {b['max_redis_queue']:,}, "
        f"drained {b['drained_after_s']} s after the load stopped; write-back jobs at the end: "
        f"{b.get('writeback_jobs_at_end')}"
    )
    for name, m in result["memory"].items():
        print(
            f"memory {name}: first minute {m['first_minute_mb']:.1f} MB, last minute {m['last_minute_mb']:.1f} MB "
            f"({m['change_pct']:+.1f} %)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="ingested resources per second (default 200)")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--worklist-rate", type=float, default=3.0, help="worklist reads per second (default 3)")
    parser.add_argument(
        "--open-alerts",
        type=int,
        default=100_000,
        help="open alerts (with their patients' summaries) seeded by COPY before the load, as bench/worklist does "
        "(default 100,000; 0: only what the load itself raises)",
    )
    parser.add_argument(
        "--probe-rate",
        type=float,
        default=1.0,
        help="per second: the worklist page's query and its audit append timed in the bench process (0: none)",
    )
    parser.add_argument(
        "--read-api",
        action="store_true",
        help="send every other worklist read to a second API process (a deployment's read pods), side by side",
    )
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--today", type=date.fromisoformat, default=date(2026, 11, 1))
    parser.add_argument(
        "--ehr",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write back to the tests' EHR stand-in in its own process (default); --no-ehr: pull mode",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "load.json", help="the JSON result file")
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    logs = Path(tempfile.mkdtemp(prefix="refracture-load-"))
    with private_database() as (services, database_url):
        if args.open_alerts:
            # The worklist is read at hospital scale: its indexes and pages over 100,000 open alerts, not a few.
            seed_alerts(database_url, args.open_alerts, random.Random(5))
        queue = f"refracture-bench-{run}"
        port = free_port()
        # Beat keeps its schedule file in the temp folder: a private one, so it never shares another beat's.
        extra = {"REFRACTURE_CELERY_QUEUE": queue, "TMPDIR": str(logs)}
        processes: dict[str, subprocess.Popen[bytes]] = {}
        if args.ehr:
            # The EHR stand-in of the tests, in its own process as a real EHR would be: write-back runs as deployed.
            standin = subprocess.Popen(
                [sys.executable, "-m", "tests.ehr_standin"],
                stdout=subprocess.PIPE,
                stderr=(logs / "ehr.log").open("wb"),
            )
            assert standin.stdout is not None
            extra["REFRACTURE_EHR_BASE_URL"] = standin.stdout.readline().decode().strip()
            processes["ehr"] = standin
        env = api_env(database_url, services.redis_url, **extra)
        processes |= {
            "api": start(["api", "--port", str(port)], env, logs / "api.log"),
            "worker": start(["worker", "--concurrency", "2"], env, logs / "worker.log"),
            "beat": start(["beat"], env, logs / "beat.log"),
        }
        base = f"http://127.0.0.1:{port}"
        read_base = base
        if args.read_api:
            # An API process for the coordinators' reads only, as a deployment can route /api/worklist and /worklist
            # to pods of their own: its Python work never waits for ingest's validation threads and their GIL.
            read_port = free_port()
            processes["read-api"] = start(["api", "--port", str(read_port)], env, logs / "read-api.log")
            read_base = f"http://127.0.0.1:{read_port}"
        try:
            wait_until_up(base)
            wait_until_up(read_base)
            load = Load(args, base, database_url, services.redis_url, queue)
            load.read_base = read_base
            load.pids = {name: p.pid for name, p in processes.items()}
            if args.probe_rate > 0:
                load.parts = build_parts(
                    Settings(database_url=database_url, redis_url=services.redis_url, celery_queue=queue)
                )
            print(f"bench/load: {args.rate:g} resources/s for {args.duration:g} s; process logs in {logs}")
            elapsed = asyncio.run(load.run())
            load.sample()
            drained = drain(load, timeout_s=300)
            with psycopg.connect(database_url) as conn:
                jobs: dict[str, int] = dict(
                    conn.execute("SELECT status, count(*) FROM writeback GROUP BY 1").fetchall()
                )
            if load.parts is not None:
                load.parts.close()
            result = report(load, elapsed, drained, args, machine_info(database_url, services.redis_url))
            result["backlog"]["writeback_jobs_at_end"] = {str(k): int(v) for k, v in jobs.items()}
        finally:
            for process in processes.values():
                process.terminate()
            for process in processes.values():
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            redis.Redis.from_url(services.redis_url).delete(queue)
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.out}")
    held = (
        result["throughput_resources_per_s"] >= 0.98 * args.rate
        and result["ingest"]["errors"] == 0
        and result["worklist"]["errors"] == 0
        and result["worklist_read_api"]["errors"] == 0
    )
    print(f"target {args.rate:g} resources/s with zero errors: {'held' if held else 'NOT held'}")
    return 0 if held else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
