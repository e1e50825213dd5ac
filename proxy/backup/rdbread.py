"""The bytes of an RDB as they stream in, and the walk through values that outgrow a chunk.

`RdbReader` holds what `rdb.RdbWalker` has received and not walked past yet (`buf`,
with the walk at `pos`), the count of a long string's bytes still to skip (`skip`), and
the CRC64 of every byte walked past. Invariants: while `skip` is non-zero the buffer is
empty (a string is skipped only once all of the buffer belongs to it); every byte is
hashed exactly once, in file order, when it leaves the buffer (`compact`) or is skipped
on arrival (`take`).

The value walks (`value`, `stream`, `module`) are generators: each yields when the
buffer ends before what it needs and carries on where it was after the next chunk. They
step over as many whole elements as the buffer holds in one plain call
(`rdbformat.skip_elements`) and fall back to item by item (`item`, `length`) only at a
chunk's end or a long string, so a collection of millions costs a few yields per chunk,
not one per element. No asyncio, no I/O (docs/architecture.md, "Layers").
"""

from __future__ import annotations

from collections.abc import Generator

import anycrc

from proxy.backup.rdbformat import (
    BLOB_TYPES,
    COLLECTIONS,
    HASH_LISTPACK_EX,
    HASH_METADATA,
    LENGTH,
    MODULE_2,
    MODULE_VALUE_OPS,
    NODE_KEY,
    STREAMS,
    STRING,
    Kind,
    Layout,
    Malformed,
    Short,
    read_len,
    skip_elements,
    skip_item,
)

__all__ = ["RdbReader", "Wait"]

_CRC = anycrc.Model("CRC64-REDIS")

# A step of a value's walk: yields while it waits for bytes, returns when done.
Wait = Generator[None, None, None]


class RdbReader:
    def __init__(self) -> None:
        self.buf = bytearray()  # bytes received, not yet walked past and hashed
        self.pos = 0  # where the walk is, in buf
        self.base = 0  # file offset of buf[0]
        self.skip = 0  # bytes of a long string still to come; buf is empty meanwhile
        self.crc = 0  # of every byte before buf[0]

    def take(self, data: bytes) -> None:
        """Counts down a long string being skipped, then buffers the rest."""
        view = memoryview(data)
        if self.skip:
            n = min(self.skip, len(view))
            self.crc = _CRC.calc(view[:n], self.crc)
            self.skip -= n
            self.base += n
            view = view[n:]
        self.buf += view

    def compact(self) -> None:
        """Hashes the bytes walked past and drops them from the buffer."""
        pos = self.pos
        if pos:
            # The view must be released before the bytearray can shrink.
            with memoryview(self.buf)[:pos] as head:
                self.crc = _CRC.calc(head, self.crc)
            del self.buf[:pos]  # O(1): CPython's bytearray drops a head by moving its start
            self.base += pos
            self.pos = 0

    def goto(self, end: int) -> None:
        """Moves the walk to `end`; past the buffer, the rest is skipped as it arrives."""
        size = len(self.buf)
        if end > size:
            self.skip = end - size
            end = size
        self.pos = end

    # -- value walks -------------------------------------------------------------------

    def value(self, rdbtype: int) -> Wait:
        """The value of a key of type `rdbtype`, from its first byte."""
        if rdbtype in BLOB_TYPES:  # here only after a long key name
            yield from self.item(8 if rdbtype == HASH_LISTPACK_EX else 0)
            yield from self.item(STRING)
        elif rdbtype == MODULE_2:
            yield from self.module(aux=False)
        elif rdbtype in STREAMS:
            yield from self.stream(rdbtype)
        else:
            if rdbtype == HASH_METADATA:
                yield from self.item(8)  # the minimum field expire the TTLs are relative to
            count = yield from self.length()
            yield from self.elements(count, COLLECTIONS[rdbtype])

    def stream(self, rdbtype: int) -> Wait:
        """rdbLoadObject's stream branch: STREAM_LISTPACKS, _2 (7.0) and _3 (7.2)."""
        v2, v3 = rdbtype >= 19, rdbtype >= 21
        nodes = yield from self.length()
        yield from self.elements(nodes, (NODE_KEY, STRING))  # master ID, listpack
        # Length, last ID; from v2 also the first ID, max deleted ID and entries added.
        yield from self.elements(8 if v2 else 3, (LENGTH,))
        groups = yield from self.length()
        for _ in range(groups):
            yield from self.item(STRING)  # name
            yield from self.elements(3 if v2 else 2, (LENGTH,))  # last ID; v2: entries read
            pending = yield from self.length()
            yield from self.elements(pending, (24, LENGTH))  # ID, delivery time, count
            consumers = yield from self.length()
            for _ in range(consumers):
                yield from self.item(STRING)  # name
                yield from self.item(16 if v3 else 8)  # seen time; v3: active time
                owned = yield from self.length()
                yield from self.elements(owned, (16,))  # IDs of its pending entries

    def module(self, aux: bool) -> Wait:
        """A MODULE_2 value or a MODULE_AUX record: self-describing, so walked without the
        module (rdbLoadCheckModuleValue)."""
        yield from self.item(LENGTH)  # module id
        if aux:
            when_opcode = yield from self.length()
            if when_opcode != 2:  # RDB_MODULE_OPCODE_UINT
                raise Malformed(f"module aux 'when' opcode {when_opcode}, not 2", self.pos)
            yield from self.item(LENGTH)
        while (opcode := (yield from self.length())) != 0:
            kind = MODULE_VALUE_OPS.get(opcode)
            if kind is None:
                raise Malformed(f"unknown module value opcode {opcode}", self.pos)
            yield from self.item(kind)

    def elements(self, count: int, layout: Layout) -> Wait:
        """`count` elements: as many at a time as the buffer holds, else item by item."""
        while count:
            self.pos, done = skip_elements(self.buf, self.pos, count, layout)
            count -= done
            if count and not done:
                for kind in layout:
                    yield from self.item(kind)
                count -= 1

    def item(self, kind: Kind) -> Wait:
        while True:
            try:
                end = skip_item(self.buf, self.pos, kind)
            except Short:
                yield
                continue
            self.goto(end)
            return

    def length(self) -> Generator[None, None, int]:
        while True:
            try:
                value, self.pos = read_len(self.buf, self.pos)
            except Short:
                yield
                continue
            return value
