"""CONFIG SET on every node: encodings and limits the same wherever a read lands.

A read may be served by any replica, so a setting that changes what a read sees
(`hash-max-listpack-entries`, and with it OBJECT ENCODING; `lua-time-limit`, `maxmemory`)
goes to the primary and to every replica that is up. The client gets the primary's
reply when it refused (Redis' own error), OK when every node took it, and an error
naming the first replica that did not (`PartlyApplied`): the nodes now differ. A node
that is down meanwhile is not set (logged); it keeps its value when it comes back.

The backends' credentials (`requirepass`, `masterauth`, ...: what CONFIG GET hides) are
refused: a password set through georedis would lock georedis itself out of the nodes,
whose password it has from its own config.

Settings that belong to one node (where it listens, its files, its replication
credentials and announced address) go to the primary only, as before: the same value on
every node would break them.
"""

from __future__ import annotations

import logging

from config.model import Address
from proxy.errors import NoPrimary, PartlyApplied, Refused, reply_for
from proxy.logs import log_event
from proxy.server.gather import ask_all
from proxy.server.host import Client
from proxy.server.slot import Slot
from proxy.stats import CLASS_WRITE
from routing.commands import SECRET_PARAMETERS

log = logging.getLogger("georedis.session")
_CREDENTIALS = "the backends' credentials are not managed through georedis"

NODE_LOCAL = frozenset(
    {b"bind", b"port", b"tls-port", b"unixsocket", b"unixsocketperm", b"dir", b"dbfilename",
     b"logfile", b"pidfile", b"appendfilename", b"appenddirname", b"masterauth",
     b"masteruser", b"replica-announce-ip", b"replica-announce-port", b"slave-announce-ip",
     b"slave-announce-port", b"replica-priority", b"slave-priority", b"replicaof",
     b"slaveof", b"cluster-announce-ip", b"cluster-announce-port",
     b"cluster-announce-bus-port", b"cluster-announce-tls-port",
     b"cluster-announce-hostname", b"cluster-config-file", b"tls-cert-file",
     b"tls-key-file", b"tls-ca-cert-file", b"tls-ca-cert-dir", b"tls-key-file-pass"}
)  # fmt: skip


def config_set(client: Client, args: list[bytes], now: float) -> None:
    host = client.host
    host.stats.commands[CLASS_WRITE] += 1
    snap = host.topo
    primary = snap.primary
    if primary is None or snap.primary_error:
        client.reply_now(reply_for(NoPrimary(snap.primary_error)), CLASS_WRITE, now)
        return
    secret = next((p for p in args[2::2] if p.lower() in SECRET_PARAMETERS), None)
    if secret is not None:
        why = f"CONFIG SET {secret.decode(errors='replace')}: {_CREDENTIALS}"
        client.reply_now(reply_for(Refused(why)), CLASS_WRITE, now)
        return
    slot = Slot(client, [args], CLASS_WRITE, 0, now, "", None)
    client.queue.append(slot)
    replicas: list[Address] = []
    if not any(p.lower() in NODE_LOCAL for p in args[2::2]):
        replicas = [n.addr for n in snap.nodes if n.up and n is not primary]
        down = [str(n.addr) for n in snap.nodes if not n.up]
        if down:
            log_event(log, "config_set_not_on_down_nodes", level=logging.WARNING, nodes=down)
    # The primary first: what it refuses (or fails to say) changes no replica either.
    then = _ThenReplicas(client, slot, primary.addr, replicas, args)
    ask_all(client, then, [primary.addr], args, lambda got: got[0][1])


class _ThenReplicas:
    """The primary's answer: an error is the reply; an OK sends it to the replicas."""

    __slots__ = ("args", "client", "primary", "replicas", "slot")

    def __init__(self, client: Client, slot: Slot, primary: Address, replicas: list[Address],
                 args: list[bytes]) -> None:  # fmt: skip
        self.client, self.slot, self.primary = client, slot, primary
        self.replicas, self.args = replicas, args

    def deliver(self, reply: bytes) -> bool:
        if reply[:1] == b"-" or not self.replicas:
            return self.slot.deliver(reply)
        first = (self.primary, reply)
        ask_all(self.client, self.slot, self.replicas, self.args,
                lambda got: _combine([first, *got]))  # fmt: skip
        return True


def _combine(got: list[tuple[Address, bytes]]) -> bytes:
    (_, first), *rest = got
    if first[:1] == b"-":
        return first  # the primary's own refusal: Redis' words, nothing changed there
    for addr, reply in rest:
        if reply[:1] == b"-":
            return reply_for(PartlyApplied("CONFIG SET", str(addr), reply))
    return first
