"""refracture's processes as the deployment runs them — each `python -m service <command>` its own OS process — for
the tests and the benchmarks: start, wait until ready, read the log, stop (or SIGKILL the whole group)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from service.devtools.local_services import free_port
from tests.support.paths import ROOT

__all__ = ["ApiProcess", "ServiceProcess", "WorkerProcess", "wait_healthy"]


def wait_healthy(base_url: str, timeout_s: float = 60.0, alive: Callable[[], bool] = lambda: True) -> bool:
    """Whether ``{base_url}/healthz`` answered 200 within the time (and while ``alive()``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


class ServiceProcess:
    """``python -m service <args>``; its output (stdout and stderr) goes to ``log_path``, or nowhere."""

    name = "process"

    def __init__(
        self, args: list[str], env: dict[str, str], log_path: Path | None = None, *, own_group: bool = False
    ) -> None:
        self.log_path = log_path
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb") if log_path is not None else None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", *args],
            env=env,
            stdout=self._log if self._log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=own_group,  # a group of its own: kill() reaches its children too
        )

    def log_tail(self, chars: int = 3000) -> str:
        """The end of its log (what to show when it did not start)."""
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path is not None else ""

    def running(self) -> bool:
        return self.process.poll() is None

    def not_ready(self) -> RuntimeError:
        return RuntimeError(f"the {self.name} did not start:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM, then SIGKILL if it does not stop in time."""
        if self.running():
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL its whole process group: no shutdown handler, no acknowledgement, no rollback sent."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None and not self._log.closed:
            self._log.close()


class WorkerProcess(ServiceProcess):
    """A real Celery worker (``refracture worker --pool solo --concurrency 1``)."""

    name = "worker"

    def __init__(self, env: dict[str, str], log_path: Path, *, own_group: bool = False) -> None:
        super().__init__(["worker", "--pool", "solo", "--concurrency", "1"], env, log_path, own_group=own_group)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        assert self.log_path is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.running():
            if b" ready." in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        raise self.not_ready()


class ApiProcess(ServiceProcess):
    """``refracture api`` on a free loopback port."""

    name = "API"

    def __init__(self, env: dict[str, str], log_path: Path | None = None, extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        super().__init__(["api", "--host", "127.0.0.1", "--port", str(self.port), *extra], env, log_path)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        if not wait_healthy(self.base_url, timeout_s, self.running):
            raise self.not_ready()
