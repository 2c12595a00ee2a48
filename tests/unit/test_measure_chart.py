"""The measure trend chart: values stated in its description, gaps left open, text escaped."""

from __future__ import annotations

from service.entrypoints.api.measure_chart import trend_chart


def test_values_targets_and_gaps() -> None:
    svg = trend_chart("DXA <12 weeks>", [("Jan", 0.5), ("Feb", None), ("Mar", 0.75), ("Apr", 1.0)], True, (0.8,))
    assert svg.startswith("<svg") and svg.endswith("</svg>")  # noqa: PT018
    assert "<title>DXA &lt;12 weeks&gt;</title>" in svg
    assert "Jan: 50 %; Feb: no data; Mar: 75 %; Apr: 100 %. Targets: 80 %." in svg
    assert svg.count('class="point"') == 3
    assert svg.count("<polyline") == 1  # Jan stands alone before the gap; Mar-Apr are joined
    assert 'class="target"' in svg


def test_counts_and_an_empty_year() -> None:
    svg = trend_chart("Alerts opened", [("Jan", 12.0), ("Feb", 30.0)], False)
    assert "Jan: 12; Feb: 30" in svg
    empty = trend_chart("Nothing", [("Jan", None)], False)
    assert "no data" in empty
    assert "<polyline" not in empty
