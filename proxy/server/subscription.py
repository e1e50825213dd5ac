"""A client's pub/sub connection: its own backend connection, pushes passed through.

SUBSCRIBE-family commands leave on a dedicated connection to the nearest eligible
replica (Redis replicates PUBLISH). Everything that connection sends back — subscribe
confirmations and messages, RESP2 arrays or RESP3 pushes — is forwarded as it comes, but
never ahead of replies the client is still owed: those go first (`backlog`).

A subscriber that stops reading is disconnected once more than the hard limit of
`[proxy] client_output_buffer_limit_pubsub` (Redis' default, 32mb) waits for it, instead
of being buffered without bound.
"""

from __future__ import annotations

import logging

from proxy.backend.connection import BackendConnection
from proxy.errors import BackendError, reply_for
from proxy.logs import log_event
from proxy.resp.requests import pack
from proxy.server.host import Client, Router
from proxy.server.local import unsubscribe_reply
from proxy.stats import CLASS_OTHER
from routing.select import NO_REQUIREMENTS

log = logging.getLogger("georedis.session")

# The limit is checked every this many pushed bytes, not per message.
CHECK_EVERY_BYTES = 1 << 20


def start(client: Client, router: Router, args: list[bytes], now: float) -> Subscription | None:
    """The first SUBSCRIBE-family command: a connection of its own to the nearest
    eligible node. An UNSUBSCRIBE before any subscription is answered here, as Redis
    would; None when no subscription was made."""
    name = args[0].lower()
    if name.startswith(b"un") or name.startswith(b"pun") or name.startswith(b"sun"):
        client.reply_now(unsubscribe_reply(args, client.state.proto), CLASS_OTHER, now)
        return None
    node = router.read_node(NO_REQUIREMENTS)
    if node is None:
        client.reply_now(reply_for(router.no_read_node()), CLASS_OTHER, now)
        return None
    st = client.state
    try:
        conn = client.host.pools[node.addr].dedicated(st.proto, st.db)
    except BackendError as e:
        client.reply_now(reply_for(e), CLASS_OTHER, now)
        return None
    sub = Subscription(client, conn)
    sub.send(args)
    return sub


class Subscription:
    __slots__ = ("backlog", "conn", "pushed", "session")

    def __init__(self, session: Client, conn: BackendConnection) -> None:
        self.session = session
        self.conn = conn
        self.backlog: list[bytes] = []  # pushes waiting behind replies still owed
        self.pushed = 0  # bytes pushed since the last limit check
        conn.push_sink = self.on_push
        pool_closed = conn.on_close  # the pool's bookkeeping runs too (no leak)

        def on_close(c: BackendConnection, err: BackendError) -> None:
            if pool_closed is not None:
                pool_closed(c, err)
            self.lost(err)

        conn.on_close = on_close

    def send(self, args: list[bytes]) -> None:
        """A command whose answers come back as pushes (no reply slot)."""
        self.conn.send_raw(pack(args))

    def on_push(self, reply: bytes) -> None:
        s = self.session
        self.pushed += len(reply)
        if self.pushed > CHECK_EVERY_BYTES:
            self.pushed = 0
            if self.over_limit():
                return
        if s.queue:
            self.backlog.append(reply)
            return
        s.out.append(reply)
        s.mark_dirty()

    def release_backlog(self, out: list[bytes]) -> None:
        """The client's queue emptied: the pushes that waited go out now, in order."""
        if self.backlog:
            out.extend(self.backlog)
            self.backlog.clear()

    def over_limit(self) -> bool:
        s = self.session
        pending = sum(len(r) for r in self.backlog)
        if s.transport is not None:
            pending += s.transport.get_write_buffer_size()
        hard = s.host.config.proxy.client_output_buffer_limit_pubsub.hard
        if not hard or pending <= hard:
            return False
        log_event(log, "pubsub_client_over_limit", peer=s.state.peer, buffered=pending)
        self.backlog.clear()
        s.close_now(abort=True)
        return True

    def lost(self, err: BackendError) -> None:
        """Subscriptions died with the backend connection; like a Redis restart, the
        client must reconnect and subscribe again."""
        self.session.subscription_lost(self, reply_for(err))

    def close(self) -> None:
        self.backlog.clear()
        self.conn.close()
