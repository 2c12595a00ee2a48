"""Waiting for what another process or thread does, without fixed sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["wait_for"]


def wait_for(predicate: Callable[[], object], timeout_s: float = 30.0, interval_s: float = 0.2) -> bool:
    """Poll until the predicate holds or the time is up; whether it held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
