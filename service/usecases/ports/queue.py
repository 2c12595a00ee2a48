"""The doorbell: the task queue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class TaskQueue(Protocol):
    """The doorbell: sends tasks by name; may fail when the broker is down."""

    def send(self, task_name: str, args: Sequence[Any]) -> None:
        """Publish one task."""
