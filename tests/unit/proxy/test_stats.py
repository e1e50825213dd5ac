"""Hot-path counters, their merge across workers, and every exporter built on them:
the Prometheus collector, the status data and page, PROXY INFO / CLIENTS / CONFIG GET,
and the log formatters. No sockets: the exporters are rendered in process.

`make_source()` is a real `StatusSource` over a hand-made topology snapshot; the
integration test (tests/integration/test_observability.py) serves it over HTTP.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from config.model import Address, Config, ProxyConfig, RegionConfig, RoutingConfig
from proxy.logs import log_event, setup_logging
from proxy.observe.infotext import config_get, render_clients, render_proxy_info
from proxy.observe.metrics import CLUSTER_ONLY, METRIC_NAMES, METRICS, make_registry
from proxy.observe.statuspage import render_status, status_json
from proxy.stats import (
    BUCKETS,
    CLASS_ADMIN,
    CLASS_READ,
    CLASS_WRITE,
    ClientInfo,
    LatencyHistogram,
    ProxyStats,
    RateMeter,
    StatsAggregator,
    StatusSource,
    proxy_version,
)
from routing.topology import NodeState, Reason, Role, Snapshot

PRIMARY = Address("127.0.0.1", 7000)
AP_REPLICA = Address("127.0.0.1", 7001)
US_REPLICA = Address("127.0.0.1", 7100)
EU_REPLICA = Address("::1", 7200)
STRAY = Address("127.0.0.1", 7999)  # in the snapshot, not in the config

PRIMARY_INFO = {
    "used_memory": "1048576",
    "used_memory_peak": "2097152",
    "maxmemory": "0",
    "mem_fragmentation_ratio": "1.25",
    "used_cpu_sys": "1.5",
    "used_cpu_user": "2.25",
    "connected_clients": "7",
    "connected_slaves": "2",
    "instantaneous_ops_per_sec": "123",
    "keyspace_hits": "90",
    "keyspace_misses": "10",
    "evicted_keys": "0",
    "expired_keys": "4",
    "rdb_changes_since_last_save": "17",
    "rdb_last_save_time": "1700000000",
    "rdb_last_bgsave_status": "ok",
    "aof_enabled": "1",
    "aof_last_write_status": "err",
}


def make_config(max_lag_ms: int = 1000) -> Config:
    return Config(
        proxy=ProxyConfig(region="ap-southeast-1", workers=2),
        regions=(
            RegionConfig("ap-southeast-1", 1.35, 103.8, (PRIMARY, AP_REPLICA)),
            RegionConfig("us-east-1", 38.9, -77.0, (US_REPLICA,)),
            RegionConfig("eu-west-1", 53.3, -6.3, (EU_REPLICA,)),
        ),
        routing=RoutingConfig(max_lag_ms=max_lag_ms),
        source="/etc/georedis/georedis.toml",
    )


def make_snapshot() -> Snapshot:
    primary = NodeState(
        PRIMARY, "ap-southeast-1", up=True, role=Role.PRIMARY, link_up=True,
        reason=Reason.PRIMARY, info=PRIMARY_INFO, offset=5000,
    )  # fmt: skip
    ap = NodeState(
        AP_REPLICA, "ap-southeast-1", up=True, role=Role.REPLICA, link_up=True,
        lag_ms=2500.0, lag_bytes=4000, reason=Reason.LAGGING,
    )  # fmt: skip
    us = NodeState(
        US_REPLICA, "us-east-1", up=True, role=Role.REPLICA, link_up=True,
        lag_ms=12.5, lag_bytes=100, eligible=True, reason=Reason.OK,
    )  # fmt: skip
    eu = NodeState(EU_REPLICA, "eu-west-1", reason=Reason.DOWN, error="connection refused")
    stray = NodeState(STRAY, "sa-east-1", up=True, role=Role.MASTER, reason=Reason.NO_PRIMARY)
    return Snapshot(
        version=42,
        nodes=(primary, ap, us, eu, stray),
        primary=primary,
        eligible_by_region={"us-east-1": (us,)},
    )


def make_stats() -> ProxyStats:
    s = ProxyStats()
    s.connections_current = 3
    s.connections_total = 10
    s.connections_rejected = 1
    s.protocol_errors = 2
    s.commands[CLASS_READ] = 100
    s.commands[CLASS_WRITE] = 50
    s.commands[CLASS_ADMIN] = 5
    s.errors[CLASS_WRITE] = 4
    s.timeouts, s.unavailable, s.retries = 6, 7, 8
    s.ryw_redirects, s.fallbacks_primary = 9, 11
    s.reads_by_region = {("us-east-1", "us-east-1"): 75, ("us-east-1", "ap-southeast-1"): 25,
                         ("eu-west-1", "ap-southeast-1"): 10}  # fmt: skip
    for v in (0.0003, 0.0003, 0.004, 0.2):
        s.node_hist("127.0.0.1:7009").observe(v)
    s.node_hist(str(US_REPLICA)).observe(0.15)
    s.node_hist(str(EU_REPLICA)).observe(0.3)
    return s


@dataclass
class FakeProxy:
    """A real StatusSource implementation over fixed data (not a Redis stand-in)."""

    config: Config = field(default_factory=make_config)
    started_at: float = field(default_factory=lambda: time.time() - 3725)
    stats: ProxyStats = field(default_factory=make_stats)
    snap: Snapshot = field(default_factory=make_snapshot)

    def snapshot(self) -> Snapshot:
        return self.snap

    def outstanding(self, addr: Address) -> int:
        return addr.port % 7  # distinct per node: 7000 -> 0, 7100 -> 2, 7200 -> 4

    def pool_connections(self, addr: Address) -> int:
        return 2

    def clients(self) -> list[ClientInfo]:
        return [
            ClientInfo(1, "10.1.2.3:5000", "web app", 0, 2, "us-east-1", "cidr", 12.7, 0.2, 9, ""),
            ClientInfo(2, "[::1]:6000", "", 3, 3, "ap-southeast-1", "default", 1.0, 1.0, 0, "x"),
        ]


def make_source() -> StatusSource:
    return FakeProxy()


# --- LatencyHistogram / ProxyStats -------------------------------------------------


def test_buckets_span_50us_to_10s_exponentially() -> None:
    assert BUCKETS[0] == 50e-6 and BUCKETS[-1] == 10.0
    assert 15 <= len(BUCKETS) <= 25
    assert all(2 <= b / a <= 2.5 for a, b in itertools.pairwise(BUCKETS))


def test_histogram_bounds_are_inclusive_and_overflow_goes_to_inf() -> None:
    h = LatencyHistogram()
    for v in (0.0, 50e-6, 50.1e-6, 10.0, 11.0):
        h.observe(v)
    assert h.counts[0] == 2  # 0 and exactly 50us (le="5e-05")
    assert h.counts[1] == 1
    assert h.counts[len(BUCKETS) - 1] == 1  # exactly 10 s
    assert h.counts[-1] == 1  # +Inf
    assert h.count == 5 and h.sum == pytest.approx(21.0001001)
    cum = h.cumulative()
    assert cum[-1] == (float("inf"), 5) and cum[0] == (50e-6, 2)
    assert h.quantile(0.5) == 100e-6
    assert LatencyHistogram().quantile(0.5) is None


def test_histogram_dict_roundtrip_and_bucket_mismatch() -> None:
    h = LatencyHistogram()
    h.observe(0.001)
    back = LatencyHistogram.from_dict(json.loads(json.dumps(h.to_dict())))
    assert back.counts == h.counts and back.sum == h.sum and back.count == 1
    with pytest.raises(ValueError, match="buckets"):
        LatencyHistogram.from_dict({"counts": [1, 2], "sum": 0.0, "count": 3})


def test_stats_survive_json_and_merge_adds_everything() -> None:
    a, b = make_stats(), make_stats()
    b.count_read("eu-west-1", "eu-west-1")
    b.node_hist("127.0.0.1:7001").observe(0.001)
    wire = json.loads(json.dumps(b.to_dict()))  # as shipped from a worker
    a.merge_dict(wire)
    assert a.connections_current == 6 and a.connections_total == 20
    assert a.commands == [200, 100, 10, 0] and a.errors == [0, 8, 0, 0]
    assert a.timeouts == 12 and a.fallbacks_primary == 22
    assert a.reads_by_region[("us-east-1", "us-east-1")] == 150
    assert a.reads_by_region[("eu-west-1", "eu-west-1")] == 1
    # The client-side histogram is the sum of the per-node ones: 2 x 6 + 1 observations.
    assert a.latency.count == 13
    assert a.latency.sum == pytest.approx(2 * (0.2046 + 0.15 + 0.3) + 0.001)
    assert a.node_latency[str(US_REPLICA)].count == 2
    assert a.node_latency["127.0.0.1:7001"].count == 1
    assert ProxyStats.from_dict(a.to_dict()).to_dict() == a.to_dict()


def test_aggregator_is_idempotent_and_monotonic_across_worker_exit() -> None:
    agg = StatsAggregator()
    w1, w2 = make_stats(), make_stats()
    agg.update(1, w1.to_dict())
    agg.update(2, w2.to_dict())
    agg.update(2, w2.to_dict())  # a repeated message changes nothing
    merged = agg.merged()
    assert merged.connections_current == 6 and merged.commands[CLASS_READ] == 200
    agg.retire(2)
    after = agg.merged()
    assert after.connections_current == 3  # worker 2's connections are gone
    assert after.commands[CLASS_READ] == 200  # its commands still count
    assert after.latency.count == 12
    assert agg.workers() == [1]
    agg.retire(7)  # unknown worker: no-op
    assert agg.merged().to_dict() == after.to_dict()


def test_rate_meter() -> None:
    m = RateMeter(start=1000.0, window=5.0)
    assert m.rate(100, now=1010.0) == pytest.approx(10.0)  # since start
    # The span reaches back to the last sample at or before the window start (1000 here).
    assert m.rate(150, now=1011.0) == pytest.approx(150 / 11)
    assert m.rate(200, now=1020.0) == pytest.approx(50 / 9)  # since the previous call
    for t in range(1021, 1030):
        m.sample(200 + (t - 1020) * 20, now=float(t))
    rate = m.rate(200 + 10 * 20, now=1030.0)
    assert rate == pytest.approx(20.0)
    assert len(m._samples) <= 7  # old samples are dropped


# --- Prometheus collector ------------------------------------------------------------


def _samples(source: StatusSource) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(make_registry(source)).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _get(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
         **labels: str) -> float | None:  # fmt: skip
    return samples.get((name, tuple(sorted(labels.items()))))


def test_config_reloads_are_counted_by_result() -> None:
    stats = ProxyStats()
    stats.reloads_ok, stats.reloads_failed = 3, 1
    samples = _samples(FakeProxy(stats=stats))
    assert _get(samples, "georedis_config_reloads_total", result="ok") == 3
    assert _get(samples, "georedis_config_reloads_total", result="refused") == 1


def test_metric_table_is_unique_and_follows_conventions() -> None:
    names = [m.name for m in METRICS]
    assert len(names) == len(set(names)) == len(METRIC_NAMES)
    for m in METRICS:
        assert m.name.startswith("georedis_"), m.name
        assert m.help.strip(), m.name
        assert m.name.endswith("_total") == (m.kind == "counter"), m.name
        if m.kind == "histogram":
            assert m.name.endswith("_seconds"), m.name


def test_every_declared_metric_is_exported() -> None:
    exported = {name for name, _ in _samples(make_source())}
    for m in METRICS:
        if m.name in CLUSTER_ONLY:  # a cluster source exports them (test_cluster_metrics)
            assert m.name not in exported, f"{m.name} exported in standalone mode"
            continue
        expected = f"{m.name}_bucket" if m.kind == "histogram" else m.name
        assert expected in exported, f"{m.name} declared but not exported"


def test_proxy_metrics_values() -> None:
    s = _samples(make_source())
    assert _get(s, "georedis_build_info", version=proxy_version(), region="ap-southeast-1") == 1
    assert 3724 <= (_get(s, "georedis_uptime_seconds") or 0) <= 3800
    assert _get(s, "georedis_client_connections") == 3
    assert _get(s, "georedis_client_connections_total") == 10
    assert _get(s, "georedis_client_connections_rejected_total") == 1
    assert _get(s, "georedis_client_protocol_errors_total") == 2
    assert _get(s, "georedis_commands_total", **{"class": "write", "outcome": "ok"}) == 46
    assert _get(s, "georedis_commands_total", **{"class": "write", "outcome": "error"}) == 4
    assert _get(s, "georedis_commands_total", **{"class": "other", "outcome": "ok"}) == 0
    reads = {"client_region": "us-east-1", "served_region": "ap-southeast-1"}
    assert _get(s, "georedis_reads_total", **reads) == 25
    assert _get(s, "georedis_ryw_redirects_total") == 9
    assert _get(s, "georedis_fallbacks_primary_total") == 11
    # All nodes together: 0.0003 x2, 0.004, 0.2 (one node) + 0.15 and 0.3 (two others).
    assert _get(s, "georedis_command_duration_seconds_count") == 6
    assert _get(s, "georedis_command_duration_seconds_bucket", le="0.0005") == 2
    assert _get(s, "georedis_command_duration_seconds_bucket", le="0.005") == 3
    assert _get(s, "georedis_command_duration_seconds_bucket", le="0.2") == 5
    assert _get(s, "georedis_command_duration_seconds_bucket", le="+Inf") == 6
    eu = {"node": "[::1]:7200", "region": "eu-west-1", "class": "other"}
    assert _get(s, "georedis_node_request_duration_seconds_bucket", le="0.2", **eu) == 0
    assert _get(s, "georedis_node_request_duration_seconds_bucket", le="0.5", **eu) == 1


def test_topology_and_node_metrics() -> None:
    s = _samples(make_source())
    p = {"node": "127.0.0.1:7000", "region": "ap-southeast-1"}
    ap = {"node": "127.0.0.1:7001", "region": "ap-southeast-1"}
    us = {"node": "127.0.0.1:7100", "region": "us-east-1"}
    eu = {"node": "[::1]:7200", "region": "eu-west-1"}
    assert _get(s, "georedis_topology_version") == 42
    assert _get(s, "georedis_primary_up") == 1
    assert _get(s, "georedis_region_eligible_replicas", region="us-east-1") == 1
    assert _get(s, "georedis_region_eligible_replicas", region="eu-west-1") == 0
    assert _get(s, "georedis_region_replica_nodes", region="ap-southeast-1") == 1
    assert _get(s, "georedis_node_up", **p) == 1 and _get(s, "georedis_node_up", **eu) == 0
    assert _get(s, "georedis_node_role", role="primary", **p) == 1
    assert _get(s, "georedis_node_role", role="replica", **p) == 0
    assert _get(s, "georedis_node_eligible", **us) == 1
    assert _get(s, "georedis_node_eligible_reason", reason="ok", **us) == 1
    assert _get(s, "georedis_node_eligible_reason", reason="lagging", **ap) == 1
    assert _get(s, "georedis_node_eligible_reason", reason="ok", **ap) == 0
    assert _get(s, "georedis_node_replication_lag_seconds", **us) == pytest.approx(0.0125)
    assert _get(s, "georedis_node_replication_lag_bytes", **ap) == 4000
    assert _get(s, "georedis_node_replication_lag_seconds", **eu) is None  # not measured
    assert _get(s, "georedis_node_outstanding_requests", **us) == 2
    assert _get(s, "georedis_node_pool_connections", **eu) == 2
    # INFO fields: the primary has them, the others export none.
    assert _get(s, "georedis_node_used_memory_bytes", **p) == 1048576
    assert _get(s, "georedis_node_maxmemory_bytes", **p) == 0
    assert _get(s, "georedis_node_mem_fragmentation_ratio", **p) == 1.25
    assert _get(s, "georedis_node_cpu_seconds_total", **p) == 3.75
    assert _get(s, "georedis_node_connected_replicas", **p) == 2
    assert _get(s, "georedis_node_keyspace_hits_total", **p) == 90
    assert _get(s, "georedis_node_rdb_last_save_timestamp_seconds", **p) == 1.7e9
    assert _get(s, "georedis_node_rdb_last_bgsave_ok", **p) == 1
    assert _get(s, "georedis_node_aof_last_write_ok", **p) == 0
    assert _get(s, "georedis_node_used_memory_bytes", **us) is None


def test_collector_tolerates_empty_topology_and_garbage_info() -> None:
    src = FakeProxy(stats=ProxyStats())
    bad = NodeState(PRIMARY, "ap-southeast-1", up=True, info={"used_memory": "lots"})
    src.snap = Snapshot(version=1, nodes=(bad,), primary=None, primary_error="two masters")
    s = _samples(src)
    node = {"node": "127.0.0.1:7000", "region": "ap-southeast-1"}
    assert _get(s, "georedis_primary_up") == 0
    assert _get(s, "georedis_node_used_memory_bytes", **node) is None
    assert _get(s, "georedis_region_replica_nodes", region="ap-southeast-1") == 2


# --- status data, page and PROXY INFO ------------------------------------------------


def test_status_json_regions_nodes_and_routing_shares() -> None:
    data = json.loads(json.dumps(status_json(make_source())))
    p = data["proxy"]
    assert p["region"] == "ap-southeast-1" and p["clients"] == 3 and p["workers"] == 2
    assert p["primary"] == "127.0.0.1:7000" and p["total_commands"] == 155
    assert [r["name"] for r in data["regions"]] == [
        "ap-southeast-1", "us-east-1", "eu-west-1", "sa-east-1",
    ]  # fmt: skip
    ap = data["regions"][0]
    assert [n["addr"] for n in ap["nodes"]] == ["127.0.0.1:7000", "127.0.0.1:7001"]
    assert ap["nodes"][1]["reason"] == "lagging" and ap["nodes"][1]["lag_ms"] == 2500.0
    assert data["regions"][1]["eligible_replicas"] == 1
    assert data["regions"][2]["nodes"][0]["error"] == "connection refused"
    shares = {(r["client_region"], r["served_region"]): r["pct"] for r in data["routing"]}
    assert shares == {
        ("eu-west-1", "ap-southeast-1"): 100.0,
        ("us-east-1", "ap-southeast-1"): 25.0,
        ("us-east-1", "us-east-1"): 75.0,
    }


def test_status_json_lists_configured_nodes_before_the_first_probe() -> None:
    src = FakeProxy()
    src.snap = Snapshot(version=0, nodes=(), primary=None, primary_error="not probed yet")
    data = status_json(src)
    addrs = [n["addr"] for r in data["regions"] for n in r["nodes"]]
    assert addrs == ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7100", "[::1]:7200"]
    assert all(not n["up"] for r in data["regions"] for n in r["nodes"])


def test_render_status_html() -> None:
    html = render_status(make_source())
    assert html.startswith("<!doctype html>")
    for text in ("127.0.0.1:7000", "[::1]:7200", "us-east-1", "eu-west-1", "lagging",
                 "75.0%", "connection refused", "01:02:0"):  # fmt: skip
        assert text in html, text
    assert "http://" not in html and "https://" not in html  # no external assets
    assert "/status.json" in html or "fetch(" in html


def test_render_status_escapes_hostile_text() -> None:
    src = FakeProxy()
    bad = NodeState(STRAY, "<script>alert(1)</script>", error='"><img src=x>')
    src.snap = Snapshot(version=1, nodes=(bad,), primary=None)
    html = render_status(src)
    assert "<script>alert(1)" not in html and "<img src=x>" not in html
    assert "&lt;script&gt;" in html


def test_render_proxy_info() -> None:
    text = render_proxy_info(make_source())
    assert text.startswith("# Proxy\r\n") and "\n" not in text.replace("\r\n", "")
    lines = dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)
    assert lines["region"] == "ap-southeast-1"
    assert lines["config_file"] == "/etc/georedis/georedis.toml"
    assert lines["workers"] == "2" and lines["connected_clients"] == "3"
    assert lines["total_commands"] == "155"
    assert 3724 <= int(lines["uptime_in_seconds"]) <= 3800
    assert float(lines["ops_per_sec"]) >= 0
    for section in ("# Stats", "# Routing", "# Nodes"):
        assert section in text
    assert "route2:client_region=us-east-1,served_region=us-east-1,reads=75,pct=75.00" in text
    assert (
        "node1:addr=127.0.0.1:7001,region=ap-southeast-1,role=replica,up=1,link=1,"
        "eligible=0,reason=lagging,lag_ms=2500.0,lag_bytes=4000,outstanding=1,pool=2"
    ) in text
    assert "node3:addr=[::1]:7200,region=eu-west-1,role=unknown,up=0" in text
    assert "lag_ms=-1,lag_bytes=-1" in text


def test_render_clients() -> None:
    lines = render_clients(make_source()).splitlines()
    assert lines[0] == (
        "id=1 addr=10.1.2.3:5000 name=web_app age=12 idle=0 flags=N db=0 resp=2 "
        "qbuf=0 omem=0 user=default region=us-east-1 loc=cidr tot-cmds=9"
    )
    assert lines[1].startswith("id=2 addr=[::1]:6000 name= ") and "flags=x db=3 resp=3" in lines[1]


def test_config_get() -> None:
    cfg = make_config(max_lag_ms=750)
    assert config_get(cfg, "routing.max_lag_ms") == [("routing.max_lag_ms", "750")]
    assert config_get(cfg, "ROUTING.MAX_LAG_MS") == [("routing.max_lag_ms", "750")]
    routing = dict(config_get(cfg, "routing.*"))
    assert routing["routing.fallback"] == "primary"
    assert routing["routing.read_your_writes"] == "no"
    listens = dict(config_get(cfg, "*.listen"))
    assert listens == {
        "proxy.listen": "127.0.0.1:6380",
        "metrics.listen": "127.0.0.1:9121",
        "tls.listen": "",
    }
    assert dict(config_get(cfg, "regions.eu-west-1.*"))["regions.eu-west-1.nodes"] == "[::1]:7200"
    assert config_get(cfg, "backend.password_env") == [("backend.password_env", "")]
    assert config_get(cfg, "nothing.like.this") == []
    assert len(config_get(cfg, "*")) > 40


# --- logs ------------------------------------------------------------------------------


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logger")
def test_json_logs_one_object_per_line() -> None:
    buf = io.StringIO()
    setup_logging("json", "info", stream=buf)
    log = logging.getLogger("proxy.backend.health")
    log_event(log, "node_down", node="127.0.0.1:7001", failures=3)
    log.debug("hidden")
    log.warning("plain %s", "message", extra={"region": "us-east-1"})
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "info" and first["logger"] == "proxy.backend.health"
    assert first["msg"] == "node_down" and first["event"] == "node_down"
    assert first["node"] == "127.0.0.1:7001" and first["failures"] == 3
    assert first["ts"].endswith("Z")
    assert second == {**second, "msg": "plain message", "level": "warning", "region": "us-east-1"}


@pytest.mark.usefixtures("restore_root_logger")
def test_text_logs_key_value_and_setup_replaces_its_handler() -> None:
    setup_logging("json", "info", stream=io.StringIO())
    buf = io.StringIO()
    setup_logging("text", "debug", stream=buf)
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_georedis_handler", False)]
    assert len(ours) == 1
    log_event(logging.getLogger("proxy.admin.verbs"), "failover", to="[::1]:7200",
              reason="primary down", name="")  # fmt: skip
    line = buf.getvalue().strip()
    assert " info proxy.admin.verbs failover " in line
    assert line.endswith('to=[::1]:7200 reason="primary down" name_=""')
    with pytest.raises(ValueError):
        setup_logging("xml", "info")
    with pytest.raises(ValueError):
        setup_logging("text", "loud")
