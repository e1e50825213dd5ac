"""The status page's pictures in a real browser: the live page of a proxy in front of real
redis-servers, rendered by headless Chromium.

Reads and writes go through the proxy for a few seconds (the history's step is 1 s with
the INFO read every 200 ms), then Chromium dumps the DOM (each replica's lag sparkline,
the ops/s and latency charts, the routing heat map, as inline SVG) and takes a
screenshot, in which the charts' own colours must show: the SVG was drawn, not just
sent. The screenshot stays in the test's tmp folder; its path is printed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from proxy.observe.charts import COLORS
from tests.helpers.proxyrun import ProxyThread, config_from_toml, wait_for
from tests.helpers.topology import RedisTopology, free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FAST = """
[health]
interval_ms = 100
probe_timeout_ms = 300
info_interval_ms = 200
"""

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")


@pytest.fixture
def proxy(topology: RedisTopology) -> Iterator[ProxyThread]:
    text = topology.config_toml(free_port(), extra=FAST, metrics_port=free_port())
    with ProxyThread(config_from_toml(text)) as p:
        yield p


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


def _pixels_near(png: Path, rgb: tuple[int, int, int]) -> int:
    from matplotlib import image

    img = image.imread(str(png))[:, :, :3] * 255.0
    d = abs(img - rgb).max(axis=2)
    return int((d < 30).sum())


@needs_chromium
def test_status_page_pictures_in_chromium(
    proxy: ProxyThread, topology: RedisTopology, tmp_path: Path
) -> None:
    assert proxy.app is not None
    app = proxy.app
    c = proxy.client()
    deadline = time.monotonic() + 30
    # Traffic until the history holds a few proxy rows and every replica's lag.
    while time.monotonic() < deadline:
        for i in range(50):
            c.set(f"chart:{i}", i)
            c.get(f"chart:{i}")
        h = proxy.call(lambda: app.history)
        lagged = [a for a, s in list(h.nodes.items()) if len(s.column("lag_ms")) >= 3]
        if len(h.proxy.column("ops_per_sec")) >= 4 and len(lagged) == 3:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the history did not fill")
    assert app.config.metrics.listen is not None
    url = f"http://127.0.0.1:{app.config.metrics.listen.port}/"
    wait_for(lambda: bool(app.stats.reads_by_region), 5, "reads counted")

    dom = _chromium(url, tmp_path / "p1", "--dump-dom")
    assert dom.count('<svg class="spark"') == 3, "one lag sparkline per replica"
    assert dom.count('<svg class="chart"') == 2, "ops/s and latency"
    assert dom.count('<svg class="heat"') == 1, "the routing matrix"
    assert len(re.findall(r"<polyline ", dom)) >= 3 + 1 + 2
    heat = re.search(r'<svg class="heat".*?</svg>', dom, re.S)
    assert heat is not None and "ap-southeast-1" in heat.group(0)

    png = tmp_path / "status-charts.png"
    _chromium(url, tmp_path / "p2", f"--screenshot={png}", "--window-size=1280,1400")
    print(f"status page screenshot: {png}")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r, g, b = (int(COLORS[0][i : i + 2], 16) for i in (1, 3, 5))
    assert _pixels_near(png, (r, g, b)) > 200, "the chart lines were not drawn"
    assert _pixels_near(png, (8, 69, 148)) > 500, "the heat map's full cell was not drawn"


def test_with_workers_the_supervisor_and_each_worker_keep_a_history(
    topology: RedisTopology, tmp_path: Path
) -> None:
    """workers = 2: the supervisor's status page (merged stats) draws the charts, and a
    worker answers PROXY CAPACITY from the snapshots the supervisor sends it."""
    port, mport = free_port(), free_port()
    conf = topology.write_config(tmp_path / "georedis.toml", port, extra=FAST,
                                 metrics_port=mport, proxy_options={"workers": 2})  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "proxy.cli", "run", "--config", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        c = redis.Redis(port=port, socket_timeout=10)

        def page() -> str:
            for i in range(50):
                c.set(f"w:{i}", i)
                c.get(f"w:{i}")
            return urllib.request.urlopen(f"http://127.0.0.1:{mport}/", timeout=10).read().decode()

        wait_for(lambda: _pingable(c), 20, "the workers serving")
        wait_for(lambda: page().count("<polyline ") >= 2 + 3, 30, "charts and sparklines")
        text = c.execute_command("PROXY", "CAPACITY")
    finally:
        proc.terminate()
        proc.wait(20)
    text = text.decode() if isinstance(text, bytes) else str(text)
    assert f"node {topology.primary.address} (ap-southeast-1, primary)" in text, text


def _pingable(c: redis.Redis) -> bool:
    try:
        return bool(c.ping())
    except redis.ConnectionError:
        return False
