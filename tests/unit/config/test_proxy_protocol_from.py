"""`[proxy] proxy_protocol_from`: an empty list admits loopback peers only, never anyone.

With `proxy_protocol = true` a peer allowed to send the header names the client address,
and so the region it is served from; "anyone" would let every client pick its own.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from config.loader import parse_config
from config.model import LOOPBACK_NETWORKS, ProxyConfig

REGIONS = [{"name": "a", "latitude": 1.0, "longitude": 2.0, "nodes": ["127.0.0.1:7000"]}]


def proxy_with(**options: Any) -> ProxyConfig:
    return parse_config({"proxy": options, "regions": REGIONS}, "x.toml").proxy


def test_empty_list_means_loopback_only() -> None:
    nets = proxy_with(proxy_protocol=True, proxy_protocol_from=[]).proxy_protocol_from
    assert nets == LOOPBACK_NETWORKS
    assert {str(n) for n in nets} == {"127.0.0.0/8", "::1/128"}


def test_left_out_means_loopback_only() -> None:
    assert proxy_with(proxy_protocol=True).proxy_protocol_from == LOOPBACK_NETWORKS
    assert ProxyConfig().proxy_protocol_from == LOOPBACK_NETWORKS  # the model's default


def test_a_list_given_replaces_loopback() -> None:
    nets = proxy_with(proxy_protocol=True, proxy_protocol_from=["10.0.0.0/8"]).proxy_protocol_from
    assert nets == (ipaddress.ip_network("10.0.0.0/8"),)
