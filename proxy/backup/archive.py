"""The replication stream after a snapshot, archived for point-in-time restore.

`PROXY BACKUP ARCHIVE` keeps the backup's replication link open after the RDB: what
follows is the source's replication stream, every write the primary executed, in order,
from exactly the snapshot's offset. Each command is stamped with the wall-clock time
this proxy received it and appended to the current segment; a segment is sealed like a
snapshot (`sealed`, its own data key) and stored as `<id>.wal.<n>` every
`[backup] archive_segment_ms` (or 8 MiB), and the manifest's `archive` list then names
it with its time range, size and sha256. The link behaves as a replica: REPLCONF ACK
every second and on REPLCONF GETACK, so the source neither drops it nor waits for it.

What a restore AT t gets (`proxy.backup.restore`): the snapshot, then every archived
command received before t. A write executed after t arrives after t, so it is never
replayed; a write acknowledged to its client before t minus the replication delay to
this proxy (milliseconds in a region, ~100-300 ms across oceans) always is. The archive
ends when the link breaks (the source dies or resyncs: a later PSYNC could fall outside
the 1 MB backlog, so it is not retried; a new backup starts a new archive), on
`PROXY BACKUP STOP <id>`, when the proxy stops, or when a newer archive's snapshot is
complete in this proxy. Coverage is up to the last segment's end.

Record layout inside a segment's plaintext: time in ms (8 bytes, big-endian), the
source's replication offset after the command (8), the command's length (4), the
command as RESP.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import hiredis

from proxy.backup.fetch import RdbFetch
from proxy.backup.job import RESERVED_PREFIX
from proxy.backup.manifest import MANIFEST_SUFFIX, Manifest, segment_signed
from proxy.backup.sealed import MasterKey, Sealer
from proxy.backup.targets import Target, TargetError
from proxy.logs import log_event
from proxy.resp.requests import pack

log = logging.getLogger("georedis.backup")

RECORD = struct.Struct(">QQI")
_SEGMENT_BYTES = 8 << 20
_MAX_HELD = 4 * _SEGMENT_BYTES  # unstored archive a failing target may cost in memory
_ACK_S = 1.0
_SKIP = {b"PING", b"REPLCONF"}  # the link's own traffic, not writes


def segment_name(ident: str, seq: int) -> str:
    return f"{ident}.wal.{seq:06d}"


def records(plain: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(time ms, offset after, RESP command) of each record in a segment's plaintext."""
    at = 0
    while at < len(plain):
        ms, offset, n = RECORD.unpack_from(plain, at)
        at += RECORD.size
        yield ms, offset, plain[at : at + n]
        at += n


class Archiver:
    """Archives one backup's stream until stopped or the link ends."""

    def __init__(self, fetch: RdbFetch, manifest: Manifest, target: Target, key: MasterKey,
                 segment_ms: int, clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.fetch = fetch
        self.m = manifest
        self.target = target
        self.key = key
        self.segment_s = segment_ms / 1000
        self.clock = clock
        self.offset = fetch.info.offset or 0
        self._sealed_offset = self.offset  # where the next segment starts
        self._buf = bytearray()
        self._opened = clock()
        self._stop = asyncio.Event()
        # Commands the source buffered while the RDB was being stored arrive late and are
        # stamped late: a moment before the archive caught up is refused (`catch_up`).
        self._behind: int | None = None
        self.m.archive = []
        self.m.archive_from = 0.0

    def stop(self) -> None:
        self._stop.set()

    async def run(self, source_offset: int | None = None) -> None:
        """Until stopped or the link ends; `source_offset`: the source's offset when the
        archive began (what it must reach to have caught up)."""
        self._behind = source_offset
        if source_offset is None:  # not known: counted as caught up from the start
            self.m.archive_from = self.clock()
        reading = asyncio.ensure_future(self._read())
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            while not reading.done() and not self._stop.is_set():
                await asyncio.wait({reading, stopping}, timeout=_ACK_S,
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                self.fetch.ack(self.offset)
                due = self.clock() - self._opened >= self.segment_s
                stored = not (due or len(self._buf) > _SEGMENT_BYTES) or await self._try_seal()
                if not stored and len(self._buf) > _MAX_HELD:
                    break  # storage keeps failing: stop rather than grow without end
        finally:
            for t in (reading, stopping):
                t.cancel()
            why = _ended(reading)
            for delay in (0.0, 1.0, 3.0):  # the last segment: transient failures retried
                await asyncio.sleep(delay)
                if await asyncio.shield(self._try_seal(final=True)):
                    break
            self.fetch.close()
            log_event(log, "archive_ended", id=self.m.id, segments=len(self.m.archive or []),
                      offset=self.offset, why=why)  # fmt: skip

    async def _read(self) -> None:
        reader = hiredis.Reader()
        async for chunk in self.fetch.stream():
            reader.feed(chunk)
            # The offset the source counts is of its bytes, consumed whole by now.
            ms = int(self.clock() * 1000)
            offset_end = self.offset + len(chunk)
            while (cmd := reader.gets()) is not False:
                self._take(cmd, ms, offset_end)
            self.offset = offset_end
            if self._behind is not None and self.offset >= self._behind:
                self._behind = None
                self.m.archive_from = self.clock()

    def _take(self, cmd: Any, ms: int, offset: int) -> None:
        if not isinstance(cmd, list) or not cmd:
            return  # a bare "\n" keepalive
        name = bytes(cmd[0]).upper()
        if name == b"REPLCONF" and len(cmd) > 1 and bytes(cmd[1]).upper() == b"GETACK":
            self.fetch.ack(offset)
        if name in _SKIP or (len(cmd) > 1 and bytes(cmd[1]).startswith(RESERVED_PREFIX)):
            return  # the link's own traffic; georedis' own keys (heartbeats, locks, epoch)
        raw = pack([bytes(a) for a in cmd])
        self._buf += RECORD.pack(ms, offset, len(raw)) + raw

    async def _try_seal(self, final: bool = False) -> bool:
        """`_seal`, a storage failure logged: the buffer is kept and sealed next time,
        so a transient failure delays a segment and never leaves a hole."""
        try:
            await self._seal(final)
        except (TargetError, OSError) as e:
            log_event(log, "archive_segment_failed", level=logging.WARNING, id=self.m.id,
                      error=str(e))  # fmt: skip
            return False
        return True

    async def _seal(self, final: bool) -> None:
        """Store the current segment (even an empty one: it extends the coverage)."""
        now = self.clock()
        plain, offset = bytes(self._buf), self.offset
        sealer = Sealer(self.key)
        data = sealer.header + sealer.seal(plain) + sealer.finish()
        assert self.m.archive is not None
        seq = len(self.m.archive) + 1
        await self.target.put(segment_name(self.m.id, seq), data)
        entry: dict[str, Any] = {
            "seq": seq, "from_ms": int(self._opened * 1000), "to_ms": int(now * 1000),
            "start_offset": self._sealed_offset, "offset": offset, "bytes": len(plain),
            "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "final": final,
            "archive_from": self.m.archive_from,  # 0: not caught up with the source yet
        }  # fmt: skip
        entry["mac"] = self.key.mac(segment_signed(self.m.id, entry))
        self.m.archive.append(entry)
        del self._buf[: len(plain)]  # records that came meanwhile stay for the next one
        self._opened, self._sealed_offset = now, offset
        await self.target.put(self.m.id + MANIFEST_SUFFIX, self.m.to_json())


def _ended(reading: asyncio.Future[None]) -> str:
    if not reading.done() or reading.cancelled():
        return "stopped"
    e = reading.exception()
    return str(e) if e is not None else "link closed"
