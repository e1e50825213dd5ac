"""PROXY BACKUP VERIFY: prove a backup restores, into a scratch server the proxy starts.

The whole restore path runs (`restore.check`, then `restore.load` into a `redis-server`
started here on a free loopback port, with no persistence and a private directory), and
then what the RDB holds is compared with what the server serves: every database's key
count (inside `load`, while the server is still a replica and expires nothing), and
for a random sample of keys, their type, whether they carry a TTL, and a string's value.
The result goes into the manifest (`verify`), and into the metrics by result.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import socket
import tempfile
import time

from config.model import Address
from proxy.backend.probe import ProbeConnection, ReplyError
from proxy.backup.control import Control, open_control
from proxy.backup.manifest import MANIFEST_SUFFIX, Manifest
from proxy.backup.rdb import SampledKey
from proxy.backup.restore import Plan, check, load
from proxy.backup.sealed import MasterKey
from proxy.backup.targets import Target, TargetError
from proxy.errors import BackupError, ProbeError

SAMPLE = 200
_START_S = 10.0
_CALL_S = 5.0


class ScratchServer:
    """A throwaway redis-server on loopback; `stop` kills it and removes its directory."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="georedis-verify-")
        self.proc: asyncio.subprocess.Process | None = None
        self.addr = Address("127.0.0.1", _free_port())
        # It will hold the whole data set in plaintext: a password only this process
        # knows, the payload loaded from the socket (no dump file on disk), no saves.
        self._password = secrets.token_hex(16)

    async def start(self) -> Control:
        args = ["--port", str(self.addr.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
                "--logfile", f"{self.dir}/redis.log", "--requirepass", self._password,
                "--repl-diskless-load", "on-empty-db", "--rdb-del-sync-files", "yes"]  # fmt: skip
        try:
            self.proc = await asyncio.create_subprocess_exec(
                self.binary, *args, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        except OSError as e:
            raise BackupError(f"cannot start {self.binary!r} ([backup] redis_server): {e}") from e
        deadline = time.monotonic() + _START_S
        while True:
            try:
                return await open_control(self._connect)
            except (ProbeError, ReplyError) as e:
                if time.monotonic() > deadline or self.proc.returncode is not None:
                    raise BackupError(f"the scratch redis-server did not start: {e}") from e
                await asyncio.sleep(0.05)

    async def _connect(self) -> ProbeConnection:
        conn = ProbeConnection()
        await conn.connect(self.addr, password=self._password, timeout_s=1.0)
        await conn.call("PING", timeout_s=1.0)
        return conn

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            with contextlib.suppress(ProcessLookupError):
                await self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


async def verify(target: Target, m: Manifest, key: MasterKey, binary: str,
                 now: float) -> dict[str, object]:  # fmt: skip
    """Verify `m`, record the result in its manifest, and return it (BackupError: failed,
    also recorded)."""
    server = ScratchServer(binary)
    result: dict[str, object] = {"time": now, "keys": m.user_keys}
    try:
        summary = await check(target, m, key, sample=SAMPLE)
        ctl = await server.start()
        try:
            await load(ctl, target, key, Plan(m, summary, epoch=None))
            result["sampled"] = await _compare(ctl, summary.sample)
        finally:
            ctl.conn.close()
        result["result"] = "ok"
    except BackupError as e:
        result.update(result="failed", error=e.why)
        raise
    finally:
        await server.stop()
        await _record(target, m, result)
    return result


async def _record(target: Target, m: Manifest, result: dict[str, object]) -> None:
    """The result into the manifest as it is now (an archive may have added segments
    since the verify began), never into the copy read then."""
    m.verify = result  # the caller's copy too (an archive writes its own on)
    with contextlib.suppress(TargetError, ValueError, TypeError):
        m = Manifest.from_json(await target.get(m.id + MANIFEST_SUFFIX))
    m.verify = result
    try:
        await target.put(m.id + MANIFEST_SUFFIX, m.to_json())
    except TargetError as e:
        raise BackupError(f"verify of {m.id}: {result.get('result')}, not recorded: {e}") from e


async def _compare(conn: Control, sample: tuple[SampledKey, ...]) -> int:
    db = -1
    for k in sorted(sample, key=lambda k: k.db):
        if k.db != db:
            db = k.db
            await conn.call("SELECT", db, timeout_s=_CALL_S)
        kind = await conn.call("TYPE", k.name, timeout_s=_CALL_S)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind == "none" and k.has_ttl:
            continue  # expired since the backup was taken
        # Key names stay out of the messages: they go into the (plain) manifest.
        if kind != k.type:
            raise BackupError(f"a sampled key in db{k.db} is a {kind}, the RDB has a {k.type}")
        ttl = await conn.call("PTTL", k.name, timeout_s=_CALL_S)
        if (ttl != -1) != k.has_ttl:
            raise BackupError(f"a sampled key in db{k.db}: its TTL differs from the RDB")
        if k.value is not None and await conn.call("GET", k.name, timeout_s=_CALL_S) != k.value:
            raise BackupError(f"a sampled key in db{k.db}: its value differs from the RDB")
    return len(sample)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
