"""Server-rendered SVG: one quality measure month by month, with its target lines (docs/measures.md).

Rendered here so the FLS lead's page needs no JavaScript; every value is also stated in the chart's description.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Final

__all__ = ["trend_chart"]

_WIDTH: Final = 520
_HEIGHT: Final = 170
_LEFT: Final = 46
_RIGHT: Final = 12
_TOP: Final = 24
_BOTTOM: Final = 28
_LINE: Final = "#1b5e96"
_TARGET: Final = "#6b6b6b"


def _label(value: float, percent: bool) -> str:
    return f"{value * 100:.0f} %" if percent else f"{value:g}"


def trend_chart(
    title: str, points: Sequence[tuple[str, float | None]], percent: bool, targets: Sequence[float] = ()
) -> str:
    """A line over the months (label, value; None where nothing was scored), with dashed target lines.

    Args:
        percent: the values are fractions (shown as %, axis 0-100 %); otherwise counts, days or hours from 0.
    """
    values = [v for _, v in points if v is not None]
    top = 1.0 if percent else max([*values, *targets, 1.0]) * 1.1
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM
    step = plot_w / max(len(points) - 1, 1)

    def x(i: int) -> float:
        return _LEFT + i * step

    def y(v: float) -> float:
        return _TOP + plot_h * (1 - v / top)

    said = "; ".join(f"{label}: {'no data' if v is None else _label(v, percent)}" for label, v in points)
    aims = ", ".join(_label(t, percent) for t in targets)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{_WIDTH}" height="{_HEIGHT}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" class="trend">',
        f"<title>{escape(title)}</title>",
        f"<desc>{escape(said)}{escape(f'. Targets: {aims}.' if targets else '')}</desc>",
        f'<line x1="{_LEFT}" y1="{y(0):.1f}" x2="{_WIDTH - _RIGHT}" y2="{y(0):.1f}" stroke="#999"/>',
        f'<text x="{_LEFT - 6}" y="{y(0) + 4:.1f}" text-anchor="end" font-size="11">{_label(0, percent)}</text>',
        f'<text x="{_LEFT - 6}" y="{y(top) + 4:.1f}" text-anchor="end" font-size="11">'
        f"{escape(_label(top if percent else round(top, 1), percent))}</text>",
    ]
    for target in targets:
        parts.append(
            f'<line x1="{_LEFT}" y1="{y(target):.1f}" x2="{_WIDTH - _RIGHT}" y2="{y(target):.1f}" '
            f'stroke="{_TARGET}" stroke-dasharray="4 4" class="target"/>'
            f'<text x="{_WIDTH - _RIGHT}" y="{y(target) - 3:.1f}" text-anchor="end" font-size="10" '
            f'fill="{_TARGET}">target {escape(_label(target, percent))}</text>'
        )
    run: list[str] = []
    for i, (label, value) in enumerate(points):
        parts.append(
            f'<text x="{x(i):.1f}" y="{_HEIGHT - 8}" text-anchor="middle" font-size="10">{escape(label)}</text>'
        )
        if value is None:
            if len(run) > 1:
                parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{_LINE}" stroke-width="2"/>')
            run = []
            continue
        run.append(f"{x(i):.1f},{y(value):.1f}")
        parts.append(f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="3" fill="{_LINE}" class="point"/>')
    if len(run) > 1:
        parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{_LINE}" stroke-width="2"/>')
    parts.append("</svg>")
    return "".join(parts)
