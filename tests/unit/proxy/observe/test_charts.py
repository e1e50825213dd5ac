"""The status page's pictures: well-formed inline SVG, escaped, gaps kept, and the page
drawing them from a real History."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace

from proxy.observe.charts import heatmap, line_chart, sparkline
from proxy.observe.history import History
from proxy.observe.statuspage import render_status, status_json
from proxy.stats import ProxyStats
from tests.unit.proxy.observe.feed import MIB, Clock, info
from tests.unit.proxy.test_stats import FakeProxy


def _svg(html: str) -> ET.Element:
    m = re.search(r"<svg.*?</svg>", html, re.S)
    assert m is not None, html
    return ET.fromstring(m.group(0))  # well-formed, or this raises


def test_sparkline_scales_to_the_highest_value() -> None:
    el = _svg(sparkline([(0, 0.0), (1, 5.0), (2, 10.0)], "lag", gap_s=5, width=100, height=20))
    (line,) = el.iter("polyline")
    ys = [float(p.split(",")[1]) for p in line.get("points", "").split()]
    assert ys[0] == 18.0 and ys[-1] == 2.0  # 0 at the bottom, the max at the top


def test_a_gap_breaks_the_line() -> None:
    pts = [(0, 1.0), (1, 2.0), (2, 3.0), (30, 1.0), (31, 2.0)]
    assert len(list(_svg(sparkline(pts, "lag", gap_s=2.5)).iter("polyline"))) == 2
    assert len(list(_svg(sparkline(pts, "lag", gap_s=60)).iter("polyline"))) == 1


def test_line_chart_has_a_line_per_series_and_a_legend() -> None:
    svg = line_chart([("p50", [(0, 1.0), (1, 2.0)]), ("p99", [(0, 5.0), (1, 9.0)])],
                     "latency", "ms", gap_s=5)  # fmt: skip
    el = _svg(svg)
    assert len(list(el.iter("polyline"))) == 2
    assert {t.text for t in el.iter("text")} >= {"p50", "p99", "ms"}
    assert "not enough history" in line_chart([("x", [(0, 1.0)])], "ops", "ops/s", 5)


def test_heatmap_cells_and_escaping() -> None:
    cells = {("us-east-1", "us-east-1"): (75, 75.0), ("<b>x</b>", "us-east-1"): (25, 100.0)}
    svg = heatmap(cells, "routing")
    el = _svg(svg)
    rects = list(el.iter("rect"))
    assert len(rects) == 2 * 1  # two client regions x one served region
    assert "<b>" not in svg and "&lt;b&gt;" in svg
    fills = {r.get("fill") for r in rects}
    assert "#084594" in fills  # 100% is the darkest blue


@dataclass
class Recording(FakeProxy):
    history: History = field(default_factory=lambda: History(step_s=1.0))


def _recorded() -> Recording:
    """The fake proxy's own snapshot (two replicas up), sampled 40 times, lag varying."""
    clock = Clock(0.0)
    src = Recording()
    src.history = History(step_s=1.0, clock=clock)
    st = ProxyStats()
    for i in range(40):
        clock.t = i * 0.5
        st.commands[0] += 100
        st.node_hist("a").observe_n(0.001, 100)
        nodes = tuple(
            replace(n, info=info(MIB), lag_ms=float(i % 7) if n.lag_ms is not None else None)
            for n in src.snap.nodes
        )
        src.history.sample(replace(src.snap, nodes=nodes), st)
    return src


def test_status_page_draws_lag_traffic_and_routing() -> None:
    html = render_status(_recorded())
    assert html.count('<svg class="spark"') == 2  # the two replicas up
    assert html.count('<svg class="chart"') == 2  # ops/s, latency
    assert html.count('<svg class="heat"') == 1
    assert "http://" not in html and "https://" not in html  # no external assets
    for svg in re.findall(r"<svg.*?</svg>", html, re.S):
        ET.fromstring(svg)


def test_status_json_carries_the_recent_rows() -> None:
    data = status_json(_recorded())
    hist = data["history"]
    assert hist["step_s"] == 1.0
    assert len(hist["ops_per_sec"]) >= 15 and hist["ops_per_sec"][-1][1] > 0
    assert len(hist["lag_ms"]) == 2
    assert all(max(v for _, v in lag) == 6.0 for lag in hist["lag_ms"].values())


def test_without_a_history_the_page_has_no_charts() -> None:
    html = render_status(FakeProxy())
    assert '<svg class="chart"' not in html and '<svg class="heat"' in html
    assert status_json(FakeProxy())["history"] is None
