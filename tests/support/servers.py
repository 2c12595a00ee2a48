"""An ASGI app served for real (uvicorn on a loopback port, in a background thread): the stand-ins of the EHR, the
identity provider and the SMART launcher, and refracture itself for the browser tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn

from service.devtools.local_services import free_port

__all__ = ["HandlerServer", "QuietHandler", "ThreadedServer", "serving"]


class ThreadedServer:
    """uvicorn serving ``app`` on 127.0.0.1 and a free port (or ``port``) in a daemon thread."""

    def __init__(self, app: Any, port: int | None = None, **config: Any) -> None:
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        options = {"log_level": "error", "access_log": False} | config
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, **options))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self, timeout_s: float = 30.0) -> ThreadedServer:
        """Start serving; returns once it listens."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the server on port {self.port} did not start")
            time.sleep(0.05)
        return self

    def stop(self, timeout_s: float = 20.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=timeout_s)


@contextmanager
def serving(app: Any, **config: Any) -> Iterator[str]:
    """``app`` served while the block runs; yields its base URL."""
    server = ThreadedServer(app, **config).start()
    try:
        yield server.url
    finally:
        server.stop()


class HandlerServer:
    """A stdlib request handler class served on 127.0.0.1 and a free port, in a daemon thread (for small sinks)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that keeps the test output clean (no access log on stderr)."""

    def log_message(self, format: str, *args: Any) -> None:
        del format, args
