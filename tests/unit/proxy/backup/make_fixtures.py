"""Writes the RDB fixtures of test_rdb.py from a real redis-server; run once, commit the output.

    python3 -m tests.unit.proxy.backup.make_fixtures

A redis-server (7.0.15 made the committed files: RDB version 10) is started on a free
port, filled with `fill`, SAVEd, and its dump.rdb copied to data/. The data is
deterministic (a fixed seed), so the expected values below hold for any rerun; the
bytes differ (ctime, used-mem, repl-id, LRU idle times).

data/all_types.rdb (rdbcompression yes, rdbchecksum yes, maxmemory-policy allkeys-lru so
every key carries an IDLE opcode; one function library, so a FUNCTION2 opcode):
    keys 34: db 0 has 29 (26 user keys, 3 under "georedis:"), db 3 has 5
    expires 6: db 0 has 4 (2 of them reserved keys), db 3 has 2
    types: 21 strings (int-encoded, LZF-compressed, a 70 000-byte incompressible one,
    keys that are int-encoded or LZF-compressed themselves), lists as quicklists (small,
    many nodes), sets (intset, hashtable; 7.0 has no listpack sets), zsets (listpack,
    skiplist as ZSET_2), hashes (listpack, hashtable), a stream with two consumer groups,
    pending entries and consumers
data/no_checksum.rdb (rdbchecksum no, maxmemory-policy allkeys-lfu: FREQ opcodes):
    keys 4 in db 0, expires 1, no reserved keys; its trailer is 0
"""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import redis

DATA = Path(__file__).parent / "data"
SEED = 20240611

# Expected facts, shared with test_rdb.py.
ALL_TYPES_KEYS_PER_DB = {0: 29, 3: 5}
ALL_TYPES_RESERVED = 3
ALL_TYPES_EXPIRES = 6
NO_CHECKSUM_KEYS = 4
NO_CHECKSUM_EXPIRES = 1


def strings() -> dict[tuple[int, bytes], bytes]:
    """Every string key of all_types.rdb outside the reserved prefix: (db, name) -> value."""
    rng = random.Random(SEED)
    return {
        (0, b"str:plain"): b"hello world",
        (0, b"str:empty"): b"",
        (0, b"str:int8"): b"7",
        (0, b"str:int16"): b"-1234",
        (0, b"str:int32"): b"2000000000",
        (0, b"str:int-too-big"): b"12345678901234",  # past int32: a plain string
        (0, b"str:not-canonical"): b"007",  # digits, yet not int-encoded
        (0, b"str:binary"): bytes(range(256)),
        (0, b"str:lzf"): b"abcdefgh" * 500,  # compressible past 20 bytes: LZF
        (0, b"str:random-3000"): rng.randbytes(3000),  # incompressible: plain
        (0, b"str:random-5000"): rng.randbytes(5000),  # plain, past the 4096 sample cap
        (0, b"str:random-70000"): rng.randbytes(70000),  # past the walker's 64 KiB buffer
        (0, b"str:ttl"): b"expiring",
        (0, b"12345"): b"an int-encoded key name",
        (0, b"k" * 100): b"an LZF-compressed key name",
        (0, b"\x00\xffbinary-key"): b"v",
        (3, b"db3:str"): b"in db 3",
        (3, b"db3:ttl"): b"42",
        (3, b"db3:lzf"): b"z" * 1000,
    }


def fill(r: redis.Redis) -> None:
    """Write the all_types data set through `r` (on db 0)."""
    for (db, name), value in strings().items():
        if db == 0:
            r.set(name, value)
    r.pexpire(b"str:ttl", 86_400_000)
    r.rpush("list:small", "a", "b", "c", 1, 2, 3)
    r.rpush("list:big", *[f"element-{i}-" + "x" * 40 for i in range(2000)])  # many nodes
    r.sadd("set:intset", 1, 2, 3, 100000, -5)
    r.sadd("set:strings", "apple", "banana", "cherry")
    r.sadd("set:big", *[f"member-{i}" for i in range(300)])
    r.zadd("zset:small", {"one": 1, "two": 2.5, "three": -3})
    r.zadd("zset:big", {f"m{i}": i * 1.5 for i in range(300)})
    r.hset("hash:small", mapping={"f1": "v1", "f2": "2", "f3": "v3"})
    r.hset("hash:big", mapping={f"field-{i}": f"value-{i}" for i in range(600)})
    r.pexpire("hash:big", 86_400_000)
    for i in range(60):
        r.xadd("stream:events", {"n": i, "payload": "p" * (i % 7)}, id=f"{1000 + i}-0")
    r.xgroup_create("stream:events", "g1", id="0")
    r.xgroup_create("stream:events", "g2", id="$")
    r.xreadgroup("g1", "alice", {"stream:events": ">"}, count=5)
    r.xreadgroup("g1", "bob", {"stream:events": ">"}, count=3)
    r.xack("stream:events", "g1", "1000-0")
    r.xdel("stream:events", "1059-0")
    r.set("georedis:epoch", "3")
    r.hset("georedis:heartbeat", mapping={"ts": "1718000000000", "region": "eu-west-1"})
    r.pexpire("georedis:heartbeat", 60_000)
    r.set("georedis:lease", "x", px=30_000)
    r.function_load(
        "#!lua name=fixturelib\n"
        "redis.register_function('fixture_echo', function(keys, args) return args[1] end)"
    )
    r.execute_command("SELECT", 3)
    for (db, name), value in strings().items():
        if db == 3:
            r.set(name, value)
    r.expire(b"db3:ttl", 86_400)
    r.rpush("db3:list", "x")
    r.hset("db3:hash", "k", "v")
    r.pexpire("db3:hash", 86_400_000)
    r.execute_command("SELECT", 0)


def fill_no_checksum(r: redis.Redis) -> None:
    r.set("a", "1")
    r.set("b", "two", ex=86_400)
    r.rpush("c", "x", "y")
    r.sadd("d", "m")


def save(args: list[str], filler: Callable[[redis.Redis], None], out: Path) -> None:
    from tests.helpers.topology import RedisNode, free_port

    base = Path(tempfile.mkdtemp(prefix="georedis-rdb-fixture-"))
    node = RedisNode("fixture", free_port(), base, extra_args=args)
    try:
        node.wait_ready()
        r = node.client()
        filler(r)
        r.save()
        print(out.name, r.info("keyspace"), r.info("server")["redis_version"])
        shutil.copyfile(node.dir / "dump.rdb", out)
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    DATA.mkdir(exist_ok=True)
    save(["--maxmemory-policy", "allkeys-lru"], fill, DATA / "all_types.rdb")
    save(
        ["--rdbchecksum", "no", "--maxmemory-policy", "allkeys-lfu"],
        fill_no_checksum,
        DATA / "no_checksum.rdb",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
