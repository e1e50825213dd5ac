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

Delivery is Redis': `>2 invalidate [keys]` to a RESP3 client (itself, or the REDIRECT
target); a `message __redis__:invalidate [keys]` to a RESP2 one subscribed to that channel
(RESP2 clients must redirect, as with Redis). A lost node connection invalidates
everything read there; so does the moment a new one is ready (reads recorded before it
could hear changes may have missed one). Bounds: at most `MAX_KEYS` keys per node (the
oldest is invalidated past it, as Redis' tracking-table-max-keys does), each client's
keys indexed for its leaving, and the node connections closed when nobody tracks.
The issue asks for the invalidation within the replica's lag plus 10 ms: the push comes
as the write is applied on the node that served the read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Protocol

import hiredis

from config.model import Address
from proxy.backend.connection import BackendConnection
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

    __slots__ = ("addr", "conn", "keys", "ready", "waiting")

    def __init__(self, addr: Address, conn: BackendConnection) -> None:
        self.addr = addr
        self.conn = conn
        self.keys: dict[bytes, set[int]] = {}
        self.ready = False  # Redis answered CLIENT TRACKING ON BCAST
        # CLIENT TRACKING ON replies waiting for that answer (`Tracking.enable`).
        self.waiting: list[Answer] = []


class Answer(Protocol):
    """A reply slot, filled later."""

    def deliver(self, reply: bytes) -> bool: ...


class _Ready:
    """The answer to CLIENT TRACKING ON BCAST (a backend `Waiter`)."""

    __slots__ = ("tracker", "tracking")

    def __init__(self, tracking: Tracking, tracker: Tracker) -> None:
        self.tracking = tracking
        self.tracker = tracker

    def deliver(self, reply: bytes) -> bool:
        self.tracking.on_ready(self.tracker, reply)
        return True

    def fail(self, err: BackendError) -> None:
        pass  # the connection's on_close says it (`_lost`)


MAX_KEYS = 1_000_000


class Tracking:
    __slots__ = ("_by_client", "_clients", "_now", "_pools", "_sessions", "trackers")

    def __init__(self, pools: Pools, sessions: Mapping[int, Tracked],
                 now: Callable[[], float]) -> None:  # fmt: skip
        self._pools = pools
        self._sessions = sessions
        self._now = now
        self.trackers: dict[str, Tracker] = {}
        self._clients: dict[int, Tracked] = {}  # tracking clients, by georedis id
        self._by_client: dict[int, set[tuple[str, bytes]]] = {}  # (node, key) it read

    # ------------------------------------------------------------------ clients

    def enable(self, c: Tracked, node: str = "", addr: Address | None = None) -> Tracker | None:
        """TRACKING ON: the node the client's reads go to (`node`) is heard from now
        on. Its tracker, while not ready yet: the client's OK waits for it (`waiting`),
        so that a client that waits for the OK reads nothing the node is not heard on."""
        self._clients[c.state.id] = c
        if addr is None:
            return None
        c.state.tracking_node = node
        t = self._tracker(node, addr)
        return t if t is not None and not t.ready else None

    def disable(self, c: Tracked) -> None:
        """TRACKING OFF, RESET, or gone: its entries are dropped."""
        cid = c.state.id
        if self._clients.pop(cid, None) is None:
            return
        for node, key in self._by_client.pop(cid, ()):
            t = self.trackers.get(node)
            if t is not None:
                self._drop(t, key, cid)
        if not self._clients:
            self.close()  # nobody tracks: no node's every change to parse

    def read(self, c: Tracked, keys: list[bytes], node: str, addr: Address) -> None:
        """A tracking client's read of `keys`, served by `node`."""
        t = self._tracker(node, addr)
        if t is None:
            return
        cid = c.state.id
        mine = self._by_client.setdefault(cid, set())
        for key in keys:
            t.keys.setdefault(key, set()).add(cid)
            mine.add((node, key))
        while len(t.keys) > MAX_KEYS:
            oldest = next(iter(t.keys))
            self._announce(t, [oldest])

    def wrote(self, c: Tracked, keys: list[bytes]) -> None:
        """NOLOOP: the client's own write of `keys` is not announced to it."""
        cid = c.state.id
        for node, t in self.trackers.items():
            for key in keys:
                self._drop(t, key, cid)
                self._by_client.get(cid, set()).discard((node, key))

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
        conn.send(_TRACK_ALL, _Ready(self, t))
        conn.push_sink = lambda reply: self._pushed(t, reply)
        closed = conn.on_close

        def on_close(c: BackendConnection, err: BackendError) -> None:
            if closed is not None:
                closed(c, err)
            self._lost(t)

        conn.on_close = on_close
        return t

    def on_ready(self, t: Tracker, reply: bytes) -> None:
        """Redis answered TRACKING ON BCAST. Reads recorded before (the first read that
        opened it) were not heard: their clients drop what they cached (a flush), and
        read it again. A refusal (an ACL, an old Redis) is logged, and no one tracks
        that node until the next try."""
        waiting, t.waiting = t.waiting, []
        for answer in waiting:
            answer.deliver(reply)
        if reply[:1] == b"-":
            log_event(log, "tracking_refused", level=logging.WARNING, node=str(t.addr),
                      error=reply[1:].strip().decode(errors="replace"))  # fmt: skip
            t.conn.close()
            return
        t.ready = True
        if t.keys:
            self._flush(t)

    def _lost(self, t: Tracker) -> None:
        """The node's tracking connection died: what was read there may be stale."""
        if self.trackers.get(str(t.addr)) is t:
            del self.trackers[str(t.addr)]
        waiting, t.waiting = t.waiting, []
        for answer in waiting:
            answer.deliver(b"+OK\r\n")  # tracking is on; that node is tried again later
        self._flush(t)

    def close(self) -> None:
        trackers, self.trackers = list(self.trackers.values()), {}
        for t in trackers:
            t.conn.on_close = None  # nobody to tell
            t.conn.close()

    # ------------------------------------------------------------------ invalidations

    def _pushed(self, t: Tracker, reply: bytes) -> None:
        """`>2 invalidate [keys]` (or a null array: a flush) from node `t`."""
        keys = _invalidated(reply)
        if keys is None:
            self._flush(t)
        elif keys:
            self._announce(t, keys)

    def _announce(self, t: Tracker, keys: list[bytes]) -> None:
        out: dict[int, list[bytes]] = {}
        node = str(t.addr)
        for key in keys:
            for cid in t.keys.pop(key, ()):
                out.setdefault(cid, []).append(key)
                self._by_client.get(cid, set()).discard((node, key))
        for c in self._clients.values():
            opts = c.state.tracking
            if opts is not None and opts.bcast and self._reads_from(c, t):
                hit = [k for k in keys if not opts.prefixes or k.startswith(opts.prefixes)]
                if hit:
                    out.setdefault(c.state.id, []).extend(hit)
        for cid, ks in out.items():
            self._send(cid, ks)

    @staticmethod
    def _reads_from(c: Tracked, t: Tracker) -> bool:
        return c.state.tracking_node in ("", str(t.addr))

    def _flush(self, t: Tracker) -> None:
        ids = {cid for s in t.keys.values() for cid in s}
        node = str(t.addr)
        for key, holders in t.keys.items():
            for cid in holders:
                self._by_client.get(cid, set()).discard((node, key))
        t.keys.clear()
        for c in self._clients.values():
            # Redis tells every tracking client of a flush: here those whose reads
            # go to that node (BCAST or not), beside those that read from it before.
            if c.state.tracking_node == node:
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
        if target.state.proto == 3:  # a push, to the client itself or its target
            body = b"_\r\n" if keys is None else _array(keys)
            data = b">2\r\n" + _INVALIDATE + body
        elif target.subscribed:  # RESP2: the pub/sub message
            body = b"$-1\r\n" if keys is None else _array(keys)
            data = b"*3\r\n$7\r\nmessage\r\n" + _CHANNEL + body
        else:
            return  # Redis sends a RESP2 client nothing else
        target.reply_now(data, CLASS_OTHER, self._now())  # behind the replies owed
        target.mark_dirty()


def _array(keys: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(keys) + b"".join(encode_bulk(k) for k in keys)


def _invalidated(reply: bytes) -> list[bytes] | None:
    """The keys of an `invalidate` push; None for a flush (null)."""
    reader = hiredis.Reader()
    reader.feed(reply)
    value = reader.gets()
    if not isinstance(value, list) or len(value) != 2 or value[0] != b"invalidate":
        return []
    keys = value[1]
    return None if keys is None else [k for k in keys if isinstance(k, bytes)]
