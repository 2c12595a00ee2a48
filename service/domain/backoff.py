"""When to try a failed write-back again: exponential backoff with full jitter, Retry-After honoured, and when to
give up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff parameters, in seconds."""

    base_s: float = 2.0
    max_s: float = 300.0
    give_up_after_s: float = 86400.0

    def delay(self, attempts: int, retry_after: float | None, random: Callable[[], float]) -> float:
        """Seconds until the next try after ``attempts`` failures.

        Full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter") spreads retries of many jobs apart;
        a Retry-After from the EHR is a floor, never shortened.
        """
        ceiling = min(self.max_s, self.base_s * 2 ** min(attempts, 30))
        jittered = ceiling * random()
        return float(max(jittered, retry_after or 0.0, 0.5))

    def exhausted(self, failing_for_s: float) -> bool:
        """Whether a job that has been failing this long should stop being retried."""
        return failing_for_s >= self.give_up_after_s
