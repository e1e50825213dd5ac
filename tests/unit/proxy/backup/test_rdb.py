"""RdbWalker over real RDB files (data/, written by make_fixtures.py from redis-server
7.0) and over synthetic ones for the layouts 7.0 does not write (built here from Redis'
rdb.c layouts). No sockets.

What must hold: the counts, whatever the chunking (one byte at a time, random sizes); a
flipped byte, a cut file or bytes after the trailer are an RdbError, never a summary.
"""

from __future__ import annotations

import ast
import random
import re
import struct
from pathlib import Path

import anycrc
import pytest

from proxy.backup.rdb import RdbError, RdbSummary, RdbWalker
from proxy.backup.rdbformat import BIG
from tests.unit.proxy.backup import make_fixtures as fx

DATA = Path(__file__).parent / "data"
ALL_TYPES = (DATA / "all_types.rdb").read_bytes()
NO_CHECKSUM = (DATA / "no_checksum.rdb").read_bytes()
CRC = anycrc.Model("CRC64-REDIS")


def walk(data: bytes, chunks: list[int] | None = None, **kw: object) -> RdbSummary:
    w = RdbWalker(**kw)  # type: ignore[arg-type]
    pos = 0
    for n in chunks or [len(data)]:
        w.feed(data[pos : pos + n])
        pos += n
    w.feed(data[pos:])
    summary = w.finish()
    assert w.consumed == len(data)
    return summary


# -- real files -------------------------------------------------------------------------


def test_counts_of_the_real_file() -> None:
    s = walk(ALL_TYPES)
    assert s.version == 10
    assert s.keys_per_db == fx.ALL_TYPES_KEYS_PER_DB
    assert s.keys == sum(fx.ALL_TYPES_KEYS_PER_DB.values())
    assert s.reserved_keys == fx.ALL_TYPES_RESERVED
    assert s.expires == fx.ALL_TYPES_EXPIRES
    assert s.aux["redis-ver"] == b"7.0.15"
    assert s.aux["redis-bits"] == b"64"  # int-encoded in the file
    assert s.checksum == int.from_bytes(ALL_TYPES[-8:], "little") != 0
    assert s.sample == ()


def test_sample_holds_every_user_key_with_its_value() -> None:
    s = walk(ALL_TYPES, sample=1000, seed=1)
    by_key = {(k.db, k.name): k for k in s.sample}
    assert len(by_key) == len(s.sample) == s.keys - s.reserved_keys
    assert not any(name.startswith(b"georedis:") for _, name in by_key)
    # LZF-compressed, or plain but past 4096 bytes: no value.
    unsampled = {b"str:lzf", b"str:random-5000", b"str:random-70000", b"db3:lzf"}
    for (db, name), value in fx.strings().items():
        key = by_key[db, name]
        assert key.type == "string"
        assert key.value == (None if name in unsampled else value), name
    types = {name: k.type for (_, name), k in by_key.items()}
    assert types[b"list:big"] == "list" and types[b"set:intset"] == "set"
    assert types[b"zset:big"] == "zset" and types[b"hash:small"] == "hash"
    assert types[b"stream:events"] == "stream"
    with_ttl = {name for (_, name), k in by_key.items() if k.has_ttl}
    assert with_ttl == {b"str:ttl", b"hash:big", b"db3:ttl", b"db3:hash"}


def test_sample_is_uniform_sized_and_seeded() -> None:
    a = walk(ALL_TYPES, sample=5, seed=7)
    assert len(a.sample) == 5
    assert walk(ALL_TYPES, sample=5, seed=7).sample == a.sample
    picks = {k.name for seed in range(40) for k in walk(ALL_TYPES, sample=5, seed=seed).sample}
    assert len(picks) > 20  # not always the first five


def test_one_byte_chunks_and_random_chunks_give_the_same_summary() -> None:
    whole = walk(ALL_TYPES, sample=10, seed=3)
    assert walk(ALL_TYPES, [1] * len(ALL_TYPES), sample=10, seed=3) == whole
    rng = random.Random(5)
    for _ in range(5):
        sizes = [rng.choice([1, 2, 7, 100, 4096, 65536, 1 << 20]) for _ in range(400)]
        assert walk(ALL_TYPES, sizes, sample=10, seed=3) == whole


def test_no_checksum_file_is_accepted() -> None:
    assert NO_CHECKSUM[-8:] == bytes(8)
    s = walk(NO_CHECKSUM, [1] * len(NO_CHECKSUM))
    assert s.checksum is None
    assert (s.keys, s.expires, s.reserved_keys) == (fx.NO_CHECKSUM_KEYS, fx.NO_CHECKSUM_EXPIRES, 0)
    assert s.keys_per_db == {0: fx.NO_CHECKSUM_KEYS}


def _fails(data: bytes, chunk: int = 65536) -> RdbError:
    w = RdbWalker()
    with pytest.raises(RdbError) as e:
        for i in range(0, len(data), chunk):
            w.feed(data[i : i + chunk])
        w.finish()
    return e.value


@pytest.mark.parametrize("at", [9, 30, 200, 1000, 5000, 16159, 40000, 88931, 109000, -20, -9])
def test_a_flipped_byte_is_an_error(at: int) -> None:
    bad = bytearray(ALL_TYPES)
    bad[at] ^= 0x5A
    assert "byte" in str(_fails(bytes(bad)))


def test_a_flipped_trailer_is_a_crc_mismatch() -> None:
    bad = bytearray(ALL_TYPES)
    bad[-1] ^= 1
    assert "CRC64 mismatch" in str(_fails(bytes(bad)))


def test_a_cut_file_is_incomplete() -> None:
    cuts = sorted({*random.Random(11).sample(range(len(ALL_TYPES)), 45), 0, 5, 9, -8, -1})
    for cut in cuts:
        w = RdbWalker()
        w.feed(ALL_TYPES[:cut])  # a prefix of a good file is never malformed
        with pytest.raises(RdbError, match="RDB incomplete: it ends at byte"):
            w.finish()
        with pytest.raises(RdbError):  # and stays failed
            w.finish()


def test_bytes_after_the_trailer_are_an_error() -> None:
    assert "after the checksum trailer" in str(_fails(ALL_TYPES + b"\x00"))
    w = RdbWalker()
    w.feed(NO_CHECKSUM)
    with pytest.raises(RdbError, match=f"byte {len(NO_CHECKSUM)}: 3 bytes after"):
        w.feed(b"abc")
    with pytest.raises(RdbError):
        w.finish()


def test_the_module_is_sans_io() -> None:
    for path in ("proxy/backup/rdb.py", "proxy/backup/rdbread.py", "proxy/backup/rdbformat.py"):
        tree = ast.parse((Path(__file__).parents[4] / path).read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not names & {"asyncio", "socket", "os", "io", "pathlib"}, path


# -- synthetic files: layouts Redis 7.0 does not write ----------------------------------


def enc_len(n: int) -> bytes:
    if n < 64:
        return bytes([n])
    if n < 16384:
        return bytes([0x40 | n >> 8, n & 0xFF])
    if n < 1 << 32:
        return b"\x80" + n.to_bytes(4, "big")
    return b"\x81" + n.to_bytes(8, "big")


def enc_str(b: bytes) -> bytes:
    return enc_len(len(b)) + b


def key(rdbtype: int, name: bytes, value: bytes) -> bytes:
    return bytes([rdbtype]) + enc_str(name) + value


def rdb(*records: bytes, version: int = 12, checksum: bool = True) -> bytes:
    data = b"REDIS%04d" % version + b"".join(records) + b"\xff"
    return data + (CRC.calc(data) if checksum else 0).to_bytes(8, "little")


def stream(rdbtype: int) -> bytes:
    """One listpack node, a group with 2 pending entries and a consumer owning one."""
    v2, v3 = rdbtype >= 19, rdbtype >= 21
    out = enc_len(1) + enc_str(bytes(16)) + enc_str(b"L" * 70)  # master ID, listpack
    out += b"".join(enc_len(n) for n in (5, 1000, 3) + ((1000, 0, 0, 0, 5) if v2 else ()))
    out += enc_len(1) + enc_str(b"group") + enc_len(1000) + enc_len(1)
    out += enc_len(4) if v2 else b""  # entries read
    out += enc_len(2) + (bytes(16) + bytes(8) + enc_len(1)) * 2  # global PEL
    out += enc_len(1) + enc_str(b"consumer") + bytes(8) + (bytes(8) if v3 else b"")
    return out + enc_len(1) + bytes(16)


def module_value() -> bytes:
    """Module id, then SINT, UINT, FLOAT, DOUBLE, STRING, EOF (rdbLoadCheckModuleValue)."""
    ops = enc_len(1) + enc_len(7) + enc_len(2) + enc_len(1 << 40) + enc_len(3) + bytes(4)
    ops += enc_len(4) + struct.pack("<d", 1.5) + enc_len(5) + enc_str(b"payload")
    return enc_len(0x1234_5678_9ABC_DE01) + ops + enc_len(0)


SYNTHETIC = rdb(
    b"\xfa" + enc_str(b"redis-ver") + enc_str(b"7.4.0"),
    b"\xf7" + enc_len(99) + enc_len(2) + enc_len(1) + enc_len(5) + enc_str(b"aux") + enc_len(0),
    b"\xfe" + enc_len(2) + b"\xfb" + enc_len(20) + enc_len(1),
    b"\xf4" + enc_len(866) + enc_len(20) + enc_len(1),  # SLOT_INFO (7.4, cluster)
    key(1, b"list", enc_len(2) + enc_str(b"a") + enc_str(b"b" * 300)),  # linked list
    key(3, b"zset", enc_len(4) + enc_str(b"a") + b"\x031.5" + enc_str(b"n") + b"\xfd"
        + enc_str(b"p") + b"\xfe" + enc_str(b"m") + b"\xff"),  # text scores, nan, +-inf
    b"\xfd" + struct.pack("<i", 2_000_000_000),  # EXPIRETIME (seconds, pre-3.0)
    key(9, b"zipmap", enc_str(b"Z" * 20)),
    key(10, b"ziplist", enc_str(b"Z" * 20)),
    key(12, b"zset-ziplist", enc_str(b"Z" * 20)),
    key(13, b"hash-ziplist", enc_str(b"Z" * 20)),
    key(14, b"quicklist", enc_len(2) + enc_str(b"Z" * 20) + enc_str(b"Y" * 20000)),
    key(15, b"stream-1", stream(15)),
    key(20, b"set-listpack", enc_str(b"Z" * 20)),
    b"\xf9\x05",  # FREQ
    key(21, b"stream-3", stream(21)),
    b"\xf8" + enc_len(1 << 33),  # IDLE, 64-bit length
    key(24, b"hash-ttl", bytes(8) + enc_len(2) + enc_len(0) + enc_str(b"f") + enc_str(b"v")
        + enc_len(5) + enc_str(b"g") + enc_str(b"w")),
    b"\xfc" + bytes(8),
    key(25, b"hash-lp-ttl", bytes(8) + enc_str(b"Z" * 20)),
    key(7, b"module", module_value()),
    key(0, b"last", enc_str(b"done")),
)  # fmt: skip


def test_every_other_layout() -> None:
    s = walk(SYNTHETIC, sample=100, seed=0)
    assert (s.version, s.keys, s.expires, s.keys_per_db) == (12, 14, 2, {2: 14})
    assert s.aux == {"redis-ver": b"7.4.0"}
    types = {k.name: k.type for k in s.sample}
    assert types == {
        b"list": "list", b"zset": "zset", b"zipmap": "hash", b"ziplist": "list",
        b"zset-ziplist": "zset", b"hash-ziplist": "hash", b"quicklist": "list",
        b"stream-1": "stream", b"set-listpack": "set", b"stream-3": "stream",
        b"hash-ttl": "hash", b"hash-lp-ttl": "hash", b"module": "module", b"last": "string",
    }  # fmt: skip
    assert {k.name for k in s.sample if k.has_ttl} == {b"zipmap", b"hash-lp-ttl"}
    assert walk(SYNTHETIC, [1] * len(SYNTHETIC), sample=100, seed=0) == s


def test_a_stream_of_7_0_walks_as_stream_2() -> None:
    s = walk(rdb(key(19, b"s", stream(19)), key(0, b"after", enc_str(b"x"))), sample=9)
    assert [k.name for k in s.sample] == [b"s", b"after"]


def lzf_str(b: bytes) -> bytes:
    """An LZF-encoded string made of literal runs only (valid LZF, no compression)."""
    runs = b"".join(bytes([len(b[i : i + 32]) - 1]) + b[i : i + 32] for i in range(0, len(b), 32))
    return b"\xc3" + enc_len(len(runs)) + enc_len(len(b)) + runs


@pytest.mark.parametrize("chunk", [65536, 997])
def test_long_strings_are_skipped_not_buffered(chunk: int) -> None:
    big = random.Random(1).randbytes(1 << 20)
    long_name = b"georedis:" + b"n" * 100_000
    data = rdb(
        key(0, b"big", enc_str(big)),
        key(4, b"hash", enc_len(2) + enc_str(b"f") + enc_str(big) + enc_str(b"g") + enc_str(b"")),
        key(0, b"k" * 100_000, enc_str(b"a long name: counted, never sampled")),
        key(4, long_name, enc_len(1) + enc_str(b"f") + enc_str(b"v")),
        bytes([0]) + lzf_str(long_name) + enc_str(big),
        bytes([25]) + lzf_str(b"x" * 70_000) + bytes(8) + enc_str(big),
        b"\xfa" + enc_str(b"lua") + enc_str(big),  # an AUX this long is skipped
        b"\xf5" + enc_str(big),  # FUNCTION2: a library's code
        key(0, b"last", enc_str(b"v")),
    )
    w = RdbWalker(sample=10)
    for i in range(0, len(data), chunk):
        w.feed(data[i : i + chunk])
        assert w.consumed >= min(i + chunk, len(data)) - 2 * BIG  # nothing long is held
    s = w.finish()
    assert (s.keys, s.reserved_keys) == (7, 2)
    assert {k.name: k.value for k in s.sample} == {b"big": None, b"hash": None, b"last": b"v"}
    assert "lua" not in s.aux


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"RDBS", "byte 0: not an RDB file"),
        (b"REDIS0013", "byte 5: RDB version 13: this walker reads 6 to 12"),
        (b"REDIS0005", "RDB version 5"),
        (b"REDIS00x1", "is not a number"),
        (rdb(key(6, b"m", b"")), "byte 9: a module value in the 4.0 release-candidate"),
        (rdb(key(22, b"h", b"")), "byte 9: a hash with field TTLs in the 7.4 release"),
        (rdb(key(23, b"h", b"")), "type 23"),
        (rdb(key(8, b"x", b"")), "byte 9: unknown value type 8"),
        (rdb(b"\xf6"), "byte 9: a function in the 7.0 release-candidate format"),
        (rdb(b"\xf3"), "byte 9: unknown value type 243"),  # KEY_META (8.x) is refused
        (rdb(b"\xf8\x00\xfe\xc0"), "byte 12: a string encoding (0xc0) where a length"),
        (rdb(key(0, b"x", b"\x82")), "byte 12: unknown length encoding 0x82"),
        (rdb(key(0, b"x", b"\xc4")), "byte 12: unknown string encoding 0xc4"),
        (rdb(key(1, b"x", b"\xc0")), "byte 12: a string encoding (0xc0) where a length"),
        (rdb(key(18, b"x", enc_len(1) + enc_len(3) + enc_str(b"a"))), "container 3"),
        (rdb(key(15, b"x", enc_len(1) + enc_str(b"short"))), "not a 16-byte stream ID"),
        (rdb(key(7, b"x", enc_len(1) + enc_len(9))), "unknown module value opcode 9"),
        (rdb(b"\xf7" + enc_len(1) + enc_len(1)), "module aux 'when' opcode 1"),
        (rdb(b"\x00\xc3\x02\x05\x00a" + enc_str(b"v")), "byte 10: bad LZF string: 1 bytes"),
    ],
)
def test_malformed_bytes_are_refused_at_once(data: bytes, message: str) -> None:
    for chunk in (1, len(data)):
        w = RdbWalker()
        with pytest.raises(RdbError, match=re.escape(message)):
            for i in range(0, len(data), chunk):
                w.feed(data[i : i + chunk])
        with pytest.raises(RdbError, match=re.escape(message)):  # a failed walker stays failed
            w.feed(b"more")


def test_lzf_key_names_decode_like_redis_wrote_them() -> None:
    i = ALL_TYPES.index(b"\x00\xc3\x09\x40\x64")  # "k" * 100: 9 bytes, a repeating reference
    s = walk(rdb(ALL_TYPES[i : i + 14] + enc_str(b"v")), sample=1)
    assert s.sample[0].name == b"k" * 100
