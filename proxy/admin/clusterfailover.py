"""`PROXY FAILOVER` in cluster mode (`[cluster] seeds`): Redis Cluster's own manual failover.

A cluster fails over one shard at a time, and it has its own coordination: a replica sent
`CLUSTER FAILOVER` asks its master to pause its clients' writes until the replica has its
offset, then takes the slots with the other masters' votes (FORCE: without its master's
part, for a master that is down). So none of the standalone machinery applies (no write
hold, no epoch, no REPLICAOF): writes the old master answers afterwards come back MOVED,
and the data path follows those (proxy/server/shards.py).

`PROXY FAILOVER [FORCE] TO <host:port>`: that replica, in the shard it belongs to.
`PROXY FAILOVER [FORCE] SHARD <index> [TO <host:port>|<region>]`: a replica of that shard
(`Snapshot.shards[index]`), the named one, else the eligible one (FORCE: any reachable
one) with the least lag, in the region if one is named. `TIMEOUT <ms>` bounds the wait for
both nodes to say they switched (default `[failover] hold_ms`, as Redis' own manual failover
gives up after 5 s). Then a map read is asked for, and the reply says what happened.

`run_failover` picks this or the standalone `Failover` from the config.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from config.model import Address
from proxy.admin import failover
from proxy.admin.controlcalls import ControlCalls
from proxy.admin.failover import Connect, Failover, FailoverHost, Request, Status
from proxy.errors import FailoverError
from proxy.logs import log_event
from routing.topology import NodeState, Role, Snapshot

# Connect, Request and Status are re-exported: App imports its failover names from here.
__all__ = ["ClusterFailover", "Connect", "Request", "ShardRequest", "Status", "parse",
           "run_failover"]  # fmt: skip

log = logging.getLogger("georedis.failover")

_POLL_S = 0.01
_MAPPED_S = 2.0  # how long the proxy's own map may take to show the new master


@dataclass(frozen=True, slots=True)
class ShardRequest(Request):
    """A request that named a shard (`SHARD <index>`): cluster mode only."""

    shard: int | None = None


def parse(args: list[bytes]) -> Request:
    """`failover.parse`'s words, plus `SHARD <index>` anywhere among them (ValueError: the
    usage). Without SHARD the request is the standalone one, unchanged."""
    rest: list[bytes] = []
    shard: int | None = None
    i = 0
    while i < len(args):
        word = args[i].upper()
        if word == b"SHARD" and i + 1 < len(args) and shard is None:
            shard = int(args[i + 1])
            if shard < 0:
                raise ValueError
            i += 2
        elif word in (b"TO", b"TIMEOUT") and i + 1 < len(args):
            rest += args[i : i + 2]  # its value is not a keyword, whatever it says
            i += 2
        else:
            rest.append(args[i])
            i += 1
    req = failover.parse(rest)
    return req if shard is None else ShardRequest(req.force, req.to, req.timeout_ms, shard)


async def run_failover(host: FailoverHost, req: Request) -> dict[str, object]:
    """PROXY FAILOVER as this deployment does it: a cluster's, or the standalone one."""
    if host.config.cluster.seeds:
        return await ClusterFailover(host, req).run()
    if isinstance(req, ShardRequest):
        raise FailoverError("SHARD is for cluster mode ([cluster] seeds)")
    return await Failover(host, req).run()


class ClusterFailover:
    """One run of PROXY FAILOVER in cluster mode; `run` returns its reply as a mapping."""

    def __init__(self, host: FailoverHost, req: Request) -> None:
        self.host = host
        self.req = req
        self.loop = asyncio.get_running_loop()
        self._calls = ControlCalls(host.connect)

    async def run(self) -> dict[str, object]:
        started = self.loop.time()
        try:
            index, shard, target = choose(await self.host.refresh(), self.req)
            old = shard.primary
            if not self.req.force and (old is None or shard.primary_error):
                why = shard.primary_error or "no reachable master"
                raise FailoverError(f"shard {index}: {why}; PROXY FAILOVER FORCE promotes "
                                    "a replica without it")  # fmt: skip
            await self._switch(index, target.addr, old.addr if old else None)
            mapped = await self._until_mapped(target.addr)
        finally:
            self._calls.close()
        result: dict[str, object] = {
            "result": "ok",
            "kind": "cluster-force" if self.req.force else "cluster",
            "shard": index,
            "old_primary": str(old.addr) if old else None,
            "new_primary": str(target.addr),
            "new_primary_region": target.region,
            "took_ms": round((self.loop.time() - started) * 1000, 1),
            "map_updated": int(mapped),
        }
        done: dict[str, Any] = {k: v for k, v in result.items() if k != "result"}
        log_event(log, "failover_done", **done)
        return result

    async def _switch(self, index: int, target: Address, old: Address | None) -> None:
        role = (await self._calls.info(target)).get("role")
        if role != "slave":  # the map may be a round old: the node itself decides
            raise FailoverError(f"{target} is not a replica (it says role {role})")
        force = ("FORCE",) if self.req.force else ()
        await self._calls.call(target, "CLUSTER", "FAILOVER", *force)
        log_event(log, "failover_cluster_asked", shard=index, node=str(target),
                  force=self.req.force)  # fmt: skip
        await self._until_switched(index, target, old)

    async def _until_switched(self, index: int, target: Address, old: Address | None) -> None:
        """Both nodes say so: the target is a master, and the old master (if it answers;
        without FORCE it must) follows someone. Redis goes on by itself past our bound."""
        cfg = self.host.config.failover
        within_ms = self.req.timeout_ms or cfg.hold_ms
        deadline = self.loop.time() + within_ms / 1000
        new_role, old_role = "?", "?"
        while True:
            new_role = await self._role(target)
            old_role = await self._role(old) if old is not None else "-"
            if new_role == "master" and (old_role == "slave" or
                                         (self.req.force and old_role != "master")):  # fmt: skip
                return
            if self.loop.time() > deadline:
                raise FailoverError(
                    f"shard {index}: {target} says role {new_role} and the old master "
                    f"{old} says role {old_role} after {within_ms} ms; Redis may still "
                    "finish the failover"
                )
            await asyncio.sleep(_POLL_S)

    async def _until_mapped(self, target: Address) -> bool:
        """The proxy's own map shows the new master (a MOVED would tell it too, later)."""
        # The supervisor of workers has no such door; its probe round reads the map
        # anyway once a shard's master is not the map's.
        ask = getattr(self.host, "refresh_cluster_map", None)
        if callable(ask):
            ask()
        deadline = self.loop.time() + _MAPPED_S
        while self.loop.time() < deadline:
            snap = await self.host.refresh()
            if any(_serves(s, target) for s in snap.shards):
                return True
            await asyncio.sleep(_POLL_S)
        log.warning("%s is a master, but the slot map does not show it yet", target)
        return False

    async def _role(self, addr: Address) -> str:
        try:
            return (await self._calls.info(addr)).get("role", "?")
        except FailoverError as e:
            return f"unknown ({e.why})"


# ---------------------------------------------------------------------- choosing (pure)


def choose(snap: Snapshot, req: Request) -> tuple[int, Snapshot, NodeState]:
    """The shard (its index and snapshot) and the replica to promote; FailoverError when
    the request names none that fits."""
    if not snap.shards:
        raise FailoverError("the cluster slot map is not read yet")
    index = req.shard if isinstance(req, ShardRequest) else None
    if index is None:
        if req.to is None or ":" not in req.to:
            raise FailoverError(
                "in cluster mode PROXY FAILOVER takes SHARD <index> [TO <host:port>|<region>], "
                "or TO <host:port> of a replica"
            )
        addr = _address(req.to)
        found = [i for i, s in enumerate(snap.shards) if s.node(addr) is not None]
        if not found:
            raise FailoverError(f"{req.to} is not a node of the cluster map")
        index = found[0]
    if index >= len(snap.shards):
        raise FailoverError(f"unknown shard {index}: the cluster map has "
                            f"{len(snap.shards)} (0-{len(snap.shards) - 1})")  # fmt: skip
    shard = snap.shards[index]
    return index, shard, _replica(shard, index, req)


def _replica(shard: Snapshot, index: int, req: Request) -> NodeState:
    to = req.to
    if to is not None and ":" in to:
        node = shard.node(_address(to))
        if node is None:
            raise FailoverError(f"{to} is not a node of shard {index}")
        if node.role is not Role.REPLICA:
            raise FailoverError(f"{to} is not a replica of shard {index} "
                                f"(role {node.role.value})")  # fmt: skip
        return node
    ready = [n for n in shard.nodes if n.up and n.role is Role.REPLICA and not n.loading
             and (n.eligible or req.force)]  # fmt: skip
    if to is not None:
        ready = [n for n in ready if n.region == to]
    if not ready:
        kind = "reachable" if req.force else "eligible"
        where = f" in region '{to}'" if to is not None else ""
        raise FailoverError(f"shard {index} has no {kind} replica{where}")
    inf = float("inf")
    return min(ready, key=lambda n: (inf if n.lag_ms is None else n.lag_ms, -n.offset))


def _serves(shard: Snapshot, addr: Address) -> bool:
    return shard.primary is not None and shard.primary.addr == addr and not shard.primary_error


def _address(to: str) -> Address:
    host, _, port = to.rpartition(":")
    if not host or not port.isdigit():
        raise FailoverError(f"{to} is not host:port")
    return Address(host.strip("[]"), int(port))
