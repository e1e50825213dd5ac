"""CLIENT TRACKING through a proxy: client-side caching with reads served by replicas.

Redis' tracking remembers which keys a *connection* read, but georedis' clients share
backend connections, and their reads land on replicas. So georedis keeps the table
itself, per node, and learns what changed from the nodes:

- one connection per node (RESP3, `CLIENT TRACKING ON BCAST`: every key that changes on
  that node is pushed to it, writes applied from the replication stream included) is
  opened when a tracking client first reads from that node (`Tracker`);
- a tracking client's read (default mode) records its keys (from Redis 7's key
  specifications) under the node that served it; OPTIN records only after CLIENT CACHING
  YES, OPTOUT not after CLIENT CACHING NO;
- a key pushed by node N invalidates it for the clients that read it from N (once: the
  entry goes, as in Redis); BCAST clients get every key under their prefixes changed on
  the node their reads go to; a flush (null) invalidates everything read there;
- NOLOOP: a client's own write of a key drops its entry for that key unannounced (Redis
  skips the writer and deletes the entry the same way);
- a push goes behind the replies the client is still owed, so a read's reply is never
  overtaken by the invalidation of what it read (the client caches, then drops).

Delivery is Redis': `>2 invalidate [keys]` to a RESP3 client itself; with REDIRECT <id>
a `message __redis__:invalidate [keys]` to that georedis client (RESP2 clients must
redirect, as with Redis). A lost node connection invalidates everything read there.
The issue asks for the invalidation within the replica's lag plus 10 ms: the push comes
as the write is applied on the node that served the read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Protocol

import hiredis

from config.model import Address
from proxy.backend.connection import DISCARD, BackendConnection
from proxy.backend.pool import Pools
from proxy.errors import BackendError
from proxy.logs import log_event
from proxy.resp.replies import encode_bulk
from proxy.resp.requests import pack
from proxy.server.client import ClientState
from proxy.stats import CLASS_OTHER

log = logging.getLogger("georedis.session")

_TRACK_ALL = pack([b"CLIENT", b"TRACKING", b"ON", b"BCAST"])
_INVALIDATE = b"$10\r\ninvalidate\r\n"
_CHANNEL = b"$20\r\n__redis__:invalidate\r\n"


class Tracked(Protocol):
    """A client connection, as invalidations reach it (a `Session`)."""

    state: ClientState
    closing: bool

    @property
    def subscribed(self) -> bool: ...

    def reply_now(self, data: bytes, cls: int, now: float) -> None: ...

    def mark_dirty(self) -> None: ...


class Tracker:
    """One node's BCAST tracking connection and who read what from that node."""

    __slots__ = ("addr", "conn", "keys")

    def __init__(self, addr: Address, conn: BackendConnection) -> None:
        self.addr = addr
        self.conn = conn
        self.keys: dict[bytes, set[int]] = {}


class Tracking:
    __slots__ = ("_clients", "_now", "_pools", "_sessions", "trackers")

    def __init__(self, pools: Pools, sessions: Mapping[int, Tracked],
                 now: Callable[[], float]) -> None:  # fmt: skip
        self._pools = pools
        self._sessions = sessions
        self._now = now
        self.trackers: dict[str, Tracker] = {}
        self._clients: dict[int, Tracked] = {}  # tracking clients, by georedis id

    # ------------------------------------------------------------------ clients

    def enable(self, c: Tracked) -> None:
        self._clients[c.state.id] = c

    def disable(self, c: Tracked) -> None:
        """TRACKING OFF, RESET, or gone: its entries are dropped."""
        if self._clients.pop(c.state.id, None) is None:
            return
        cid = c.state.id
        for t in self.trackers.values():
            for key in [k for k, ids in t.keys.items() if cid in ids]:
                self._drop(t, key, cid)

    def read(self, c: Tracked, keys: list[bytes], node: str, addr: Address) -> None:
        """A tracking client's read of `keys`, served by `node`."""
        t = self._tracker(node, addr)
        if t is None:
            return
        cid = c.state.id
        for key in keys:
            t.keys.setdefault(key, set()).add(cid)

    def wrote(self, c: Tracked, keys: list[bytes]) -> None:
        """NOLOOP: the client's own write of `keys` is not announced to it."""
        cid = c.state.id
        for t in self.trackers.values():
            for key in keys:
                self._drop(t, key, cid)

    def ensure(self, node: str, addr: Address) -> None:
        """A BCAST client reads from `node`: its changes must be heard."""
        self._tracker(node, addr)

    @staticmethod
    def _drop(t: Tracker, key: bytes, cid: int) -> None:
        ids = t.keys.get(key)
        if ids is not None:
            ids.discard(cid)
            if not ids:
                del t.keys[key]

    # ------------------------------------------------------------------ nodes

    def _tracker(self, node: str, addr: Address) -> Tracker | None:
        t = self.trackers.get(node)
        if t is not None:
            return t
        try:
            conn = self._pools[addr].dedicated(3, 0)
        except (BackendError, KeyError) as e:
            log_event(log, "tracking_connection_failed", node=node, error=str(e))
            return None
        t = self.trackers[node] = Tracker(addr, conn)
        conn.send(_TRACK_ALL, DISCARD)
        conn.push_sink = lambda reply: self._pushed(t, reply)
        closed = conn.on_close

        def on_close(c: BackendConnection, err: BackendError) -> None:
            if closed is not None:
                closed(c, err)
            self._lost(t)

        conn.on_close = on_close
        return t

    def _lost(self, t: Tracker) -> None:
        """The node's tracking connection died: what was read there may be stale."""
        if self.trackers.get(str(t.addr)) is t:
            del self.trackers[str(t.addr)]
        self._flush(t)

    def close(self) -> None:
        for t in list(self.trackers.values()):
            t.conn.close()

    # ------------------------------------------------------------------ invalidations

    def _pushed(self, t: Tracker, reply: bytes) -> None:
        """`>2 invalidate [keys]` (or a null array: a flush) from node `t`."""
        keys = _invalidated(reply)
        if keys is None:
            self._flush(t)
            return
        out: dict[int, list[bytes]] = {}
        for key in keys:
            for cid in t.keys.pop(key, ()):
                out.setdefault(cid, []).append(key)
        for c in self._clients.values():
            opts = c.state.tracking
            if opts is not None and opts.bcast and self._reads_from(c, t):
                hit = [k for k in keys if not opts.prefixes or k.startswith(opts.prefixes)]
                if hit:
                    out.setdefault(c.state.id, []).extend(hit)
        for cid, ks in out.items():
            self._send(cid, ks)

    def _reads_from(self, c: Tracked, t: Tracker) -> bool:
        st = c.state
        return st.tracking_node in ("", str(t.addr))

    def _flush(self, t: Tracker) -> None:
        ids = {cid for s in t.keys.values() for cid in s}
        t.keys.clear()
        for c in self._clients.values():
            opts = c.state.tracking
            if opts is not None and opts.bcast and self._reads_from(c, t):
                ids.add(c.state.id)
        for cid in ids:
            self._send(cid, None)

    def _send(self, cid: int, keys: list[bytes] | None) -> None:
        c = self._clients.get(cid)
        opts = c.state.tracking if c is not None else None
        if c is None or opts is None:
            return
        target = self._sessions.get(opts.redirect) if opts.redirect else c
        if target is None or target.closing:
            return
        body = (
            b"_\r\n"
            if keys is None
            else b"*%d\r\n" % len(keys) + b"".join(encode_bulk(k) for k in keys)
        )
        if opts.redirect or target.state.proto != 3:
            if target.state.proto != 3 and not target.subscribed:
                return  # Redis sends a RESP2 client only the pub/sub message
            head = b">3\r\n" if target.state.proto == 3 else b"*3\r\n"
            if keys is None and target.state.proto != 3:
                body = b"*-1\r\n"
            data = head + b"$7\r\nmessage\r\n" + _CHANNEL + body
        else:
            data = b">2\r\n" + _INVALIDATE + body
        _behind_replies(target, data, self._now())


def _behind_replies(c: Tracked, data: bytes, now: float) -> None:
    """A push queued after the replies `c` is owed (a reply of a read must not be
    overtaken by the invalidation of what it read), or written at once."""
    c.reply_now(data, CLASS_OTHER, now)
    c.mark_dirty()


def _invalidated(reply: bytes) -> list[bytes] | None:
    """The keys of an `invalidate` push; None for a flush (null)."""
    reader = hiredis.Reader()
    reader.feed(reply)
    value = reader.gets()
    if not isinstance(value, list) or len(value) != 2 or value[0] != b"invalidate":
        return []
    keys = value[1]
    return None if keys is None else [k for k in keys if isinstance(k, bytes)]
