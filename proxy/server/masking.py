"""CONFIG GET through georedis: forwarded, with the backends' secrets hidden.

Clients and tools read settings with CONFIG GET (maxmemory, save, appendonly...), so it
is forwarded, to the primary when there is one (else the node the client reads from).
But a backend's `requirepass` and `masterauth` are the very password the operator gave
georedis in `password_env`, and must never reach a client: the reply is decoded (the
one reply the proxy does not forward as received; CONFIG GET is rare and small), every
secret parameter's value replaced, and the reply encoded again in the client's protocol.
The reply keeps its place in the client's order like any other (a slot in its queue).
"""

from __future__ import annotations

import hiredis

from proxy.errors import BackendError, reply_for
from proxy.resp.replies import Value, encode
from proxy.resp.requests import pack
from proxy.server.host import Client, Router
from proxy.server.slot import Slot
from proxy.stats import CLASS_OTHER
from routing.commands import SECRET_PARAMETERS
from routing.select import NO_REQUIREMENTS

# Redis 7's parameters that hold a password (or a user name that goes with one).
HIDDEN = b"(hidden by georedis)"


def config_get(client: Client, router: Router, args: list[bytes], now: float) -> None:
    host = client.host
    host.stats.commands[CLASS_OTHER] += 1
    snap = host.topo
    node = snap.primary if snap.primary is not None else router.read_node(NO_REQUIREMENTS)
    if node is None:
        client.reply_now(reply_for(router.no_read_node()), CLASS_OTHER, now)
        return
    pool = host.pools[node.addr]
    slot = Slot(client, [args], CLASS_OTHER, 0, now, pool.name, pool.hist)
    client.queue.append(slot)
    st = client.state
    try:
        conn = pool.shared(st.id, st.proto, st.db)
    except BackendError as e:
        slot.fail(e)
        return
    conn.send(pack(args), _Masked(slot, st.proto))


def mask(reply: bytes, proto: int) -> bytes:
    """The CONFIG GET reply with every secret parameter's value hidden."""
    if reply[:1] == b"-":
        return reply
    reader = hiredis.Reader()
    reader.feed(reply)
    value = reader.gets()
    if isinstance(value, dict):  # RESP3 map
        return encode({k: _hide(k, v) for k, v in value.items()}, proto)
    if isinstance(value, list):  # RESP2: name, value, name, value ...
        names, values = value[0::2], value[1::2]
        pairs = zip(names, values, strict=False)
        return encode([x for k, v in pairs for x in (k, _hide(k, v))], proto)
    return reply


def _hide(name: Value, value: Value) -> Value:
    if isinstance(name, bytes) and name.lower() in SECRET_PARAMETERS and value:
        return HIDDEN
    return value


class _Masked:
    """The backend `Waiter` for the CONFIG GET: masks the reply, then hands it on."""

    __slots__ = ("proto", "slot")

    def __init__(self, slot: Slot, proto: int) -> None:
        self.slot = slot
        self.proto = proto

    def deliver(self, reply: bytes) -> bool:
        self.slot.deliver(mask(reply, self.proto))
        return True

    def fail(self, err: BackendError) -> None:
        self.slot.fail(err)
