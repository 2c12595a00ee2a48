"""The vertebral levels in spinal order."""

from __future__ import annotations

from typing import Final

LEVELS: Final[tuple[str, ...]] = (
    *(f"C{i}" for i in range(1, 8)),
    *(f"T{i}" for i in range(1, 13)),
    *(f"L{i}" for i in range(1, 6)),
    "S1",
)
POSITION: Final = {level: i for i, level in enumerate(LEVELS)}


def adjacent_levels(levels: tuple[str, ...] | list[str]) -> set[str]:
    """The levels next to these ones (above and below), not counting the levels themselves."""
    out: set[str] = set()
    for level in levels:
        position = POSITION.get(level)
        if position is None:
            continue
        out |= {LEVELS[p] for p in (position - 1, position + 1) if 0 <= p < len(LEVELS)}
    return out - set(levels)
