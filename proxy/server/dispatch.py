"""The kinds `Session.dispatch` does not route itself (plain reads, writes and local
commands it does): those that create or use an attachment (`attaching`: transactions,
blocking commands, pub/sub), and those no attachment owns (`elsewhere`: scripts, the
script and CONFIG GET broadcasts, SCAN cursors, PROXY verbs, refusals)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from proxy.errors import BackendError, Internal, NoPrimary, Refused, reply_for
from proxy.resp.replies import OK, encode_error
from proxy.resp.requests import pack
from proxy.server import (
    blocking,
    clustertx,
    configset,
    cursors,
    local,
    masking,
    pubsubcount,
    scripts,
    subscription,
    transaction,
)
from proxy.server.blocking import Blocking
from proxy.server.clustertx import Deferred
from proxy.server.forwarding import Forwarding
from proxy.server.host import Client, Router
from proxy.server.slot import LONG, NO_DEADLINE, READ, Slot
from proxy.server.subscription import Subscription
from proxy.server.transaction import Transaction
from proxy.stats import CLASS_ADMIN, CLASS_OTHER, CLASS_READ, CLASS_WRITE
from routing.commands import CommandInfo, Kind, refusal
from routing.select import NO_REQUIREMENTS


class Attaching(Client, Protocol):
    """The session as the owner of its attachments."""

    fwd: Forwarding
    tx: Transaction | Deferred | None
    blocked: Blocking | None
    sub: Subscription | None


def attaching(s: Attaching, args: list[bytes], info: CommandInfo, now: float) -> None:
    kind, stats = info.kind, s.host.stats
    if kind == Kind.LOCAL:  # PING while subscribed
        stats.commands[CLASS_OTHER] += 1
        if s.sub is not None and s.state.proto == 2:
            s.sub.send(args)  # RESP2 subscribed PING: Redis answers with a push
        else:
            s.reply_now(local.handle(s, args, info.name), CLASS_OTHER, now)
    elif kind == Kind.TX:
        s.tx = (clustertx.begin if s.host.topo.shards else transaction.begin)(s, args, info, now)
    elif kind == Kind.BLOCKING:
        s.blocked = blocking.start(s, s.fwd, args, info, now)
    elif kind == Kind.SUBSCRIBE:
        stats.commands[CLASS_OTHER] += 1
        if s.sub is not None:
            s.sub.send(args)
        else:
            s.sub = subscription.start(s, s.fwd, args, now)
    else:
        elsewhere(s, s.fwd, args, info, now)


def _later(client: Client, args: list[bytes], reply: Awaitable[bytes], now: float) -> None:
    """A PROXY verb that takes time: its reply waits in the queue, in order, while the
    client's later commands wait behind it (and other clients are served)."""
    slot = Slot(client, [args], CLASS_ADMIN, NO_DEADLINE, now, "", None)
    client.queue.append(slot)

    async def answer() -> None:
        try:
            data = await reply
        except Exception as e:  # a bug must still get the client one reply
            data = reply_for(Internal(f"{type(e).__name__}: {e}"))
        slot.deliver(data)

    client.host.loop.create_task(answer())


def deny(client: Client, tx: Transaction | Deferred | None, error: str, now: float) -> None:
    """NOAUTH / NOPERM, answered before anything is sent; inside MULTI the transaction
    is doomed (EXEC answers EXECABORT), as Redis does when queueing fails."""
    if tx is not None and tx.in_multi:
        tx.doomed = True
    client.host.stats.commands[CLASS_OTHER] += 1
    client.reply_now(encode_error(error), CLASS_OTHER, now)


def elsewhere(client: Client, router: Router, args: list[bytes], info: CommandInfo,
              now: float) -> None:  # fmt: skip
    kind, host = info.kind, client.host
    if kind == Kind.SCAN:
        cursors.scan(client, router, args, info.name, now)
    elif kind == Kind.MONITOR:
        host.stats.commands[CLASS_OTHER] += 1
        host.monitors.add(client, (x.state for x in host.sessions.values()))
        client.reply_now(OK, CLASS_OTHER, now)
    elif kind == Kind.AS_IS:
        as_is(client, args, now)
    elif kind == Kind.CONFIG_SET:
        configset.config_set(client, args, now)
    elif kind == Kind.PUBSUB:
        if info.name in ("publish", "spublish"):
            pubsubcount.publish(client, router, args, now)
        else:
            pubsubcount.pubsub(client, args, now)
    elif kind == Kind.RUN_SCRIPT:
        if "readonly" in info.flags:  # EVAL_RO, EVALSHA_RO, FCALL_RO
            read_script(client, router, args, now)
        else:
            router.write(args, now, CLASS_WRITE, LONG)
    elif kind == Kind.SCRIPT:
        scripts.copy_to_replicas(client, router, args, now)
    elif kind == Kind.KILL:
        scripts.kill_everywhere(client, args, now)
    elif kind == Kind.MASKED:
        masking.config_get(client, router, args, now)
    elif kind == Kind.ADMIN:
        host.stats.commands[CLASS_ADMIN] += 1
        reply = host.admin(client.state, args)
        if isinstance(reply, bytes):
            client.reply_now(reply, CLASS_ADMIN, now)
        else:
            _later(client, args, reply, now)
    else:  # REFUSED
        host.stats.commands[CLASS_OTHER] += 1
        why = refusal(info.name, host.table.refuse)
        client.reply_now(reply_for(Refused(why)), CLASS_OTHER, now)


def as_is(client: Client, args: list[bytes], now: float) -> None:
    """To the primary, on the client's shared connection, in a slot with no flags: its
    reply passes as it is (DEBUG ERROR "READONLY x" is not a demoted primary)."""
    host = client.host
    host.stats.commands[CLASS_OTHER] += 1
    primary = host.topo.primary
    if primary is None:
        client.reply_now(reply_for(NoPrimary(host.topo.primary_error)), CLASS_OTHER, now)
        return
    pool = host.pools[primary.addr]
    slot = Slot(client, [args], CLASS_OTHER, LONG, now, pool.name, pool.hist)
    client.queue.append(slot)
    try:
        pool.shared(client.state.id, client.state.proto, client.state.db).send(pack(args), slot)
    except BackendError as e:
        slot.fail(e)


def read_script(client: Client, router: Router, args: list[bytes], now: float) -> None:
    """EVAL_RO, EVALSHA_RO, FCALL_RO: the read path, under the script deadline.

    A replica refuses a script that may write (a function without the no-writes flag, a
    script whose shebang does not say no-writes) with -READONLY, before the check that
    Redis makes on a primary, where it answers, without running it, "ERR Can not execute
    a script with write flag using *_ro command.". A replica's -READONLY goes to the
    primary once (`_ReadScript`), so that the client reads Redis' own words; a read
    that the primary serves anyway costs nothing more."""
    host = client.host
    if host.topo.shards:  # cluster mode: the key's shard, by the cluster's read path
        router.read(args, now, LONG)
        return
    node = router.read_node(NO_REQUIREMENTS)
    if node is None or node is host.topo.primary:
        router.read(args, now, LONG)
        return
    host.stats.commands[CLASS_READ] += 1
    router.count_read(node, 1)
    pool = host.pool_of.get(id(node)) or host.pools[node.addr]
    slot = Slot(client, [args], CLASS_READ, READ | LONG, now, pool.name, pool.hist)
    client.queue.append(slot)
    st = client.state
    slot.via = st.db << 2 | st.proto  # as forwarding's: a retry goes as it was sent
    try:
        conn = pool.shared(st.id, st.proto, st.db)
    except BackendError as e:
        slot.fail(e)  # retried elsewhere, as any read
        return
    conn.send(pack(args), _ReadScript(client, slot))


class _ReadScript:
    """The backend `Waiter` of a read script sent to a replica."""

    __slots__ = ("client", "slot")

    def __init__(self, client: Client, slot: Slot) -> None:
        self.client = client
        self.slot = slot

    @property
    def flags(self) -> int:
        return self.slot.flags  # LONG: the node's deadline is the script's while it runs

    def deliver(self, reply: bytes) -> bool:
        if not (reply.startswith(b"-READONLY") and self._to_primary()):
            self.slot.deliver(reply)
        return True

    def fail(self, err: BackendError) -> None:
        self.slot.fail(err)

    def _to_primary(self) -> bool:
        host, slot = self.client.host, self.slot
        node = host.topo.primary
        if node is None or self.client.gone:
            return False
        pool = host.pool_of.get(id(node)) or host.pools[node.addr]
        try:
            conn = pool.shared(self.client.state.id, slot.via & 3, slot.via >> 2)
        except BackendError:
            return False
        slot.node, slot.hist = pool.name, pool.hist
        conn.send(pack(slot.cmds[0]), slot)  # whatever it answers is the client's
        return True
