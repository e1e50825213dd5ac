"""PUBLISH's count and PUBSUB's answers, as an application means them.

georedis' subscribers live on replicas (subscription.py), so the primary's answer to
PUBLISH counts none of them, and PUBSUB on one node sees that node's only:
- PUBLISH / SPUBLISH go to the primary as writes; the reply adds this process' clients
  subscribed through a replica to that channel or a matching pattern
  (`channels.Listeners`, kept by the subscriptions). Exact for subscribers that come
  through this georedis process; subscribers of another proxy, or connected to a
  replica directly, are not seen (the README says so).
- PUBSUB CHANNELS / NUMSUB / NUMPAT / SHARDCHANNELS / SHARDNUMSUB ask every node that is
  up (where georedis' subscription connections are, those of every process and proxy)
  and merge: channels united, counts summed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import hiredis

from config.model import Address
from proxy.resp.replies import Value, encode
from proxy.server.gather import ask_all
from proxy.server.host import Client, Router
from proxy.server.shards import ClusterSlot
from proxy.server.slot import Slot
from proxy.stats import CLASS_READ, CLASS_WRITE

_Merge = Callable[[list[object], int], bytes]


def publish(client: Client, router: Router, args: list[bytes], now: float) -> None:
    """PUBLISH/SPUBLISH: the write path, then the count of our own listeners added."""
    queue = client.queue
    last = queue[-1] if queue else None
    router.write(args, now, CLASS_WRITE)
    slot = queue[-1] if queue else None
    if slot is not None and slot is not last and slot.cmds and slot.cmds[0] is args:
        # Same layout: only `deliver` differs (a cluster's slot follows MOVED first).
        slot.__class__ = _ClusterPublished if isinstance(slot, ClusterSlot) else _Published


def _counted(slot: Slot, reply: bytes) -> bytes:
    """The node's count plus this process' own listeners of the channel."""
    args = slot.cmds[0] if slot.cmds else ()
    if reply[:1] != b":" or len(args) != 3:
        return reply
    listeners = cast(Client, slot.session).host.listeners
    channel = args[1]
    if args[0].lower() == b"spublish":
        extra = listeners.count_shard(channel)
    else:
        extra = listeners.count(channel)
    return b":%d\r\n" % (int(reply[1:-2]) + extra)


class _Published(Slot):
    __slots__ = ()

    def deliver(self, reply: bytes) -> bool:
        return Slot.deliver(self, _counted(self, reply))


class _ClusterPublished(ClusterSlot):
    __slots__ = ()

    def deliver(self, reply: bytes) -> bool:
        return ClusterSlot.deliver(self, _counted(self, reply))


def pubsub(client: Client, args: list[bytes], now: float) -> None:
    """PUBSUB <sub> ...: every node that is up, merged (HELP: the primary's alone)."""
    host = client.host
    host.stats.commands[CLASS_READ] += 1
    snap = host.topo
    nodes = [n.addr for n in snap.nodes if n.up]
    sub = args[1].lower() if len(args) > 1 else b""
    if sub not in _MERGE:
        nodes = nodes[:1] if snap.primary is None else [snap.primary.addr]
    slot = Slot(client, [args], CLASS_READ, 0, now, "", None)
    client.queue.append(slot)
    proto = client.state.proto
    merge = _MERGE.get(sub, _first)
    ask_all(client, slot, nodes, args, lambda got: _combine(got, merge, proto))


def _combine(got: list[tuple[Address, bytes]], merge: _Merge, proto: int) -> bytes:
    """Redis' own error if every node refused (an arity error, say); else the merge of
    the nodes that answered."""
    ok = [r for _, r in got if r[:1] != b"-"]
    if not ok:
        return got[0][1] if got else b"*0\r\n"
    values = []
    for r in ok:
        reader = hiredis.Reader()
        reader.feed(r)
        values.append(reader.gets())
    return merge(values, proto)


def _channels(values: list[object], proto: int) -> bytes:
    seen: dict[bytes, None] = {}
    for v in values:
        for ch in cast(list[bytes], v):
            seen.setdefault(ch)
    return encode(cast(Value, list(seen)), proto)


def _numsub(values: list[object], proto: int) -> bytes:
    """Channel, count, ... in the order asked (repeats too): a flat array in RESP3 as
    well, as Redis answers it."""
    firsts = cast(list[object], values[0])
    totals = [0] * (len(firsts) // 2)
    for v in values:
        counts = cast(list[object], v)[1::2]
        for i, n in enumerate(counts[: len(totals)]):
            totals[i] += cast(int, n)
    flat: list[Value] = []
    for ch, n in zip(firsts[0::2], totals, strict=True):
        flat += [cast(bytes, ch), n]
    return encode(flat, proto)


def _numpat(values: list[object], proto: int) -> bytes:
    return encode(sum(cast(int, v) for v in values), proto)


def _first(values: list[object], proto: int) -> bytes:
    return encode(cast(Value, values[0]), proto)


_MERGE: dict[bytes, _Merge] = {
    b"channels": _channels,
    b"shardchannels": _channels,
    b"numsub": _numsub,
    b"shardnumsub": _numsub,
    b"numpat": _numpat,
}
