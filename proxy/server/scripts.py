"""Script broadcast: SCRIPT LOAD/FLUSH copied to every replica, KILL sent to every node.

EVALSHA_RO may land on any replica, so SCRIPT LOAD (and FLUSH) goes to the primary as a
write and is copied to every replica that is up (`copy_to_replicas`); the app replays the
scripts it saw to a node that comes back from down (`App._load_scripts`).

SCRIPT KILL and FUNCTION KILL: sent to every node, each on a connection of its own.

A script runs on whichever node its EVAL (or EVAL_RO, FCALL_RO) reached, and while it
runs that node answers nothing else; past Redis' busy threshold, everything but a few
commands gets -BUSY. The kill must reach it even while the health checker holds the node
down or the primary unknown, and it cannot travel on a pooled connection: the script's
own EVAL may be ahead of it there, and Redis reads nothing more from a connection whose
command is running. So it goes to every configured node on a dedicated connection, and
the client gets one reply: OK when any node killed something, else the most telling
error (UNKILLABLE before NOTBUSY).
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy.backend.connection import DISCARD
from proxy.backend.pool import NodePool
from proxy.errors import OWN_PREFIX, BackendError
from proxy.resp.requests import pack
from proxy.server.gather import ask_all
from proxy.server.host import Client, Router
from proxy.server.slot import Slot
from proxy.stats import CLASS_WRITE

# Redis' KILL replies, most telling first; anything else ranks between them.
_OK = b"+OK"
_UNKILLABLE = b"-UNKILLABLE"
_NOTBUSY = b"-NOTBUSY"


def copy_to_replicas(client: Client, router: Router, args: list[bytes], now: float) -> None:
    """SCRIPT LOAD/FLUSH on the primary (the client's reply), copied to every replica
    that is up (replies discarded), so EVALSHA_RO finds the script wherever it lands."""
    router.write(args, now, CLASS_WRITE)
    host = client.host
    snap = host.topo
    data = pack(args)
    for node in snap.nodes:
        if node is snap.primary or not node.up:
            continue
        try:
            host.pools[node.addr].shared(client.state.id, client.state.proto, 0).send(data, DISCARD)
        except BackendError:
            continue
    if args[1].lower() == b"load":
        host.remember_script(args[2] if len(args) > 2 else b"")


def kill_everywhere(session: Client, args: list[bytes], now: float) -> None:
    """Queue one reply slot for the client and send the kill to every node."""
    session.host.stats.commands[CLASS_WRITE] += 1
    app = session.host
    slot = Slot(session, [args], CLASS_WRITE, 0, now, "", None)
    session.queue.append(slot)
    addrs = [addr for _, addr in app.config.all_nodes()]
    ask_all(session, slot, addrs, args, lambda got: best_kill_reply([r for _, r in got]),
            dedicated=True)  # fmt: skip


def best_kill_reply(replies: list[bytes]) -> bytes:
    """OK if any node killed a script; else Redis' own answers (UNKILLABLE, other errors,
    NOTBUSY), and the proxy's "unavailable" only when no node answered at all."""

    def rank(r: bytes) -> int:
        if r.startswith(_OK):
            return 0
        if r.startswith(_UNKILLABLE):
            return 1
        if r.startswith(_NOTBUSY):
            return 3
        return 4 if r.startswith(OWN_PREFIX) else 2

    return min(replies, key=rank) if replies else b"-NOTBUSY No scripts in execution right now.\r\n"


def load_scripts(pool: NodePool, bodies: Iterable[bytes]) -> None:
    """A node back from down (a restart empties its script cache) gets the scripts
    clients loaded through the proxy, so EVALSHA_RO keeps working wherever it lands."""
    for body in bodies:
        try:
            pool.shared(0, 2, 0).send(pack([b"SCRIPT", b"LOAD", body]), DISCARD)
        except BackendError:
            return
