"""The status page (`/`) and its data (`/status.json`), rendered on the server.

`status_json` gathers everything once into plain data; the HTML page, the JSON
endpoint and `PROXY INFO` (`proxy.observe.infotext`) all render from it, so they cannot
disagree. The page has no external assets: inline CSS, and a few lines of inline JS
that re-fetch the page every 2 s and swap its `<main>` (a meta refresh does the same
when scripts are off).

Pictures (`proxy.observe.charts`, inline SVG) where people would rather look than read:
each replica's lag over the last minutes beside its row, ops/s and latency percentiles
over time, and the routing matrix as a heat map. The series come from the process'
`History` (`proxy.observe.history`), when it keeps one.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

from proxy.observe.charts import heatmap, line_chart, sparkline
from proxy.observe.history import History, history_of
from proxy.observe.metrics import link_up, reason_label
from proxy.stats import CLASS_NAMES, StatusSource, ops_per_sec, proxy_version
from routing.topology import NodeState, Snapshot

Json = dict[str, Any]
SPARK_ROWS = 60  # a replica's lag: the last 60 fine rows (10 min by default)
CHART_ROWS = 180  # ops/s and latency: the last 180 (30 min by default)


def _node_json(source: StatusSource, node: NodeState, snap: Snapshot) -> Json:
    primary = snap.primary
    return {
        "addr": str(node.addr),
        "region": node.region,
        "role": node.role.value,
        "primary": primary is not None and primary.addr == node.addr,
        "up": node.up,
        "link_up": link_up(node),
        "lag_ms": node.lag_ms,
        "lag_bytes": node.lag_bytes,
        "eligible": node.eligible,
        "reason": reason_label(node.reason),
        "outstanding": source.outstanding(node.addr),
        "pool_connections": source.pool_connections(node.addr),
        "error": node.error,
        "epoch": node.epoch,
        # From the node's INFO (None until polled), for `georedis health`'s memory check.
        "used_memory": _info_int(node.info.get("used_memory")),
        "maxmemory": _info_int(node.info.get("maxmemory")),
    }


def _info_int(raw: str | None) -> int | None:
    return int(raw) if raw is not None and raw.isdigit() else None


def _regions_json(source: StatusSource, snap: Snapshot) -> list[Json]:
    """Configured regions and nodes in file order; nodes only the snapshot knows, after."""
    by_addr = {n.addr: n for n in snap.nodes}
    # Cluster mode: each node's shard index (None standalone, or a node in no shard).
    shard_of = {n.addr: i for i, shard in enumerate(snap.shards) for n in shard.nodes}
    regions: dict[str, Json] = {}
    for r in source.config.regions:
        nodes = []
        for a in r.nodes:
            node = by_addr.pop(a, None) or NodeState(addr=a, region=r.name, error="not probed")
            nodes.append({**_node_json(source, node, snap), "shard": shard_of.get(a)})
        regions[r.name] = {"name": r.name, "nodes": nodes}
    for node in by_addr.values():
        region = regions.setdefault(node.region, {"name": node.region, "nodes": []})
        region["nodes"].append({**_node_json(source, node, snap), "shard": shard_of.get(node.addr)})
    for name, region in regions.items():
        region["eligible_replicas"] = len(snap.eligible_by_region.get(name, ()))
    return list(regions.values())


def _routing_json(source: StatusSource) -> list[Json]:
    """Reads per (client region, served region), with the share of the client region's reads."""
    reads = source.stats.reads_by_region
    per_client: dict[str, int] = {}
    for (client, _), n in reads.items():
        per_client[client] = per_client.get(client, 0) + n
    rows = []
    for (client, served), n in sorted(reads.items()):
        total = per_client[client]
        rows.append(
            {
                "client_region": client,
                "served_region": served,
                "reads": n,
                "pct": round(100.0 * n / total, 2) if total else 0.0,
            }
        )
    return rows


def status_json(source: StatusSource) -> Json:
    cfg = source.config
    s = source.stats
    snap = source.snapshot()
    now = time.time()
    p50, p99 = s.latency.quantile(0.5), s.latency.quantile(0.99)
    return {
        "proxy": {
            "version": proxy_version(),
            "region": cfg.proxy.region,
            "config_file": cfg.source,
            "workers": cfg.proxy.workers,
            "started_at": source.started_at,
            "uptime_s": int(max(0.0, now - source.started_at)),
            "clients": s.connections_current,
            "total_commands": s.total_commands,
            "ops_per_sec": round(ops_per_sec(source, now), 2),
            "topology_version": snap.version,
            "primary": str(snap.primary.addr) if snap.primary is not None else None,
            "primary_error": snap.primary_error,
            "failover_epoch": snap.epoch,
            "fenced": [str(n.addr) for n in snap.fenced],
            # INFO's min_slaves_good_slaves: present only with min-replicas-to-write set.
            "min_replicas_good": _good_replicas(snap),
            "latency_p50_ms": None if p50 is None else p50 * 1000.0,
            "latency_p99_ms": None if p99 is None else p99 * 1000.0,
        },
        "commands": {
            cls: {"total": s.commands[i], "errors": s.errors[i]}
            for i, cls in enumerate(CLASS_NAMES)
        },
        "counters": {
            "connections_total": s.connections_total,
            "connections_rejected": s.connections_rejected,
            "protocol_errors": s.protocol_errors,
            "timeouts": s.timeouts,
            "unavailable": s.unavailable,
            "retries": s.retries,
            "unanswered": s.unanswered,
            "ryw_redirects": s.ryw_redirects,
            "fallbacks_primary": s.fallbacks_primary,
        },
        "regions": _regions_json(source, snap),
        "routing": _routing_json(source),
        "history": _history_json(history_of(source)),
    }


def _history_json(h: History | None) -> Json | None:
    """Recent rows for the charts: [t, value] pairs, the oldest first."""
    if h is None:
        return None

    def recent(points: list[tuple[float, float]], n: int) -> list[list[float]]:
        return [[round(t, 3), round(v, 3)] for t, v in points[-n:]]

    return {
        "step_s": h.step_s,
        "lag_ms": {
            a: recent(s.column("lag_ms"), SPARK_ROWS)
            for a, s in h.nodes.items()
            if s.role == "replica"
        },
        "ops_per_sec": recent(h.proxy.column("ops_per_sec"), CHART_ROWS),
        "p50_ms": recent(h.proxy.column("p50_ms"), CHART_ROWS),
        "p99_ms": recent(h.proxy.column("p99_ms"), CHART_ROWS),
    }


# --- HTML -------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .3em} h2{font-size:1.1em;margin:1.2em 0 .4em}
table{border-collapse:collapse;background:#fff;margin-bottom:.5em}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f0f0f0} td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#176f2c;font-weight:600} .bad{color:#b3261e;font-weight:600}
.muted{color:#777} .summary span{margin-right:1.5em}
svg{vertical-align:middle} svg.chart,svg.heat{margin:0 1em .5em 0;border:1px solid #ddd}
"""

# Re-fetch the page and swap <main>: one renderer (the server) for first load and refresh.
_JS = """
setInterval(function(){fetch(location.pathname,{cache:"no-store"}).then(function(r){
return r.text()}).then(function(t){var d=new DOMParser().parseFromString(t,"text/html");
var m=d.querySelector("main");if(m){document.querySelector("main").replaceWith(m)}})
.catch(function(){})},2000);
"""


def _e(v: object) -> str:
    return escape(str(v), quote=True)


def _flag(ok: bool, yes: str = "yes", no: str = "no") -> str:
    return f'<span class="ok">{yes}</span>' if ok else f'<span class="bad">{no}</span>'


def _num(v: float | int | None, fmt: str = "{:.1f}") -> str:
    return '<span class="muted">-</span>' if v is None else _e(fmt.format(v))


def _duration(seconds: int) -> str:
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def _good_replicas(snap: Snapshot) -> int | None:
    good = snap.primary.info.get("min_slaves_good_slaves") if snap.primary else None
    return int(good) if good is not None and good.isdigit() else None


def _summary_html(p: Json) -> str:
    if p["primary"]:
        primary = _e(p["primary"])
    else:
        primary = f'<span class="bad">{_e(p["primary_error"] or "none")}</span>'
    items = [
        f"version <b>{_e(p['version'])}</b>",
        f"region <b>{_e(p['region'] or '-')}</b>",
        f"uptime <b>{_duration(p['uptime_s'])}</b>",
        f"clients <b>{_e(p['clients'])}</b>",
        f"commands <b>{_e(p['total_commands'])}</b>",
        f"ops/s <b>{_num(p['ops_per_sec'])}</b>",
        f"p50 <b>{_num(p['latency_p50_ms'], '{:g}')}</b> ms",
        f"p99 <b>{_num(p['latency_p99_ms'], '{:g}')}</b> ms",
        f"primary <b>{primary}</b>",
        f"topology v{_e(p['topology_version'])}",
        f"failover epoch {_e(p['failover_epoch'])}",
    ]
    if p["fenced"]:
        items.append(f'<span class="bad">fenced {_e(", ".join(p["fenced"]))}</span>')
    return '<p class="summary">' + "".join(f"<span>{i}</span>" for i in items) + "</p>"


_NODE_HEADERS = (
    "address", "role", "up", "link", "lag ms", "lag bytes", "eligible", "reason",
    "outstanding", "pool", "error", "lag, recent",
)  # fmt: skip


def _node_row(n: Json, hist: Json | None, shards: bool = False) -> str:
    role = _e(n["role"]) + (" (primary)" if n["primary"] and n["role"] != "primary" else "")
    replica = n["role"] == "replica"
    # A master has no link to show, and the primary never takes replica reads: a dash,
    # not a red "down"/"no" that would make a healthy primary look broken.
    dash = '<span class="muted">-</span>'
    link = _flag(n["link_up"], "up", "down") if replica or not n["up"] else dash
    eligible = dash if n["primary"] and n["up"] else _flag(n["eligible"])
    cells = [
        f"<td><code>{_e(n['addr'])}</code></td>",
        f"<td>{role}</td>",
        f"<td>{_flag(n['up'])}</td>",
        f"<td>{link}</td>",
        f'<td class="n">{_num(n["lag_ms"])}</td>',
        f'<td class="n">{_num(n["lag_bytes"], "{:d}")}</td>',
        f"<td>{eligible}</td>",
        f"<td>{_e(n['reason'])}</td>",
        f'<td class="n">{_e(n["outstanding"])}</td>',
        f'<td class="n">{_e(n["pool_connections"])}</td>',
        f'<td class="muted">{_e(n["error"])}</td>',
        f"<td>{_lag_spark(n, hist)}</td>",
    ]
    if shards:  # cluster mode: the shard column, after the address
        cells.insert(1, f'<td class="n">{_e("-" if n["shard"] is None else n["shard"])}</td>')
    return "<tr>" + "".join(cells) + "</tr>"


def _lag_spark(n: Json, hist: Json | None) -> str:
    if hist is None or n["role"] != "replica" or not hist["lag_ms"].get(n["addr"]):
        return '<span class="muted">-</span>'
    points = [(t, v) for t, v in hist["lag_ms"][n["addr"]]]
    return sparkline(points, f"lag of {n['addr']}", 2.5 * hist["step_s"], "ms")


def _traffic_html(hist: Json | None) -> str:
    """ops/s and latency percentiles over the last rows of the history."""
    if hist is None:
        return ""
    gap = 2.5 * hist["step_s"]

    def pts(key: str) -> list[tuple[float, float]]:
        return [(t, v) for t, v in hist[key]]

    ops = line_chart([("ops/s", pts("ops_per_sec"))], "commands per second", "ops/s", gap)
    lat = line_chart([("p50", pts("p50_ms")), ("p99", pts("p99_ms"))],
                     "latency percentiles", "ms", gap)  # fmt: skip
    return f"<h2>Traffic</h2><div>{ops}{lat}</div>"


def _regions_html(regions: list[Json], hist: Json | None) -> str:
    out = ["<h2>Regions</h2>"]
    for r in regions:
        out.append(
            f'<h3 data-region="{_e(r["name"])}">{_e(r["name"])} '
            f'<span class="muted">eligible replicas: {_e(r["eligible_replicas"])}</span></h3>'
        )
        shards = any(n["shard"] is not None for n in r["nodes"])
        headers = (_NODE_HEADERS[0], "shard", *_NODE_HEADERS[1:]) if shards else _NODE_HEADERS
        head = "".join(f"<th>{h}</th>" for h in headers)
        rows = "".join(_node_row(n, hist, shards) for n in r["nodes"])
        out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    return "".join(out)


def _routing_html(rows: list[Json]) -> str:
    out = ["<h2>Routing of reads</h2>"]
    if not rows:
        return out[0] + '<p class="muted">no reads yet</p>'
    cells = {(r["client_region"], r["served_region"]): (r["reads"], r["pct"]) for r in rows}
    out.append(heatmap(cells, "reads by client region and served region"))
    out.append("<table><thead><tr><th>client region</th><th>served region</th>")
    out.append("<th>reads</th><th>share</th></tr></thead><tbody>")
    for row in rows:
        out.append(
            f"<tr><td>{_e(row['client_region'] or '-')}</td>"
            f"<td>{_e(row['served_region'] or '-')}</td>"
            f'<td class="n">{_e(row["reads"])}</td>'
            f'<td class="n">{row["pct"]:.1f}%</td></tr>'
        )
    out.append("</tbody></table>")
    return "".join(out)


def _commands_html(data: Json) -> str:
    cmds = data["commands"]
    head = "".join(f"<th>{_e(c)}</th>" for c in cmds)
    totals = "".join(f'<td class="n">{_e(v["total"])}</td>' for v in cmds.values())
    errors = "".join(f'<td class="n">{_e(v["errors"])}</td>' for v in cmds.values())
    counters = "".join(
        f"<span>{_e(k.replace('_', ' '))} <b>{_e(v)}</b></span>"
        for k, v in data["counters"].items()
    )
    return (
        f"<h2>Commands</h2><table><thead><tr><th></th>{head}</tr></thead><tbody>"
        f"<tr><th>total</th>{totals}</tr><tr><th>errors</th>{errors}</tr></tbody></table>"
        f'<p class="summary">{counters}</p>'
    )


def render_status(source: StatusSource) -> str:
    data = status_json(source)
    p = data["proxy"]
    title = f"georedis {_e(p['region'] or '')}".strip()
    main = (
        f"<main><h1>{title}</h1>{_summary_html(p)}{_traffic_html(data['history'])}"
        f"{_regions_html(data['regions'], data['history'])}"
        f"{_routing_html(data['routing'])}{_commands_html(data)}</main>"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title>"
        '<noscript><meta http-equiv="refresh" content="2"></noscript>'
        f"<style>{_CSS}</style></head><body>{main}<script>{_JS}</script></body></html>"
    )
