"""The metrics/status HTTP server over loopback, and the status page in a real browser.

The server is fed a `StatusSource` built from a hand-made topology snapshot (real
objects, no Redis needed); an end-to-end test with a real proxy lives elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import ssl
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from config.model import Address
from proxy.observe.httpserver import HttpAuth, start_http
from routing.topology import NodeState, Reason, Role, Snapshot
from tests.helpers.certs import make_certs
from tests.unit.proxy.test_stats import FakeProxy, make_snapshot

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def _fetch_sync(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Reply:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


async def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Reply:
    # urllib blocks; the server runs on this loop, so the client runs in a thread.
    return await asyncio.to_thread(_fetch_sync, url, method, headers)


@pytest.fixture
def source() -> FakeProxy:
    return FakeProxy()


@pytest.fixture
async def base_url(source: FakeProxy) -> AsyncIterator[str]:
    server = await start_http(source, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def test_metrics_endpoint(base_url: str) -> None:
    r = await fetch(base_url + "/metrics")
    assert r.status == 200
    assert r.headers["content-type"] == CONTENT_TYPE_LATEST
    families = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
    for name in ("georedis_client_connections", "georedis_commands", "georedis_node_up",
                 "georedis_command_duration_seconds", "georedis_reads",
                 "georedis_node_replication_lag_seconds", "georedis_region_eligible_replicas",
                 "georedis_node_used_memory_bytes", "georedis_build_info"):  # fmt: skip
        assert name in families, name
    up = {s.labels["node"]: s.value for s in families["georedis_node_up"].samples}
    assert up == {"127.0.0.1:7000": 1, "127.0.0.1:7001": 1, "127.0.0.1:7100": 1,
                  "[::1]:7200": 0, "127.0.0.1:7999": 1}  # fmt: skip
    reads = families["georedis_reads"].samples
    assert {(s.labels["client_region"], s.labels["served_region"]) for s in reads} == {
        ("us-east-1", "us-east-1"), ("us-east-1", "ap-southeast-1"),
        ("eu-west-1", "ap-southeast-1"),
    }  # fmt: skip
    # No process/platform collectors from the global registry leak in.
    assert not any(n.startswith(("process_", "python_")) for n in families)


async def test_metrics_follow_the_current_snapshot(base_url: str, source: FakeProxy) -> None:
    before = (await fetch(base_url + "/metrics")).body.decode()
    assert "georedis_topology_version 42.0" in before
    source.snap = Snapshot(version=43, nodes=(), primary=None)
    after = (await fetch(base_url + "/metrics")).body.decode()
    assert "georedis_topology_version 43.0" in after
    assert "georedis_node_up{" not in after


async def test_status_page_and_json(base_url: str) -> None:
    page = await fetch(base_url + "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    html = page.body.decode()
    for text in ("127.0.0.1:7000", "[::1]:7200", "ap-southeast-1", "us-east-1", "eu-west-1"):
        assert text in html
    js = await fetch(base_url + "/status.json?pretty=0")
    assert js.status == 200 and js.headers["content-type"] == "application/json"
    data = json.loads(js.body)
    assert data["proxy"]["topology_version"] == 42
    assert [r["name"] for r in data["regions"]][:3] == ["ap-southeast-1", "us-east-1", "eu-west-1"]


async def test_errors_and_head(base_url: str) -> None:
    assert (await fetch(base_url + "/nope")).status == 404
    assert (await fetch(base_url + "/metrics", method="POST")).status == 405
    head = await fetch(base_url + "/metrics", method="HEAD")
    assert head.status == 200 and head.body == b"" and int(head.headers["content-length"]) > 1000


async def test_garbage_request_gets_400_and_server_survives(base_url: str) -> None:
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"HELLO\r\n\r\n")
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert reply.split(b" ", 2)[1] == b"400", reply  # aiohttp answers it as HTTP/1.0
    # Headers bigger than the limit: refused (aiohttp: 400) or dropped, nothing else breaks.
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET / HTTP/1.1\r\nX: " + b"a" * 100_000)
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 5)
    assert reply == b"" or reply.split(b" ", 2)[1] in (b"400", b"431"), reply[:100]
    writer.close()
    assert (await fetch(base_url + "/metrics")).status == 200


async def _dump_dom(url: str, profile: Path, *extra: str) -> str:
    assert CHROMIUM is not None
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", *extra, "--dump-dom", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
async def test_status_page_in_headless_chromium(base_url: str, tmp_path: Path) -> None:
    dom = await _dump_dom(base_url + "/", tmp_path / "profile")
    assert "<main>" in dom and "<table>" in dom
    snap = make_snapshot()
    for node in snap.nodes:
        assert str(node.addr) in dom, node.addr
        assert node.region in dom, node.region
    assert "75.0%" in dom  # routing share us-east-1 -> us-east-1


class ChangingProxy(FakeProxy):
    """Serves the hand-made topology once, then one with a single new node."""

    calls = 0
    later = Snapshot(
        version=99,
        nodes=(NodeState(Address("127.0.0.1", 7555), "me-central-1", up=True, role=Role.REPLICA,
                         reason=Reason.OK, eligible=True),),
        primary=None,
    )  # fmt: skip

    def snapshot(self) -> Snapshot:
        self.calls += 1
        return self.snap if self.calls == 1 else self.later


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
async def test_status_page_refreshes_itself(tmp_path: Path) -> None:
    server = await start_http(ChangingProxy(), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    try:
        # Chromium runs the page's timers for the (virtual) budget before dumping the DOM;
        # the page's own refresh (every 2 s) must have fetched the changed topology.
        dom = await _dump_dom(url, tmp_path / "profile", "--virtual-time-budget=5000")
    finally:
        server.close()
        await server.wait_closed()
    assert "127.0.0.1:7555" in dom and "me-central-1" in dom
    assert "topology v99" in dom and "topology v42" not in dom


# --- authentication, HTTPS, the cap on requests in flight ------------------------------


async def test_a_bearer_token_or_basic_auth_is_required_when_configured(
    source: FakeProxy,
) -> None:
    auth = HttpAuth(token="t0ken-5ecret", basic="prom:pa55")
    server = await start_http(source, "127.0.0.1", 0, auth=auth)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/metrics"
    try:
        assert (await fetch(url)).status == 401
        assert (await fetch(url, headers={"Authorization": "Bearer wrong"})).status == 401
        ok = await fetch(url, headers={"Authorization": "Bearer t0ken-5ecret"})
        assert ok.status == 200 and b"georedis_build_info" in ok.body
        basic = "Basic " + base64.b64encode(b"prom:pa55").decode()
        assert (await fetch(url, headers={"Authorization": basic})).status == 200
        denied = await fetch(url, headers={"Authorization": "Basic " + base64.b64encode(
            b"prom:nope").decode()})  # fmt: skip
        assert denied.status == 401 and b"pa55" not in denied.body
    finally:
        await server.wait_closed()


async def test_https_with_the_tls_certificate(source: FakeProxy, tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.server.cert, certs.server.key)
    server = await start_http(source, "127.0.0.1", 0, tls=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        client = ssl.create_default_context(cafile=str(certs.ca))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        writer.write(b"GET /status.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert reply.startswith(b"HTTP/1.1 200") and b'"nodes"' in reply
    finally:
        await server.wait_closed()


async def test_connections_past_the_cap_get_503_at_once(source: FakeProxy) -> None:
    """Two connections that send nothing hold the cap of 2: a third is answered 503 at
    once; once they go, requests are served again."""
    server = await start_http(source, "127.0.0.1", 0, max_connections=2)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.1)
        assert (await fetch(url)).status == 503
        for _, w in idle:
            w.close()
        await asyncio.sleep(0.2)
        statuses = [r.status for r in await asyncio.gather(*(fetch(url) for _ in range(20)))]
        assert 200 in statuses and set(statuses) <= {200, 503}, statuses
    finally:
        await server.wait_closed()
