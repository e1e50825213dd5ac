"""MULTI/EXEC and WATCH in cluster mode: one transaction, one slot, on that slot's master.

Redis Cluster runs a transaction on one node and refuses one whose keys span slots
(CROSSSLOT at EXEC). A standalone client does not know the slots, so georedis finds the
node for it:
- WATCH names keys: the transaction is pinned at once to their slot's master
  (`begin_watch`).
- MULTI names none: the transaction is `Deferred` until its first command with keys. Until
  then georedis answers MULTI's +OK and each keyless command's +QUEUED itself and keeps
  them; the first keyed command picks the master of its slot, where MULTI and the kept
  commands are sent (their replies dropped: the client has had its own) before it. An
  EXEC with no keyed command at all runs on shard 0's master.
- Every command of a pinned transaction whose keys are in another slot is refused with
  Redis' CROSSSLOT error and dooms the transaction (EXECABORT), as a cluster node does.

A slot that moves away from the pinned master during the transaction makes that master
answer MOVED (or ASK, while it migrates) to the commands and to EXEC: none of them ran,
and the EXEC aborts. The client gets georedis' "not executed" error instead of the
redirection (`_Pinned`), and the map learns of the move; the transaction is not replayed
on the new master (a WATCH there would not cover what changed meanwhile): the client runs
it again, as a cluster client would.

A keyless command queued before the pin is answered +QUEUED even where Redis would have
refused it while queueing (an arity error): Redis then aborts the EXEC, so the client
sees EXECABORT either way, only one reply earlier or later.
"""

from __future__ import annotations

from typing import cast

from config.model import Address
from proxy.backend.connection import DISCARD
from proxy.errors import EXECABORT, BackendError, GeoredisError, NoPrimary, NotExecuted, reply_for
from proxy.resp.requests import pack
from proxy.server import transaction
from proxy.server.host import Client
from proxy.server.shards import learn_moved, shard_of_slot
from proxy.server.slot import Slot
from proxy.server.transaction import Transaction, refuse_in_multi, takes
from proxy.stats import CLASS_WRITE
from routing.commands import CommandInfo
from routing.redirect import parse_redirect
from routing.split import CROSSSLOT, CROSSSLOT_ERROR, slot_of_command
from routing.topology import Snapshot

_OK = b"+OK\r\n"
_QUEUED = b"+QUEUED\r\n"
_NESTED = b"-ERR MULTI calls can not be nested\r\n"
_WATCH_IN_MULTI = b"-ERR WATCH inside MULTI is not allowed\r\n"


def pin(client: Client, shard: Snapshot, slot: int | None) -> Transaction | GeoredisError:
    """A transaction on a dedicated connection to `shard`'s master."""
    primary = shard.primary
    if primary is None or shard.primary_error:
        return NoPrimary(shard.primary_error or "no master serves this slot")
    pool = client.host.pools[primary.addr]
    st = client.state
    try:
        conn = pool.dedicated(st.proto, st.db)
    except BackendError as e:
        return e
    tx = Transaction(client, conn, pool.name)
    tx.slot = slot
    tx.reply_kind = _Pinned
    return tx


class _Pinned(Slot):
    """A reply of a pinned cluster transaction: MOVED or ASK become "not executed"."""

    __slots__ = ()

    def deliver(self, reply: bytes) -> bool:
        if reply[:7] == b"-MOVED " or reply[:5] == b"-ASK ":
            # (A transaction's slots are always its client's own: no split collects them.)
            reply = moved_away(cast(Client, self.session), reply)
        return Slot.deliver(self, reply)


def moved_away(client: Client, reply: bytes) -> bytes:
    """The error a client gets for a command its transaction's master redirected; a
    MOVED is learnt at once, as the data path learns it."""
    moved = parse_redirect(reply)
    if moved is None:
        return reply  # malformed: passed on as it came
    if moved.ask:
        pass  # the migration's end brings a MOVED, or the next map
    elif moved.host in ("", "?"):
        client.host.refresh_cluster_map()  # no endpoint named: the new map will tell
    else:
        learn_moved(client, moved.slot, Address(moved.host, moved.port))
    where = "is moving" if moved.ask else "moved"
    return reply_for(NotExecuted(f"slot {moved.slot} {where} to another master during "
                                 "the transaction; run the transaction again"))  # fmt: skip


def begin_watch(
    client: Client, args: list[bytes], info: CommandInfo, now: float
) -> Transaction | None:
    """WATCH in cluster mode: pinned to the master of its keys' slot."""
    slot = slot_of_command(info, args)
    if slot is CROSSSLOT:
        client.reply_now(CROSSSLOT_ERROR, CLASS_WRITE, now)
        return None
    snap = client.host.topo
    at = slot if isinstance(slot, int) else None
    tx = pin(client, snap if at is None else shard_of_slot(snap, at), at)
    if isinstance(tx, GeoredisError):
        client.reply_now(reply_for(tx), CLASS_WRITE, now)
        return None
    return tx if tx.forward(args, info, now) else None


def begin(
    client: Client, args: list[bytes], info: CommandInfo, now: float
) -> Transaction | Deferred | None:
    """`transaction.begin` for cluster mode."""
    if info.name == "multi":
        return Deferred(client, now)
    if info.name == "watch":
        return begin_watch(client, args, info, now)
    return transaction.begin(client, args, info, now)  # EXEC, DISCARD, UNWATCH alone


class Deferred:
    """MULTI before its first keyed command (see the module's text); then a front for
    the pinned `Transaction`, which does the rest."""

    __slots__ = ("_doomed", "client", "kept", "real")

    def __init__(self, client: Client, now: float) -> None:
        self.client = client
        self._doomed = False
        self.kept: list[list[bytes]] = []
        self.real: Transaction | None = None
        client.state.multi = 0
        client.host.stats.commands[CLASS_WRITE] += 1
        client.reply_now(_OK, CLASS_WRITE, now)

    @property
    def in_multi(self) -> bool:
        return True if self.real is None else self.real.in_multi

    @property
    def doomed(self) -> bool:
        return self._doomed if self.real is None else self.real.doomed

    @doomed.setter
    def doomed(self, value: bool) -> None:
        if self.real is None:
            self._doomed = value
        else:
            self.real.doomed = value

    def takes(self, info: CommandInfo) -> bool:
        return takes(info, True) if self.real is None else self.real.takes(info)

    def forward(self, args: list[bytes], info: CommandInfo, now: float) -> bool:
        real = self.real
        if real is not None:
            return real.forward(args, info, now)
        name = info.name
        if name == "exec" or name == "discard":
            return self._finish(args, info, now)
        slot = slot_of_command(info, args)
        if slot is CROSSSLOT:
            self.refuse_with(CROSSSLOT_ERROR, now)
        elif isinstance(slot, int):
            return self._pin(args, info, now, shard_of_slot(self.client.host.topo, slot), slot)
        else:
            self._keep(args, name, now)
        return True

    def _keep(self, args: list[bytes], name: str, now: float) -> None:
        client = self.client
        client.host.stats.commands[CLASS_WRITE] += 1
        if name == "multi":
            client.reply_now(_NESTED, CLASS_WRITE, now)
        elif name == "watch":
            client.reply_now(_WATCH_IN_MULTI, CLASS_WRITE, now)
        else:
            self.kept.append(args)
            client.state.multi += 1
            client.reply_now(_QUEUED, CLASS_WRITE, now)

    def _finish(self, args: list[bytes], info: CommandInfo, now: float) -> bool:
        client = self.client
        if info.name == "discard" or self.doomed or not self.kept:
            client.host.stats.commands[CLASS_WRITE] += 1
            reply = _OK if info.name == "discard" else (EXECABORT if self.doomed else b"*0\r\n")
            client.reply_now(reply, CLASS_WRITE, now)
            client.state.multi = -1
            return False
        return self._pin(args, info, now, client.host.topo, None)

    def _pin(self, args: list[bytes], info: CommandInfo, now: float, shard: Snapshot,
             slot: int | None) -> bool:  # fmt: skip
        real = pin(self.client, shard, slot)
        if isinstance(real, GeoredisError):
            self.doomed = True
            self.client.host.stats.commands[CLASS_WRITE] += 1
            self.client.reply_now(reply_for(real), CLASS_WRITE, now)
            if info.name == "exec":
                self.client.state.multi = -1
                return False
            return True
        real.in_multi, real.doomed = True, self._doomed
        real.conn.send(pack([b"MULTI"]), DISCARD)
        for kept in self.kept:
            real.conn.send(pack(kept), DISCARD)
        self.real, self.kept = real, []
        return real.forward(args, info, now)

    def refuse(self, info: CommandInfo, now: float) -> None:
        if self.real is not None:
            self.real.refuse(info, now)
            return
        self.doomed = True
        self.client.state.multi += 1
        refuse_in_multi(self.client, info, now)

    def refuse_with(self, reply: bytes, now: float) -> None:
        """A command refused before it is queued (CROSSSLOT): the EXEC aborts."""
        self.doomed = True
        self.client.host.stats.commands[CLASS_WRITE] += 1
        self.client.reply_now(reply, CLASS_WRITE, now)

    def abandon(self) -> None:
        if self.real is not None:
            self.real.abandon()

    def close(self) -> None:
        if self.real is not None:
            self.real.close()
