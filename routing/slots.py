"""Which of Redis Cluster's 16384 hash slots a key belongs to, exactly as Redis computes it.

A slot is CRC16 of the key modulo 16384 (https://redis.io/docs/reference/cluster-spec,
"Keys distribution model"), where CRC16 is Redis' crc16.c: CRC-16/XMODEM (CCITT
polynomial 0x1021, initial value 0, no reflection). The standard library's
`binascii.crc_hqx(data, 0)` is that very CRC, table-driven in C: ~0.1 µs a key here,
against ~0.45 µs for `anycrc`'s CRC16-XMODEM model (a heavier call) and ~1 µs and up for
a 256-entry table walked in Python; so no table of our own in Python. A cluster
pipeline of one single-key command has all its keys hashed in one C call
(`_speedups.key_slots`, the same CRC from its own table; `key_slots_py` its twin).

Hash tags let an application put related keys in one slot: if the key has a `{`, and a
`}` somewhere after it with at least one byte between them, only the bytes between the
first `{` and the first `}` after it are hashed. `foo{}{bar}` has an empty first tag, so
the whole key is hashed; `foo{{bar}}zap` hashes `{bar`.
"""

from __future__ import annotations

import contextlib
from binascii import crc_hqx
from collections.abc import Callable

from proxy.resp.limits import FRAMED_IN_C

SLOTS = 16384
_MASK = SLOTS - 1  # 16384 is a power of two: modulo is a mask


def key_slot(key: bytes) -> int:
    """The hash slot of `key` (0..16383), as CLUSTER KEYSLOT answers."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return crc_hqx(key[start + 1 : end], 0) & _MASK
    return crc_hqx(key, 0) & _MASK


def hash_tag(key: bytes) -> bytes:
    """The part of `key` that is hashed: its tag when it has a non-empty one, else all."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def key_slots_py(cmds: list[list[bytes]], pos: int) -> list[int] | None:
    """Every command's slot of its argument at `pos` (a pipeline of one single-key
    command), or None when one has no argument there: `_speedups.key_slots`' twin."""
    if pos < 0 or any(len(c) <= pos for c in cmds):
        return None
    return [key_slot(c[pos]) for c in cmds]


key_slots: Callable[[list[list[bytes]], int], list[int] | None] = key_slots_py
if FRAMED_IN_C:
    with contextlib.suppress(ImportError):  # pragma: no cover - an older build lacks it
        from proxy.resp._speedups import key_slots as _key_slots_c

        key_slots = _key_slots_c
