"""RdbWalker over an RDB a live redis-server just saved: 20,000 keys of every type, a
2 MB string, a hash of 5,000 fields, a stream with a consumer group, some with TTLs.

The walk must agree with the server (DBSIZE, INFO keyspace's expires) and be fast
enough to keep up with a backup stream: its rate is printed (`-s` shows it), not
asserted, since shared CI machines vary too much for a timing assertion.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from proxy.backup.rdb import RdbWalker
from tests.helpers.topology import RedisNode, RedisTopology

CHUNK = 64 * 1024
KEYS = 20_000


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisNode]:
    with RedisTopology.start({"ap-southeast-1": 1}, tmp=tmp_path_factory.mktemp("rdb")) as t:
        yield t.primary


def _fill(r: redis.Redis) -> None:
    """KEYS keys: mostly strings, then every collection type, some with TTLs."""
    rng = random.Random(7)
    r.set("big:string", rng.randbytes(2 << 20))
    r.hset("big:hash", mapping={f"field:{i}": f"value:{i}" * 3 for i in range(5000)})
    for i in range(200):
        r.xadd("big:stream", {"i": i, "data": "x" * 50})
    r.xgroup_create("big:stream", "workers", id="0")
    r.xreadgroup("workers", "w1", {"big:stream": ">"}, count=20)
    pipe = r.pipeline(transaction=False)
    for i in range(KEYS - 3):
        kind = i % 10
        name = f"key:{i}"
        if kind < 5:
            pipe.set(name, rng.randbytes(rng.randrange(1, 200)) if kind else str(i))
        elif kind == 5:
            pipe.rpush(name, *[f"e{j}" for j in range(1 + i % 30)])
        elif kind == 6:
            pipe.sadd(name, *range(1 + i % 20) if i % 3 else [f"m{j}" for j in range(5)])
        elif kind == 7:
            pipe.zadd(name, {f"m{j}": j / 3 for j in range(1 + i % 40)})
        elif kind == 8:
            pipe.hset(name, mapping={f"f{j}": j for j in range(1 + i % 200)})
        else:
            pipe.set(name, "georedis " * (10 + i % 50))  # compressible: LZF
        if i % 7 == 0:
            pipe.pexpire(name, 3_600_000)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


def test_walk_of_a_saved_rdb_matches_the_server(node: RedisNode) -> None:
    r = node.client()
    _fill(r)
    r.save()
    assert r.dbsize() == KEYS
    expires = node.info("keyspace")["db0"]["expires"]
    config = node.admin.config_get("dir") | node.admin.config_get("dbfilename")
    rdb = Path(str(config["dir"])) / str(config["dbfilename"])
    data = rdb.read_bytes()

    seconds = float("inf")
    for _ in range(3):  # the best of three: a shared machine's noise only ever slows it
        walker = RdbWalker(sample=100, seed=1)
        start = time.perf_counter()
        for i in range(0, len(data), CHUNK):
            walker.feed(data[i : i + CHUNK])
        summary = walker.finish()
        seconds = min(seconds, time.perf_counter() - start)

    assert summary.keys == KEYS
    assert summary.keys_per_db == {0: KEYS}
    assert summary.expires == expires > 0
    assert summary.aux["redis-ver"].decode() == node.info("server")["redis_version"]
    assert len(summary.sample) == 100
    for key in summary.sample:
        if key.value is not None:
            assert r.get(key.name) == key.value
    mb = len(data) / 1e6
    print(
        f"\nRdbWalker: {mb:.1f} MB, {KEYS} keys in {seconds * 1000:.0f} ms: "
        f"{mb / seconds:.0f} MB/s, {KEYS / seconds:,.0f} keys/s"
    )
