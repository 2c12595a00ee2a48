"""bench/pg_waits: what a running API's database backends wait on, sampled from pg_stat_activity.

    .venv/bin/python -m bench.pg_waits API_PID [--seconds 60] [--every 0.01]   (while bench/load runs)

Finds the database the API process is connected to (its sockets, from `ss -tnp`), then samples the active backends of
that database and counts them by what they run (an audit insert, a COMMIT, the worklist's SELECT, anything else) and
by their wait event (CPU when none). Printed per 100 samples: how many backends were found in each state, i.e. where
the database time of the run goes (the profile in docs/performance.md, bench/load).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import time

import psycopg

from bench.database import DEFAULT_DATABASE_URL


def _kind(query: str) -> str:
    if "audit_event" in query:
        return "audit insert"
    if query.lstrip().upper().startswith("COMMIT"):
        return "commit"
    if "FROM alert a" in query:
        return "worklist select"
    return "other: " + " ".join(query.split())[:30]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("api_pid", type=int)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=0.01)
    args = parser.parse_args()
    sockets = subprocess.run(["ss", "-tnp"], capture_output=True, text=True, check=True).stdout
    ports = [
        int(found.group(1))
        for line in sockets.splitlines()
        if f"pid={args.api_pid}," in line
        for found in [re.search(r":(\d+)\s+\S+:5432\b", line)]
        if found
    ]
    with psycopg.connect(os.environ.get("REFRACTURE_DATABASE_URL", DEFAULT_DATABASE_URL), autocommit=True) as conn:
        found_db = "SELECT datname FROM pg_stat_activity WHERE client_port = ANY(%s) LIMIT 1"
        row = conn.execute(found_db, (ports,)).fetchone()
        if row is None:
            raise SystemExit("the API process has no database connection")
        database = str(row[0])
        counts: collections.Counter[tuple[str, str]] = collections.Counter()
        samples = 0
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            for query, wait_type, wait_event in conn.execute(
                "SELECT query, wait_event_type, wait_event FROM pg_stat_activity WHERE datname = %s "
                "AND state = 'active' AND pid <> pg_backend_pid()",
                (database,),
            ):
                counts[(_kind(query), f"{wait_type}/{wait_event}" if wait_type else "CPU")] += 1
            samples += 1
            time.sleep(args.every)
    print(f"bench/pg_waits: {samples:,} samples of {database} over {args.seconds:g} s; backends per 100 samples")
    for (kind, wait), n in counts.most_common(20):
        print(f"  {n / samples * 100:7.1f}  {kind:<40} {wait}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
