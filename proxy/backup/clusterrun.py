"""A cluster backup set's run and verify (`proxy.backup.clusterset` says what a set is).

Every shard's backup runs at once (one `BackupRun` each, from its own source), so the
forks are as close in time as the sources answer. The first failure cancels the others
and deletes what the set had stored: no member outlives a set that was never listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable

from config.model import Address
from proxy.backend.probe import ProbeConnection, ReplyError
from proxy.backup.clusterset import (
    SetProgress,
    ShardPick,
    check_member,
    members,
    set_manifest,
    shard_cluster,
    shard_id,
)
from proxy.backup.fetch import Credentials
from proxy.backup.job import BackupRun, Progress, Source
from proxy.backup.manifest import DATA_SUFFIX, MANIFEST_SUFFIX, Manifest
from proxy.backup.sealed import MasterKey
from proxy.backup.targets import Target, TargetError
from proxy.backup.verify import verify
from proxy.errors import BackupError, ProbeError
from proxy.logs import log_event
from routing.probe import parse_info

log = logging.getLogger("georedis.backup")

CATCH_UP_S = 10.0
_CALL_S = 5.0

RESTORE_REFUSED = (
    "restore of a cluster set or in cluster mode is not supported (cluster nodes refuse "
    "REPLICAOF): restore each shard's object <set>.s<i> into a standalone redis-server "
    "(georedis restore <set>.s<i> --to <host:port>), then move its keys into the cluster "
    "with redis-cli --cluster import <node> --cluster-from <host:port> --cluster-copy "
    "--cluster-replace"
)


class SetRun:
    def __init__(self, set_id: str, picks: list[ShardPick], target: Target, key: MasterKey,
                 creds: Credentials, clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        now = clock()
        self.target = target
        self.key = key
        self.clock = clock
        self.creds = creds
        self.runs: list[BackupRun] = []
        shards: list[tuple[ShardPick, Progress]] = []
        for pick in picks:
            n = pick.node
            p = Progress(shard_id(set_id, pick.index), str(n.addr), n.region, now)
            cluster = shard_cluster(set_id, pick, len(picks))
            self.runs.append(BackupRun(p, Source(n.addr, n.region, n.role.value), target, key,
                                       creds, pick.epoch, clock, cluster=cluster))  # fmt: skip
            shards.append((pick, p))
        self.p = SetProgress(set_id, now, shards)

    async def run(self) -> Manifest:
        tasks = [asyncio.ensure_future(self._shard(pick, r)) for pick, r in self._pairs()]
        try:
            done = await asyncio.gather(*tasks)
            m = set_manifest(self.p.id, self.p.started, done, self.target.description,
                             self.clock())  # fmt: skip
            m.mac = self.key.mac(m.signed())
            await self.target.put(self.p.id + MANIFEST_SUFFIX, m.to_json())
        except BaseException as e:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._discard()
            self._failed(e)
            if isinstance(e, TargetError):
                raise BackupError(str(e)) from e
            raise
        self.p.state, self.p.finished, self.p.manifest = "complete", m.finished, m
        log_event(log, "backup_set_complete", id=m.id, shards=len(done), bytes=m.size,
                  keys=m.user_keys, seconds=round(m.duration_s, 3))  # fmt: skip
        return m

    def _pairs(self) -> list[tuple[ShardPick, BackupRun]]:
        return [(pick, r) for (pick, _), r in zip(self.p.shards, self.runs, strict=True)]

    async def _shard(self, pick: ShardPick, run: BackupRun) -> Manifest:
        if pick.master is not None and pick.master != pick.node.addr:
            try:
                await caught_up(self.creds, pick.master, pick.node.addr)
            except BackupError as e:
                run.p.state, run.p.finished, run.p.error = "failed", self.clock(), e.why
                raise
        return await run.run()

    async def _discard(self) -> None:
        """The members stored before the failure (manifest first: never half listed)."""
        for r in self.runs:
            for suffix in (MANIFEST_SUFFIX, DATA_SUFFIX):
                with contextlib.suppress(Exception):
                    await self.target.delete(r.p.id + suffix)

    def _failed(self, e: BaseException) -> None:
        why = e.why if isinstance(e, BackupError) else f"{type(e).__name__}: {e}"
        failed = [p.id for _, p in self.p.shards if p.state == "failed"]
        self.p.state, self.p.finished = "failed", self.clock()
        self.p.error = f"{', '.join(failed)}: {why}" if failed else why
        log_event(log, "backup_failed", level=logging.WARNING, id=self.p.id,
                  error=self.p.error)  # fmt: skip


async def caught_up(creds: Credentials, master: Address, source: Address,
                    timeout_s: float = CATCH_UP_S) -> None:  # fmt: skip
    """Wait until the replica `source` has applied what `master` had when asked: then its
    fork holds every write the master acknowledged before the backup began."""
    try:
        async with asyncio.timeout(timeout_s):
            wanted = await _offset(creds, master)
            conn = await _open(creds, source)
            try:
                while await _offset(creds, source, conn) < wanted:
                    await asyncio.sleep(0.01)
            finally:
                conn.close()
    except TimeoutError:
        raise BackupError(f"{source} did not catch up with {master} in {timeout_s:g} s") from None
    except (ProbeError, ReplyError, ValueError, KeyError) as e:
        raise BackupError(f"replication offsets of {source} / {master}: {e}") from None


async def _open(creds: Credentials, addr: Address) -> ProbeConnection:
    conn = ProbeConnection()
    await conn.connect(addr, username=creds.username, password=creds.password,
                       timeout_s=_CALL_S, client_name="georedis-backup", tls=creds.tls)  # fmt: skip
    return conn


async def _offset(creds: Credentials, addr: Address, conn: ProbeConnection | None = None) -> int:
    """INFO's master_repl_offset: a master's written, a replica's applied."""
    own = conn is None
    c = await _open(creds, addr) if conn is None else conn
    try:
        reply = await c.call("INFO", "replication", timeout_s=_CALL_S)
    finally:
        if own:
            c.close()
    info = parse_info(reply if isinstance(reply, bytes) else b"")
    return int(info["master_repl_offset"])


async def verify_set(target: Target, m: Manifest, key: MasterKey, binary: str,
                     now: float) -> dict[str, object]:  # fmt: skip
    """Verify every member (each result in its own manifest), then the set's result into
    the set's manifest; BackupError at the first member that fails (also recorded)."""
    # The set's MAC covers its members' ids and sha256s: a member swapped in fails here.
    if not hmac.compare_digest(m.mac, key.mac(m.signed())):
        raise BackupError(f"backup {m.id} fails its check: its manifest was changed or swapped")
    result: dict[str, object] = {"time": now, "keys": m.user_keys}
    rows: list[dict[str, object]] = []
    try:
        for row in members(m):
            member = await _member(target, row["id"])
            check_member(m, row, member)
            r = await verify(target, member, key, binary, now)
            rows.append({"shard": row["shard"], "id": row["id"], **r})
        result.update(result="ok", shards=rows)
    except BackupError as e:
        result.update(result="failed", error=e.why, shards=rows)
        raise
    finally:
        await _record(target, m, result)
    return result


async def _member(target: Target, ident: str) -> Manifest:
    try:
        return Manifest.from_json(await target.get(ident + MANIFEST_SUFFIX))
    except TargetError:
        raise BackupError(f"member {ident} is missing from {target.description}") from None
    except (ValueError, TypeError) as e:
        raise BackupError(f"member {ident}: unreadable manifest: {e}") from None


async def _record(target: Target, m: Manifest, result: dict[str, object]) -> None:
    m.verify = result
    try:
        await target.put(m.id + MANIFEST_SUFFIX, m.to_json())
    except TargetError as e:
        raise BackupError(f"verify of {m.id}: {result.get('result')}, not recorded: {e}") from e
