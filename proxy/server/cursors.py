"""SCAN, SSCAN, HSCAN, ZSCAN: each cursor continues on the node that issued it.

A cursor means something only on its own node (`routing/cursors.py` says why, and how
the node rides in the cursor). A scan's first call (cursor 0) is a read like any other:
the client's replica, or the primary while read-your-writes needs it. The reply's
cursor is handed out with that node's number in it; a call with such a cursor goes to
that node, the number taken off, whatever the client's reads would choose now (under
read-your-writes too: a scan shows what its node holds, and SCAN promises nothing of
elements written during the scan). Any connection may continue it, to any georedis with
the same config.

Only the reply's first element is rewritten, in the reply's bytes; the elements are
forwarded as they came. RESP2 and RESP3 replies are alike here (an array of the cursor
and the elements). Errors and cursor 0 (the end) pass unchanged.

The cursor's node down, or no configured node with its number (the config changed): an
error that says to start again from 0. Another node would take the cursor as a place
in its own, differently seeded table, and the scan would miss keys without a word,
which is what this module prevents. A first call whose node failed or is loading is
retried once elsewhere, as reads are; a continued one cannot be.

Inside MULTI or WATCH a scan goes to the client's pinned primary connection
(`transaction.py`) and its cursors come back as Redis wrote them: `continued` sends
such a cursor to the primary.
"""

from __future__ import annotations

from collections.abc import Callable

from config.model import Address
from proxy.errors import (
    BackendError,
    ClientError,
    GeoredisError,
    NoBackend,
    NotSupported,
    reply_for,
)
from proxy.resp.requests import pack
from proxy.server import shards
from proxy.server.host import Client, Host, Router
from proxy.server.slot import Slot
from proxy.stats import CLASS_READ
from routing import cursors
from routing.select import NO_REQUIREMENTS, ReadRequirements
from routing.topology import NodeState

_HEAD = b"*2\r\n$"  # a scan reply: the cursor (a bulk string) first
_LOADING = b"-LOADING"
_AGAIN = "start the scan again from cursor 0"


def scan(client: Client, router: Router, args: list[bytes], name: str, now: float) -> None:
    """One call of the SCAN family, `name` its command name."""
    at = 1 if name == "scan" else 2  # SCAN cursor ...; SSCAN key cursor ...
    if len(args) <= at:
        router.read(args, now, 0)  # Redis answers the arity error
        return
    client.host.stats.commands[CLASS_READ] += 1
    if client.host.topo.shards:
        return _cluster_scan(client, args, at, now)
    where, cursor = cursors.continued(args[at])
    node = _node_for(client, router, where)
    if not isinstance(node, NodeState):
        client.reply_now(reply_for(node), CLASS_READ, now)
        return
    if cursor is not args[at]:
        args = [*args[:at], cursor, *args[at + 1 :]]
    router.count_read(node, 1)
    slot = Slot(client, [args], CLASS_READ, 0, now, "", None)
    client.queue.append(slot)
    _Cursor(client, router, slot, where == cursors.FRESH).send(node)


def _node_for(client: Client, router: Router, where: int) -> NodeState | GeoredisError:
    """The node a call goes to, or why there is none (`routing.cursors.continued`)."""
    snap = client.host.topo
    if where == cursors.FRESH:
        return router.read_node(NO_REQUIREMENTS) or router.no_read_node()
    if where == cursors.PRIMARY:
        if snap.primary is None:
            return NoBackend(f"no primary for this SCAN cursor, which is the primary's; {_AGAIN}")
        return snap.primary
    addr = cursors.address_of(where, configured(client.host))
    if addr is None:
        return ClientError(f"this SCAN cursor names no node georedis knows; {_AGAIN}")
    node = snap.node(addr)
    if node is None or not node.up:
        return NoBackend(f"the node of this SCAN cursor ({addr}) is down; {_AGAIN}")
    return node


def configured(host: Host) -> tuple[Address, ...]:
    """The nodes in `[[regions]]` order: what cursors number them by."""
    return tuple(addr for _, addr in host.config.all_nodes())


class _Cursor:
    """The backend `Waiter` of one call: hands the reply on with its cursor carrying the
    number of the node that answered."""

    __slots__ = ("client", "fresh", "node", "number", "router", "slot")

    def __init__(self, client: Client, router: Router, slot: Slot, fresh: bool) -> None:
        self.client = client
        self.router = router
        self.slot = slot
        self.fresh = fresh  # cursor 0: any node may answer (once more, if one fails)
        self.node: Address | None = None
        self.number: int | None = None

    def send(self, node: NodeState) -> None:
        host, slot = self.client.host, self.slot
        pool = host.pool_of.get(id(node)) or host.pools[node.addr]
        self.node = node.addr
        self.number = cursors.number_of(node.addr, configured(host))
        slot.node, slot.hist = pool.name, pool.hist
        st = self.client.state
        try:
            conn = pool.shared(st.id, st.proto, st.db)
        except BackendError as e:
            self.fail(e)
            return
        conn.send(pack(slot.cmds[0]), self)

    def deliver(self, reply: bytes) -> bool:
        if reply.startswith(_LOADING) and self._again(self.node):
            return True  # a node loading its data answers nothing yet: another one will
        tagged = retag(reply, self.number)
        if tagged is None:
            why = f"a SCAN cursor of 2**40 or more (from {self.node})"
            tagged = reply_for(NotSupported(f"{why} is not supported"))
        self.slot.deliver(tagged)
        return True

    def fail(self, err: BackendError) -> None:
        if not self._again(err.addr):
            self.slot.fail(err)  # a slot without READ is not retried: the error

    def _again(self, exclude: Address | None) -> bool:
        """A first call whose node failed: sent once more, to another node."""
        if not self.fresh or self.client.gone:
            return False
        self.fresh = False
        node = self.router.read_node(ReadRequirements(exclude=exclude))
        if node is None or node.addr == exclude:
            return False
        self.client.host.stats.retries += 1
        self.send(node)
        return True


def retag(reply: bytes, number: int | None) -> bytes | None:
    """A scan reply with its cursor tagged for node `number` (`routing.cursors.tag`).

    Anything else (an error, a cursor 0, what is not a scan reply) comes back as it is;
    None when the cursor cannot carry the node. One copy of the elements, no decoding."""
    if number is None:
        return rewrite(reply, lambda value: None if value else 0)
    return rewrite(reply, lambda value: cursors.tag(value, number))


def rewrite(reply: bytes, new: Callable[[int], int | None]) -> bytes | None:
    """A scan reply with its cursor replaced by `new(cursor)` (None: it cannot be)."""
    if not reply.startswith(_HEAD):
        return reply
    end = reply.find(b"\r\n", 5)
    size = reply[5:end]
    if not size.isdigit():
        return reply
    start = end + 2
    stop = start + int(size)
    cursor = reply[start:stop]
    if not cursor.isdigit() or reply[stop : stop + 2] != b"\r\n":
        return reply
    value = int(cursor)
    tagged = new(value)
    if tagged is None:
        return None
    if tagged == value:
        return reply
    text = b"%d" % tagged
    return b"".join((b"*2\r\n$%d\r\n%s\r\n" % (len(text), text), memoryview(reply)[stop + 2 :]))


# ---------------------------------------------------------------------- cluster mode


def _cluster_scan(client: Client, args: list[bytes], at: int, now: float) -> None:
    """A cluster: SSCAN, HSCAN, ZSCAN on their key's master, cursors as Redis wrote them
    (a master is the one node whose cursor outlives a replica's choice); SCAN walks the
    shards' masters in order, the shard in the cursor (`routing.cursors.in_shard`)."""
    host = client.host
    snap = host.topo
    if at == 2:
        node = shards.shard_of(snap, host.table.lookup(args), args).primary
        if node is None:
            client.reply_now(reply_for(NoBackend("no master for this key's slot")), CLASS_READ, now)
            return
        pool = host.pools[node.addr]
        keyed = shards.cluster_slot(client, client, [args], CLASS_READ, 0, now, pool)
        client.queue.append(keyed)
        shards.send_to(keyed, pool)
        return
    where = cursors.of_shard(args[1])
    if where is None or where[0] >= len(snap.shards):
        why = f"this SCAN cursor names no shard of the cluster; {_AGAIN}"
        client.reply_now(reply_for(ClientError(why)), CLASS_READ, now)
        return
    index, own = where
    node = snap.shards[index].primary
    if node is None:
        client.reply_now(
            reply_for(NoBackend(f"no master in shard {index}; {_AGAIN}")), CLASS_READ, now
        )
        return
    pool = host.pools[node.addr]
    slot = Slot(client, [[args[0], own, *args[2:]]], CLASS_READ, 0, now, pool.name, pool.hist)
    client.queue.append(slot)
    st = client.state
    try:
        conn = pool.shared(st.id, st.proto, st.db)
    except BackendError as e:
        slot.deliver(reply_for(e))
        return
    conn.send(pack(slot.cmds[0]), _ShardCursor(slot, index, len(snap.shards)))


class _ShardCursor:
    """A cluster SCAN's reply, its cursor made to carry the shard (or the next shard's start)."""

    __slots__ = ("count", "index", "slot")

    def __init__(self, slot: Slot, index: int, count: int) -> None:
        self.slot, self.index, self.count = slot, index, count

    def deliver(self, reply: bytes) -> bool:
        tagged = rewrite(reply, lambda value: cursors.in_shard(self.index, value, self.count))
        if tagged is None:
            tagged = reply_for(NotSupported("a SCAN cursor of 2**40 or more is not supported"))
        self.slot.deliver(tagged)
        return True

    def fail(self, err: BackendError) -> None:
        self.slot.deliver(reply_for(err))
