"""A doorbell for the group-commit writer's tests: it records each ring and, while held, keeps the writer thread in
its first ring, so the writes submitted meanwhile queue up and form the next group."""

from __future__ import annotations

import threading
from collections.abc import Sequence

__all__ = ["HeldDoorbell"]


class HeldDoorbell:
    """Pass it as GroupCommit's ``ring``; ``entered`` is set at the first ring, which waits for ``release``."""

    def __init__(self) -> None:
        self.rings: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, patients: Sequence[str]) -> None:
        self.rings.append(list(patients))
        self.entered.set()
        assert self.release.wait(10)
