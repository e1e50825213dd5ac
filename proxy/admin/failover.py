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

Sentinel mode (`[sentinel] master_name`): the sentinels choose the target, so TO is
refused. Steps 1-3 as above, then `CLIENT PAUSE` on the old primary and `SENTINEL
FAILOVER`; the replicas are polled until one is a master (Sentinel promotes in ~150 ms),
the epoch is written on it, and the old primary is made its replica at once (Sentinel
would do it seconds later, and until then writes others had paused there would run on a
primary that is about to lose them), then unpaused. Sentinel re-points the rest.

FORCE (`PROXY FAILOVER FORCE [TO ...]`): only while no primary is reachable. The
reachable replica with the highest offset (ties: the old primary's region, then the
least lag) gets `REPLICAOF NO ONE`, a new epoch, the others follow it; the reply says how
many bytes of the old primary's last known offset it lacks (what may be lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from config.model import Address, Config
from proxy.admin.controlcalls import Connect, ControlCalls
from proxy.admin.failover_plan import Request, Status, choose_forced, choose_planned, parse
from proxy.backend.sentinel import Sentinels
from proxy.errors import FailoverError, ProbeError
from proxy.logs import log_event
from routing.probe import EPOCH_KEY, epoch_text
from routing.topology import NodeState, Role, Snapshot

__all__ = ["Connect", "Failover", "FailoverHost", "Request", "Status", "parse"]

log = logging.getLogger("georedis.failover")

_POLL_S = 0.02
_NEAR_BYTES = 64 * 1024  # behind by less: the pause covers the rest
_PAUSE_MARGIN_MS = 3000  # the pause's own bound past pause_ms (lifted explicitly)
_TRIES = 5
_CATCH_UP_S = 1.0


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


class Failover:
    """One run of PROXY FAILOVER; `result` is its reply as a mapping."""

    def __init__(self, host: FailoverHost, req: Request) -> None:
        self.host = host
        self.req = req
        self.cfg = host.config.failover
        self.loop = asyncio.get_running_loop()
        self._calls = ControlCalls(host.connect)
        self.steps: list[str] = []

    async def run(self) -> dict[str, object]:
        started = self.loop.time()
        sentinels = Sentinels.of(self.host.config)
        try:
            snap = await self.host.refresh()
            if self.req.force:
                return await self._forced(snap, started)
            if sentinels is not None:
                return await self._by_sentinel(sentinels, snap, started)
            return await self._planned(snap, started)
        finally:
            self._calls.close()
            if sentinels is not None:
                sentinels.close()

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

    async def _by_sentinel(self, sentinels: Sentinels, snap: Snapshot,
                           started: float) -> dict[str, object]:  # fmt: skip
        old = snap.primary
        if self.req.to is not None:
            raise FailoverError("TO is refused in Sentinel mode: the sentinels choose the target")
        if old is None or snap.primary_error:
            raise FailoverError(snap.primary_error or "no primary reachable")
        best = choose_planned(snap, None)  # some replica must be eligible and in sync
        held_at = self.loop.time()
        self.host.hold_writes()
        try:
            await self._drain()
            await self._catch_up(old.addr, best.addr, self._budget(held_at) / 2)
            pause_ms = self.req.timeout_ms or self.cfg.pause_ms
            await self._calls.call(old.addr, "CLIENT", "PAUSE", str(pause_ms + _PAUSE_MARGIN_MS),
                             "WRITE")  # fmt: skip
            try:
                # Sentinel picks from its own view: every replica it may pick must hold
                # every write the old primary acknowledged.
                offset = _int(await self._calls.info(old.addr), "master_repl_offset")
                for n in snap.nodes:
                    if n.up and n.role is Role.REPLICA:
                        await self._reach(n.addr, offset, pause_ms / 1000)
                asked = await sentinels.failover()
            except (FailoverError, ProbeError) as e:
                await self._unpause(old.addr)
                raise FailoverError(str(e)) from e
        except BaseException:
            self.host.release_writes()
            raise
        # Sentinel accepted: from here a failure never releases writes to the old
        # primary (Sentinel may still promote a replica); the hold's bound answers them.
        self._step("sentinel_failover", sentinel=str(asked))
        try:
            target = await self._promoted(snap, self._budget(held_at))
        except FailoverError:
            await self._unpause(old.addr)
            raise
        name = Address(target.addr.host, target.addr.port)
        await self._after_promotion(old.addr, target.addr, name, snap.epoch + 1)
        result = await self._finish(snap, old, target, held_at, started, repoint=False)
        result["kind"] = "sentinel"
        return result

    async def _promoted(self, snap: Snapshot, within_s: float) -> NodeState:
        """The replica Sentinel promoted, read from the replicas themselves."""
        candidates = [n for n in snap.nodes if n.up and n.role is Role.REPLICA]
        deadline = self.loop.time() + within_s
        while self.loop.time() < deadline:
            for n in candidates:
                with contextlib.suppress(FailoverError):
                    if (await self._calls.info(n.addr)).get("role") == "master":
                        self._step("promoted", node=str(n.addr))
                        return n
            await asyncio.sleep(0.005)
        raise FailoverError("the sentinels promoted no replica in time; they may still")

    async def _switch(self, old: Address, target: Address, epoch: int) -> None:
        """Raises (having undone what it did) only before the target is promoted."""
        pause_ms = self.req.timeout_ms or self.cfg.pause_ms
        name = await self._known_as(old, target)
        # Longer than the wait for the target: the pause must outlast the promotion and
        # the demotion (it is lifted explicitly), or writes others had paused there would
        # run on a primary that is about to lose them.
        await self._calls.call(old, "CLIENT", "PAUSE", str(pause_ms + _PAUSE_MARGIN_MS), "WRITE")
        self._step("paused", node=str(old), ms=pause_ms)
        try:
            offset = _int(await self._calls.info(old), "master_repl_offset")
            await self._reach(target, offset, pause_ms / 1000)
        except BaseException:
            await self._unpause(old)
            raise
        try:
            await self._calls.call(target, "REPLICAOF", "NO", "ONE")
        except BaseException:
            # It may have run: the target follows the old primary again before the pause
            # is lifted, so there are never two masters of one epoch.
            with contextlib.suppress(FailoverError):
                await self._calls.call(target, "REPLICAOF", old.host, str(old.port))
            await self._unpause(old)
            raise
        self._step("promoted", node=str(target), offset=offset)
        await self._after_promotion(old, target, name, epoch)

    async def _after_promotion(self, old: Address, target: Address, name: Address,
                               epoch: int) -> None:  # fmt: skip
        """The target is a primary: nothing rolls back, and no failure here sends a write
        to the old one. It follows the target first (then a min-replicas-to-write
        primary accepts the epoch write), the pause is lifted, the epoch is written."""
        try:
            await self._retrying(old, "REPLICAOF", name.host, str(name.port))
            self._step("demoted", node=str(old), follows=str(name))
        except FailoverError as e:  # the epoch fences it, and the fencer re-points it
            log.error("the old primary %s did not follow %s: %s", old, target, e)
        finally:
            await self._unpause(old)
        try:
            await self._retrying(target, "SET", EPOCH_KEY, epoch_text(epoch, target))
        except FailoverError as e:
            log.error("the epoch could not be written on %s: %s", target, e)

    async def _retrying(self, addr: Address, *cmd: str) -> object:
        """A command that must get through: a few tries over about a second."""
        for attempt in range(_TRIES):
            try:
                return await self._calls.call(addr, *cmd)
            except FailoverError:
                if attempt == _TRIES - 1:
                    raise
                await asyncio.sleep(0.2)
        raise AssertionError("unreachable")

    async def _known_as(self, primary: Address, target: Address) -> Address:
        """The target as the primary lists it (`slaveN:ip=...,port=...`: behind NAT, or
        with replica-announce-ip, not the address this proxy reaches it at), so the old
        primary can reach it once it follows it. Ours when the listing does not tell."""
        listed = _replicas(await self._calls.info(primary))
        if target in listed:
            return target
        ports = [a for a in listed if a.port == target.port]
        return ports[0] if len(ports) == 1 else target

    async def _reach(self, target: Address, offset: int, within_s: float) -> None:
        deadline = self.loop.time() + within_s
        while _int(await self._calls.info(target), "slave_repl_offset") < offset:
            if self.loop.time() > deadline:
                raise FailoverError(f"{target} did not catch up within "
                                    f"{within_s * 1000:.0f} ms; nothing changed")  # fmt: skip
            await asyncio.sleep(0.001)

    async def _unpause(self, node: Address) -> None:
        try:
            await self._calls.call(node, "CLIENT", "UNPAUSE")
        except FailoverError as e:  # its pause ends by itself after pause_ms
            log.warning("CLIENT UNPAUSE on %s failed: %s", node, e)

    async def _drain(self) -> None:
        """Writes already sent finish first (bounded: a slow one is Redis' to pause)."""
        deadline = self.loop.time() + min(1.0, self.cfg.hold_ms / 4000)
        while self.host.writes_in_flight() and self.loop.time() < deadline:
            await asyncio.sleep(0.001)

    async def _catch_up(self, primary: Address, target: Address, budget_s: float) -> None:
        """Near enough that the pause covers only the last bytes. Not to the byte: other
        writers (and every proxy's heartbeat) keep writing, and over a WAN link the
        target is always a few beats behind."""
        deadline = self.loop.time() + min(budget_s, _CATCH_UP_S)
        while True:
            p, t = await self._calls.info(primary), await self._calls.info(target)
            behind = _int(p, "master_repl_offset") - _int(t, "slave_repl_offset")
            if behind <= _NEAR_BYTES or self.loop.time() > deadline:
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
            await self._calls.call(target.addr, "REPLICAOF", "NO", "ONE")
        except BaseException:
            self.host.release_writes()
            raise
        self._step("promoted", node=str(target.addr))
        try:
            await self._retrying(target.addr, "SET", EPOCH_KEY,
                                 epoch_text(snap.epoch + 1, target.addr))  # fmt: skip
        except FailoverError as e:
            log.error("the epoch could not be written on %s: %s", target.addr, e)
        result = await self._finish(snap, None, target, held_at, started)
        result["lost_bytes_at_most"] = None if last is None else max(0, last - target.offset)
        return result

    # ------------------------------------------------------------------ both

    async def _finish(self, snap: Snapshot, old: NodeState | None, target: NodeState,
                      held_at: float, started: float,
                      repoint: bool = True) -> dict[str, object]:  # fmt: skip
        """Epoch, re-pointed replicas, a probe round showing the new primary, writes on."""
        epoch = snap.epoch + 1
        try:
            moved = await self._repoint(snap, old, target) if repoint else []
            await self._until_primary(target.addr)
        finally:
            self.host.release_writes()
        held_ms = (self.loop.time() - held_at) * 1000
        new: dict[str, str] = {}
        with contextlib.suppress(FailoverError):  # done: a late INFO must not say otherwise
            new = await self._calls.info(target.addr)
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
            "new_primary_offset": _int(new, "master_repl_offset") if new else None,
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
                await self._calls.call(n.addr, "REPLICAOF", host, port)
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


def _replicas(info: dict[str, str]) -> list[Address]:
    out: list[Address] = []
    for key, value in info.items():
        if key.startswith("slave") and key[5:].isdigit():
            fields = dict(p.split("=", 1) for p in value.split(",") if "=" in p)
            if "ip" in fields and fields.get("port", "").isdigit():
                out.append(Address(fields["ip"], int(fields["port"])))
    return out


def _int(info: dict[str, str], key: str) -> int:
    try:
        return int(info.get(key, "0"))
    except ValueError:
        return 0
