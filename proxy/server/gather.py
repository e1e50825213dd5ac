"""One command sent to several nodes, their replies combined into the client's one reply.

SCRIPT KILL and FUNCTION KILL (scripts.py), PUBSUB (pubsubcount.py) and CONFIG SET
(configset.py) must reach more than one node, and the client still gets exactly one
reply, in its place in the queue: a slot queued at once and filled when the last node
answered (or failed: a node's failure is its error reply, `reply_for`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from config.model import Address
from proxy.backend.connection import BackendConnection
from proxy.backend.pool import NodePool
from proxy.errors import BackendError, reply_for
from proxy.resp.requests import pack
from proxy.server.host import Client

# The node replies, in the order of the addresses asked: (address, reply).
Combine = Callable[[list[tuple[Address, bytes]]], bytes]


class Answer(Protocol):
    """Where the combined reply goes: the client's slot (or a step before it)."""

    def deliver(self, reply: bytes) -> bool: ...


def ask_all(client: Client, slot: Answer, addrs: Sequence[Address], args: list[bytes],
            combine: Combine, dedicated: bool = False) -> None:  # fmt: skip
    """Send `args` to every node of `addrs` and answer `slot` with `combine` of their
    replies. `dedicated`: each on a connection of its own (RESP2, db 0), given back
    after its reply, for a command that must not queue behind others (a KILL);
    otherwise the client's shared RESP2 connection of each node."""
    gather = Gather(slot, list(addrs), combine)
    data = pack(args)
    host = client.host
    for i, addr in enumerate(addrs):
        pool = host.pools[addr]
        try:
            conn = pool.dedicated(2, 0) if dedicated else pool.shared(client.state.id, 2, 0)
        except BackendError as e:
            gather.add(i, reply_for(e))
            continue
        conn.send(data, _NodeReply(gather, i, pool if dedicated else None, conn))


class Gather:
    __slots__ = ("addrs", "combine", "replies", "slot", "waiting")

    def __init__(self, slot: Answer, addrs: list[Address], combine: Combine) -> None:
        self.slot = slot
        self.addrs = addrs
        self.combine = combine
        self.replies: list[bytes | None] = [None] * len(addrs)
        self.waiting = len(addrs)
        if not addrs:
            slot.deliver(combine([]))

    def add(self, i: int, reply: bytes) -> None:
        self.replies[i] = reply
        self.waiting -= 1
        if self.waiting == 0:
            got = [(a, r) for a, r in zip(self.addrs, self.replies, strict=True) if r is not None]
            self.slot.deliver(self.combine(got))


class _NodeReply:
    """One node's answer (a backend `Waiter`); a dedicated connection goes back after it."""

    __slots__ = ("conn", "gather", "i", "pool")

    def __init__(self, gather: Gather, i: int, pool: NodePool | None,
                 conn: BackendConnection) -> None:  # fmt: skip
        self.gather = gather
        self.i = i
        self.pool = pool
        self.conn = conn

    def deliver(self, reply: bytes) -> bool:
        if self.pool is not None:
            self.pool.release(self.conn, 2, 0, clean=True)
        self.gather.add(self.i, reply)
        return True

    def fail(self, err: BackendError) -> None:
        self.gather.add(self.i, reply_for(err))
