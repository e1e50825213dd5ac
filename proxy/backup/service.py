"""`Backups`: what PROXY BACKUP, BACKUPS, BACKUP STATUS / VERIFY and RESTORE do.

One per process. A backup runs as a task and is answered with its id at once; its
progress is kept here (`Progress`) and, once complete, in the target's manifest, which
is what every proxy lists. One backup or restore at a time per process: two snapshots
at once would fork a replica twice for nothing, and a restore must not race one.

Restore into the deployment's primary (the default target) holds this proxy's writes
for the load, as a failover does (`hold_writes`, `[failover] hold_ms` bounds it), and
writes the next failover epoch; the replicas resync from the restored primary on their
own. `TO <host:port>` of any other server restores into it without either.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from config.loader import resolve_password
from config.model import Address, Config
from proxy.backend.probe import ProbeConnection, ReplyError
from proxy.backup.archive import Archiver
from proxy.backup.clusterrun import RESTORE_REFUSED, SetRun
from proxy.backup.clusterset import SetProgress, members, plan_set, valid_shard_id
from proxy.backup.control import Control, open_control
from proxy.backup.fetch import Credentials
from proxy.backup.job import BackupRun, Progress, Source
from proxy.backup.manifest import MANIFEST_SUFFIX, Manifest, new_id, valid_id
from proxy.backup.replay import point_in_time
from proxy.backup.restore import Plan, check, load
from proxy.backup.sealed import MasterKey
from proxy.backup.source import choose_source
from proxy.backup.targets import DirectoryTarget, Target, TargetError
from proxy.errors import BackupError, ConfigError, ProbeError
from proxy.stats import ProxyStats
from proxy.tls import backend_tls
from routing.probe import epoch_text, parse_info
from routing.topology import Snapshot

Connect = Callable[[ProbeConnection, Address, float], Awaitable[None]]
_KEEP_RUNS = 32  # finished runs PROXY BACKUPS still shows from memory (failed ones)
_CONNECT_S = 5.0
_DRAIN_S = 2.0


class BackupHost(Protocol):
    """What backups need of the process (`App`)."""

    @property
    def config(self) -> Config: ...

    @property
    def topo(self) -> Snapshot: ...

    @property
    def stats(self) -> ProxyStats: ...

    @property
    def default_ranking(self) -> tuple[str, ...]: ...

    @property
    def connect(self) -> Connect: ...

    async def refresh(self) -> Snapshot: ...

    def hold_writes(self) -> None: ...

    def release_writes(self) -> None: ...

    def writes_in_flight(self) -> int: ...


def make_target(cfg: Config) -> Target:
    b = cfg.backup
    if b.s3_bucket:
        from proxy.backup.s3 import S3Target  # boto3 loads only where S3 is used

        return S3Target(b.s3_bucket, b.s3_prefix or "", b.s3_endpoint_url, b.s3_region)
    return DirectoryTarget(b.directory)


def master_key(cfg: Config) -> MasterKey:
    name = cfg.backup.key_env
    text = os.environ.get(name)
    if not text:
        raise BackupError(f"no master key: set environment variable {name} ([backup] key_env)")
    try:
        return MasterKey.parse(text)
    except ValueError as e:
        raise BackupError(f"{name}: {e}") from None


def credentials(cfg: Config) -> Credentials:
    try:
        password = resolve_password(cfg)
    except ConfigError as e:
        raise BackupError(str(e)) from None
    return Credentials(cfg.backend.username, password, backend_tls(cfg.backend))


class Backups:
    def __init__(self, host: BackupHost, clock: Callable[[], float] = time.time) -> None:
        self.host = host
        self.clock = clock
        self.runs: dict[str, Progress | SetProgress] = {}
        self.busy: str | None = None  # "backup <id>" | "restore <id>" | "verify <id>"
        self._tasks: set[asyncio.Task[object]] = set()
        self._target: Target | None = None
        self._last: asyncio.Future[object] | None = None
        self.archives: dict[str, Archiver] = {}
        self.archive_tasks: dict[str, asyncio.Future[object]] = {}

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = make_target(self.host.config)
        return self._target

    # ------------------------------------------------------------------ backup

    def start(self, frm: str | None, archive: bool = False) -> str:
        """Begin a backup; its id at once (BackupError when it cannot start)."""
        self.check_idle()
        cfg = self.host.config
        key, creds = master_key(cfg), credentials(cfg)
        if self.host.topo.shards:
            return self._start_set(frm, archive, key, creds)
        node = choose_source(self.host.topo, frm, self.host.default_ranking)
        now = self.clock()
        p = Progress(new_id(now), str(node.addr), node.region, now)
        run = BackupRun(p, Source(node.addr, node.region, node.role.value), self.target, key,
                        creds, self.host.topo.epoch, self.clock, archive)  # fmt: skip
        self._remember(p)
        self.busy = f"backup {p.id}"
        self._last = self._spawn(self._backup(run))
        return p.id

    def _start_set(self, frm: str | None, archive: bool, key: MasterKey,
                   creds: Credentials) -> str:  # fmt: skip
        """Cluster mode: one backup per shard, as one set (`proxy.backup.clusterset`)."""
        if archive:
            raise BackupError("ARCHIVE is not supported in cluster mode (no set archive yet)")
        topo = self.host.topo
        picks = plan_set(topo, frm, self.host.default_ranking)
        run = SetRun(new_id(self.clock()), picks, self.target, key, creds, self.clock)
        self._remember(run.p)
        self.busy = f"backup {run.p.id}"
        self._last = self._spawn(self._backup(run))
        return run.p.id

    async def run_now(self, frm: str | None, archive: bool = False) -> Manifest:
        """A backup awaited to its end (the scheduler's)."""
        try:
            ident = self.start(frm, archive)
        except BackupError:
            self.host.stats.backups_failed += 1  # the alert counts one that never began
            raise
        assert self._last is not None
        await asyncio.shield(self._last)
        m = self.runs[ident].manifest
        if m is None:
            raise BackupError(self.runs[ident].error or "backup failed")
        return m

    async def _backup(self, run: BackupRun | SetRun) -> None:
        stats = self.host.stats
        try:
            m = await run.run()
        except BackupError:
            stats.backups_failed += 1
            return
        finally:
            self.busy = None
        stats.backups_ok += 1
        stats.backup_last = (m.finished, m.duration_s, m.size)
        if isinstance(run, BackupRun) and run.fetch.archive:
            self._archive(run, m)
        with contextlib.suppress(BackupError, TargetError):
            await self.prune()

    def _archive(self, run: BackupRun, m: Manifest) -> None:
        """Keep the link open as an archive; the previous one in this proxy ends."""
        for old in self.archives.values():
            old.stop()
        cfg = self.host.config.backup
        archiver = Archiver(run.fetch, m, self.target, run.key, cfg.archive_segment_ms,
                            self.clock)  # fmt: skip
        self.archives[m.id] = archiver
        task = self._spawn(self._run_archive(archiver, run.source.addr))
        self.archive_tasks[m.id] = task

        def ended(_: object) -> None:
            self.archives.pop(m.id, None)
            self.archive_tasks.pop(m.id, None)

        task.add_done_callback(ended)

    async def _run_archive(self, archiver: Archiver, source: Address) -> None:
        conn = ProbeConnection()
        offset: int | None = None
        try:
            await self.host.connect(conn, source, _CONNECT_S)
            reply = await conn.call("INFO", "replication", timeout_s=_CONNECT_S)
            info = parse_info(reply if isinstance(reply, bytes) else b"")
            offset = int(info.get("master_repl_offset", "0"))
        except (ProbeError, ReplyError, ValueError):
            offset = None  # unknown: the archive counts from its first segment
        finally:
            conn.close()
        await archiver.run(offset)

    def stop_archive(self, ident: str) -> None:
        archiver = self.archives.get(ident)
        if archiver is None:
            raise BackupError(f"no archive of backup {ident!r} runs in this proxy")
        archiver.stop()

    async def prune(self) -> list[str]:
        """Retention after a successful backup (`proxy.backup.retention`)."""
        from proxy.backup.retention import Kept, to_prune

        r = self.host.config.backup.retention
        ms = await self.manifests()
        kept = [Kept(m.id, m.created, m.state == "complete") for m in ms]
        doomed = to_prune(kept, r.daily, r.weekly, r.monthly, self.clock())
        names = await self.target.names() if doomed else []
        for ident in doomed:
            if ident in self.archives:
                self.archives[ident].stop()
                # Its last segment rewrites the manifest: wait, or the backup returns.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(self.archive_tasks[ident]), 10)
            await self.target.delete(ident + MANIFEST_SUFFIX)  # unlisted first
            for name in names:
                if name.startswith(ident + "."):  # the snapshot, archive segments
                    await self.target.delete(name)
        return doomed

    # ------------------------------------------------------------------ listing

    async def manifests(self) -> list[Manifest]:
        names = await self.target.names()
        out = []
        for name in sorted(names):
            ident = name.removesuffix(MANIFEST_SUFFIX)
            if ident != name and valid_id(ident):
                with contextlib.suppress(ValueError, TypeError, TargetError):
                    out.append(Manifest.from_json(await self.target.get(name)))
        return out

    async def listing(self) -> list[dict[str, object]]:
        stored = {m.id: m.summary() for m in await self.manifests()}
        for ident, p in self.runs.items():
            if ident not in stored:
                stored[ident] = p.as_dict()
        return [stored[k] for k in sorted(stored)]

    async def status(self, ident: str) -> dict[str, object]:
        p = self.runs.get(ident)
        if p is not None and p.manifest is None:
            return p.as_dict()
        m = await self.manifest(ident)
        return {**m.summary(), **_details(m), **({"shards": members(m)} if m.is_set else {})}

    async def manifest(self, ident: str) -> Manifest:
        return await self.read_manifest(self.target, ident)

    @staticmethod
    async def read_manifest(target: Target, ident: str) -> Manifest:
        if not (valid_id(ident) or valid_shard_id(ident)):  # a set's member: read alone
            raise BackupError(f"no backup {ident!r}")
        try:
            m = Manifest.from_json(await target.get(ident + MANIFEST_SUFFIX))
        except TargetError:
            raise BackupError(f"no backup {ident!r} in {target.description}") from None
        except (ValueError, TypeError) as e:
            raise BackupError(f"backup {ident}: unreadable manifest: {e}") from None
        if m.id != ident:  # another backup's manifest copied over this one's (signed too)
            raise BackupError(f"backup {ident}: its manifest is backup {m.id}'s")
        return m

    # ------------------------------------------------------------------ restore

    async def restore(self, ident: str, to: Address | None,
                      at_ms: int | None = None) -> dict[str, object]:  # fmt: skip
        self.check_idle()
        self.busy = f"restore {ident}"
        try:
            result = await self._restore(ident, to, at_ms)
        except BackupError:
            self.host.stats.restores_failed += 1
            raise
        finally:
            self.busy = None
        self.host.stats.restores_ok += 1
        return result

    async def _restore(self, ident: str, to: Address | None,
                       at_ms: int | None) -> dict[str, object]:  # fmt: skip
        key = master_key(self.host.config)
        m = await self.manifest(ident)
        if m.is_set or self.host.topo.shards:
            raise BackupError(RESTORE_REFUSED)
        summary = await check(self.target, m, key)  # all of it, before the target is touched
        replay = await point_in_time(self.target, m, key, at_ms)
        snap = await self.host.refresh()
        primary = snap.primary
        into_primary = to is None or (primary is not None and to == primary.addr)
        if into_primary and primary is None:
            raise BackupError("no primary to restore into (TO <host:port> names a server)")
        if into_primary and self.host.config.sentinel.master_name:
            # The primary turns replica for the load: Sentinel would fail over away from
            # it (after down-after-milliseconds) and then overwrite the restore.
            raise BackupError(
                "in Sentinel mode a restore into the primary is refused: Sentinel would "
                "fail over during the load; restore TO a server outside Sentinel's watch"
            )
        addr = primary.addr if into_primary and primary is not None else to
        assert addr is not None
        held = False

        async def hold() -> None:
            nonlocal held
            self.host.hold_writes()
            held = True
            await self._drain()

        epoch = epoch_text(snap.epoch + 1, addr) if into_primary else None
        plan = Plan(m, summary, epoch, hold if into_primary else None, replay)

        async def connect() -> ProbeConnection:
            conn = ProbeConnection()
            await self.host.connect(conn, addr, _CONNECT_S)
            return conn

        ctl: Control | None = None
        try:
            ctl = await open_control(connect)
            return await load(ctl, self.target, key, plan)
        except ProbeError as e:
            raise BackupError(f"restore into {addr}: {e}") from e
        finally:
            if ctl is not None:
                ctl.conn.close()
            if held:
                await self.host.refresh()  # the restored primary, before writes go on
                self.host.release_writes()

    async def _drain(self) -> None:
        deadline = time.monotonic() + _DRAIN_S
        while self.host.writes_in_flight() and time.monotonic() < deadline:
            await asyncio.sleep(0.002)

    # ------------------------------------------------------------------ plumbing

    def check_idle(self) -> None:
        if self.busy is not None:
            raise BackupError(f"busy: {self.busy} is running in this proxy")

    def _remember(self, p: Progress | SetProgress) -> None:
        self.runs[p.id] = p
        while len(self.runs) > _KEEP_RUNS:
            del self.runs[next(iter(self.runs))]

    def _spawn(self, coro: Awaitable[object]) -> asyncio.Future[object]:
        task: asyncio.Task[object] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


def _details(m: Manifest) -> dict[str, object]:
    return {
        "replid": m.replid, "offset": m.offset, "rdb_version": m.rdb_version,
        "redis_version": m.redis_version, "sha256": m.sha256, "key_id": m.key_id,
        "crc64": m.crc64, "reserved_keys": m.reserved_keys, "expires": m.expires,
        "keys_per_db": m.keys_per_db, "epoch": m.epoch, "target": m.target,
        "verify": m.verify, "snapshot_at": m.at,
        "archive_segments": len(m.archive) if m.archive is not None else None,
    }  # fmt: skip
