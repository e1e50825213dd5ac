"""One backup: RDB from a node -> walked and checked -> sealed -> a target, then the manifest.

The bytes flow through in chunks (at most about one segment and one S3 part are held),
so a backup of any size costs the proxy a few MB. Each chunk is awaited into the target
before the next is read, and the source's socket buffer fills meanwhile: a slow target
slows the transfer, it does not grow memory. Nothing is listed until the manifest is
written, after the RDB's CRC64 trailer has checked; any failure aborts the sealed object.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from config.model import Address
from proxy.backup.fetch import Credentials, RdbFetch
from proxy.backup.manifest import DATA_SUFFIX, MANIFEST_SUFFIX, Manifest
from proxy.backup.rdb import RdbError, RdbSummary, RdbWalker
from proxy.backup.sealed import MasterKey, Sealer
from proxy.backup.targets import Target, TargetError, Writer
from proxy.errors import BackupError
from proxy.logs import log_event

log = logging.getLogger("georedis.backup")

RESERVED_PREFIX = b"georedis:"


@dataclass(slots=True)
class Progress:
    """A backup as PROXY BACKUP STATUS shows it while it runs, and after."""

    id: str
    source: str
    region: str
    started: float
    state: str = "running"  # running | complete | failed
    received: int = 0  # RDB bytes so far
    expected: int | None = None  # the RDB's length, when the source announced it
    written: int = 0  # sealed bytes so far
    finished: float = 0.0
    error: str | None = None
    manifest: Manifest | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, object]:
        end = self.finished or time.time()
        d: dict[str, object] = {
            "id": self.id,
            "state": self.state,
            "source": f"{self.source} ({self.region})",
            "received": self.received,
            "expected": self.expected,
            "written": self.written,
            "duration_s": round(end - self.started, 3),
            "error": self.error,
        }
        if self.manifest is not None:
            d["keys"] = self.manifest.user_keys
            d["sha256"] = self.manifest.sha256
        return d


@dataclass(frozen=True, slots=True)
class Source:
    addr: Address
    region: str
    role: str


class BackupRun:
    def __init__(self, progress: Progress, source: Source, target: Target, key: MasterKey,
                 creds: Credentials, epoch: int, clock: Callable[[], float] = time.time,
                 archive: bool = False, cluster: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.p = progress
        self.cluster = cluster  # a cluster set's member: its manifest's `cluster`
        # With `archive`, the link is left open for `proxy.backup.archive` after the RDB.
        self.fetch = RdbFetch(source.addr, creds, archive=archive)
        self.source = source
        self.target = target
        self.key = key
        self.creds = creds
        self.epoch = epoch
        self.clock = clock

    async def run(self) -> Manifest:
        fetch = self.fetch
        writer: Writer | None = None
        try:
            info = await fetch.open()
            self.p.expected = info.length
            writer = await self.target.writer(self.p.id + DATA_SUFFIX)
            sha, summary = await self._stream(fetch, writer)
            await writer.commit()
            writer = None
            m = self._manifest(sha, summary, info.replid, info.offset)
            m.mac = self.key.mac(m.signed())
            await self.target.put(self.p.id + MANIFEST_SUFFIX, m.to_json())
        except (BackupError, TargetError, RdbError) as e:
            self._failed(str(e))
            raise BackupError(_why(e)) from e
        except BaseException as e:
            self._failed(f"{type(e).__name__}: {e}")
            raise
        finally:
            if writer is not None:
                await writer.abort()
            if writer is not None or not fetch.archive or self.p.state == "failed":
                fetch.close()
        self.p.state, self.p.finished, self.p.manifest = "complete", m.finished, m
        log_event(log, "backup_complete", id=m.id, source=m.source,
                  bytes=m.size, keys=m.user_keys, seconds=round(m.duration_s, 3))  # fmt: skip
        return m

    async def _stream(self, fetch: RdbFetch, writer: Writer) -> tuple[str, RdbSummary]:
        walker = RdbWalker(reserved_prefix=RESERVED_PREFIX)
        sealer = Sealer(self.key)
        sha = hashlib.sha256()
        # One write in flight while the next chunk is read, walked and sealed: the disk
        # (or S3) and the source overlap, and at most two segments are held.
        pending: asyncio.Future[None] | None = None

        async def out(data: bytes) -> None:
            nonlocal pending
            if not data:
                return
            sha.update(data)
            if pending is not None:
                await pending
            pending = asyncio.ensure_future(writer.write(data))
            self.p.written += len(data)

        try:
            await out(sealer.header)
            async for chunk in fetch.chunks():
                # Raises at the first malformed byte. Pure Python: in a thread, so the
                # loop serving clients gets the GIL back each switch interval.
                await asyncio.to_thread(walker.feed, chunk)
                self.p.received = fetch.rdb_bytes
                await out(sealer.seal(chunk))
            summary = walker.finish()  # the CRC64 trailer, and a whole RDB
            await out(sealer.finish())
            if pending is not None:
                await pending
        finally:
            if pending is not None and not pending.done():
                pending.cancel()  # the run failed; its writer is aborted next
                pending.add_done_callback(_retrieved)
        return sha.hexdigest(), summary

    def _manifest(self, sha: str, s: RdbSummary, replid: str | None,
                  offset: int | None) -> Manifest:  # fmt: skip
        aux = s.aux
        return Manifest(
            id=self.p.id, created=self.p.started, source=str(self.source.addr),
            source_region=self.source.region, source_role=self.source.role,
            target=self.target.description, finished=self.clock(),
            replid=replid or _text(aux.get("repl-id")),
            offset=offset if offset is not None else _int(aux.get("repl-offset")),
            at=self.fetch.info.at or self.p.started,
            rdb_version=s.version, redis_version=_text(aux.get("redis-ver")),
            rdb_bytes=self.p.received, size=self.p.written, sha256=sha, key_id=self.key.id.hex(),
            crc64=None if s.checksum is None else f"{s.checksum:016x}", keys=s.keys,
            reserved_keys=s.reserved_keys, expires=s.expires,
            keys_per_db={str(db): n for db, n in sorted(s.keys_per_db.items())}, epoch=self.epoch,
            cluster=self.cluster,
        )  # fmt: skip

    def _failed(self, why: str) -> None:
        self.p.state, self.p.finished, self.p.error = "failed", self.clock(), why
        log_event(log, "backup_failed", level=logging.WARNING, id=self.p.id,
                  source=self.p.source, error=why)  # fmt: skip


def _retrieved(f: asyncio.Future[None]) -> None:
    if not f.cancelled():
        f.exception()  # a cancelled run's write: its failure is not news


def _why(e: Exception) -> str:
    return e.why if isinstance(e, BackupError) else str(e)


def _text(v: bytes | None) -> str | None:
    return None if v is None else v.decode(errors="replace")


def _int(v: bytes | None) -> int | None:
    try:
        return None if v is None else int(v)
    except ValueError:
        return None
