"""Geo routing end to end: each client reads from the region nearest to the client.

Real redis-servers (ap-southeast-1 primary + replica, one replica each in us-east-1 and
eu-west-1), the real proxy in ap-southeast-1, a real MaxMind-format City database, and
clients that announce their address in PROXY protocol v1/v2 headers built by
`tests.helpers.pptools` (an encoder of its own, not the proxy's parser).

Which node served a read is read from the nodes themselves: `cmdstat_get` after CONFIG
RESETSTAT. The health checker also sends a GET (of its heartbeat key) to every node each
round, so the proxies here probe once an hour: the fixtures run the rounds they need by
hand (`ProxyThread.refresh`) and the counts then hold only the tests' own GETs.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hiredis
import pytest

from routing.topology import Role
from tests.helpers.mmdb import SAMPLE_IPS, write_city_db
from tests.helpers.pptools import (
    RawClient,
    as_dict,
    connect,
    header,
    resp,
    tlv,
    v1_header,
    v1_unknown,
    v2_header,
    v2_local,
    v2_raw,
)
from tests.helpers.proxyrun import ProxyThread, config_from_toml, wait_for
from tests.helpers.topology import RedisNode, RedisTopology, TomlValue, free_port

SG, US, EU = "ap-southeast-1", "us-east-1", "eu-west-1"
KEY, VALUE = "geo:key", b"geo-value"
READS = 10
PP_TIMEOUT_MS = 500
REPO = Path(__file__).resolve().parents[2]

# Probing once an hour: see the module docstring. lag_recovery_ms = 0 so a replica is
# eligible from the first round that measures its lag.
QUIET_HEALTH = """
[health]
interval_ms = 3600000
probe_timeout_ms = 2000
[routing]
lag_recovery_ms = 0
"""

# Longest prefix wins: 10.1.2.3 is in all three IPv4 networks, 2001:db8:1:2::7 in both
# IPv6 ones. 130.237.99.0/24 and 2a02:6680:ff00::/40 lie inside GeoIP networks (Sweden,
# Israel) and must beat the database.
NETWORKS: dict[str, str] = {
    "10.0.0.0/8": EU,
    "10.1.0.0/16": US,
    "10.1.2.0/24": SG,
    "130.237.99.0/24": US,
    "2001:db8:1::/48": EU,
    "2001:db8:1:2::/64": US,
    "2a02:6680:ff00::/40": US,
}

# Rankings by great-circle distance, worked out by hand from the coordinates in
# tests/helpers/mmdb.py and tests/helpers/topology.py (all gaps are > 1000 km).
FROM_ASIA = [SG, EU, US]  # Beijing, Manila, Tokyo; also the proxy's own region
FROM_US = [US, EU, SG]  # San Diego
FROM_EUROPE = [EU, US, SG]  # Stockholm, London
FROM_ISRAEL = [EU, SG, US]  # Tel Aviv: Singapore is nearer than Virginia
# A region's own ranking (network, override, default): the region, then by distance.
REGION_RANKING = {SG: [SG, EU, US], US: [US, EU, SG], EU: [EU, US, SG]}


@dataclass(frozen=True)
class Case:
    label: str
    ip: str
    region: str
    source: str
    ranking: list[str]
    country: str | None = None
    coords: tuple[float, float] | None = None


GEO_CASES = [
    Case("CN", SAMPLE_IPS["CN"], SG, "geoip", FROM_ASIA, "CN", (39.9, 116.4)),
    Case("PH", SAMPLE_IPS["PH"], SG, "geoip", FROM_ASIA, "PH", (14.6, 121.0)),
    Case("JP-v6", SAMPLE_IPS["JP"], SG, "geoip", FROM_ASIA, "JP", (35.7, 139.7)),
    Case("US", SAMPLE_IPS["US"], US, "geoip", FROM_US, "US", (32.7, -117.2)),
    # A dual-stack balancer may hand on an IPv4 client as ::ffff:a.b.c.d.
    Case("US-v4mapped", "::ffff:132.239.1.1", US, "geoip", FROM_US, "US", (32.7, -117.2)),
    Case("SE", SAMPLE_IPS["SE"], EU, "geoip", FROM_EUROPE, "SE", (59.3, 18.1)),
    Case("GB", SAMPLE_IPS["GB"], EU, "geoip", FROM_EUROPE, "GB", (51.5, -0.13)),
    Case("IL-v6", SAMPLE_IPS["IL"], EU, "geoip", FROM_ISRAEL, "IL", (32.1, 34.8)),
    Case("unknown-v4", "192.0.2.1", SG, "default", REGION_RANKING[SG]),
    Case("unknown-v6", "2001:db8:ffff::1", SG, "default", REGION_RANKING[SG]),
]

NETWORK_CASES = [
    Case("10/8", "10.200.0.1", EU, "network", REGION_RANKING[EU]),
    Case("10.1/16", "10.1.9.9", US, "network", REGION_RANKING[US]),
    Case("10.1.2/24", "10.1.2.3", SG, "network", REGION_RANKING[SG]),
    Case("v4mapped-10.1.2/24", "::ffff:10.1.2.3", SG, "network", REGION_RANKING[SG]),
    Case("over-geoip-SE", "130.237.99.1", US, "network", REGION_RANKING[US]),
    Case("v6/48", "2001:db8:1:5::1", EU, "network", REGION_RANKING[EU]),
    Case("v6/64", "2001:db8:1:2::7", US, "network", REGION_RANKING[US]),
    Case("over-geoip-IL", "2a02:6680:ff00::1", US, "network", REGION_RANKING[US]),
]


# --- fixtures -------------------------------------------------------------------------


def _geoip_toml(db: Path, networks: Mapping[str, str]) -> str:
    lines = ["[geoip]", f'database = "{db}"', "[geoip.networks]"]
    lines += [f'"{net}" = "{region}"' for net, region in networks.items()]
    return "\n".join(lines) + "\n"


def _ready(p: ProxyThread) -> None:
    """Wait for the probe loop's first round, then probe until every replica is eligible;
    after that no round runs for an hour and the nodes see only the tests' commands."""
    assert p.app is not None
    app = p.app
    wait_for(lambda: p.call(lambda: app.topo.version) >= 2, 10, "the first probe rounds")

    def eligible() -> bool:
        p.refresh()
        replicas = [n for n in app.topo.nodes if n.role == Role.REPLICA]
        return len(replicas) == 3 and all(n.eligible for n in replicas)

    wait_for(eligible, 10, "every replica eligible")


@pytest.fixture(scope="module")
def topo(topology_module: RedisTopology) -> RedisTopology:
    topology_module.primary.client().set(KEY, VALUE)
    topology_module.wait_synced()
    return topology_module


@pytest.fixture(scope="module")
def geo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(write_city_db(str(tmp_path_factory.mktemp("geoip") / "city.mmdb")))


ProxyFactory = Callable[..., ProxyThread]


def _start(
    topo: RedisTopology,
    geo_db: Path,
    proxy_options: Mapping[str, TomlValue],
    networks: Mapping[str, str] = NETWORKS,
) -> ProxyThread:
    options: dict[str, TomlValue] = {
        "proxy_protocol": True,
        "proxy_protocol_timeout_ms": PP_TIMEOUT_MS,
    }
    options.update(proxy_options)
    text = topo.config_toml(
        free_port(),
        region=SG,
        proxy_options=options,
        extra=QUIET_HEALTH + _geoip_toml(geo_db, networks),
    )
    p = ProxyThread(config_from_toml(text)).start()
    try:
        _ready(p)
    except BaseException:
        p.stop()
        raise
    return p


@pytest.fixture(scope="module")
def proxy(topo: RedisTopology, geo_db: Path) -> Iterator[ProxyThread]:
    """proxy_protocol = true (from anyone), the City database and NETWORKS."""
    p = _start(topo, geo_db, {})
    yield p
    p.stop()


@pytest.fixture
def make_proxy(topo: RedisTopology, geo_db: Path) -> Iterator[ProxyFactory]:
    """Start extra proxies with other [proxy] options; stopped after the test."""
    started: list[ProxyThread] = []

    def make(**proxy_options: TomlValue) -> ProxyThread:
        p = _start(topo, geo_db, proxy_options)
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


@pytest.fixture
def clients() -> Iterator[list[RawClient]]:
    """Raw clients a test opens; closed after it."""
    opened: list[RawClient] = []
    yield opened
    for c in opened:
        c.close()


# --- helpers ------------------------------------------------------------------------


def _node_for(topo: RedisTopology, region: str) -> RedisNode:
    """The replica that must serve reads of a client whose nearest region is `region`."""
    return topo.node(SG, 1) if region == SG else topo.node(region)


def _name(topo: RedisTopology, node: RedisNode) -> str:
    i = [n for n in topo.nodes if n.region == node.region].index(node)
    return f"{node.region}#{i}"


def _get_calls(topo: RedisTopology) -> dict[str, int]:
    out = {}
    for n in topo.nodes:
        entry = n.admin.info("commandstats").get("cmdstat_get")
        out[_name(topo, n)] = int(entry["calls"]) if entry else 0
    return out


def _reset_stats(topo: RedisTopology) -> None:
    for n in topo.nodes:
        n.admin.config_resetstat()


def _expected_calls(topo: RedisTopology, region: str, calls: int = READS) -> dict[str, int]:
    target = _name(topo, _node_for(topo, region))
    return {_name(topo, n): (calls if _name(topo, n) == target else 0) for n in topo.nodes}


def _assert_reads_served_in(topo: RedisTopology, c: RawClient, region: str) -> None:
    """READS GETs from `c` all land on the replica for `region`, none anywhere else."""
    _reset_stats(topo)
    for _ in range(READS):
        assert c.command("GET", KEY) == VALUE
    assert _get_calls(topo) == _expected_calls(topo, region)


def _whereami(c: RawClient) -> dict[str, Any]:
    reply = c.command("PROXY", "WHEREAMI")
    assert not isinstance(reply, hiredis.ReplyError), reply
    return as_dict(reply)


def _split_addr(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    host, _, port = text.rpartition(":")
    return ipaddress.ip_address(host.strip("[]")), int(port)


def _assert_explains(
    info: Mapping[str, Any], case: Case, topo: RedisTopology, port: int | None = None
) -> None:
    """WHEREAMI names the address seen, how it was located, and the resulting ranking."""
    ip, seen_port = _split_addr(info["address"])
    assert ip == ipaddress.ip_address(case.ip), info
    if port is not None:
        assert seen_port == port, info
    assert info["source"] == case.source, info
    assert info["country"] == case.country, info
    if case.coords is None:
        assert info["latitude"] is None and info["longitude"] is None, info
    else:
        lat, lon = float(info["latitude"]), float(info["longitude"])
        assert (lat, lon) == pytest.approx(case.coords), info
    assert info["ranking"] == case.ranking, info
    assert info["region"] == case.region, info
    node = _node_for(topo, case.region)
    assert info["reads_served_by"] == f"{node.address} ({case.region})", info


# --- 1. GeoIP routing over PROXY v1 and v2 --------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("case", GEO_CASES, ids=lambda c: c.label)
def test_reads_go_to_nearest_region(
    topo: RedisTopology, proxy: ProxyThread, clients: list[RawClient], case: Case, version: int
) -> None:
    c = connect(proxy.port, header(version, case.ip))
    clients.append(c)
    _assert_reads_served_in(topo, c, case.region)


def test_clients_in_different_places_at_once(
    topo: RedisTopology, proxy: ProxyThread, clients: list[RawClient]
) -> None:
    """Interleaved clients on one proxy keep their own routes: nothing is shared."""
    conns = [connect(proxy.port, header(1 + i % 2, case.ip)) for i, case in enumerate(GEO_CASES)]
    clients.extend(conns)
    _reset_stats(topo)
    for _ in range(READS):
        for c in conns:
            assert c.command("GET", KEY) == VALUE
    expected = dict.fromkeys(_get_calls(topo), 0)
    for case in GEO_CASES:
        expected[_name(topo, _node_for(topo, case.region))] += READS
    assert _get_calls(topo) == expected


def test_writes_still_go_to_primary(
    topo: RedisTopology, proxy: ProxyThread, clients: list[RawClient]
) -> None:
    c = connect(proxy.port, header(2, SAMPLE_IPS["SE"]))
    clients.append(c)
    _reset_stats(topo)
    assert c.command("INCR", "geo:written-from-se") >= 1
    stats = topo.primary.admin.info("commandstats").get("cmdstat_incr")
    assert stats is not None and int(stats["calls"]) == 1


# --- 2. PROXY WHEREAMI explains each decision ------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("case", GEO_CASES + NETWORK_CASES, ids=lambda c: c.label)
def test_whereami_explains(
    topo: RedisTopology, proxy: ProxyThread, clients: list[RawClient], case: Case, version: int
) -> None:
    sport = 41000 + version
    head = v1_header(case.ip, sport=sport) if version == 1 else v2_header(case.ip, sport=sport)
    c = connect(proxy.port, head)
    clients.append(c)
    _assert_explains(_whereami(c), case, topo, sport)


def test_whereami_resp3(topo: RedisTopology, proxy: ProxyThread, clients: list[RawClient]) -> None:
    c = connect(proxy.port, v2_header(SAMPLE_IPS["GB"], sport=42000))
    clients.append(c)
    hello = c.command("HELLO", 3)
    assert not isinstance(hello, hiredis.ReplyError), hello
    info = _whereami(c)
    _assert_explains(info, GEO_CASES[6], topo, 42000)


# --- 3. the CIDR table, PROXY REGION ----------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("case", NETWORK_CASES, ids=lambda c: c.label)
def test_networks_override_geoip(
    topo: RedisTopology, proxy: ProxyThread, clients: list[RawClient], case: Case, version: int
) -> None:
    c = connect(proxy.port, header(version, case.ip))
    clients.append(c)
    _assert_reads_served_in(topo, c, case.region)


def test_region_override_and_auto(
    topo: RedisTopology, proxy: ProxyThread, clients: list[RawClient]
) -> None:
    cn = GEO_CASES[0]
    c = connect(proxy.port, v2_header(cn.ip, sport=43000))
    clients.append(c)
    _assert_reads_served_in(topo, c, SG)

    assert c.command("PROXY", "REGION", EU) == b"OK"
    info = _whereami(c)
    override = Case("override", cn.ip, EU, "override", REGION_RANKING[EU])
    _assert_explains(info, override, topo, 43000)
    _assert_reads_served_in(topo, c, EU)

    err = c.command("PROXY", "REGION", "mars-north-1")
    assert isinstance(err, hiredis.ReplyError) and "mars-north-1" in str(err)
    _assert_reads_served_in(topo, c, EU)  # a rejected override changes nothing

    assert c.command("PROXY", "REGION", "auto") == b"OK"
    _assert_explains(_whereami(c), cn, topo, 43000)
    _assert_reads_served_in(topo, c, SG)


def test_region_auto_returns_to_network(
    topo: RedisTopology, proxy: ProxyThread, clients: list[RawClient]
) -> None:
    case = NETWORK_CASES[4]  # 130.237.99.1: Sweden in GeoIP, us-east-1 by the table
    c = connect(proxy.port, v1_header(case.ip, sport=43001))
    clients.append(c)
    assert c.command("PROXY", "REGION", SG) == b"OK"
    _assert_reads_served_in(topo, c, SG)
    assert c.command("PROXY", "REGION", "AUTO") == b"OK"
    _assert_explains(_whereami(c), case, topo, 43001)
    _assert_reads_served_in(topo, c, US)


# --- 4. PROXY headers on the wire ------------------------------------------------------


SPLIT_HEADERS = [
    pytest.param(v1_header(SAMPLE_IPS["US"]), id="v1"),
    pytest.param(v2_header(SAMPLE_IPS["US"]), id="v2"),
    pytest.param(v1_header("::ffff:132.239.1.1"), id="v1-tcp6"),
    pytest.param(v2_header("::ffff:132.239.1.1", tlvs=tlv(0x04, b"pad")), id="v2-tcp6-tlv"),
]


@pytest.mark.parametrize("head", SPLIT_HEADERS)
def test_header_split_across_segments(
    topo: RedisTopology, proxy: ProxyThread, clients: list[RawClient], head: bytes
) -> None:
    c = RawClient(proxy.port)
    clients.append(c)
    c.send_split(head)  # one byte per segment
    _assert_reads_served_in(topo, c, US)


@pytest.mark.parametrize("head", SPLIT_HEADERS)
def test_header_end_and_command_start_in_one_segment(
    topo: RedisTopology, proxy: ProxyThread, clients: list[RawClient], head: bytes
) -> None:
    c = RawClient(proxy.port)
    clients.append(c)
    command = resp("GET", KEY)
    c.send_split(head[:-2])
    c.send(head[-2:] + command[:7])  # "...\r\n*2\r\n$3\r": the header ends mid-segment
    time.sleep(0.01)
    c.send(command[7:])
    assert c.read_reply() == VALUE
    _assert_reads_served_in(topo, c, US)


@pytest.mark.parametrize("head", SPLIT_HEADERS[:2])
def test_header_and_first_command_byte_by_byte(
    topo: RedisTopology, proxy: ProxyThread, clients: list[RawClient], head: bytes
) -> None:
    c = RawClient(proxy.port)
    clients.append(c)
    c.send_split(head + resp("GET", KEY))
    assert c.read_reply(timeout=2) == VALUE
    _assert_reads_served_in(topo, c, US)


def test_header_and_commands_in_one_segment(
    topo: RedisTopology, proxy: ProxyThread, clients: list[RawClient]
) -> None:
    c = RawClient(proxy.port)
    clients.append(c)
    _reset_stats(topo)
    c.send(v2_header(SAMPLE_IPS["SE"]) + resp("GET", KEY) * READS)
    assert [c.read_reply() for _ in range(READS)] == [VALUE] * READS
    assert _get_calls(topo) == _expected_calls(topo, EU)


def test_v2_header_with_tlvs(
    topo: RedisTopology, proxy: ProxyThread, clients: list[RawClient]
) -> None:
    # PP2_TYPE_AUTHORITY, an AWS VPC endpoint id (0xEA) and a NOOP: all ignored.
    tlvs = tlv(0x02, b"cache.example.com") + tlv(0xEA, b"\x01vpce-0123456789") + tlv(0x04, b"")
    c = connect(proxy.port, v2_header(SAMPLE_IPS["JP"], tlvs=tlvs))
    clients.append(c)
    _assert_reads_served_in(topo, c, SG)
    c2 = connect(proxy.port, v2_header(SAMPLE_IPS["US"], tlvs=tlvs))
    clients.append(c2)
    _assert_reads_served_in(topo, c2, US)


_ADDR12 = bytes(12)
MALFORMED = [
    pytest.param(resp("GET", KEY), id="plain-resp"),
    pytest.param(b"PING\r\n", id="plain-inline"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http"),
    pytest.param(b"PROXY TCP4 1.2.4.999 127.0.0.1 1 2\r\n", id="v1-bad-ip"),
    pytest.param(b"PROXY TCP5 1.2.4.8 127.0.0.1 1 2\r\n", id="v1-bad-proto"),
    pytest.param(b"PROXY TCP4 2400:4050::1 ::1 1 2\r\n", id="v1-family-mismatch"),
    pytest.param(b"PROXY TCP4 1.2.4.8 127.0.0.1 99999 2\r\n", id="v1-bad-port"),
    pytest.param(b"PROXY TCP4 1.2.4.8 127.0.0.1 1\r\n", id="v1-missing-field"),
    pytest.param(b"PROXY TCP4 1.2.4.8\n127.0.0.1 1 2\r\n", id="v1-bare-lf"),
    pytest.param(b"PROXY UNKNOWN " + b"x" * 200 + b"\r\n", id="v1-oversized-line"),
    pytest.param(b"PROXY TCP4 " + b"1" * 200, id="v1-oversized-no-crlf"),
    pytest.param(v2_raw(0x11, 0x11, _ADDR12), id="v2-version-1"),
    pytest.param(v2_raw(0x2F, 0x11, _ADDR12), id="v2-bad-command"),
    pytest.param(v2_raw(0x21, 0x12, _ADDR12), id="v2-udp"),
    pytest.param(v2_raw(0x21, 0x31, bytes(216)), id="v2-unix"),
    pytest.param(v2_raw(0x21, 0x11, bytes(4)), id="v2-short-addresses"),
    pytest.param(v2_header("1.2.4.8", tlvs=b"\x01\x00\x10ab"), id="v2-tlv-past-end"),
    pytest.param(v2_raw(0x21, 0x11, b"")[:-2] + b"\xff\xff", id="v2-length-65535"),
]


@pytest.mark.parametrize("data", MALFORMED)
def test_bad_header_closes_only_that_connection(
    topo: RedisTopology, proxy: ProxyThread, clients: list[RawClient], data: bytes
) -> None:
    good = connect(proxy.port, v1_header(SAMPLE_IPS["GB"]))
    clients.append(good)
    assert good.command("GET", KEY) == VALUE
    bad = RawClient(proxy.port)
    clients.append(bad)
    bad.send(data)
    received, elapsed = bad.wait_closed(timeout=3)
    # No reply other than an error, and at once: the bytes can no longer become a
    # header, so there is nothing to wait for (the header timeout is 500 ms).
    assert received == b"" or received.startswith(b"-"), received
    assert b"\r\n+" not in received and not received.startswith(b"$"), received
    assert elapsed < PP_TIMEOUT_MS / 1000 * 0.8, elapsed
    _assert_reads_served_in(topo, good, EU)  # the other client is unaffected


@pytest.mark.parametrize(
    "partial",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(b"PROXY TCP4 1.2.4.8 127.0.0.1", id="v1-partial"),
        pytest.param(b"PROX", id="v1-signature-prefix"),
        pytest.param(v2_header(SAMPLE_IPS["CN"])[:20], id="v2-partial"),
        pytest.param(v2_header(SAMPLE_IPS["CN"])[:5], id="v2-signature-prefix"),
    ],
)
def test_header_timeout_closes(
    topo: RedisTopology, proxy: ProxyThread, clients: list[RawClient], partial: bytes
) -> None:
    good = connect(proxy.port, v2_header(SAMPLE_IPS["PH"]))
    clients.append(good)
    slow = RawClient(proxy.port)
    clients.append(slow)
    slow.send(partial)
    received, elapsed = slow.wait_closed(timeout=5)
    assert received == b"" or received.startswith(b"-"), received
    assert PP_TIMEOUT_MS / 1000 * 0.8 <= elapsed <= PP_TIMEOUT_MS / 1000 + 1.5, elapsed
    _assert_reads_served_in(topo, good, SG)


def test_complete_header_cancels_the_timeout(
    topo: RedisTopology, proxy: ProxyThread, clients: list[RawClient]
) -> None:
    c = RawClient(proxy.port)
    clients.append(c)
    head = v1_header(SAMPLE_IPS["US"])
    c.send_split(head, chunk=8, pause=0.05)  # under the timeout in all, not per byte
    time.sleep(PP_TIMEOUT_MS / 1000 * 2)  # idle well past the header timeout
    _assert_reads_served_in(topo, c, US)


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(v2_local(), id="v2-local"),
        # LOCAL with an address block: the block is to be ignored (spec 2.2).
        pytest.param(
            v2_local(bytes([132, 239, 1, 1, 127, 0, 0, 1, 0, 1, 0, 2])), id="v2-local-body"
        ),
        pytest.param(v1_unknown(), id="v1-unknown"),
        pytest.param(b"PROXY UNKNOWN 132.239.1.1 127.0.0.1 1 2\r\n", id="v1-unknown-with-fields"),
        pytest.param(v2_raw(0x21, 0x00, b""), id="v2-proxy-unspec"),
    ],
)
def test_local_uses_real_peer(
    topo: RedisTopology, proxy: ProxyThread, clients: list[RawClient], head: bytes
) -> None:
    c = connect(proxy.port, head)
    clients.append(c)
    info = _whereami(c)
    me = Case("local", "127.0.0.1", SG, "default", REGION_RANKING[SG])
    _assert_explains(info, me, topo, c.local_port)
    _assert_reads_served_in(topo, c, SG)


def test_proxy_protocol_from_excludes_sender(
    topo: RedisTopology, make_proxy: ProxyFactory, clients: list[RawClient]
) -> None:
    """A peer outside proxy_protocol_from sends no header and is located by its own
    address; a header it sends anyway is RESP to the proxy, never a new location."""
    p = make_proxy(proxy_protocol_from=["10.0.0.0/8", "2001:db8::/32"])
    c = RawClient(p.port)  # no header
    clients.append(c)
    me = Case("peer", "127.0.0.1", SG, "default", REGION_RANKING[SG])
    _assert_explains(_whereami(c), me, topo, c.local_port)
    _assert_reads_served_in(topo, c, SG)

    # No header timeout for such a peer either: it may idle before its first command.
    idle = RawClient(p.port)
    clients.append(idle)
    time.sleep(PP_TIMEOUT_MS / 1000 * 1.5)
    assert idle.command("GET", KEY) == VALUE

    spoof = RawClient(p.port)
    clients.append(spoof)
    spoof.send(v1_header(SAMPLE_IPS["US"]))
    assert isinstance(spoof.read_reply(), hiredis.ReplyError)
    _assert_explains(_whereami(spoof), me, topo, spoof.local_port)
    _assert_reads_served_in(topo, spoof, SG)


def test_proxy_protocol_from_admits_sender(
    topo: RedisTopology, make_proxy: ProxyFactory, clients: list[RawClient]
) -> None:
    p = make_proxy(proxy_protocol_from=["10.0.0.0/8", "127.0.0.0/8"])
    c = connect(p.port, v2_header(SAMPLE_IPS["US"]))
    clients.append(c)
    _assert_reads_served_in(topo, c, US)
    plain = RawClient(p.port)  # a trusted sender must send the header
    clients.append(plain)
    plain.send(resp("GET", KEY))
    received, _ = plain.wait_closed(timeout=3)
    assert received == b"" or received.startswith(b"-"), received


# --- 5. Pub/Sub follows the ranking ----------------------------------------------------


def _subscribers(node: RedisNode, channel: str) -> int:
    counts = node.admin.pubsub_numsub(channel)
    return int(counts[0][1])


@pytest.mark.parametrize(
    ("ip", "region"),
    [(SAMPLE_IPS["SE"], EU), (SAMPLE_IPS["US"], US), (SAMPLE_IPS["CN"], SG)],
    ids=["SE", "US", "CN"],
)
def test_pubsub_on_nearest_replica(
    topo: RedisTopology, proxy: ProxyThread, clients: list[RawClient], ip: str, region: str
) -> None:
    channel = f"geo-news-{region}"
    sub = connect(proxy.port, v2_header(ip))
    clients.append(sub)
    assert sub.command("SUBSCRIBE", channel) == [b"subscribe", channel.encode(), 1]

    target = _node_for(topo, region)
    wait_for(lambda: _subscribers(target, channel) == 1, 5, f"a subscriber on {target}")
    assert channel in target.admin.pubsub_channels()
    subscribed = [cl for cl in target.admin.client_list() if int(cl["sub"]) > 0]
    assert len(subscribed) == 1, subscribed
    for n in topo.nodes:
        if n is not target:
            assert _subscribers(n, channel) == 0, n

    # Published through the proxy by a client elsewhere: to the primary, then down
    # the replication stream to the subscriber's replica.
    pub = connect(proxy.port, v1_header(SAMPLE_IPS["GB"] if region != EU else SAMPLE_IPS["PH"]))
    clients.append(pub)
    received: list[Any] = []

    def delivered() -> bool:
        assert isinstance(pub.command("PUBLISH", channel, "hello"), int)
        try:
            received.append(sub.read_reply(timeout=0.5))
        except TimeoutError:
            return False
        return True

    wait_for(delivered, 10, "the published message")
    assert received[-1] == [b"message", channel.encode(), b"hello"]
    assert sub.command("UNSUBSCRIBE", channel) == [b"unsubscribe", channel.encode(), 0]


# --- 6. check-config ------------------------------------------------------------------


def _bad_db(kind: str, tmp: Path, geo_db: Path) -> Path:
    if kind == "missing":
        return tmp / "no-such-dir" / "city.mmdb"
    if kind == "directory":
        d = tmp / "a-directory.mmdb"
        d.mkdir()
        return d
    path = tmp / f"{kind}.mmdb"
    if kind == "garbage":
        path.write_bytes(b"this is not a MaxMind database\n" * 100)
    else:  # truncated: the first half of a real one, metadata marker lost
        data = geo_db.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return path


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def _config_text(db: Path, networks: Mapping[str, str]) -> str:
    regions = ""
    for i, name in enumerate((SG, US, EU)):
        regions += (
            f'[[regions]]\nname = "{name}"\nlatitude = 1.0\nlongitude = {i}.0\n'
            f'nodes = ["127.0.0.1:{7001 + i}"]\n'
        )
    proxy = f'[proxy]\nlisten = "127.0.0.1:6380"\nregion = "{SG}"\nproxy_protocol = true\n'
    return proxy + regions + _geoip_toml(db, networks)


@pytest.mark.parametrize("kind", ["missing", "directory", "garbage", "truncated"])
def test_check_config_names_every_geoip_error(tmp_path: Path, geo_db: Path, kind: str) -> None:
    db = _bad_db(kind, tmp_path, geo_db)
    networks = {"10.0.0.0/33": US, "10.2.0.0/16": "mars-north-1", "fe80::/10": EU}
    cfg = tmp_path / "geo.toml"
    cfg.write_text(_config_text(db, networks))
    out = _check_config(cfg)
    assert out.returncode != 0, out
    err = out.stderr
    lines = err.splitlines()

    def line_with(*needles: str) -> str:
        found = [ln for ln in lines if all(n in ln for n in needles)]
        assert found, f"no line with {needles} in:\n{err}"
        return found[0]

    line_with("geoip.database", db.name)
    line_with('geoip.networks."10.0.0.0/33"', "10.0.0.0/33")
    line_with('geoip.networks."10.2.0.0/16"', "mars-north-1")
    assert str(cfg) in err
    assert "fe80::/10" not in err  # the good entry is not reported
    assert len(lines) == 3, err


def test_check_config_accepts_the_good_one(tmp_path: Path, geo_db: Path) -> None:
    """The control for the test above: the same file with good values passes."""
    cfg = tmp_path / "geo.toml"
    cfg.write_text(_config_text(geo_db, NETWORKS))
    out = _check_config(cfg)
    assert out.returncode == 0, out.stderr
