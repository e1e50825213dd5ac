"""Where backups are stored: the `Target` interface and the local directory target.

A backup is two objects under one name: `<id>.grbk` (the sealed RDB, written as a
stream) and `<id>.json` (its manifest, small, written last: a backup without one is
incomplete and never listed). Every call is a coroutine; blocking file or network work
runs in a thread, so the event loop that serves clients never waits on a disk or on S3.
`proxy.backup.s3.S3Target` is the other implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, Protocol

from proxy.errors import GeoredisError

# Each read from a stored backup; also the unit a writer hands to the disk at a time.
CHUNK = 1 << 20


class TargetError(GeoredisError):
    """A target could not store, find or read an object; the message names it."""


class Writer(Protocol):
    """One object being written as a stream; invisible until `commit`."""

    async def write(self, data: bytes) -> None: ...

    async def commit(self) -> None: ...

    async def abort(self) -> None:
        """Drop what was written (never raises)."""
        ...


class Target(Protocol):
    @property
    def description(self) -> str:
        """Where it stores, for replies and logs ("directory /x", "s3://bucket/prefix")."""
        ...

    async def writer(self, name: str) -> Writer: ...

    def reader(self, name: str) -> AsyncIterator[bytes]:
        """The object's bytes in chunks; `TargetError` when it does not exist."""
        ...

    async def put(self, name: str, data: bytes) -> None:
        """Store a small object whole (a manifest), replacing any with that name."""
        ...

    async def get(self, name: str) -> bytes: ...

    async def names(self) -> list[str]:
        """Every stored object's name, in no particular order."""
        ...

    async def delete(self, name: str) -> None:
        """Remove the object; no error when it is already gone."""
        ...


class DirectoryTarget:
    """Objects as files in one directory; a file appears under its name only on commit."""

    def __init__(self, directory: str) -> None:
        self.path = Path(directory)

    @property
    def description(self) -> str:
        return f"directory {self.path}"

    def _file(self, name: str) -> Path:
        if "/" in name or name.startswith("."):
            raise TargetError(f"bad object name {name!r}")
        return self.path / name

    async def writer(self, name: str) -> Writer:
        final = self._file(name)
        await asyncio.to_thread(self.path.mkdir, parents=True, exist_ok=True)
        # A name of its own per writer: two puts of one manifest at once (an archive's
        # segment and a verify) must not interleave in one file.
        tmp = self.path / f".{name}.{secrets.token_hex(4)}.part"
        try:
            f = await asyncio.to_thread(open, tmp, "wb")
        except OSError as e:
            raise TargetError(f"{self.description}: cannot write {name}: {e}") from e
        return _FileWriter(f, tmp, final)

    async def reader(self, name: str) -> AsyncIterator[bytes]:
        path = self._file(name)
        try:
            f = await asyncio.to_thread(open, path, "rb")
        except OSError as e:
            raise TargetError(f"{self.description}: cannot read {name}: {e.strerror}") from e
        try:
            while chunk := await asyncio.to_thread(f.read, CHUNK):
                yield chunk
        finally:
            f.close()

    async def put(self, name: str, data: bytes) -> None:
        w = await self.writer(name)
        try:
            await w.write(data)
            await w.commit()
        except BaseException:
            await w.abort()
            raise

    async def get(self, name: str) -> bytes:
        try:
            return await asyncio.to_thread(self._file(name).read_bytes)
        except OSError as e:
            raise TargetError(f"{self.description}: cannot read {name}: {e.strerror}") from e

    async def names(self) -> list[str]:
        def scan() -> list[str]:
            if not self.path.is_dir():
                return []
            return [p.name for p in self.path.iterdir() if not p.name.startswith(".")]

        return await asyncio.to_thread(scan)

    async def delete(self, name: str) -> None:
        await asyncio.to_thread(self._file(name).unlink, missing_ok=True)


class _FileWriter:
    def __init__(self, f: BinaryIO, tmp: Path, final: Path) -> None:
        self._f = f
        self._tmp = tmp
        self._final = final

    async def write(self, data: bytes) -> None:
        try:
            await asyncio.to_thread(self._f.write, data)
        except OSError as e:
            raise TargetError(f"cannot write {self._final}: {e.strerror}") from e

    async def commit(self) -> None:
        def finish() -> None:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            os.replace(self._tmp, self._final)

        try:
            await asyncio.to_thread(finish)
        except OSError as e:
            raise TargetError(f"cannot write {self._final}: {e.strerror}") from e

    async def abort(self) -> None:
        def drop() -> None:
            self._f.close()
            self._tmp.unlink(missing_ok=True)

        with contextlib.suppress(OSError):
            await asyncio.to_thread(drop)
