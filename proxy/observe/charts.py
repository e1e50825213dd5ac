"""Small inline SVG pictures for the status page: sparklines, line charts, a heat map.

Plain strings, no external assets and no scripts: the page stays one self-contained
document that a browser renders as it arrives (and that the page's own refresh swaps
whole). Every text that comes from data (region names, addresses) is escaped. No
`xmlns`: inline SVG in HTML needs none, and the page carries no URL at all. A charting
library was not worth it here: the ones that emit SVG (pygal) reference external scripts
by default and pull in a dependency for a few polylines.

Times are wall-clock seconds; a gap in a series longer than `gap_s` (a node that was
down, so not sampled) breaks the line instead of drawing a slope across it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from html import escape

Points = Sequence[tuple[float, float]]

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def _e(v: object) -> str:
    return escape(str(v), quote=True)


def _fmt(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.3g}M"
    if v >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}" if v >= 1e-3 else "0"


def _segments(points: Points, gap_s: float) -> list[list[tuple[float, float]]]:
    out: list[list[tuple[float, float]]] = []
    last_t = -math.inf
    for t, v in points:
        if not math.isfinite(v):
            last_t = -math.inf
            continue
        if t - last_t > gap_s or not out:
            out.append([])
        out[-1].append((t, v))
        last_t = t
    return out


def _polylines(points: Points, x0: float, x1: float, ymax: float, box: tuple[float, ...],
               gap_s: float, color: str, width: float = 1.5) -> str:  # fmt: skip
    """`points` scaled into box = (left, top, width, height), y from 0 to ymax."""
    left, top, w, h = box
    span = max(x1 - x0, 1e-9)
    out = []
    for seg in _segments(points, gap_s):
        xy = " ".join(
            f"{left + (t - x0) / span * w:.1f},{top + h - min(v, ymax) / ymax * h:.1f}"
            for t, v in seg
        )
        if len(seg) == 1:  # a lone point: a dot, or it would not show
            x, y = xy.split(",")
            out.append(f'<circle cx="{x}" cy="{y}" r="1.5" fill="{color}"/>')
        else:
            out.append(f'<polyline points="{xy}" fill="none" stroke="{color}" '
                       f'stroke-width="{width}"/>')  # fmt: skip
    return "".join(out)


def sparkline(points: Points, title: str, gap_s: float, unit: str = "", width: int = 140,
              height: int = 26) -> str:  # fmt: skip
    """A tiny line from 0 to the series' highest value, that value beside it."""
    finite = [(t, v) for t, v in points if math.isfinite(v)]
    if not finite:
        return '<span class="muted">-</span>'
    top = max(v for _, v in finite)
    line = _polylines(finite, finite[0][0], finite[-1][0], max(top, 1e-9),
                      (1, 2, width - 2, height - 4), gap_s, COLORS[0])  # fmt: skip
    label = f"max {_fmt(top)}{' ' + unit if unit else ''}"
    return (
        f'<svg class="spark" width="{width}" height="{height}" role="img" '
        f'viewBox="0 0 {width} {height}"><title>{_e(title)}: {_e(label)}</title>'
        f'<rect width="{width}" height="{height}" fill="#f5f8fc"/>{line}</svg>'
        f' <span class="muted">{_e(label)}</span>'
    )


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t))


def line_chart(series: Sequence[tuple[str, Points]], title: str, unit: str, gap_s: float,
               width: int = 520, height: int = 150) -> str:  # fmt: skip
    """Named series over the same time axis, from 0 to their highest value, with a legend."""
    finite = [(n, [(t, v) for t, v in p if math.isfinite(v)]) for n, p in series]
    ts = [t for _, p in finite for t, _ in p]
    if len(ts) < 2:
        return f'<p class="muted">{_e(title)}: not enough history yet</p>'
    x0, x1 = min(ts), max(ts)
    ymax = max(max((v for _, p in finite for _, v in p), default=0.0) * 1.1, 1e-9)
    left, top, bottom = 46, 18, 18
    box = (left, top, width - left - 6, height - top - bottom)
    grid = "".join(
        f'<line x1="{left}" x2="{width - 6}" y1="{top + box[3] * (1 - f):.1f}" '
        f'y2="{top + box[3] * (1 - f):.1f}" stroke="#e3e3e3"/>'
        f'<text x="{left - 4}" y="{top + box[3] * (1 - f) + 4:.1f}" text-anchor="end">'
        f"{_e(_fmt(ymax * f))}</text>"
        for f in (0.0, 0.5, 1.0)
    )
    lines = "".join(
        _polylines(p, x0, x1, ymax, box, gap_s, COLORS[i % len(COLORS)])
        for i, (_, p) in enumerate(finite)
    )
    legend = "".join(
        f'<text x="{left + 8 + 90 * i}" y="12" fill="{COLORS[i % len(COLORS)]}">{_e(name)}</text>'
        for i, (name, _) in enumerate(finite)
    )
    axis = (
        f'<text x="{left}" y="{height - 4}">{_clock(x0)}</text>'
        f'<text x="{width - 6}" y="{height - 4}" text-anchor="end">{_clock(x1)} UTC</text>'
        f'<text x="{width - 6}" y="12" text-anchor="end">{_e(unit)}</text>'
    )
    return (
        f'<svg class="chart" width="{width}" height="{height}" role="img" '
        f'viewBox="0 0 {width} {height}" font-size="10" font-family="sans-serif">'
        f'<title>{_e(title)}</title><rect width="{width}" height="{height}" fill="#fff"/>'
        f"{grid}{lines}{legend}{axis}</svg>"
    )


def _shade(share: float) -> str:
    """White to a deep blue as the share goes 0 -> 1."""
    lo, hi = (247, 251, 255), (8, 69, 148)
    r, g, b = (round(a + (c - a) * share) for a, c in zip(lo, hi, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(cells: Mapping[tuple[str, str], tuple[int, float]], title: str,
            cell_w: int = 110, cell_h: int = 34) -> str:  # fmt: skip
    """Rows: client regions; columns: served regions; each cell its reads and its share
    of the row's reads (the colour)."""
    if not cells:
        return '<p class="muted">no reads yet</p>'
    rows = sorted({c for c, _ in cells})
    cols = sorted({s for _, s in cells})
    label_w, head_h = 120, 36
    width, height = label_w + cell_w * len(cols), head_h + cell_h * len(rows)
    out = [
        f'<svg class="heat" width="{width}" height="{height}" role="img" '
        f'viewBox="0 0 {width} {height}" font-size="11" font-family="sans-serif">'
        f"<title>{_e(title)}</title>"
        f'<text x="{label_w - 6}" y="12" text-anchor="end" fill="#777">client / served</text>'
    ]
    for j, col in enumerate(cols):
        x = label_w + j * cell_w + cell_w / 2
        out.append(f'<text x="{x:.0f}" y="{head_h - 8}" text-anchor="middle">'
                   f"{_e(col or '-')}</text>")  # fmt: skip
    for i, row in enumerate(rows):
        y = head_h + i * cell_h
        out.append(f'<text x="{label_w - 6}" y="{y + cell_h / 2 + 4:.0f}" text-anchor="end">'
                   f"{_e(row or '-')}</text>")  # fmt: skip
        for j, col in enumerate(cols):
            reads, pct = cells.get((row, col), (0, 0.0))
            x = label_w + j * cell_w
            ink = "#fff" if pct > 55 else "#222"
            out.append(
                f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" '
                f'fill="{_shade(pct / 100)}"><title>{_e(row)} -&gt; {_e(col)}: {reads} '
                f"reads ({pct:.1f}%)</title></rect>"
                f'<text x="{x + cell_w / 2:.0f}" y="{y + cell_h / 2 + 4:.0f}" '
                f'text-anchor="middle" fill="{ink}">{reads} ({pct:.0f}%)</text>'
            )
    out.append("</svg>")
    return "".join(out)
