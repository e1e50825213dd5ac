"""The five Grafana dashboards: every query names only metrics georedis exports, every
query is valid PromQL (`promtool check rules`, offline), and each dashboard's JSON has
the shape Grafana provisions (unique uids and ids, the provisioned datasource, panels
on the grid without overlap). Grafana itself is not installable here (no Debian package).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.model import Address, Config, MetricsConfig, ProxyConfig, RegionConfig, RoutingConfig
from proxy.observe.metrics import METRICS
from proxy.tools.dashboards import dashboards
from proxy.tools.dashboards.layout import DATASOURCE, GRID_WIDTH
from proxy.tools.generate import generate_configs, grafana_dashboards, grafana_datasource

PROMTOOL = shutil.which("promtool")
SEED_TITLES = (
    "Cluster overview", "Memory analytics", "Performance", "Replication status", "Backup status",
)  # fmt: skip

# --- what georedis exports ------------------------------------------------------------


def exported_names() -> frozenset[str]:
    """Series names a scrape of georedis holds: each METRICS entry (the INFO families
    included: they are declared there too), a histogram as its _bucket/_sum/_count
    series; plus `up`, which Prometheus itself records for every scrape target."""
    names = {"up"}
    for m in METRICS:
        if m.kind == "histogram":
            names.update(f"{m.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(m.name)
    return frozenset(names)


EXPORTED = exported_names()

# --- a crude but sound PromQL reader --------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


FUNCTIONS = _words("""
    abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes
    clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year
    days_in_month deg delta deriv exp floor histogram_avg histogram_count histogram_fraction
    histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters hour
    idelta increase irate label_join label_replace last_over_time ln log10 log2
    mad_over_time max_over_time min_over_time minute month pi predict_linear
    present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh sort
    sort_by_label sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time
    sum_over_time tan tanh time timestamp vector year
    sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk
    limit_ratio
""")
KEYWORDS = _words(
    "and or unless bool offset by without on ignoring group_left group_right inf nan atan2 "
    "start end"
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")  # Grafana's $__rate_interval, ${x}
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# An identifier not inside a number (1e3, 0x1f) nor after a dot; group 2 is set when it
# is called: "(" follows, or "by"/"without" (`sum by (le) (...)`).
_IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*(?=\()|\s+(?=(?:by|without)\b))?")


def metric_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, unknown functions) in one PromQL expression.

    Strings (label values) go first, then what only holds label names or durations:
    `{...}` matchers, `[...]` ranges and subqueries, `by (...)`-style label lists. What
    is left is functions (a name before `(`), keywords, numbers and metric names: an
    identifier used bare, or before a `{` or `[` that was emptied.
    """
    text = _STRING.sub('""', expr)
    text = _VARIABLE.sub("5m", text)
    text = _MATCHERS.sub("{}", text)
    text = _RANGE.sub("[]", text)
    text = _LABEL_LIST.sub(r"\1", text)
    names: set[str] = set()
    unknown: set[str] = set()
    for m in _IDENT.finditer(text):
        word, call = m.group(1), m.group(2)
        if call is not None and word not in KEYWORDS:
            if word not in FUNCTIONS:
                unknown.add(word)
        elif word not in KEYWORDS:
            names.add(word)
    return names, unknown


def problems(board: dict[str, Any]) -> list[str]:
    """Every query of the board naming a series georedis does not export, or a function
    PromQL does not have."""
    out = []
    for panel, target in targets(board):
        names, unknown = metric_names(target["expr"])
        for name in sorted(names - EXPORTED):
            out.append(f"{board['uid']}/{panel['title']}: {name} is not exported")
        for name in sorted(unknown):
            out.append(f"{board['uid']}/{panel['title']}: no PromQL function {name}")
        if not names:
            out.append(f"{board['uid']}/{panel['title']}: queries no metric")
    return out


# --- the dashboards -------------------------------------------------------------------


def make_config(max_lag_ms: int = 750) -> Config:
    return Config(
        proxy=ProxyConfig(region="ap-southeast-1"),
        regions=(
            RegionConfig("ap-southeast-1", 1.35, 103.8, (Address("127.0.0.1", 7000),)),
            RegionConfig("us-east-1", 38.9, -77.0, (Address("127.0.0.1", 7100),)),
        ),
        routing=RoutingConfig(max_lag_ms=max_lag_ms),
        metrics=MetricsConfig(listen=Address("0.0.0.0", 9187)),
    )


BOARDS = dashboards(make_config())


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    stack = list(reversed(board["panels"]))
    while stack:
        p = stack.pop()
        yield p
        stack.extend(reversed(p.get("panels", [])))


def targets(board: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for p in panels(board):
        for t in p.get("targets", []):
            yield p, t


def test_the_reader_finds_metric_names_and_nothing_else() -> None:
    names, unknown = metric_names(
        'histogram_quantile(0.99, sum by (le, node) (rate(georedis_x_bucket{node="a b",'
        're=~"georedis_label_value"}[$__rate_interval]))) / on (node) group_left (region) '
        "max without (instance) (georedis_y > 1e3) and georedis_z offset 5m "
        "unless deriv(georedis_w[6h:5m]) or vector(0) > bool 0x1f"
    )
    assert names == {"georedis_x_bucket", "georedis_y", "georedis_z", "georedis_w"}
    assert not unknown
    assert metric_names("made_up_fn(georedis_node_up)") == ({"georedis_node_up"}, {"made_up_fn"})
    assert metric_names("sum(rate(madeup_total[5m]))")[0] == {"madeup_total"}


def test_every_query_uses_only_exported_metrics() -> None:
    used = set()
    for _, board in BOARDS:
        assert not problems(board)
        used |= {n for _, t in targets(board) for n in metric_names(t["expr"])[0]}
    # Not vacuous: the dashboards query a good share of what is exported.
    assert len(used) >= 40, sorted(used)


@pytest.mark.parametrize(
    "expr",
    [
        "rate(georedis_made_up_total[5m])",  # a made-up name
        "georedis_command_duration_seconds",  # a histogram has no bare series
        'sum by (node) (georedis_node_up{node="x"}) / georedis_node_upp',  # a typo
        "histogram_quantiles(0.5, georedis_node_up)",  # no such function
    ],
)
def test_the_check_fails_when_a_panel_queries_what_is_not_exported(expr: str) -> None:
    board = copy.deepcopy(BOARDS[0][1])
    _, target = next(t for t in targets(board) if t[0]["type"] != "row")
    target["expr"] = expr
    assert problems(board)


def test_the_five_seed_dashboards_are_written_and_provisioned(tmp_path: Path) -> None:
    paths = generate_configs(make_config(), tmp_path)
    folder = tmp_path / "grafana" / "dashboards"
    written = sorted(p for p in paths if p.parent == folder)
    assert [p.name for p in written] == sorted(name for name, _ in BOARDS)
    assert sorted(folder.iterdir()) == written  # the old single georedis.json is gone
    for name, board in BOARDS:
        assert json.loads((folder / name).read_text()) == json.loads(json.dumps(board))
    titles = [board["title"] for _, board in BOARDS]
    for seed, title in zip(SEED_TITLES, titles, strict=True):
        assert seed in title
    # The provider loads a folder, so all five (and any added later) are provisioned.
    provider = grafana_dashboards("/var/lib/grafana/dashboards")["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"].endswith("dashboards")


def _overlaps(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def grid_problems(board: dict[str, Any]) -> list[str]:
    out = []
    placed: list[tuple[str, dict[str, int]]] = []
    for p in panels(board):
        g = p["gridPos"]
        if not (g["x"] >= 0 and g["y"] >= 0 and g["w"] > 0 and g["h"] > 0):
            out.append(f"{p['title']}: bad gridPos {g}")
        if g["x"] + g["w"] > GRID_WIDTH:
            out.append(f"{p['title']}: past the grid's right edge")
        out.extend(f"{p['title']} overlaps {t}" for t, q in placed if _overlaps(g, q))
        placed.append((p["title"], g))
    return out


def test_panels_do_not_overlap_and_the_overlap_check_works() -> None:
    for _, board in BOARDS:
        assert not grid_problems(board), board["uid"]
    bad = copy.deepcopy(BOARDS[0][1])
    bad["panels"][2]["gridPos"] = dict(bad["panels"][1]["gridPos"])
    assert grid_problems(bad)


def test_dashboard_structure() -> None:
    provisioned = grafana_datasource("http://prometheus:9090")["datasources"][0]
    uids = [board["uid"] for _, board in BOARDS]
    assert len(set(uids)) == 5 and all(u.startswith("georedis-") for u in uids)
    assert len({board["title"] for _, board in BOARDS}) == 5
    for _, board in BOARDS:
        assert 36 <= board["schemaVersion"] <= 41 and board["description"]
        (var,) = board["templating"]["list"]
        assert var["type"] == "datasource" and var["query"] == provisioned["type"]
        # The variable's default is the provisioned datasource itself.
        assert var["current"]["value"] == provisioned["uid"]
        assert var["current"]["text"] == provisioned["name"]
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), board["uid"]
        rows = [p for p in panels(board) if p["type"] == "row"]
        assert rows and board["panels"][0]["type"] == "row"
        for p in panels(board):
            assert p["title"], board["uid"]
            if p["type"] == "row":
                continue
            assert p["type"] in ("timeseries", "stat", "state-timeline")
            assert p["datasource"] == DATASOURCE == {"type": "prometheus", "uid": "${datasource}"}
            assert p["targets"], p["title"]
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs))
            assert all(t["datasource"] == DATASOURCE and t["expr"] for t in p["targets"])


def _exprs(board: dict[str, Any]) -> str:
    return "\n".join(t["expr"] for _, t in targets(board))


def test_each_dashboard_shows_what_the_seed_asks() -> None:
    by_uid = {board["uid"]: board for _, board in BOARDS}
    perf = _exprs(by_uid["georedis-performance"])
    assert "histogram_quantile(0.99, sum by (le, node, region)" in perf  # percentiles by node
    assert "histogram_quantile(0.5, sum by (le)" in perf
    assert "sum by (class, outcome) (rate(georedis_commands_total" in perf  # ops/s by class
    repl = by_uid["georedis-replication"]
    assert "georedis_node_replication_lag_seconds) * 1000" in _exprs(repl)  # ms
    for word in ("georedis_node_link_up", "georedis_node_eligible", "georedis_failovers_total"):
        assert word in _exprs(repl)
    lag = next(p for p in panels(repl) if p["title"] == "Replication lag per replica")
    assert lag["fieldConfig"]["defaults"]["unit"] == "ms"
    assert lag["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == 750.0
    backup = _exprs(by_uid["georedis-backup"])
    for word in ("last_success_timestamp", "last_size_bytes", "last_duration_seconds",
                 'georedis_backups_total{result="error"}'):  # fmt: skip
        assert word in backup
    memory = _exprs(by_uid["georedis-memory"])
    assert "georedis_node_maxmemory_bytes > 0" in memory and "deriv(" in memory
    overview = _exprs(by_uid["georedis-overview"])
    assert "georedis_primary_up" in overview and "georedis_reads_total" in overview


def _promtool_check(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # As recording rules: `promtool check rules` parses each expression, offline.
    rules = [{"record": f"dashboard:query_{i}", "expr": e.replace("$__rate_interval", "5m")}
             for i, e in enumerate(exprs)]  # fmt: skip
    (tmp_path / "rules.json").write_text(json.dumps({"groups": [{"name": "d", "rules": rules}]}))
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, "check", "rules", "rules.json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")
def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    exprs = [t["expr"] for _, board in BOARDS for _, t in targets(board)]
    result = _promtool_check(exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(exprs)} rules found" in result.stdout
    assert _promtool_check(["sum by (node (georedis_node_up)"], tmp_path).returncode != 0
