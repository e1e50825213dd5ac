"""Observability end to end: the real proxy in front of real redis-servers.

Traffic goes through the proxy; the tests then read what an operator would read: the
`/metrics` scrape (checked with prometheus-client's parser and `promtool check metrics`),
the files `georedis generate-configs` writes (checked with `promtool`), the admin verbs
through `redis-cli`, the status page in headless Chromium, and the JSON log of a proxy
run as a subprocess while a replica dies.

Counters are cumulative for the module's proxy, so assertions compare two scrapes
(before/after) rather than absolute values.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from proxy.observe.metrics import CLUSTER_ONLY
from tests.helpers.proxyrun import ProxyThread, config_from_toml, wait_for
from tests.helpers.topology import RedisNode, RedisTopology, free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PROMTOOL = shutil.which("promtool")
REDIS_CLI = shutil.which("redis-cli")
REGIONS = ("ap-southeast-1", "us-east-1", "eu-west-1")

# Probes every 100 ms and the full INFO (memory, CPU...) every 200 ms, so the metrics
# fill in within a fraction of a second.
FAST = """
[health]
interval_ms = 100
probe_timeout_ms = 300
info_interval_ms = 200
[backend]
timeout_ms = 2000
"""
SLOW_US = 20_000  # [metrics] slowlog_threshold_us for the module's proxy

Samples = dict[str, list[tuple[dict[str, str], float]]]


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def proxy(topology_module: RedisTopology) -> Iterator[ProxyThread]:
    text = topology_module.config_toml(
        free_port(),
        extra=FAST,
        metrics_port=free_port(),
        metrics_options={"slowlog_threshold_us": SLOW_US, "slowlog_max_len": 64},
    )
    with ProxyThread(config_from_toml(text)) as p:
        wait_for(lambda: _all_probed(p, topology_module), 10, "every node probed with full INFO")
        yield p


def _all_probed(p: ProxyThread, topo: RedisTopology) -> bool:
    assert p.app is not None
    snap = p.app.topo
    return (
        len(snap.nodes) == len(topo.nodes)
        and all(n.up and "used_memory" in n.info for n in snap.nodes)
        and sum(n.eligible for n in snap.nodes) == len(topo.nodes) - 1
    )


def _metrics_url(p: ProxyThread) -> str:
    m = p.config.metrics.listen
    return f"http://{m.host}:{m.port}"


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


def scrape(p: ProxyThread) -> tuple[str, Samples]:
    """The /metrics text and its samples by sample name (histograms as _bucket/_count...)."""
    status, _, body = _get(_metrics_url(p) + "/metrics")
    assert status == 200
    text = body.decode()
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return text, out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels`; 0 when there is none."""
    found = [v for lab, v in samples.get(name, []) if labels.items() <= lab.items()]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


def cmd(c: redis.Redis, *args: str) -> Any:
    """`c.execute_command(*args)`, typed (redis-py leaves it untyped)."""
    return c.execute_command(*args)  # type: ignore[no-untyped-call]


def _addr(n: RedisNode) -> str:
    return n.address


# --- 1. /metrics after real traffic --------------------------------------------------------


def test_metrics_after_traffic(proxy: ProxyThread, topology_module: RedisTopology) -> None:
    topo = topology_module
    _, before = scrape(proxy)
    c = proxy.client()
    n_set, n_get, n_err = 40, 60, 5
    for i in range(n_set):
        c.set(f"m{i}", "x" * 100)
    topo.wait_synced()
    for i in range(n_get):
        assert c.get(f"m{i % n_set}") == b"x" * 100
    for _ in range(n_err):
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            c.lpush("m0", "a")  # a write on a string key: the primary answers with an error
    # A client that says it is in us-east-1 reads from the us-east-1 replica.
    us = proxy.client()
    assert cmd(us, "PROXY", "REGION", "us-east-1") == b"OK"
    for i in range(10):
        assert us.get(f"m{i}") == b"x" * 100
    n_cmds = n_set + n_get + n_err + 10

    text, after = scrape(proxy)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # The client-side latency histogram: every forwarded command observed once.
    assert delta("georedis_command_duration_seconds_count") >= n_cmds
    assert delta("georedis_command_duration_seconds_bucket", le="+Inf") >= n_cmds
    assert value(after, "georedis_command_duration_seconds_sum") > 0
    buckets = [v for lab, v in after["georedis_command_duration_seconds_bucket"]]
    assert buckets == sorted(buckets), "bucket counts must be cumulative"
    # Commands by class and outcome; the WRONGTYPE replies are write errors.
    assert delta("georedis_commands_total", **{"class": "write", "outcome": "ok"}) == n_set
    assert delta("georedis_commands_total", **{"class": "write", "outcome": "error"}) == n_err
    assert delta("georedis_commands_total", **{"class": "read", "outcome": "ok"}) == n_get + 10
    for lab, v in after["georedis_commands_total"]:
        assert v >= 0, lab  # ok = total - errors must never go negative

    # Per-node latency, labelled by node, region and command class.
    primary, local = topo.primary, topo.node("ap-southeast-1", 1)
    us_node = topo.node("us-east-1")
    hist = "georedis_node_request_duration_seconds_count"
    write, read = {"class": "write"}, {"class": "read"}
    assert delta(hist, node=_addr(primary), region="ap-southeast-1", **write) == n_set + n_err
    assert delta(hist, node=_addr(local), region="ap-southeast-1", **read) == n_get
    assert delta(hist, node=_addr(us_node), region="us-east-1", **read) == 10

    # Reads by the client's region and the region that served them.
    reads = "georedis_reads_total"
    local_reads = {"client_region": "ap-southeast-1", "served_region": "ap-southeast-1"}
    us_reads = {"client_region": "us-east-1", "served_region": "us-east-1"}
    assert delta(reads, **local_reads) == n_get
    assert delta(reads, **us_reads) == 10

    # Replication state per node, labelled by node and region.
    for n in topo.nodes:
        labels = {"node": _addr(n), "region": n.region}
        assert value(after, "georedis_node_up", **labels) == 1, n
        is_primary = n is topo.primary
        assert value(after, "georedis_node_eligible", **labels) == (0 if is_primary else 1), n
        role = "primary" if is_primary else "replica"
        # "1 for a master" (the metric's help): a healthy primary is not "link down".
        assert value(after, "georedis_node_link_up", **labels) == 1, n
        assert value(after, "georedis_node_role", **labels, role=role) == 1, n
        if not is_primary:
            lag = [v for lab, v in after["georedis_node_replication_lag_seconds"] if lab == labels]
            assert len(lag) == 1 and 0 <= lag[0] < 1.0, (n, lag)
            assert value(after, "georedis_node_replication_lag_bytes", **labels) >= 0
        # The backends' memory and other INFO fields, from the full INFO poll.
        assert value(after, "georedis_node_used_memory_bytes", **labels) > 100_000, n
        assert value(after, "georedis_node_used_memory_peak_bytes", **labels) > 0, n
        assert labels in [lab for lab, _ in after["georedis_node_maxmemory_bytes"]], n
        assert value(after, "georedis_node_cpu_seconds_total", **labels) > 0, n
        assert value(after, "georedis_node_connected_clients", **labels) >= 1, n
    for r in REGIONS:  # one eligible replica in each region
        assert value(after, "georedis_region_eligible_replicas", region=r) == 1, r
    assert value(after, "georedis_primary_up") == 1

    # The scrape itself is well-formed Prometheus text (names, help, units).
    if PROMTOOL:
        lint = subprocess.run(
            [PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
        )
        assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()


def test_memory_metric_follows_info_poll(
    proxy: ProxyThread, topology_module: RedisTopology
) -> None:
    """used_memory is re-read every info_interval_ms, not just once at start."""
    primary = topology_module.primary
    labels = {"node": primary.address, "region": primary.region}
    _, before = scrape(proxy)
    c = proxy.client()
    c.set("big", "z" * 4_000_000)
    try:
        wait_for(
            lambda: (
                value(scrape(proxy)[1], "georedis_node_used_memory_bytes", **labels)
                > value(before, "georedis_node_used_memory_bytes", **labels) + 3_000_000
            ),
            5,
            "used_memory of the primary to grow by the 4 MB value",
        )
    finally:
        c.delete("big")


# --- 2. generated Prometheus and Grafana files --------------------------------------------


def test_generate_configs_pass_promtool(
    proxy: ProxyThread, topology_module: RedisTopology, tmp_path: Path
) -> None:
    cfg = tmp_path / "georedis.toml"
    topology_module.write_config(
        cfg, proxy.port, extra=FAST, metrics_port=proxy.config.metrics.listen.port
    )
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "generate-configs", str(out), "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr.decode()
    written = {Path(line) for line in r.stdout.decode().split()}
    prom = out / "prometheus" / "prometheus.yml"
    rules = out / "prometheus" / "georedis-alerts.yml"
    boards = sorted((out / "grafana" / "dashboards").glob("georedis-*.json"))
    assert len(boards) == 5 and {prom, rules, *boards} <= written
    # The scrape target is this proxy's metrics listener.
    assert f"127.0.0.1:{proxy.config.metrics.listen.port}" in prom.read_text()

    if PROMTOOL:
        for args in (["check", "rules", str(rules)], ["check", "config", str(prom)]):
            chk = subprocess.run([PROMTOOL, *args], capture_output=True, timeout=60)
            assert chk.returncode == 0, chk.stdout.decode() + chk.stderr.decode()

    panels = [p for board in boards for p in json.loads(board.read_text())["panels"]]
    titles = [p["title"].lower() for p in panels if p["type"] != "row"]
    assert any("latency" in t for t in titles), titles
    assert any("region" in t for t in titles), titles
    assert any("lag" in t for t in titles), titles
    # Every georedis_* series a panel or alert queries is one the live proxy exports.
    _, live = scrape(proxy)
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    exprs.append(rules.read_text())
    used = {w for e in exprs for w in _metric_words(e)}
    assert used, "no georedis_* names found in the generated files"
    # (A standalone proxy leaves the cluster-only families out; the cluster's alerts
    # query them, and tests/integration/test_cluster_admin.py scrapes them from a cluster.)
    missing = sorted(u for u in used if u not in live and u not in CLUSTER_ONLY)
    assert not missing, f"queried but not exported: {missing}"
    assert used & CLUSTER_ONLY, "the cluster alert rules query no cluster metric"


def _metric_words(expr: str) -> set[str]:
    return set(re.findall(r"\bgeoredis_[a-z_]+\b", expr))


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")
def test_promtool_rejects_broken_rules(tmp_path: Path) -> None:
    """The promtool check above can fail: a rule with bad PromQL is refused."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n- name: x\n  rules:\n  - alert: A\n    expr: rate(georedis_x[5m]\n")
    assert PROMTOOL is not None
    chk = subprocess.run([PROMTOOL, "check", "rules", str(bad)], capture_output=True, timeout=60)
    assert chk.returncode != 0


# --- 3. admin verbs through redis-cli and redis-py -----------------------------------------


def _cli(port: int, *args: str) -> str:
    assert REDIS_CLI is not None
    r = subprocess.run(
        [REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True, timeout=30
    )
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


@pytest.mark.skipif(REDIS_CLI is None, reason="redis-cli not installed")
def test_proxy_info_through_redis_cli(proxy: ProxyThread, topology_module: RedisTopology) -> None:
    text = _cli(proxy.port, "PROXY", "INFO")
    assert proxy.app is not None
    uptime = time.time() - proxy.app.started_at
    fields = dict(
        line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#")
    )
    assert fields["georedis_version"]
    assert abs(int(fields["uptime_in_seconds"]) - uptime) <= 1.5, (fields, uptime)
    assert fields["region"] == "ap-southeast-1"
    assert fields["primary"] == topology_module.primary.address
    for section in ("# Proxy", "# Stats", "# Routing", "# Regions", "# Nodes"):
        assert section in text
    node_lines = [v for k, v in fields.items() if k.startswith("node")]
    assert len(node_lines) == len(topology_module.nodes)
    for n in topology_module.nodes:
        line = next(v for v in node_lines if f"addr={n.address}," in v)
        assert f"region={n.region}," in line and "up=1," in line
    for r in REGIONS:
        assert f"name={r}," in text


def test_proxy_clients_config_and_plain_info(
    proxy: ProxyThread, topology_module: RedisTopology
) -> None:
    c = proxy.client(client_name="observer")
    for _ in range(3):
        c.ping()
    clients = cmd(c, "PROXY", "CLIENTS").decode()
    mine = [line for line in clients.splitlines() if "name=observer " in line]
    assert len(mine) == 1, clients
    assert " region=ap-southeast-1 " in mine[0] and " db=0 " in mine[0]
    assert int(mine[0].split("tot-cmds=")[1].split()[0]) >= 4  # SETNAME + PINGs

    flat = cmd(c, "PROXY", "CONFIG", "GET", "routing.*")
    pairs = dict(zip(flat[::2], flat[1::2], strict=True))
    assert pairs[b"routing.max_lag_ms"] == b"1000"
    assert pairs[b"routing.fallback"] == b"primary"
    assert all(k.startswith(b"routing.") for k in pairs)
    assert cmd(c, "PROXY", "CONFIG", "GET", "nothing.*") == []

    # Plain INFO is not the proxy's: it is the primary's own INFO.
    info = c.info()
    assert info["role"] == "master"
    assert info["run_id"] == topology_module.primary.info("server")["run_id"]
    assert info["connected_slaves"] == len(topology_module.nodes) - 1


def _busy_script_n(node: RedisNode, at_least_s: float) -> int:
    """Loop count that keeps a Lua script busy for `at_least_s` on this machine."""
    c = node.client()
    n = 200_000
    while True:
        t0 = time.perf_counter()
        c.eval(BUSY, 0, n)
        if time.perf_counter() - t0 >= at_least_s or n > 10**9:
            return n
        n *= 2


BUSY = "local x = 0 for i = 1, tonumber(ARGV[1]) do x = x + 1 end return x"


def test_slowlog_records_the_slow_command(
    proxy: ProxyThread, topology_module: RedisTopology
) -> None:
    n = _busy_script_n(topology_module.primary, 3 * SLOW_US / 1e6)
    c = proxy.client()
    assert cmd(c, "PROXY", "SLOWLOG", "RESET") == b"OK"
    assert cmd(c, "PROXY", "SLOWLOG", "LEN") == 0
    c.set("fast", "1")
    assert c.eval(BUSY, 0, n) == n
    c.get("fast")
    entries = cmd(c, "PROXY", "SLOWLOG", "GET")
    assert len(entries) == 1, entries  # the fast SET/GET stay out
    _id, ts, dur_us, args, client_addr, _name, backend = entries[0]
    assert args[0].upper() == b"EVAL" and args[-1] == str(n).encode()
    assert dur_us >= SLOW_US
    assert abs(ts - time.time()) < 30
    assert backend.decode() == topology_module.primary.address
    assert client_addr.decode().startswith("127.0.0.1:")
    assert cmd(c, "PROXY", "SLOWLOG", "LEN") == 1
    assert cmd(c, "PROXY", "SLOWLOG", "GET", "0") == []
    with pytest.raises(redis.ResponseError):
        cmd(c, "PROXY", "SLOWLOG", "GET", "many")


# --- 4. the status page in a real browser ------------------------------------------------


def _chromium(url: str, profile: Path, *extra: str) -> str:
    assert CHROMIUM is not None
    r = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=3000",
         *extra, url],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    return r.stdout.decode()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_status_page_in_chromium(
    proxy: ProxyThread, topology_module: RedisTopology, tmp_path: Path
) -> None:
    c = proxy.client()
    c.set("page", "1")
    c.get("page")
    url = _metrics_url(proxy) + "/"
    dom = _chromium(url, tmp_path / "p1", "--dump-dom")
    assert "<main>" in dom and "Routing of reads" in dom
    for n in topology_module.nodes:
        assert n.address in dom, n
    for r in REGIONS:
        assert f'data-region="{r}"' in dom, r
    assert 'class="bad"' not in dom, "every node is up, linked and eligible or primary"

    png = tmp_path / "status.png"
    _chromium(url, tmp_path / "p2", f"--screenshot={png}", "--window-size=1280,900")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000, len(data)  # a blank 1280x900 page is ~5 KB


# --- 5. logs of a proxy subprocess --------------------------------------------------------


class LogTail:
    """Collects a subprocess' stderr lines in a thread."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        assert proc.stderr is not None
        self._stream = proc.stderr
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for raw in self._stream:
            with self._lock:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def find(self, pred: Any) -> dict[str, Any] | None:
        for line in self.snapshot():
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict) and pred(obj):
                    return obj
        return None


@pytest.fixture
def proxy_process(
    topology: RedisTopology, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], LogTail, int]]:
    port = free_port()
    cfg = topology.write_config(tmp_path / "g.toml", port, extra=FAST)
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "run", "--config", str(cfg), "--log-format", "json"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    tail = LogTail(proc)
    try:
        wait_for(
            lambda: (
                tail.find(lambda o: o.get("event") == "started") is not None
                or proc.poll() is not None
            ),
            20,
            "the proxy to log 'started'",
        )
        assert proc.poll() is None, "\n".join(tail.snapshot())
        yield proc, tail, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_json_logs_node_down_and_no_per_command_lines(
    proxy_process: tuple[subprocess.Popen[bytes], LogTail, int], topology: RedisTopology
) -> None:
    proc, tail, port = proxy_process
    c = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    wait_for(lambda: c.ping() is True, 10, "the proxy to answer")
    # Let the start-up burst (node up, eligible...) settle before counting lines.
    wait_for(
        lambda: cmd(c, "PROXY", "INFO").count(b",eligible=1,") == 3,
        10,
        "replicas eligible",
    )
    time.sleep(0.3)
    lines_before = len(tail.snapshot())
    for i in range(500):
        c.set(f"k{i}", i)
        c.get(f"k{i}")
    with pytest.raises(redis.ResponseError):
        cmd(c, "DEBUG", "SLEEP", "0")  # refused: not logged per command either
    time.sleep(0.3)
    lines_after = len(tail.snapshot())
    assert lines_after - lines_before <= 2, tail.snapshot()[lines_before:]

    victim = topology.node("us-east-1")
    victim.kill()
    down = None

    def logged_down() -> bool:
        nonlocal down
        down = tail.find(
            lambda o: (
                o.get("level") == "warning"
                and victim.address in json.dumps(o)
                and "down" in str(o.get("msg", "")) + str(o.get("event", ""))
            )
        )
        return down is not None

    wait_for(logged_down, 10, f"a JSON log line for {victim.address} going down")
    assert down is not None
    assert down["logger"].startswith("georedis")
    assert "us-east-1" in json.dumps(down)
    assert down["ts"].endswith("Z")

    proc.send_signal(signal.SIGTERM)
    proc.wait(15)
    assert proc.returncode == 0
    time.sleep(0.1)
    lines = [line for line in tail.snapshot() if line.strip()]
    for line in lines:
        obj = json.loads(line)  # every line is one JSON object
        assert isinstance(obj, dict) and {"ts", "level", "logger", "msg"} <= obj.keys(), line
    assert any(json.loads(line).get("event") == "stopped" for line in lines)


# --- wiring found wrong end to end, and fixed -------------------------------------------


def test_error_replies_are_counted_as_commands(proxy: ProxyThread) -> None:
    _, before = scrape(proxy)
    c = proxy.client()
    for _ in range(3):
        with pytest.raises(redis.ResponseError, match="EXEC without MULTI"):
            cmd(c, "EXEC")
    _, after = scrape(proxy)
    labels = {"class": "write"}
    ok = {**labels, "outcome": "ok"}
    err = {**labels, "outcome": "error"}
    assert (
        value(after, "georedis_commands_total", **err)
        - value(before, "georedis_commands_total", **err)
        == 3
    )
    # ok = commands - errors: unchanged, not 3 lower (a counter must never go down).
    assert value(after, "georedis_commands_total", **ok) == value(
        before, "georedis_commands_total", **ok
    )


def test_blocking_wait_is_not_latency(proxy: ProxyThread) -> None:
    c = proxy.client()
    cmd(c, "PROXY", "SLOWLOG", "RESET")
    _, before = scrape(proxy)
    assert c.blpop(["obs-empty-list"], timeout=0.3) is None
    _, after = scrape(proxy)
    # Redis' own SLOWLOG leaves out the time a command is blocked; so should the proxy.
    assert cmd(c, "PROXY", "SLOWLOG", "LEN") == 0
    slow = "georedis_command_duration_seconds_bucket"
    fast = value(after, slow, le="0.2") - value(before, slow, le="0.2")
    total = value(after, slow, le="+Inf") - value(before, slow, le="+Inf")
    assert fast == total  # nothing above 200 ms


def test_node_down_is_a_structured_event(
    topology: RedisTopology, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config_from_toml(topology.config_toml(free_port(), extra=FAST))
    victim = topology.node("eu-west-1")
    with caplog.at_level("INFO", logger="georedis"), ProxyThread(cfg) as p:
        wait_for(lambda: _all_probed(p, topology), 10, "every node probed")
        victim.kill()

        def logged() -> bool:
            # Either form: today's plain message or the structured event.
            return any(
                "down" in r.getMessage() and victim.address in str(vars(r)) for r in caplog.records
            )

        wait_for(logged, 10, f"a log record of {victim.address} going down")
        time.sleep(0.05)
    down = [r for r in caplog.records if getattr(r, "event", None) == "node_down"]
    assert down, [r.getMessage() for r in caplog.records]
    rec = down[0]
    assert getattr(rec, "node", None) == victim.address
    assert getattr(rec, "region", None) == "eu-west-1"
