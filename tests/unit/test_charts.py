"""The contribution chart: well-formed, accessible SVG with every text escaped."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from service.entrypoints.api.charts import Bar, contribution_chart

SVG = "{http://www.w3.org/2000/svg}"


def test_bars_go_right_for_raising_left_for_lowering_largest_first() -> None:
    svg = ET.fromstring(contribution_chart([Bar("Age", -0.35), Bar("Low HU", 1.34), Bar("Female sex", 0.17)]))
    assert svg.get("role") == "img"
    assert svg.get("aria-labelledby") == "chart-title chart-desc"
    rects = svg.findall(f"{SVG}rect")
    assert len(rects) == 3
    widths = [float(r.get("width", 0)) for r in rects]
    assert widths == sorted(widths, reverse=True)  # largest effect first
    zero = float(svg.findall(f"{SVG}line")[0].get("x1", 0))
    hu, age, sex = rects
    assert float(hu.get("x", 0)) == zero
    assert float(sex.get("x", 0)) == zero
    assert math.isclose(float(age.get("x", 0)) + float(age.get("width", 0)), zero, abs_tol=0.2)
    assert hu.get("fill") != age.get("fill")
    desc = svg.find(f"{SVG}desc")
    assert desc is not None
    assert "Low HU: x3.82" in (desc.text or "")
    assert "Age: x0.70" in (desc.text or "")


def test_labels_are_escaped_and_long_ones_shortened_in_the_picture_only() -> None:
    long = "A very long factor label " * 4
    svg_text = contribution_chart([Bar("<script>x</script> & co", 0.5), Bar(long, -0.2)])
    svg = ET.fromstring(svg_text)  # still well-formed
    assert "<script>" not in svg_text
    texts = [t.text or "" for t in svg.findall(f"{SVG}text")]
    assert "<script>x</script> & co" in texts
    assert any(t.endswith("…") and len(t) <= 60 for t in texts)
    desc = svg.find(f"{SVG}desc")
    assert desc is not None
    assert long in (desc.text or "")


def test_no_bars_says_so() -> None:
    svg = ET.fromstring(contribution_chart([]))
    assert not svg.findall(f"{SVG}rect")
    assert any("no known factor" in (t.text or "") for t in svg.findall(f"{SVG}text"))
