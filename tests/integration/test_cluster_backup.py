"""PROXY BACKUP in cluster mode, against a real Redis Cluster (3 masters x 2 replicas).

The id names a set: one sealed RDB per shard, each from a replica of that shard, with its
own manifest (`cluster`: set, shard, slots; `at`: its fork's moment), listed as one set
only once every shard's object is stored. Checked as an operator would, by walking each
shard's stored RDB with the project's own reader (`restore.check` with a sample as large
as the data): every key acknowledged through georedis before PROXY BACKUP was sent is in
the set, in the shard that serves its slot, while numbered writes go on during the
backup; every member verifies; FROM <host:port> and RESTORE are refused with the way
out named.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.backup.manifest import Manifest
from proxy.backup.restore import check
from proxy.backup.sealed import MasterKey
from proxy.backup.targets import DirectoryTarget
from routing.slots import key_slot
from tests.helpers.backup import KEY_ENV, KEY_HEX, backup, backup_toml, pairs, proxy_cmd
from tests.helpers.cluster import RedisCluster
from tests.helpers.clusterproxy import client, start_default
from tests.helpers.proxyrun import FAST_HEALTH, ProxyThread

PRELOAD = 20_000


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("backups")


@pytest.fixture(scope="module")
def proxy(cluster: RedisCluster, store: Path) -> Iterator[ProxyThread]:
    mp = pytest.MonkeyPatch()
    mp.setenv(KEY_ENV, KEY_HEX)  # read at each backup, in this process (the proxy's thread)
    p = start_default(cluster, FAST_HEALTH + backup_toml(str(store)))
    try:
        yield p
    finally:
        p.stop()
        mp.undo()


class Writer(threading.Thread):
    """SET n:<i> through georedis, one at a time; `acked` counts the acknowledged ones."""

    def __init__(self, p: ProxyThread, start: int) -> None:
        super().__init__(daemon=True)
        self.c = client(p)
        self.acked = start
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                assert self.c.set(f"n:{self.acked}", self.acked)
                self.acked += 1
        except BaseException as e:  # the test reads it: a refused write is a failure
            self.error = e


def _names(store: Path, m: Manifest) -> set[bytes]:
    """Every key in a member's stored RDB, by the project's own walker (all sampled)."""
    key = MasterKey.parse(KEY_HEX)
    summary = asyncio.run(check(DirectoryTarget(str(store)), m, key, sample=10 * m.keys + 1))
    assert len(summary.sample) == m.user_keys
    return {k.name for k in summary.sample}


def _member(store: Path, ident: str) -> Manifest:
    return Manifest.from_json((store / f"{ident}.json").read_bytes())


def _in(slot: int, ranges: list[list[int]]) -> bool:
    return any(a <= slot <= b for a, b in ranges)


def test_a_set_holds_every_key_acknowledged_before_it_began(
    cluster: RedisCluster, proxy: ProxyThread, store: Path
) -> None:
    c = client(proxy)
    pipe = c.pipeline(transaction=False)
    for i in range(PRELOAD):
        pipe.set(f"n:{i}", i)
    assert all(pipe.execute())
    writer = Writer(proxy, PRELOAD)
    writer.start()
    try:
        while writer.acked < PRELOAD + 500:  # writes under way when the backup begins
            assert writer.error is None, writer.error
        before = writer.acked  # every n:<i> below this was acknowledged: it must be in
        status = backup(proxy.port)
    finally:
        writer.halt.set()
        writer.join(10)
    assert writer.error is None, writer.error
    assert writer.acked > before  # writes went on during the backup
    ident = status["id"]
    assert status.get("cluster_shards") == 3, str(status)
    shards = status["shards"]
    assert sorted(pairs(s)["shard"] for s in shards) == [0, 1, 2]
    assert all(pairs(s)["state"] == "complete" for s in shards)

    rows = [pairs(r) for r in proxy_cmd(proxy.port, "BACKUPS")]
    assert [r["id"] for r in rows] == [ident]  # the set, never its members on their own
    assert rows[0]["cluster_shards"] == 3 and rows[0]["state"] == "complete"

    set_m = _member(store, ident)
    assert set_m.is_set
    found: set[bytes] = set()
    sources = set()
    for row in set_m.cluster["members"]:  # type: ignore[index]
        m = _member(store, row["id"])
        assert m.cluster is not None and m.cluster["set"] == ident
        assert m.source_role == "replica", m.source  # a replica when one can serve
        assert set_m.created <= m.at <= m.finished  # its own fork's moment
        sources.add(m.source)
        names = _names(store, m)
        assert all(_in(key_slot(k), m.cluster["slots"]) for k in names)
        found |= names
    assert len(sources) == 3
    missing = [i for i in range(before) if f"n:{i}".encode() not in found]
    assert not missing, f"{len(missing)} acknowledged keys missing, e.g. {missing[:5]}"
    assert set_m.user_keys == len(found)

    result = pairs(proxy_cmd(proxy.port, "BACKUP", "VERIFY", ident, timeout=300))
    assert result["result"] == "ok", result
    assert len(result["shards"]) == 3
    for row in set_m.cluster["members"]:  # type: ignore[index]
        assert (_member(store, row["id"]).verify or {}).get("result") == "ok"


def test_from_a_region_reads_each_shard_there(cluster: RedisCluster, proxy: ProxyThread,
                                              store: Path) -> None:  # fmt: skip
    region = cluster.nodes[-1].region  # a replica's region: every shard has one there
    status = backup(proxy.port, "FROM", region)
    for row in _member(store, status["id"]).cluster["members"]:  # type: ignore[index]
        assert row["source"].endswith(f"({region})"), row


def test_node_source_and_restore_are_refused(cluster: RedisCluster, proxy: ProxyThread) -> None:
    err = _error(proxy, "BACKUP", "FROM", cluster.nodes[3].address)
    assert "FROM names a region" in err
    ident = backup(proxy.port)["id"]
    for name in (ident, f"{ident}.s0"):
        err = _error(proxy, "RESTORE", name)
        assert "cluster" in err and "redis-cli --cluster import" in err, err


def _error(p: ProxyThread, *args: str) -> str:
    try:
        reply: Any = proxy_cmd(p.port, *args)
    except Exception as e:
        return str(e)
    raise AssertionError(f"PROXY {' '.join(args)} answered {reply!r}")
