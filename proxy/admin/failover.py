"""`PROXY FAILOVER`: a planned switchover that loses no acknowledged write, and FORCE.

Planned (`PROXY FAILOVER [TO <host:port>|<region>] [TIMEOUT <ms>]`), in order
(docs/architecture.md, "Failover"):

1. a fresh probe round; the target is the named node, else the eligible replica of the
   named region with the highest offset, else the primary's region's (then any region's)
   eligible replica with the highest offset; not eligible and in sync: refused;
2. this proxy holds new writes and MULTIs (`WriteHold`, bounded by `[failover] hold_ms`)
   and lets the writes it has in flight finish;
3. the target catches up while only this proxy holds (other writers still write);
4. `CLIENT PAUSE <pause_ms> WRITE` on the old primary, for the last bytes only: writers
   that do not pass through this proxy wait there too; the target's own offset (read
   from the target, not from the primary's ACKs) reaches the primary's;
5. `REPLICAOF NO ONE` on the target and a new epoch on it (`georedis:epoch`: a proxy
   that sees both masters for a moment takes the newer epoch's, and an old primary that
   comes back is fenced); `REPLICAOF <target>` on the old primary (a partial resync: the
   target kept the old replication ID as its second); `CLIENT UNPAUSE`: the writes other
   proxies had paused there come back -READONLY, and those proxies send them again;
6. every other replica re-pointed (partial resync), a probe round; the held writes go to
   the new primary, in order; the reply says what happened.

Redis' own `FAILOVER TO` does 4-5 in one command, but it learns the target's offset only
from its ACKs, and a paused master requests none: the target's once-a-second ACK decides,
so a pause under a second aborts under write load (seen here), and a longer one exceeds
other proxies' deadlines. Before the promotion every failure rolls back: the pause is
lifted, the held writes go to the old primary, and the error says why.

FORCE (`PROXY FAILOVER FORCE [TO ...]`): only while no primary is reachable. The
reachable replica with the highest offset (ties: the old primary's region, then the
least lag) gets `REPLICAOF NO ONE`, a new epoch, the others follow it; the reply says how
many bytes of the old primary's last known offset it lacks (what may be lost).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from config.model import Address, Config
from proxy.backend.probe import ProbeConnection, ReplyError
from proxy.errors import FailoverError, ProbeError
from proxy.logs import log_event
from routing.probe import EPOCH_KEY, epoch_text, parse_info
from routing.topology import NodeState, Role, Snapshot

log = logging.getLogger("georedis.failover")

Connect = Callable[[ProbeConnection, Address, float], Awaitable[None]]
_CALL_S = 2.0  # one control command's deadline
_POLL_S = 0.02


class FailoverHost(Protocol):
    """What the orchestration needs of the process (`App`; the supervisor with workers)."""

    # The primary of the last snapshot that had one (FORCE prefers its region).
    last_primary: NodeState | None

    @property
    def topo(self) -> Snapshot: ...

    @property
    def config(self) -> Config: ...

    async def refresh(self) -> Snapshot: ...

    def hold_writes(self) -> None: ...

    def release_writes(self) -> None: ...

    def writes_in_flight(self) -> int: ...

    @property
    def connect(self) -> Connect: ...


@dataclass(frozen=True, slots=True)
class Request:
    force: bool = False
    to: str | None = None  # "host:port" or a region name
    timeout_ms: int | None = None


def parse(args: list[bytes]) -> Request:
    """FORCE, TO <target>, TIMEOUT <ms>, in any order (ValueError: the usage)."""
    words = [a.decode(errors="replace") for a in args]
    force, to, timeout, i = False, None, None, 0
    while i < len(words):
        w = words[i].upper()
        if w == "FORCE":
            force, i = True, i + 1
        elif w in ("TO", "TIMEOUT") and i + 1 < len(words):
            if w == "TO":
                to = words[i + 1]
            else:
                timeout = int(words[i + 1])
                if timeout <= 0:
                    raise ValueError
            i += 2
        else:
            raise ValueError
    return Request(force, to, timeout)


class Failover:
    """One run of PROXY FAILOVER; `result` is its reply as a mapping."""

    def __init__(self, host: FailoverHost, req: Request) -> None:
        self.host = host
        self.req = req
        self.cfg = host.config.failover
        self.loop = asyncio.get_running_loop()
        self._conns: dict[Address, ProbeConnection] = {}
        self.steps: list[str] = []

    async def run(self) -> dict[str, object]:
        started = self.loop.time()
        try:
            snap = await self.host.refresh()
            if self.req.force:
                return await self._forced(snap, started)
            return await self._planned(snap, started)
        finally:
            for conn in self._conns.values():
                conn.close()

    # ------------------------------------------------------------------ planned

    async def _planned(self, snap: Snapshot, started: float) -> dict[str, object]:
        old = snap.primary
        if old is None or snap.primary_error:
            why = snap.primary_error or "no primary reachable"
            raise FailoverError(f"{why}; PROXY FAILOVER FORCE promotes a replica")
        target = choose_planned(snap, self.req.to)
        self._step("target", target=str(target.addr), region=target.region, offset=target.offset)
        held_at = self.loop.time()
        self.host.hold_writes()
        try:
            await self._drain()
            await self._catch_up(old.addr, target.addr, self._budget(held_at) / 2)
            await self._switch(old.addr, target.addr, snap.epoch + 1)
        except BaseException:
            self.host.release_writes()  # rolled back: writes go on to the old primary
            raise
        return await self._finish(snap, old, target, held_at, started)

    async def _switch(self, old: Address, target: Address, epoch: int) -> None:
        pause_ms = self.req.timeout_ms or self.cfg.pause_ms
        await self._call(old, "CLIENT", "PAUSE", str(pause_ms), "WRITE")
        self._step("paused", node=str(old), ms=pause_ms)
        try:
            offset = _int(await self._info(old), "master_repl_offset")
            await self._reach(target, offset, pause_ms / 1000)
            await self._call(target, "REPLICAOF", "NO", "ONE")
        except BaseException:
            await self._unpause(old)
            raise
        # From here on the target is a primary: nothing rolls back.
        self._step("promoted", node=str(target), offset=offset)
        await self._call(target, "SET", EPOCH_KEY, epoch_text(epoch, target))
        try:
            await self._call(old, "REPLICAOF", target.host, str(target.port))
        finally:
            await self._unpause(old)
        self._step("demoted", node=str(old))

    async def _reach(self, target: Address, offset: int, within_s: float) -> None:
        deadline = self.loop.time() + within_s
        while _int(await self._info(target), "slave_repl_offset") < offset:
            if self.loop.time() > deadline:
                raise FailoverError(f"{target} did not catch up within "
                                    f"{within_s * 1000:.0f} ms; nothing changed")  # fmt: skip
            await asyncio.sleep(0.001)

    async def _unpause(self, node: Address) -> None:
        try:
            await self._call(node, "CLIENT", "UNPAUSE")
        except FailoverError as e:  # its pause ends by itself after pause_ms
            log.warning("CLIENT UNPAUSE on %s failed: %s", node, e)

    async def _drain(self) -> None:
        """Writes already sent finish first (bounded: a slow one is Redis' to pause)."""
        deadline = self.loop.time() + min(1.0, self.cfg.hold_ms / 4000)
        while self.host.writes_in_flight() and self.loop.time() < deadline:
            await asyncio.sleep(0.001)

    async def _catch_up(self, primary: Address, target: Address, budget_s: float) -> None:
        deadline = self.loop.time() + budget_s
        while True:
            p, t = await self._info(primary), await self._info(target)
            behind = _int(p, "master_repl_offset") - _int(t, "slave_repl_offset")
            if behind <= 0 or self.loop.time() > deadline:
                self._step("caught_up" if behind <= 0 else "catch_up_partial", behind=behind)
                return
            await asyncio.sleep(_POLL_S)

    # ------------------------------------------------------------------ forced

    async def _forced(self, snap: Snapshot, started: float) -> dict[str, object]:
        if snap.primary is not None and not snap.primary_error:
            raise FailoverError(f"{snap.primary.addr} is up; PROXY FAILOVER switches "
                                "without losing writes")  # fmt: skip
        target = choose_forced(snap, self.req.to, self.host.last_primary)
        last = snap.primary_offsets[-1].offset if snap.primary_offsets else None
        held_at = self.loop.time()
        self.host.hold_writes()
        try:
            await self._call(target.addr, "REPLICAOF", "NO", "ONE")
            self._step("promoted", node=str(target.addr))
            await self._call(target.addr, "SET", EPOCH_KEY, epoch_text(snap.epoch + 1, target.addr))
        except BaseException:
            self.host.release_writes()
            raise
        result = await self._finish(snap, None, target, held_at, started)
        result["lost_bytes_at_most"] = None if last is None else max(0, last - target.offset)
        return result

    # ------------------------------------------------------------------ both

    async def _finish(self, snap: Snapshot, old: NodeState | None, target: NodeState,
                      held_at: float, started: float) -> dict[str, object]:  # fmt: skip
        """Epoch, re-pointed replicas, a probe round showing the new primary, writes on."""
        epoch = snap.epoch + 1
        try:
            moved = await self._repoint(snap, old, target)
            await self._until_primary(target.addr)
        finally:
            self.host.release_writes()
        held_ms = (self.loop.time() - held_at) * 1000
        new = await self._info(target.addr)
        result: dict[str, object] = {
            "result": "ok",
            "kind": "force" if self.req.force else "planned",
            "old_primary": str(old.addr) if old else None,
            "new_primary": str(target.addr),
            "new_primary_region": target.region,
            "epoch": epoch,
            "writes_held_ms": round(held_ms, 1),
            "took_ms": round((self.loop.time() - started) * 1000, 1),
            "target_offset_before": target.offset,
            "new_primary_offset": _int(new, "master_repl_offset"),
            "replicas_repointed": moved,
        }
        done: dict[str, Any] = {k: v for k, v in result.items() if k != "result"}
        log_event(log, "failover_done", **done)
        return result

    async def _repoint(self, snap: Snapshot, old: NodeState | None, target: NodeState) -> list[str]:
        moved: list[str] = []
        host, port = target.addr.host, str(target.addr.port)
        for n in snap.nodes:
            if n.addr == target.addr or not n.up or (old is not None and n.addr == old.addr):
                continue
            try:
                await self._call(n.addr, "REPLICAOF", host, port)
                moved.append(str(n.addr))
            except FailoverError as e:  # it is fenced later, when it answers again
                log.warning("re-pointing %s failed: %s", n.addr, e)
        self._step("repointed", nodes=moved)
        return moved

    async def _until_primary(self, addr: Address) -> None:
        deadline = self.loop.time() + 2.0
        while self.loop.time() < deadline:
            snap = await self.host.refresh()
            if snap.primary is not None and snap.primary.addr == addr and not snap.primary_error:
                return
            await asyncio.sleep(_POLL_S)
        log.warning("%s is primary, but the probes do not show it yet", addr)

    def _budget(self, held_at: float) -> float:
        return max(0.1, self.cfg.hold_ms / 1000 - (self.loop.time() - held_at) - 2.5)

    def _step(self, what: str, **fields: Any) -> None:
        self.steps.append(what)
        log_event(log, f"failover_{what}", **fields)

    async def _info(self, addr: Address) -> dict[str, str]:
        reply = await self._call(addr, "INFO", "replication")
        return parse_info(reply if isinstance(reply, bytes) else b"")

    async def _call(self, addr: Address, *cmd: str) -> object:
        conn = self._conns.setdefault(addr, ProbeConnection())
        try:
            if not conn.connected:
                await self.host.connect(conn, addr, _CALL_S)
            return await conn.call(*cmd, timeout_s=_CALL_S)
        except (ProbeError, ReplyError) as e:
            raise FailoverError(f"{cmd[0]} on {addr}: {e}") from e


# ---------------------------------------------------------------------- choosing


def choose_planned(snap: Snapshot, to: str | None) -> NodeState:
    """The switchover's target (see the module doc); FailoverError when none fits."""
    primary = snap.primary
    assert primary is not None
    ready = [n for n in snap.nodes if n.eligible and n.replid == primary.replid]
    if to is not None:
        named = _named(snap, to)
        if isinstance(named, NodeState):
            if named not in ready:
                raise FailoverError(f"{to} is not an eligible, in-sync replica "
                                    f"({named.reason.value})")  # fmt: skip
            return named
        ready = [n for n in ready if n.region == named]
        if not ready:
            raise FailoverError(f"no eligible, in-sync replica in {named}")
    if not ready:
        raise FailoverError("no eligible, in-sync replica")
    return max(ready, key=lambda n: (n.region == primary.region, n.offset))


def choose_forced(snap: Snapshot, to: str | None, last: NodeState | None = None) -> NodeState:
    region = last.region if last is not None else ""
    up = [n for n in snap.nodes if n.up and n.role is Role.REPLICA and not n.loading]
    if to is not None:
        named = _named(snap, to)
        up = [n for n in up if n is named or n.region == named]
    if not up:
        raise FailoverError("no reachable replica" + (f" for {to}" if to else ""))
    lag = float("inf")
    return max(
        up, key=lambda n: (n.offset, n.region == region, -(lag if n.lag_ms is None else n.lag_ms))
    )


def _named(snap: Snapshot, to: str) -> NodeState | str:
    """A node (host:port) or a region name."""
    if ":" in to:
        host, _, port = to.rpartition(":")
        node = snap.node(Address(host.strip("[]"), int(port))) if port.isdigit() else None
        if node is None:
            raise FailoverError(f"{to} is not a configured node")
        return node
    if not any(n.region == to for n in snap.nodes):
        raise FailoverError(f"unknown region '{to}'")
    return to


def _int(info: dict[str, str], key: str) -> int:
    try:
        return int(info.get(key, "0"))
    except ValueError:
        return 0


class Status:
    """`PROXY FAILOVER STATUS`: the last run of this process, the hold, the epoch."""

    def __init__(self) -> None:
        self.running = False
        self.last: dict[str, object] | None = None

    def record(self, result: dict[str, object]) -> None:
        self.last = {**result, "at": round(time.time(), 3)}
