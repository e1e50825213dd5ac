"""What the five dashboards share: the grid layout, panel and dashboard JSON, thresholds.

Grafana places panels on a 24-column grid; `Layout` fills it left to right, top to bottom,
so no dashboard module computes a position by hand (and none can overlap two panels).
Every panel queries the `${datasource}` variable, whose default is the datasource that
`generate-configs` provisions (uid `prometheus`): the dashboards load provisioned and also
import by hand into a Grafana whose Prometheus has another name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Json = dict[str, Any]

RATE = "$__rate_interval"
GRID_WIDTH = 24
PANEL_HEIGHT = 8
STAT_HEIGHT = 4

# The datasource `proxy.tools.generate.grafana_datasource` provisions.
DATASOURCE_UID = "prometheus"
DATASOURCE_NAME = "Prometheus"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Node series carry node and region labels; one legend for them everywhere.
NODE_LEGEND = "{{node}} ({{region}})"

# 1/0 gauges (up, link, eligible) shown as words and colours in state timelines.
UP_DOWN = [
    {"type": "value", "options": {"1": {"text": "up", "color": "green"},
                                  "0": {"text": "down", "color": "red"}}},
]  # fmt: skip
YES_NO = [
    {"type": "value", "options": {"1": {"text": "yes", "color": "green"},
                                  "0": {"text": "no", "color": "red"}}},
]  # fmt: skip

Target = tuple[str, str]  # (PromQL, legend)


def steps(*levels: tuple[float, str], base: str = "green") -> Json:
    """Grafana thresholds: `base` colour below the first level, then each (value, colour)."""
    out: list[Json] = [{"color": base, "value": None}]
    out.extend({"color": colour, "value": value} for value, colour in levels)
    return {"mode": "absolute", "steps": out}


def quantile(q: float, metric: str, by: str = "") -> str:
    """The q-quantile of a histogram over the rate interval, summed across instances
    (and workers) first; `by` keeps further labels, e.g. ", node, region"."""
    return f"histogram_quantile({q}, sum by (le{by}) (rate({metric}_bucket[{RATE}])))"


def _options(kind: str) -> Json:
    if kind == "stat":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        }
    legend = {"displayMode": "list", "placement": "bottom", "showLegend": True}
    if kind == "state-timeline":
        return {"legend": legend, "showValue": "never", "mergeValues": True}
    return {"legend": legend, "tooltip": {"mode": "multi", "sort": "desc"}}


class Layout:
    """Rows and panels of one dashboard, placed on the grid in the order they are added."""

    def __init__(self) -> None:
        self.panels: list[Json] = []
        self.x = 0
        self.y = 0
        self.line_height = 0  # the tallest panel on the current line

    def _newline(self) -> None:
        self.y += self.line_height
        self.x = 0
        self.line_height = 0

    def _place(self, width: int, height: int) -> Json:
        if self.x + width > GRID_WIDTH:
            self._newline()
        grid = {"h": height, "w": width, "x": self.x, "y": self.y}
        self.x += width
        self.line_height = max(self.line_height, height)
        return grid

    def row(self, title: str) -> None:
        if self.x:
            self._newline()
        grid = self._place(GRID_WIDTH, 1)
        self._newline()
        self.panels.append({"type": "row", "id": len(self.panels) + 1, "title": title,
                            "collapsed": False, "gridPos": grid, "panels": []})  # fmt: skip

    def panel(
        self,
        title: str,
        targets: Sequence[Target],
        *,
        unit: str = "short",
        kind: str = "timeseries",
        width: int = 8,
        description: str = "",
        thresholds: Json | None = None,
        mappings: list[Json] | None = None,
        minimum: float | None = None,
    ) -> None:
        height = STAT_HEIGHT if kind == "stat" else PANEL_HEIGHT
        defaults: Json = {"unit": unit}
        if thresholds is not None:
            defaults["thresholds"] = thresholds
            defaults["color"] = {"mode": "thresholds"}
            if kind == "timeseries":
                # Draw the levels as lines: the budget is visible beside the series.
                defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
        if mappings is not None:
            defaults["mappings"] = mappings
        if minimum is not None:
            defaults["min"] = minimum
        self.panels.append({
            "type": kind,
            "id": len(self.panels) + 1,
            "title": title,
            "description": description,
            "datasource": DATASOURCE,
            "gridPos": self._place(width, height),
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": _options(kind),
            "targets": [
                {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr,
                 "legendFormat": legend}
                for i, (expr, legend) in enumerate(targets)
            ],
        })  # fmt: skip


def board(uid: str, title: str, description: str, layout: Layout) -> Json:
    """The dashboard around `layout`'s panels: the datasource variable (defaulting to the
    provisioned one) and links to the other georedis dashboards (tag `georedis`)."""
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["georedis", "redis"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": ["georedis"],
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
                "title": "georedis",
            }
        ],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "refresh": 1,
                    "hide": 0,
                    "current": {
                        "selected": True,
                        "text": DATASOURCE_NAME,
                        "value": DATASOURCE_UID,
                    },
                }
            ]
        },
        "panels": layout.panels,
    }
