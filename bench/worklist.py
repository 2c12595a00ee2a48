"""bench/worklist: the care coordinators' worklist with 100,000 open alerts, through the real HTTP server.

    .venv/bin/python -m bench.worklist [--alerts 100000] [--requests 300]   (from the repository root)

Seeds a private database by COPY with synthetic patients (summaries) and 100,000 open alerts (plus closed ones, which
the worklist's partial indexes skip), starts `refracture api` in its own process, and times requests with httpx:
first pages unfiltered and filtered, deep pages (a cursor 50,000 rows in), each sort order, the free-text search,
the dashboard counts and the HTML page. For each it prints p50/p99 over the HTTP stack and, side by side, the
database part alone (Worklist.page in this process). Target: p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import psycopg

from bench.database import BENCH_AUTH, api_env, private_database
from bench.ingest import machine
from service.devtools.local_services import free_port
from service.domain.alert_types import ALERT_TYPES, AlertType
from service.platform.config import Settings
from service.usecases.ports.worklist import Sort, WorklistFilters
from service.usecases.worklist import encode_cursor
from tests.support.parts import build_parts

TODAY = date(2026, 11, 2)
_FAMILY = ("Testperson", "Synthetic", "Example", "Sample", "Fictional", "Placeholder", "Dummy", "Mock")
_GIVEN = ("Ada", "Berit", "Clara", "Dora", "Edda", "Arne", "Bruno", "Carl", "Dirk", "Emil")
_CODES = list(AlertType)
_CODE_WEIGHTS = [6, 8, 4, 25, 40, 17]
_ACTIVE = (("open", 80), ("acknowledged", 8), ("assigned", 8), ("snoozed", 4))


def seed(database_url: str, alerts: int, rng: random.Random) -> None:
    """Patients with one or two open alerts each, and half as many closed alerts again."""
    patients = int(alerts / 1.4)
    now = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY patient_summary (patient_id, name, mrn, birth_date, sex, search, risk_band, risk_probability, "
            "assessed_at, last_dose_date, last_dose_drug, index_date, updated_at) FROM STDIN"
        ) as copy:
            for n in range(patients):
                name = f"{rng.choice(_FAMILY)}{n % 1000:03d}, {rng.choice(_GIVEN)}"
                mrn = f"B{n:07d}"
                probability = min(0.9, max(0.01, rng.lognormvariate(-2.0, 0.6)))
                band = "low" if probability < 0.10 else "high" if probability >= 0.20 else "moderate"
                dosed = rng.random() < 0.5
                copy.write_row(
                    (
                        f"bench-{n:07d}",
                        name,
                        mrn,
                        TODAY - timedelta(days=rng.randint(55 * 365, 95 * 365)),
                        rng.choice(("female", "female", "female", "male")),
                        f"{name} {mrn}".lower(),
                        band,
                        probability,
                        now,
                        TODAY - timedelta(days=rng.randint(30, 400)) if dosed else None,
                        "denosumab-60mg" if dosed else None,
                        TODAY - timedelta(days=rng.randint(20, 900)),
                        now,
                    )
                )
        with cur.copy(
            "COPY alert (id, patient_id, code, status, priority, due_date, episode, evidence, detail, assignee, "
            "snoozed_until, dismiss_reason, opened_at, updated_at, closed_at) FROM STDIN"
        ) as copy:
            statuses, weights = zip(*_ACTIVE, strict=True)
            for n in range(patients):
                first = rng.choices(range(len(_CODES)), _CODE_WEIGHTS)[0]
                second = rng.choice([i for i in range(len(_CODES)) if i != first])
                active = [first, second][: 2 if n < alerts - patients else 1]
                closed = [rng.randrange(len(_CODES))] if rng.random() < 0.7 else []  # resolved or dismissed before
                for index, is_closed in [(i, False) for i in active] + [(i, True) for i in closed]:
                    code = _CODES[index]
                    status = rng.choice(("resolved", "dismissed")) if is_closed else rng.choices(statuses, weights)[0]
                    copy.write_row(
                        (
                            uuid.uuid4(),
                            f"bench-{n:07d}",
                            code.value,
                            status,
                            ALERT_TYPES[code].priority,
                            TODAY + timedelta(days=rng.randint(-400, 200)),
                            f"episode-{n}",
                            "[]",
                            f"{ALERT_TYPES[code].title} (synthetic)",
                            rng.choice(("nurse.a", "nurse.b", "dr.c")) if status == "assigned" else None,
                            TODAY + timedelta(days=rng.randint(1, 30)) if status == "snoozed" else None,
                            "synthetic" if status == "dismissed" else None,
                            now,
                            now,
                            now if is_closed else None,
                        )
                    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def time_calls(call: Callable[[], Any], n: int) -> list[float]:
    for _ in range(min(20, n)):  # warm: plans cached, pool connections open
        call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with private_database() as (services, database_url):
        server: subprocess.Popen[bytes] | None = None
        try:
            started = time.perf_counter()
            seed(database_url, args.alerts, random.Random(5))
            seeded_s = time.perf_counter() - started
            with psycopg.connect(database_url) as conn:
                open_alerts = conn.execute(
                    "SELECT count(*) FROM alert WHERE status IN ('open', 'acknowledged', 'assigned', 'snoozed')"
                ).fetchone()
                closed_alerts = conn.execute("SELECT count(*) FROM alert WHERE closed_at IS NOT NULL").fetchone()
                # A cursor halfway down the list, as if someone had paged 1,000 times.
                deep = conn.execute(
                    "SELECT due_date, id::text FROM alert WHERE status IN ('open', 'acknowledged', 'assigned', "
                    "'snoozed') ORDER BY due_date, id OFFSET %s LIMIT 1",
                    ((open_alerts[0] if open_alerts else 0) // 2,),
                ).fetchone()
                deep_code = conn.execute(
                    "SELECT due_date, id::text FROM alert WHERE status IN ('open', 'acknowledged', 'assigned', "
                    "'snoozed') AND code = 'treatment-gap' ORDER BY due_date, id OFFSET %s LIMIT 1",
                    (args.alerts // 10,),
                ).fetchone()
            assert deep is not None
            assert deep_code is not None
            deep_cursor = encode_cursor(Sort.DUE, deep[1])
            deep_code_cursor = encode_cursor(Sort.DUE, deep_code[1])

            port = free_port()
            env = api_env(database_url, services.redis_url)
            server = subprocess.Popen(
                [sys.executable, "-m", "service", "api", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the API did not start")
                time.sleep(0.2)

            parts = build_parts(Settings(database_url=database_url, redis_url=services.redis_url))
            scenarios: list[tuple[str, str, dict[str, Any], Callable[[], Any] | None]] = [
                (
                    "first page, no filter (due)",
                    "/api/worklist",
                    {},
                    lambda: parts.worklist.page(WorklistFilters(), Sort.DUE, None, 50),
                ),
                (
                    "first page, code=treatment-gap",
                    "/api/worklist",
                    {"code": "treatment-gap"},
                    lambda: parts.worklist.page(WorklistFilters(code="treatment-gap"), Sort.DUE, None, 50),
                ),
                (
                    "first page, urgent + high risk",
                    "/api/worklist",
                    {"priority": "urgent", "risk_band": "high"},
                    lambda: parts.worklist.page(
                        WorklistFilters(priority="urgent", risk_band="high"), Sort.DUE, None, 50
                    ),
                ),
                (
                    "first page, assignee=nurse.b",
                    "/api/worklist",
                    {"assignee": "nurse.b"},
                    lambda: parts.worklist.page(WorklistFilters(assignee="nurse.b"), Sort.DUE, None, 50),
                ),
                (
                    "first page, text 'sample042'",
                    "/api/worklist",
                    {"q": "sample042"},
                    lambda: parts.worklist.page(WorklistFilters(text="sample042"), Sort.DUE, None, 50),
                ),
                (
                    "first page, text 'b0043'",
                    "/api/worklist",
                    {"q": "b0043"},
                    lambda: parts.worklist.page(WorklistFilters(text="b0043"), Sort.DUE, None, 50),
                ),
                (
                    "first page, sort=priority",
                    "/api/worklist",
                    {"sort": "priority"},
                    lambda: parts.worklist.page(WorklistFilters(), Sort.PRIORITY, None, 50),
                ),
                (
                    "first page, sort=risk",
                    "/api/worklist",
                    {"sort": "risk"},
                    lambda: parts.worklist.page(WorklistFilters(), Sort.RISK, None, 50),
                ),
                (
                    "first page, sort=name",
                    "/api/worklist",
                    {"sort": "name"},
                    lambda: parts.worklist.page(WorklistFilters(), Sort.NAME, None, 50),
                ),
                (
                    "deep page (row 50,000), no filter",
                    "/api/worklist",
                    {"cursor": deep_cursor},
                    lambda: parts.worklist.page(WorklistFilters(), Sort.DUE, deep_cursor, 50),
                ),
                (
                    f"deep page (row {args.alerts // 10:,}), code filter",
                    "/api/worklist",
                    {"code": "treatment-gap", "cursor": deep_code_cursor},
                    lambda: parts.worklist.page(WorklistFilters(code="treatment-gap"), Sort.DUE, deep_code_cursor, 50),
                ),
                ("dashboard counts", "/api/worklist/counts", {}, parts.worklist.counts),
                ("HTML page, code filter", "/worklist", {"code": "denosumab-overdue"}, None),
            ]
            print(f"bench/worklist on {machine()}")
            print(
                f"{open_alerts[0] if open_alerts else 0:,} open alerts and "
                f"{closed_alerts[0] if closed_alerts else 0:,} closed ones seeded by COPY in {seeded_s:.1f} s; "
                f"{args.requests} requests per line, one at a time, "
                "50 rows a page\n"
            )
            print(f"{'':40} {'HTTP p50':>9} {'HTTP p99':>9} {'DB p50':>8} {'DB p99':>8}")
            worst = 0.0
            with httpx.Client(base_url=base, timeout=30, headers=BENCH_AUTH) as client:
                for label, path, params, direct in scenarios:

                    def call(path: str = path, params: dict[str, Any] = params) -> None:
                        response = client.get(path, params=params)
                        assert response.status_code == 200, response.text[:300]

                    p50, p99 = percentiles(time_calls(call, args.requests))
                    worst = max(worst, p99)
                    db = f"{'':>8} {'':>8}"
                    if direct is not None:
                        d50, d99 = percentiles(time_calls(direct, args.requests))
                        db = f"{d50:8.1f} {d99:8.1f}"
                    print(f"{label:40} {p50:9.1f} {p99:9.1f} {db}   ms")
                started = time.perf_counter()
                exported = client.get("/api/worklist.csv", params={"priority": "urgent"})
                export_s = time.perf_counter() - started
                rows = exported.text.count("\n") - 1
            print(f"\nworst p99 {worst:.1f} ms (target < 50 ms)")
            print(
                f"CSV export of every urgent alert: {rows:,} rows in {export_s:.2f} s = {rows / export_s:,.0f} rows/s"
            )
            parts.close()
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
