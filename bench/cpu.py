"""CPU time of this process and of a database's PostgreSQL backends, and the load average: on a shared machine the
CPU a run used says more about its cost than the wall clock, which other work stretches."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

__all__ = ["backend_pids", "cpu_seconds", "load_average", "print_load_change"]


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) these processes have used so far (gone ones count nothing)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def backend_pids(database_url: str) -> list[int]:
    """The PostgreSQL backends connected to this database now (but the one asking)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(r[0]) for r in rows]


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as uptime prints them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def print_load_change(before: tuple[float, float, float]) -> None:
    """The 1 minute load average before a run (``os.getloadavg()`` then) and now: how busy the machine was."""
    after = os.getloadavg()
    print(f"load average (1 min) before / after: {before[0]:.1f} / {after[0]:.1f} on {os.cpu_count()} CPUs")
