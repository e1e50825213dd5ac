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
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass

from proxy.backend.probe import ReplyError
from proxy.backup.control import Control
from proxy.backup.job import RESERVED_PREFIX
from proxy.backup.manifest import DATA_SUFFIX, Manifest
from proxy.backup.rdb import RdbError, RdbSummary, RdbWalker
from proxy.backup.sealed import MasterKey, Opener, SealError
from proxy.backup.serve import RdbServer
from proxy.backup.targets import Target, TargetError
from proxy.errors import BackupError, ProbeError
from routing.probe import EPOCH_KEY

_POLL_S = 0.05
_STALL_S = 30.0  # no progress of the transfer or load for this long: the restore fails
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
    if not hmac.compare_digest(m.mac, key.mac(m.signed())):
        raise BackupError(f"backup {m.id} fails its check: its manifest was changed or swapped")
    walker = RdbWalker(reserved_prefix=RESERVED_PREFIX, sample=sample)
    length = 0
    try:
        async for plain in plaintext(target, m, key):
            length += len(plain)
            # Pure Python on a 1 MiB segment: in a thread, so the loop that serves
            # clients gets the GIL back every switch interval rather than after it.
            await asyncio.to_thread(walker.feed, plain)
        summary = walker.finish()
    except RdbError as e:
        raise BackupError(f"backup {m.id} fails its check: {e}") from e
    if summary.keys != m.keys or (m.crc64 or None) != _crc(summary) or length != m.rdb_bytes:
        why = "keys, CRC64 or length differ from its manifest"
        raise BackupError(f"backup {m.id} fails its check: {why}")
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


async def load(ctl: Control, target: Target, key: MasterKey, plan: Plan) -> dict[str, object]:
    """Steps 1-5 of the module docstring through `ctl`; the reply as a mapping."""
    try:
        return await _load(ctl, target, key, plan)
    except (ProbeError, ReplyError) as e:
        raise BackupError(f"restore into {ctl.addr}: {e}") from e


async def _load(ctl: Control, target: Target, key: MasterKey, plan: Plan) -> dict[str, object]:
    m = plan.manifest
    started = time.monotonic()
    info = await ctl.info("server", "replication")
    if not info:
        raise BackupError(f"{ctl.addr} does not answer INFO")
    _refuse_unfit(info, m)
    if await _config(ctl, "tls-replication") == b"yes":
        raise BackupError("the target replicates over TLS (tls-replication yes); a restore "
                          "serves plaintext replication only")  # fmt: skip
    old_auth = await _config(ctl, "masterauth")
    addrs = ctl.conn.addresses()
    if old_auth is None or addrs is None:
        raise BackupError("a restore needs CONFIG GET/SET on the target (a one-time "
                          "masterauth guards the transfer), and its address")  # fmt: skip
    token = secrets.token_hex(16)
    server = RdbServer(addrs[1], m.rdb_bytes, lambda: plaintext(target, m, key), token)
    replica = False
    try:
        port = await server.start(addrs[0])
        try:
            await ctl.call("CONFIG", "SET", "masterauth", token)
            if plan.before is not None:
                await plan.before()
            replica = True
            await ctl.call("REPLICAOF", addrs[0], port)
            await _loaded(ctl, server, m)
            replayed = 0
            if plan.replay is not None:
                async for cmd in plan.replay():
                    await server.stream_raw(cmd)
                    replayed += 1
            dropped = await _drop_reserved(server, plan)
            await _applied(ctl, server)
        finally:
            # Whatever failed, the target is a master again (not a replica of a port
            # about to close) with its own masterauth, also when the restore is
            # cancelled (Ctrl-C, proxy stop).
            await _to_the_end(_release(ctl, old_auth, replica))
    finally:
        await server.close()
    return {"restored": m.id, "to": str(ctl.addr), "keys": m.user_keys,
            "reserved_dropped": dropped, "epoch": plan.epoch, "replayed": replayed,
            "seconds": round(time.monotonic() - started, 3)}  # fmt: skip


async def _to_the_end(coro: Coroutine[object, object, None]) -> None:
    """Run `coro` to its end even if the caller is cancelled meanwhile (then re-raise
    the cancel, chained to the failure if there was one)."""
    task = asyncio.ensure_future(coro)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError from task.exception()
    task.result()


async def _config(ctl: Control, name: str) -> bytes | None:
    """A CONFIG GET value; None when CONFIG is not allowed or the reply is not one."""
    try:
        reply = await ctl.call("CONFIG", "GET", name)
    except ReplyError:
        return None
    if isinstance(reply, list) and len(reply) == 2 and isinstance(reply[1], bytes):
        return reply[1]
    return None


async def _release(ctl: Control, old_auth: bytes, replica: bool) -> None:
    if replica:
        await ctl.make_master()
    await ctl.call("CONFIG", "SET", "masterauth", old_auth)


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


async def _loaded(ctl: Control, server: RdbServer, m: Manifest) -> None:
    """Until the target has the RDB loaded. The deadline is a floor: it moves on while
    the target's transfer or load still progresses (a big data set loads for minutes)."""
    deadline = time.monotonic() + _LOAD_MIN_S + m.rdb_bytes / _LOAD_BYTES_PER_S
    sent = asyncio.shield(server.sent)
    last: tuple[str | None, ...] = ()
    while True:
        if sent.done():
            sent.result()  # the transfer's own failure, if any
            server.keepalive()
        info = await ctl.info("replication", "persistence", "keyspace")
        if sent.done() and info.get("master_link_status") == "up" and info.get("loading") == "0":
            _compare_keyspace(info, m)
            return
        progress = (info.get("loading_loaded_bytes"), info.get("master_sync_read_bytes"))
        if progress != last:
            last, deadline = progress, max(deadline, time.monotonic() + _STALL_S)
        if time.monotonic() > deadline:
            raise BackupError("the target stopped taking or loading the RDB")
        await asyncio.sleep(_POLL_S)


async def _applied(ctl: Control, server: RdbServer) -> None:
    """Until the target has applied the stream sent after the RDB (its offset counts
    from the 0 of our +FULLRESYNC); bounded by a stall, not by the size of the replay."""
    offset = server.offset
    deadline, last = time.monotonic() + _STALL_S, -1
    while time.monotonic() < deadline:
        info = await ctl.info("replication")
        got = int(info.get("slave_repl_offset", "-1"))
        if got >= offset:
            return
        if got != last:
            last, deadline = got, time.monotonic() + _STALL_S
        server.keepalive()
        await asyncio.sleep(_POLL_S)
    raise BackupError("the target stopped applying the restore's own commands")


def _compare_keyspace(info: dict[str, str], m: Manifest) -> None:
    for db, n in m.keys_per_db.items():
        line = info.get(f"db{db}", "")
        got = int(line.split(",")[0].split("=")[1]) if line.startswith("keys=") else 0
        if got != n:
            raise BackupError(f"the target loaded {got} keys in db{db}, the backup holds {n}")


async def _drop_reserved(server: RdbServer, plan: Plan) -> int:
    """georedis' own keys from the backup (another time's heartbeats, locks, epoch),
    named by the walk that checked the backup, are deleted and the new epoch written
    through the replication stream: the target applies them before it is ever a master."""
    keys = [(db, name) for db, name in plan.summary.reserved if name != EPOCH_KEY.encode()]
    if plan.epoch is None:
        keys = list(plan.summary.reserved)
    for db in sorted({db for db, _ in keys}):
        names = [name for d, name in keys if d == db]
        for i in range(0, len(names), 512):
            await server.stream(("SELECT", db), ("DEL", *names[i : i + 512]))
    if plan.epoch is not None:
        await server.stream(("SELECT", 0), ("SET", EPOCH_KEY, plan.epoch))
    return len(keys)
