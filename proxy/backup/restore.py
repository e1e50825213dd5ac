"""Restore: check everything first, then load the RDB into a running server over the network.

`check` reads the whole sealed backup once before anything touches the target: every
segment's tag, the final segment, the sha256 and size the manifest recorded, the RDB's
own structure and CRC64 trailer, and its key count against the manifest's. Only then
does `load` touch the target, reading the backup a second time (nothing plaintext is
kept between the passes; every tag is checked again as it streams, and a difference
cuts the transfer, which leaves the target as it was):

1. the target must be a master, with an RDB version at least the backup's;
2. the caller's `before` (the proxy holds writes when the target is its primary);
3. `REPLICAOF <us> <port>`: the target syncs from `serve.RdbServer`;
4. wait until it has loaded (link up, not loading), and compare its INFO keyspace with
   the manifest's per-database counts while it is still a replica (a replica does not
   expire keys, so the counts are the RDB's);
5. `REPLICAOF NO ONE`; georedis' own keys from the backup (heartbeats, locks) deleted
   and a fresh failover epoch written, so the restored primary fences the old history.

On any failure after 3 the target is made a master again (`REPLICAOF NO ONE`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from proxy.backend.probe import ProbeConnection, ReplyError
from proxy.backup.job import RESERVED_PREFIX
from proxy.backup.manifest import DATA_SUFFIX, Manifest
from proxy.backup.rdb import RdbError, RdbSummary, RdbWalker
from proxy.backup.sealed import MasterKey, Opener, SealError
from proxy.backup.serve import RdbServer
from proxy.backup.targets import Target, TargetError
from proxy.errors import BackupError, ProbeError
from routing.probe import EPOCH_KEY, parse_info

_CALL_S = 5.0
_POLL_S = 0.05
_LOAD_BYTES_PER_S = 20 << 20  # a floor on how fast a target loads, for the deadline
_LOAD_MIN_S = 30.0

# The newest RDB version each Redis release line writes (and so reads at most).
_RDB_OF_REDIS = ((7, 4, 12), (7, 2, 11), (7, 0, 10), (5, 0, 9), (4, 0, 8), (3, 2, 7), (2, 6, 6))


async def plaintext(target: Target, m: Manifest, key: MasterKey) -> AsyncIterator[bytes]:
    """The backup's RDB, opened and checked segment by segment; BackupError at the end
    (after the last byte) when the whole does not match the manifest."""
    opener = Opener(key)
    sha = hashlib.sha256()
    try:
        async for chunk in target.reader(m.id + DATA_SUFFIX):
            sha.update(chunk)
            plain = opener.feed(chunk)
            if plain:
                yield plain
        opener.finish()
    except (SealError, TargetError) as e:
        raise BackupError(f"backup {m.id} fails its check: {e}") from e
    if opener.consumed != m.size or sha.hexdigest() != m.sha256:
        why = "size or sha256 differs from its manifest"
        raise BackupError(f"backup {m.id} fails its check: {why}")


async def check(target: Target, m: Manifest, key: MasterKey, sample: int = 0) -> RdbSummary:
    """Read the whole backup and prove it restores as its manifest says."""
    if m.key_id != key.id.hex():
        raise BackupError(f"backup {m.id} was sealed with master key {m.key_id}, not this one")
    walker = RdbWalker(reserved_prefix=RESERVED_PREFIX, sample=sample)
    try:
        async for plain in plaintext(target, m, key):
            walker.feed(plain)
        summary = walker.finish()
    except RdbError as e:
        raise BackupError(f"backup {m.id} fails its check: {e}") from e
    if summary.keys != m.keys or (m.crc64 or None) != _crc(summary):
        raise BackupError(f"backup {m.id} fails its check: keys or CRC64 differ from its manifest")
    return summary


def _crc(s: RdbSummary) -> str | None:
    return None if s.checksum is None else f"{s.checksum:016x}"


def max_rdb_version(redis_version: str) -> int | None:
    """The newest RDB version a server of this version loads (None: newer than we know)."""
    try:
        major, minor = (int(x) for x in redis_version.split(".")[:2])
    except ValueError:
        return None
    for ma, mi, rdb in _RDB_OF_REDIS:
        if (major, minor) >= (ma, mi):
            return None if (major, minor) > (7, 4) else rdb
    return 6


@dataclass(frozen=True, slots=True)
class Plan:
    manifest: Manifest
    summary: RdbSummary
    epoch: str | None  # the epoch key's new value; None: leave the epoch alone
    before: Callable[[], Awaitable[None]] | None = None  # e.g. hold the proxy's writes
    # Point in time: the archived commands to send after the RDB (`proxy.backup.replay`).
    replay: Callable[[], AsyncIterator[bytes]] | None = None


async def load(conn: ProbeConnection, target: Target, key: MasterKey,
               plan: Plan) -> dict[str, object]:  # fmt: skip
    """Steps 1-5 of the module docstring on the connected `conn`; the reply as a mapping."""
    m = plan.manifest
    started = time.monotonic()
    info = await _info(conn, "server", "replication")
    _refuse_unfit(info, m)
    addrs = conn.addresses()
    if addrs is None:
        raise BackupError("lost the connection to the target")
    server = RdbServer(addrs[1], m.rdb_bytes, lambda: plaintext(target, m, key))
    port = await server.start(addrs[0])
    try:
        if plan.before is not None:
            await plan.before()
        await conn.call("REPLICAOF", addrs[0], port, timeout_s=_CALL_S)
        try:
            deadline = time.monotonic() + _LOAD_MIN_S + m.rdb_bytes / _LOAD_BYTES_PER_S
            await _loaded(conn, server, m, deadline)
            replayed = 0
            if plan.replay is not None:
                async for cmd in plan.replay():
                    await server.stream_raw(cmd)
                    replayed += 1
            dropped = await _drop_reserved(conn, server, m, plan.epoch)
            await _applied(conn, server.offset, deadline)
        finally:
            await conn.call("REPLICAOF", "NO", "ONE", timeout_s=_CALL_S)
    except (ProbeError, ReplyError) as e:
        raise BackupError(f"restore into {conn.addr}: {e}") from e
    finally:
        await server.close()
    return {"restored": m.id, "to": str(conn.addr), "keys": m.user_keys,
            "reserved_dropped": dropped, "epoch": plan.epoch, "replayed": replayed,
            "seconds": round(time.monotonic() - started, 3)}  # fmt: skip


def _refuse_unfit(info: dict[str, str], m: Manifest) -> None:
    if info.get("role") != "master":
        raise BackupError(
            "the target is a replica: its master would overwrite the restore; restore into "
            "the primary, or make the target a master first"
        )
    newest = max_rdb_version(info.get("redis_version", ""))
    if newest is not None and m.rdb_version > newest:
        raise BackupError(
            f"the backup is RDB version {m.rdb_version}, the target (Redis "
            f"{info.get('redis_version')}) loads at most {newest}"
        )


async def _loaded(conn: ProbeConnection, server: RdbServer, m: Manifest, deadline: float) -> None:
    try:
        async with asyncio.timeout(max(1.0, deadline - time.monotonic())):
            await asyncio.shield(server.sent)
    except TimeoutError:
        raise BackupError("the target did not take the RDB in time") from None
    while time.monotonic() < deadline:
        info = await _info(conn, "replication", "persistence", "keyspace")
        if info.get("master_link_status") == "up" and info.get("loading") == "0":
            _compare_keyspace(info, m)
            return
        await asyncio.sleep(_POLL_S)
    raise BackupError("the target did not finish loading the RDB in time")


async def _applied(conn: ProbeConnection, offset: int, deadline: float) -> None:
    """Until the target has applied the stream sent after the RDB (its offset counts
    from the 0 of our +FULLRESYNC)."""
    while time.monotonic() < deadline:
        info = await _info(conn, "replication")
        if int(info.get("slave_repl_offset", "-1")) >= offset:
            return
        await asyncio.sleep(_POLL_S)
    raise BackupError("the target did not apply the restore's own commands in time")


async def _info(conn: ProbeConnection, *sections: str) -> dict[str, str]:
    reply = await conn.call("INFO", *sections, timeout_s=_CALL_S)
    return parse_info(reply if isinstance(reply, bytes) else b"")


def _compare_keyspace(info: dict[str, str], m: Manifest) -> None:
    for db, n in m.keys_per_db.items():
        line = info.get(f"db{db}", "")
        got = int(line.split(",")[0].split("=")[1]) if line.startswith("keys=") else 0
        if got != n:
            raise BackupError(f"the target loaded {got} keys in db{db}, the backup holds {n}")


async def _drop_reserved(conn: ProbeConnection, server: RdbServer, m: Manifest,
                         epoch: str | None) -> int:  # fmt: skip
    """georedis' own keys from the backup (another time's heartbeats, locks, epoch) are
    deleted, and the new epoch written, through the replication stream: the target
    applies them before it is ever a master. The keys are found with SCAN on the target
    (a replica answers it); there are a few per proxy."""
    dropped = 0
    pattern = RESERVED_PREFIX.decode() + "*"
    for db in m.keys_per_db if m.reserved_keys else ():
        await conn.call("SELECT", db, timeout_s=_CALL_S)
        cursor, keys = "0", []
        while True:
            reply = await conn.call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000,
                                    timeout_s=_CALL_S)  # fmt: skip
            assert isinstance(reply, list)
            cursor = reply[0].decode()
            keys.extend(reply[1])
            if cursor == "0":
                break
        for i in range(0, len(keys), 512):
            await server.stream(("SELECT", db), ("DEL", *keys[i : i + 512]))
        dropped += len(keys)
    await conn.call("SELECT", 0, timeout_s=_CALL_S)
    if epoch is not None:
        await server.stream(("SELECT", 0), ("SET", EPOCH_KEY, epoch))
    return dropped
