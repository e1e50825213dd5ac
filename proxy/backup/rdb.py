"""A streaming walk over a Redis RDB file: its keys counted, its CRC64 trailer checked.

A backup feeds the RDB through `RdbWalker.feed` in the chunks it arrives in (a gigabyte
and more), and `finish` says whether it was whole: the EOF opcode, then an 8-byte
little-endian CRC-64/Jones of every byte before it (0: written with `rdbchecksum no`).
The walk is sans-IO (no asyncio, no sockets, no files) and holds little: the record
being read, whose strings are kept only up to 64 KiB (`rdbformat.BIG`); a longer one,
key names included, is skipped by count as it streams, so a corrupt length cannot make
it buffer the rest of the file. A key name past 64 KiB is counted and checked against
the reserved prefix, but never sampled. The sample is a reservoir (`random.Random(seed)`)
over the keys outside the reserved prefix.

How it walks. `_records` parses whole top-level records (opcodes, keys whose value is
one string) straight from the buffer, committing the position after each; when the
buffer ends inside one it stops, and parses the record again from its start after the
next chunk (a record held whole is small: its strings are at most 64 KiB, or the last
thing in it and skipped). A collection can be far bigger than a chunk, so after its key
the value goes to a generator (`rdbread.RdbReader.value`) that keeps its place across
chunks. The buffer, the skipping and the CRC are `rdbread.RdbReader`'s.

Errors: `RdbError` as soon as the bytes cannot be an RDB (its message names the byte
offset); the walker then refuses any further use. Formats refused on purpose: module
values of the 4.0 release candidates (type 6), functions of the 7.0 release candidates
(opcode 0xF6), hashes with field TTLs of the 7.4 release candidates (types 22 and 23),
RDB versions outside 6..12. Layouts: `proxy.backup.rdbformat`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from proxy.backup.rdbformat import (
    AUX,
    BIG,
    BLOB_TYPES,
    EOF,
    EXPIRETIME,
    EXPIRETIME_MS,
    FREQ,
    FUNCTION2,
    FUNCTION_PRE_GA,
    HASH_LISTPACK_EX,
    IDLE,
    LENGTH,
    MODULE_AUX,
    REFUSED_TYPES,
    RESIZEDB,
    SELECTDB,
    SLOT_INFO,
    STRING,
    TYPE_NAMES,
    Layout,
    Malformed,
    Short,
    plain_value,
    read_len,
    read_whole,
    skip_item,
    starts_with,
    string_span,
)
from proxy.backup.rdbread import RdbReader, Wait
from proxy.errors import GeoredisError

__all__ = ["RdbError", "RdbSummary", "RdbWalker", "SampledKey"]

_VERSIONS = range(6, 13)  # Redis 2.6 (6) .. 7.4 (12)
_HEADER, _RECORDS, _TRAILER, _DONE = range(4)


class RdbError(GeoredisError):
    """The bytes are not a whole, intact RDB; the message says what and at which byte."""


@dataclass(frozen=True, slots=True)
class SampledKey:
    db: int
    name: bytes
    type: str  # TYPE's reply ("string", "list", ..., "stream"); "module" for modules
    has_ttl: bool
    # A string key's value when stored plain or int-encoded, up to 4096 bytes; else None.
    value: bytes | None


@dataclass(frozen=True, slots=True)
class RdbSummary:
    version: int  # from the "REDIS0010" header
    keys: int  # every key in the file
    reserved_keys: int  # keys under the reserved prefix (georedis' own)
    keys_per_db: dict[int, int]
    expires: int  # keys with an expire
    checksum: int | None  # the CRC64 trailer; None when the file carries 0
    aux: dict[str, bytes]  # AUX fields: redis-ver, redis-bits, ctime, used-mem, repl-id...
    sample: tuple[SampledKey, ...]  # a uniform sample of the keys outside the prefix
    # (db, name) of the keys under the prefix (a few per proxy; at most RESERVED_KEPT):
    # what a restore deletes.
    reserved: tuple[tuple[int, bytes], ...] = ()


RESERVED_KEPT = 100_000


class RdbWalker:
    """Feed an RDB's bytes in order; `finish()` at the end gives its `RdbSummary`."""

    def __init__(
        self, reserved_prefix: bytes = b"georedis:", sample: int = 0, seed: int | None = None
    ) -> None:
        self._prefix = reserved_prefix
        self._sample_size = sample
        self._rng = random.Random(seed)
        self._in = RdbReader()
        self._state = _HEADER
        self._gen: Wait | None = None  # the walk through a value, while one is open
        self._inside = ""  # what _gen walks, for the message of a truncated file
        self._error: RdbError | None = None
        self._version = 0
        self._db = 0
        self._ttl = False  # an expire opcode came; it belongs to the next key
        self._keys = self._reserved = self._expires = 0
        self._per_db: dict[int, int] = {}
        self._aux: dict[str, bytes] = {}
        self._checksum: int | None = None
        self._offered = 0  # keys offered to the reservoir
        self._sample: list[SampledKey] = []
        self._reserved_names: list[tuple[int, bytes]] = []

    @property
    def consumed(self) -> int:
        """Bytes of the file walked so far (a skipped string counts as its bytes arrive)."""
        return self._in.base + self._in.pos

    def feed(self, data: bytes) -> None:
        """The next bytes of the file, any amount; RdbError at the first bad byte."""
        if self._error is not None:
            raise self._error
        if not data:
            return
        try:
            if self._state == _DONE:
                raise Malformed(f"{len(data)} bytes after the checksum trailer", 0)
            self._in.take(data)
            self._advance()
        except Malformed as e:
            self._error = RdbError(f"bad RDB at byte {self._in.base + e.pos}: {e.what}")
            raise self._error from None

    def finish(self) -> RdbSummary:
        """The summary of a whole file; RdbError if it ended early or failed its check."""
        if self._error is not None:
            raise self._error
        if self._state != _DONE:
            end = self._in.base + len(self._in.buf)
            missing = f" ({self._in.skip} bytes short)" if self._in.skip else ""
            where = self._where()
            self._error = RdbError(f"RDB incomplete: it ends at byte {end}{missing}, {where}")
            raise self._error
        return RdbSummary(
            version=self._version,
            keys=self._keys,
            reserved_keys=self._reserved,
            keys_per_db=dict(self._per_db),
            expires=self._expires,
            checksum=self._checksum,
            aux=dict(self._aux),
            sample=tuple(self._sample),
            reserved=tuple(self._reserved_names),
        )

    def _where(self) -> str:
        if self._state == _HEADER:
            return "inside its header"
        if self._state == _TRAILER:
            return "inside its 8-byte checksum trailer"
        if self._gen is not None:
            return f"inside {self._inside}"
        return "before its EOF opcode"

    def _advance(self) -> None:
        """Walks as far as the buffer allows."""
        while True:
            if self._gen is not None:
                try:
                    next(self._gen)
                except StopIteration:
                    self._gen = None
                    continue
                break  # the value's walk waits for bytes
            if self._state == _TRAILER:
                self._trailer()
                break
            if self._state == _DONE or not self._records():
                break
        self._in.compact()

    def _trailer(self) -> None:
        r = self._in
        r.compact()  # the CRC covers everything up to and including the EOF opcode
        if len(r.buf) < 8:
            return
        if len(r.buf) > 8:
            raise Malformed(f"{len(r.buf) - 8} bytes after the checksum trailer", 8)
        stored = int.from_bytes(r.buf, "little")
        if stored and stored != r.crc:
            raise Malformed(
                f"CRC64 mismatch: the trailer says {stored:016x}, "
                f"the bytes before it hash to {r.crc:016x}",
                0,
            )
        self._checksum = stored or None
        r.base += 8
        r.buf.clear()
        self._state = _DONE

    # -- top-level records, whole from the buffer -------------------------------------

    def _records(self) -> bool:
        """Walks whole records. False: the buffer ends inside one; True: a value's walk
        took over, or the EOF opcode came."""
        try:
            if self._state == _HEADER:
                self._header()
            while self._gen is None and self._state == _RECORDS:
                self._record(self._in.pos)
        except Short:
            return False
        return True

    def _header(self) -> None:
        head = bytes(self._in.buf[:9])
        if not head.startswith(b"REDIS"[: len(head)]):
            raise Malformed(f"not an RDB file: it starts {head[:5]!r}, not b'REDIS'", 0)
        if len(head) < 9:
            raise Short
        if not head[5:].isdigit():
            raise Malformed(f"RDB version {head[5:]!r} is not a number", 5)
        self._version = int(head[5:])
        if self._version not in _VERSIONS:
            raise Malformed(f"RDB version {self._version}: this walker reads 6 to 12", 5)
        self._in.pos = 9
        self._state = _RECORDS

    def _record(self, pos: int) -> None:
        """One record at `pos`: an opcode and its arguments, or a key and its value."""
        r = self._in
        buf = r.buf
        if pos >= len(buf):
            raise Short
        op = buf[pos]
        if op < SLOT_INFO:
            self._key_record(op, pos + 1)
        elif op in (EXPIRETIME_MS, EXPIRETIME):
            r.goto(skip_item(buf, pos + 1, 8 if op == EXPIRETIME_MS else 4))
            self._ttl = True
        elif op == SELECTDB:
            self._db, r.pos = read_len(buf, pos + 1)
        elif op == AUX:
            name, p = read_whole(buf, pos + 1)
            if name is None:
                raise Malformed("an AUX field name longer than 64 KiB", pos + 1)
            value, end = read_whole(buf, p)
            if value is not None:  # None: past 64 KiB, skipped (Redis writes none so long)
                self._aux[name.decode(errors="replace")] = value
            r.goto(end)
        elif op in _SKIPPED:
            end = pos + 1
            for kind in _SKIPPED[op]:
                end = skip_item(buf, end, kind)
            r.goto(end)
        elif op == MODULE_AUX:
            r.pos = pos + 1
            self._open(r.module(aux=True), "a module aux record")
        elif op == EOF:
            r.pos = pos + 1
            self._state = _TRAILER
        elif op == FUNCTION_PRE_GA:
            raise Malformed("a function in the 7.0 release-candidate format (0xF6): refused", pos)
        else:
            raise Malformed(f"unknown opcode 0x{op:02x}", pos)

    def _key_record(self, rdbtype: int, pos: int) -> None:
        r = self._in
        buf = r.buf
        shape = _SHAPES.get(rdbtype)
        if shape is None:
            what = REFUSED_TYPES.get(rdbtype)
            why = f"{what}: not supported" if what else f"unknown value type {rdbtype}"
            raise Malformed(why, pos - 1)
        name, p = read_whole(buf, pos)
        if name is None:  # past 64 KiB: skipped by count, its value walked after it
            self._key(rdbtype, None, starts_with(buf, pos, self._prefix), None)
            r.goto(p)
            self._open(r.value(rdbtype), "the value of a key with a name past 64 KiB")
            return
        if shape == _WALKED:
            self._key(rdbtype, name, name.startswith(self._prefix), None)
            r.pos = p
            kind = TYPE_NAMES.get(rdbtype, "value")
            self._open(r.value(rdbtype), f"the value of key {self._keys + 1} (a {kind})")
            return
        if shape == _BLOB_AFTER_8:
            p = skip_item(buf, p, 8)  # the hash's minimum field expire, then its listpack
        enc, start, end = string_span(buf, p)
        if end > len(buf) and end - start <= BIG:
            raise Short
        self._key(rdbtype, name, name.startswith(self._prefix), (enc, start, end))
        r.goto(end)

    def _key(
        self, rdbtype: int, name: bytes | None, reserved: bool, span: tuple[int, int, int] | None
    ) -> None:
        """Counts a key whose record is all there (or whose value's walk starts now).

        A name past 64 KiB (None) is counted but never sampled: it was not kept."""
        ttl, self._ttl = self._ttl, False
        self._keys += 1
        self._per_db[self._db] = self._per_db.get(self._db, 0) + 1
        self._expires += ttl
        if reserved:
            self._reserved += 1
            if name is not None and len(self._reserved_names) < RESERVED_KEPT:
                self._reserved_names.append((self._db, name))
        elif self._sample_size and name is not None:
            self._offer(rdbtype, name, ttl, span)

    def _offer(
        self, rdbtype: int, name: bytes, ttl: bool, span: tuple[int, int, int] | None
    ) -> None:
        """Reservoir sampling (Algorithm R): every key ends up in it with equal chance."""
        seen, self._offered = self._offered, self._offered + 1
        slot = seen if seen < self._sample_size else self._rng.randrange(seen + 1)
        if slot >= self._sample_size:
            return
        is_string = rdbtype == 0  # RDB_TYPE_STRING
        value = plain_value(self._in.buf, *span) if is_string and span else None
        key = SampledKey(self._db, name, TYPE_NAMES[rdbtype], ttl, value)
        if slot == len(self._sample):
            self._sample.append(key)
        else:
            self._sample[slot] = key

    def _open(self, walk: Wait, inside: str) -> None:
        self._gen, self._inside = walk, inside


# How a key's value is walked: one string from the buffer (after 8 bytes: HASH_LISTPACK_EX),
# or by a generator (`RdbReader.value`). A type not here is refused or unknown.
_BLOB, _BLOB_AFTER_8, _WALKED = range(3)
_SHAPES = {
    t: _BLOB_AFTER_8 if t == HASH_LISTPACK_EX else _BLOB if t in BLOB_TYPES else _WALKED
    for t in TYPE_NAMES
}

# Opcodes whose arguments are stepped over (their items, as in COLLECTIONS' layouts).
_SKIPPED: dict[int, Layout] = {
    IDLE: (LENGTH,),  # LRU idle time
    FREQ: (1,),  # LFU frequency
    RESIZEDB: (LENGTH, LENGTH),  # sizes of the db and its expires
    SLOT_INFO: (LENGTH, LENGTH, LENGTH),  # 7.4, cluster: slot, its size, its expires
    FUNCTION2: (STRING,),  # a function library's code
}
