"""The machine a benchmark ran on: CPU, cores, memory, Python, PostgreSQL and Redis, for the figures' context."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import psycopg
import redis

__all__ = ["machine_info"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def machine_info(database_url: str | None = None, redis_url: str | None = None) -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python, and the PostgreSQL and Redis servers' versions when given their URLs."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgresql": None,
        "redis": None,
    }
    if database_url:
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            info["postgresql"] = str(row[0]).split()[0] if row else None
    if redis_url:
        info["redis"] = str(redis.Redis.from_url(redis_url).info("server").get("redis_version"))
    parts = [f"{info['cores']} CPUs ({info['cpu']})", f"{info['memory_gb']} GB RAM", f"Python {info['python']}"]
    if info["postgresql"]:
        parts.append(f"PostgreSQL {info['postgresql']}")
    if info["redis"]:
        parts.append(f"Redis {info['redis']}")
    info["summary"] = ", ".join(parts)
    return info
