"""What the audit trail's hash chain costs an append (issue 16): one-row audit transactions as the API writes them,
from one connection and from several at once, with the chain trigger on and off.

    .venv/bin/python -m bench.audit_append [--rows 1000] [--connections 8]   (from the repository root)

The chain serialises appends on one row lock held until each transaction commits (docs/security.md, "Audit
trail"), so the figure to watch is appends per second from many connections.
"""

from __future__ import annotations

import argparse
import threading
import time

import psycopg

from bench.database import private_database

_INSERT = (
    "INSERT INTO audit_event (at, actor, action, what, outcome, roles, patient_id, request_id, source_ip) "
    "VALUES (now(), 'coordinator.one', 'read', 'GET /fhir/{resource_type}/{resource_id}', 200, "
    "'{care-coordinator}', 'p1', 'b7c1d7e2-0000-4000-8000-000000000000', '10.0.0.1')"
)


def _run(database_url: str, rows: int, connections: int) -> float:
    """Appends per second: ``rows`` one-row transactions on each of ``connections`` connections."""

    def append() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for _ in range(rows):
                conn.execute(_INSERT)

    threads = [threading.Thread(target=append) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return rows * connections / (time.perf_counter() - started)


def main() -> None:
    """Print appends per second with and without the chain."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1000, help="transactions per connection")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    with private_database() as (_, database_url):
        for chained in (True, False):
            if not chained:
                with psycopg.connect(database_url, autocommit=True) as conn:
                    conn.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_chain")
                    conn.execute(
                        "ALTER TABLE audit_event ALTER seq DROP NOT NULL, ALTER prev_hash DROP NOT NULL, "
                        "ALTER hash DROP NOT NULL"
                    )
            label = "chained" if chained else "no chain"
            one = _run(database_url, args.rows, 1)
            many = _run(database_url, args.rows // 4 or 1, args.connections)
            print(
                f"{label:>8}: 1 connection {1e3 / one:.2f} ms per append ({one:.0f}/s); "
                f"{args.connections} connections {many:.0f} appends/s"
            )


if __name__ == "__main__":
    main()
