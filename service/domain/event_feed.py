"""Event numbers of a topic-based Subscription: which notifications are new, and when events went missing.

The backport IG leaves recovery to the client ("Discovering the error state and recovering from it are
responsibilities of the Client", errors.md): every event carries its number, ``eventsSinceSubscriptionStart`` says
how many there have been, and a number never seen means a lost notification. refracture does not wait for it: a gap
asks for a catch-up poll by ``_lastUpdated``, which reads the current state of everything changed since the last
poll, and the feed counts the missing events as covered by it. A missing notification that arrives late is then
ignored — the poll reads the resource's current version, so an old payload must not overwrite it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["FeedPosition", "FeedStep", "advance"]


@dataclass(frozen=True, slots=True)
class FeedPosition:
    """Where a feed stands: every event up to ``contiguous`` arrived (or is covered by a catch-up poll);
    ``highest`` is the largest number the EHR has told of."""

    contiguous: int = 0
    highest: int = 0


@dataclass(frozen=True, slots=True)
class FeedStep:
    """The outcome of one notification."""

    position: FeedPosition
    new_events: tuple[int, ...]  # numbers seen for the first time: their work is to be done
    pending: frozenset[int]  # numbers above ``contiguous`` that arrived (kept until the feed passes them)
    gap: bool  # events are missing: catch up by polling
    restarted: bool = False


def advance(
    position: FeedPosition,
    seen_above: Iterable[int],
    numbers: Iterable[int],
    events_since_start: int | None,
    handshake: bool = False,
) -> FeedStep:
    """Take one notification's event numbers into the feed.

    Args:
        position: the feed before the notification.
        seen_above: numbers above ``position.contiguous`` that arrived earlier.
        numbers: the notification's event numbers.
        events_since_start: its ``eventsSinceSubscriptionStart`` (None when it gives none).
        handshake: a handshake starts (or restarts) the count at ``events_since_start``.

    Returns:
        The new position, the new event numbers and whether some are missing.
    """
    if handshake:
        start = events_since_start or 0
        # A handshake on a feed that had heard of more events is a restarted Subscription: what happened between
        # its last event and the restart is unknown, so catch up.
        restarted = position.highest > 0
        return FeedStep(FeedPosition(start, start), (), frozenset(), restarted or start > position.highest, restarted)
    earlier = frozenset(seen_above)
    given = sorted(set(numbers))
    new = tuple(n for n in given if n > position.contiguous and n not in earlier)
    seen = earlier | set(new)
    highest = max([position.highest, events_since_start or 0, *given])
    contiguous = position.contiguous
    while contiguous + 1 in seen:
        contiguous += 1
    gap = highest > contiguous
    if gap:
        contiguous = highest  # covered by the catch-up poll the gap asks for
    return FeedStep(FeedPosition(contiguous, highest), new, frozenset(n for n in seen if n > contiguous), gap)
