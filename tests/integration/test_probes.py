"""/healthz and /readyz on the metrics port of a real proxy in front of real nodes.

Served without the bearer token the rest of the port needs (kubelet probes send none),
saying no more than ready or not. Ready while replicas answer with the primary killed
(reads still flow); not ready once every node is down; alive throughout.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.helpers.proxyrun import ProxyThread, config_from_toml, wait_for
from tests.helpers.topology import RedisTopology, free_port

FAST = "[health]\ninterval_ms = 100\nprobe_timeout_ms = 300\n[backend]\ntimeout_ms = 1000\n"
TOKEN_ENV = "GEOREDIS_TEST_METRICS_TOKEN"


def get(url: str, token: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def proxy(topology: RedisTopology, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProxyThread]:
    monkeypatch.setenv(TOKEN_ENV, "s3cret-token")
    text = topology.config_toml(free_port(), extra=FAST, metrics_port=free_port(),
                                metrics_options={"auth_token_env": TOKEN_ENV})  # fmt: skip
    with ProxyThread(config_from_toml(text)) as p:
        yield p


def test_probes_need_no_auth_and_follow_the_nodes(
    proxy: ProxyThread, topology: RedisTopology
) -> None:
    base = f"http://127.0.0.1:{proxy.config.metrics.listen.port}"
    assert get(base + "/metrics")[0] == 401  # the rest of the port wants the token
    assert get(base + "/metrics", "s3cret-token")[0] == 200
    assert get(base + "/healthz") == (200, "ok\n")
    wait_for(lambda: get(base + "/readyz") == (200, "ready\n"), 10, "ready")

    topology.primary.kill()
    wait_for(lambda: get(base + "/readyz") == (200, "ready: reads only, no primary\n"), 15,
             "ready without a primary")  # fmt: skip
    with proxy.client() as c:  # and reads are indeed served
        assert c.get("missing") is None

    for node in topology.replicas():
        node.kill()
    wait_for(lambda: get(base + "/readyz")[0] == 503, 15, "not ready with every node down")
    status, body = get(base + "/readyz")
    assert (status, body) == (503, "not ready: no node answers\n")
    assert get(base + "/healthz") == (200, "ok\n")
    assert get(base + "/status.json")[0] == 401  # what names nodes still wants the token
