"""A doorbell that only records: for tests that need no worker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["RecordingQueue"]


class RecordingQueue:
    """A TaskQueue that keeps what it was asked to send (``fail``: the broker is down)."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, list[Any]]] = []
        self.fail = fail

    def send(self, task_name: str, args: Sequence[Any]) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append((task_name, list(args)))
