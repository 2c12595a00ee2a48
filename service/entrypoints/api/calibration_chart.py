"""Server-rendered SVG: a calibration plot, observed against expected risk by tenth of predicted risk, with the
diagonal of perfect calibration (the same approach as charts.py: no JavaScript, every value in the description)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

__all__ = ["CalibrationSeries", "calibration_chart"]

_SIZE: Final = 320
_LEFT: Final = 56
_TOP: Final = 16
_BOTTOM: Final = 48
_LEGEND: Final = 170
_COLOURS: Final = ("#8a5a00", "#1b5e96")  # current, recalibrated: 4.5:1 on white, apart in hue and marker
_MARKERS: Final = ("square", "circle")


@dataclass(frozen=True, slots=True)
class CalibrationSeries:
    """One model's points: (mean predicted, observed) per group."""

    name: str
    points: tuple[tuple[float, float], ...]


def _axis_max(series: Sequence[CalibrationSeries]) -> float:
    top = max([max(x, y) for s in series for x, y in s.points] + [0.1])
    # Round up to the next tenth (or the whole range) so the diagonal fills the plot.
    return min(1.0, (int(top * 10) + 1) / 10)


def calibration_chart(series: Sequence[CalibrationSeries], title: str = "Observed against expected risk") -> str:
    """An accessible SVG (role img, title, and a description stating every point); empty series say so."""
    limit = _axis_max(series)
    scale = _SIZE / limit
    width = _LEFT + _SIZE + 16 + _LEGEND
    height = _TOP + _SIZE + _BOTTOM

    def px(value: float) -> float:
        return _LEFT + value * scale

    def py(value: float) -> float:
        return _TOP + _SIZE - value * scale

    described = "; ".join(
        f"{s.name}: " + ", ".join(f"expected {x:.0%} observed {y:.0%}" for x, y in s.points) for s in series
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" aria-labelledby="cal-title cal-desc">',
        f'<title id="cal-title">{escape(title)}</title>',
        f'<desc id="cal-desc">By tenth of predicted risk, on held-out patients. {escape(described or "no data")}'
        "</desc>",
        f'<rect x="{_LEFT}" y="{_TOP}" width="{_SIZE}" height="{_SIZE}" fill="none" stroke="#999" />',
        f'<line x1="{px(0):.1f}" y1="{py(0):.1f}" x2="{px(limit):.1f}" y2="{py(limit):.1f}" stroke="#555" '
        'stroke-dasharray="4 4" />',
    ]
    for i in range(0, 11):
        tick = limit * i / 10
        parts.append(
            f'<text x="{px(tick):.1f}" y="{_TOP + _SIZE + 16}" text-anchor="middle" font-size="11">{tick:.0%}</text>'
        )
        parts.append(f'<text x="{_LEFT - 6}" y="{py(tick) + 4:.1f}" text-anchor="end" font-size="11">{tick:.0%}</text>')
    parts.append(
        f'<text x="{_LEFT + _SIZE / 2:.1f}" y="{height - 8}" text-anchor="middle" font-size="12">'
        "expected (mean predicted)</text>"
    )
    parts.append(
        f'<text x="14" y="{_TOP + _SIZE / 2:.1f}" text-anchor="middle" font-size="12" '
        f'transform="rotate(-90 14 {_TOP + _SIZE / 2:.1f})">observed</text>'
    )
    for n, s in enumerate(series):
        colour = _COLOURS[n % len(_COLOURS)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        if path:
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5" />')
        for x, y in s.points:
            if _MARKERS[n % len(_MARKERS)] == "square":
                parts.append(f'<rect x="{px(x) - 4:.1f}" y="{py(y) - 4:.1f}" width="8" height="8" fill="{colour}" />')
            else:
                parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4.5" fill="{colour}" />')
        legend_y = _TOP + 14 + n * 20
        parts.append(
            f'<text x="{_LEFT + _SIZE + 16}" y="{legend_y}" font-size="12" fill="{colour}">'
            f"{'■' if _MARKERS[n % len(_MARKERS)] == 'square' else '●'} {escape(s.name)}</text>"
        )
    parts.append(
        f'<text x="{_LEFT + _SIZE + 16}" y="{_TOP + 14 + len(series) * 20}" font-size="12" fill="#555">'
        "- - perfect calibration</text>"
    )
    if not series:
        parts.append(
            f'<text x="{px(limit / 2):.1f}" y="{py(limit / 2):.1f}" text-anchor="middle" font-size="13">'
            "no evaluation yet</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)
