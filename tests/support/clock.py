"""The one test clock: the use cases take time as a callable, so a test hands them this and moves ``now`` by hand."""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["ManualClock"]

T = TypeVar("T")  # a datetime for the use cases, a float (epoch seconds) for token checks


class ManualClock(Generic[T]):
    """Call it for the time; set or advance ``now`` to move it."""

    def __init__(self, now: T) -> None:
        self.now = now

    def __call__(self) -> T:
        return self.now
