"""The sealed format: what opens, and every way a damaged backup is refused."""

from __future__ import annotations

import os
import random
import struct

import pytest

from proxy.backup.sealed import HEADER_SIZE, MasterKey, Opener, Sealer, SealError

KEY = MasterKey(bytes(range(32)))


def seal(data: bytes, segment: int = 1000, pieces: int = 7) -> bytes:
    s = Sealer(KEY, segment=segment)
    out = [s.header]
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        out.append(s.seal(data[i : i + step]))
    out.append(s.finish())
    return b"".join(out)


def open_all(blob: bytes, key: MasterKey = KEY, chunk: int = 333) -> bytes:
    o = Opener(key)
    out = [o.feed(blob[i : i + chunk]) for i in range(0, len(blob), chunk)]
    o.finish()
    return b"".join(out)


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 5000, 12345])
def test_round_trip_any_size(size: int) -> None:
    data = os.urandom(size)
    assert open_all(seal(data)) == data
    assert open_all(seal(data), chunk=1) == data


def test_no_plaintext_and_fresh_keys() -> None:
    data = b"REDIS0010" + b"user:secret-key-name" * 100
    a, b = seal(data), seal(data)
    assert b"REDIS" not in a and b"secret-key-name" not in a
    assert a[HEADER_SIZE:] != b[HEADER_SIZE:]  # a data key and nonce prefix per backup


def test_flipped_byte_anywhere_is_refused() -> None:
    blob = seal(os.urandom(4000))
    rng = random.Random(7)
    for pos in [5, 12, 40, HEADER_SIZE - 1, HEADER_SIZE + 2, *rng.sample(range(len(blob)), 30)]:
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises(SealError):
            open_all(bytes(bad))


def test_cut_short_anywhere_is_refused() -> None:
    blob = seal(os.urandom(4000))
    for cut in range(0, len(blob), 97):
        with pytest.raises(SealError):
            open_all(blob[:cut])


def segments(blob: bytes) -> list[bytes]:
    out, at = [], HEADER_SIZE
    while at < len(blob):
        (n,) = struct.unpack_from(">I", blob, at)
        out.append(blob[at : at + 4 + n])
        at += 4 + n
    return out


def test_reordered_dropped_or_appended_segments_are_refused() -> None:
    blob = seal(os.urandom(4500))
    head, segs = blob[:HEADER_SIZE], segments(blob)
    assert len(segs) == 5
    swapped = [segs[1], segs[0], *segs[2:]]
    dropped_middle = [segs[0], *segs[2:]]
    dropped_last = segs[:-1]  # cut exactly at a segment boundary
    appended = [*segs, segs[-1]]
    for variant in (swapped, dropped_middle, dropped_last, appended):
        with pytest.raises(SealError):
            open_all(head + b"".join(variant))


def test_segment_from_another_backup_is_refused() -> None:
    a, b = seal(os.urandom(3000)), seal(os.urandom(3000))
    mixed = a[:HEADER_SIZE] + segments(a)[0] + segments(b)[1] + b"".join(segments(a)[2:])
    with pytest.raises(SealError):
        open_all(mixed)


def test_wrong_master_key_is_named() -> None:
    blob = seal(b"data")
    with pytest.raises(SealError, match="not with this one"):
        open_all(blob, key=MasterKey(os.urandom(32)))


def test_not_a_backup() -> None:
    with pytest.raises(SealError, match="bad magic"):
        open_all(b"REDIS0010" + b"x" * 100)


def test_master_key_parsing_and_repr() -> None:
    raw = os.urandom(32)
    assert MasterKey.parse(raw.hex()).id == MasterKey(raw).id
    import base64

    assert MasterKey.parse(base64.b64encode(raw).decode()).id == MasterKey(raw).id
    for bad in ["", "abc", "zz" * 32, base64.b64encode(b"short").decode()]:
        with pytest.raises(ValueError):
            MasterKey.parse(bad)
    assert raw.hex() not in repr(MasterKey(raw))
