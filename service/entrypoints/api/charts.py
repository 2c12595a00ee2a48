"""Server-rendered SVG: the risk factors' contributions as a horizontal bar chart around a zero line.

Bars are log-odds (each factor's effect against a patient at the population value), labelled as odds ratios so a
coordinator reads "x1.8" rather than "0.59". Rendered here so the page needs no JavaScript to show it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

__all__ = ["Bar", "contribution_chart"]

_ROW: Final = 26
_CHAR_WIDTH: Final = 7.2  # a generous average at 13 px, so labels fit without measuring text
_MAX_LABEL: Final = 60
_PLOT_WIDTH: Final = 360
_VALUE_WIDTH: Final = 70
_TOP: Final = 28
_RAISES: Final = "#b3261e"  # dark enough for 4.5:1 text contrast on white
_LOWERS: Final = "#1b5e96"


@dataclass(frozen=True, slots=True)
class Bar:
    """One factor's contribution."""

    label: str
    log_odds: float


def contribution_chart(bars: Sequence[Bar], title: str = "What moves this patient's risk") -> str:
    """An accessible SVG chart (role img, a title and a description that states every value), largest effect first.

    An empty sequence gives a short chart that says there is nothing to show.
    """
    ordered = sorted(bars, key=lambda b: -abs(b.log_odds))
    labels = [_shorten(b.label) for b in ordered]
    label_width = round(max([len(label) for label in labels] + [12]) * _CHAR_WIDTH) + 12
    width = label_width + _PLOT_WIDTH + _VALUE_WIDTH
    height = _TOP + max(1, len(ordered)) * _ROW + 24
    limit = max([abs(b.log_odds) for b in ordered] + [math.log(2)])
    scale = (_PLOT_WIDTH / 2 - 4) / limit
    zero = label_width + _PLOT_WIDTH / 2
    description = "; ".join(f"{b.label}: {_ratio(b.log_odds)}" for b in ordered) or "no known factor moves the risk"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" aria-labelledby="chart-title chart-desc">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">Odds ratio of each factor against the population value: {escape(description)}</desc>',
        f'<text x="{zero - 6:.1f}" y="16" text-anchor="end" font-size="12" fill="{_LOWERS}">lowers risk</text>',
        f'<text x="{zero + 6:.1f}" y="16" font-size="12" fill="{_RAISES}">raises risk</text>',
    ]
    for i, (bar, label) in enumerate(zip(ordered, labels, strict=True)):
        y = _TOP + i * _ROW
        length = abs(bar.log_odds) * scale
        x = zero if bar.log_odds >= 0 else zero - length
        colour = _RAISES if bar.log_odds >= 0 else _LOWERS
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end" font-size="13">{escape(label)}</text>'
        )
        parts.append(
            f'<rect x="{x:.1f}" y="{y + 4}" width="{max(length, 1.0):.1f}" height="{_ROW - 8}" fill="{colour}" />'
        )
        parts.append(
            f'<text x="{label_width + _PLOT_WIDTH + 6}" y="{y + 16}" font-size="13">{_ratio(bar.log_odds)}</text>'
        )
    if not ordered:
        parts.append(
            f'<text x="{zero:.1f}" y="{_TOP + 16}" text-anchor="middle" font-size="13">'
            "no known factor moves the risk</text>"
        )
    bottom = _TOP + max(1, len(ordered)) * _ROW
    parts.append(f'<line x1="{zero:.1f}" y1="{_TOP - 4}" x2="{zero:.1f}" y2="{bottom}" stroke="#333" />')
    parts.append(
        f'<text x="{zero:.1f}" y="{bottom + 16}" text-anchor="middle" font-size="11">x1 (population value)</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


def _shorten(label: str) -> str:
    # The description keeps the full label for screen readers; the picture keeps its width.
    return label if len(label) <= _MAX_LABEL else label[: _MAX_LABEL - 1] + "…"


def _ratio(log_odds: float) -> str:
    return f"x{math.exp(log_odds):.2f}"
