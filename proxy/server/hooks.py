"""Per-command hooks that cost nothing while off: CLIENT REPLY, MONITOR, TRACKING.

While either is on for a client (`ClientState.hooked`), `Session.dispatch` hands each
command here and the raw-batch path is not taken (`Session.data_received`), so that every
command is seen on its own. The command is dispatched as usual; then its new reply slots
(those behind the queue's tail before it) tell where it went, for the monitors and the
tracking table (`tracking.py`), and are muted if the client asked (`replymode.after`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from proxy.server import monitor, replymode
from proxy.server.client import TrackOpts
from proxy.server.host import Client
from proxy.server.slot import Slot
from routing.commands import CommandInfo, Kind
from routing.keyspecs import keys_of


def dispatch(s: Client, args: list[bytes], now: float,
             inner: Callable[[list[bytes], float], None]) -> None:  # fmt: skip
    st = s.state
    queue = s.queue
    last = queue[-1] if queue else None
    written = len(s.out)
    muted, st.mute, st.hooked = st.mute, replymode.ON, False  # `inner` is the plain path
    try:
        inner(args, now)
    finally:
        new = _new_slots(queue, last)
        if s.on_hold:
            # Held (a write while the primary changes, a pause): dispatched again, and
            # seen, muted or counted as SKIP's one command, when it goes.
            st.mute = muted
        else:
            if st.watched:
                _show(s, args, new)
            if st.tracking is not None:
                _track(s, args, new, st.tracking)
            if muted:
                replymode.after(s, args, muted, new, written)
        st.rehook()


def _new_slots(queue: deque[Slot], last: Slot | None) -> list[Slot]:
    new: list[Slot] = []
    for slot in reversed(queue):
        if slot is last:
            break
        new.append(slot)
    new.reverse()
    return new


def _info(s: Client, args: list[bytes]) -> CommandInfo:
    info = s.host.table.lookup(args)
    if info.subs is not None and len(args) > 1:  # CLIENT LIST: its own flags (admin)
        info = info.subs.get(args[1].lower(), info)
    return info


def _show(s: Client, args: list[bytes], new: list[Slot]) -> None:
    host = s.host
    info = _info(s, args)
    perms = s.state.perms
    if perms is not None:
        info = perms.admit(info, args)
    if not monitor.shown(info.flags, info.kind):
        return
    node = next((slot.node for slot in new if slot.node), "")
    host.monitors.feed(s.state, args, node)


def _track(s: Client, args: list[bytes], new: list[Slot], opts: TrackOpts) -> None:
    """A tracking client's command: a read's keys recorded under the node that served
    it (BCAST: that node heard), a NOLOOP client's own writes not announced to it."""
    info = _info(s, args)
    if info.name == "client|caching":
        return  # it is about the next command
    records = opts.records()
    node = next((slot.node for slot in new if slot.node), "")
    if not node or info.kind not in (Kind.READ, Kind.WRITE):
        return
    host = s.host
    addr = next((n.addr for n in host.topo.nodes if str(n.addr) == node), None)
    if addr is None:
        return
    if info.kind == Kind.READ:
        if opts.bcast:
            s.state.tracking_node = node
            host.tracking.ensure(node, addr)
        elif records:
            keys = keys_of(info.key_specs, args) or []
            host.tracking.read(s, [k for k, _ in keys], node, addr)
    elif opts.noloop:
        keys = keys_of(info.key_specs, args) or []
        host.tracking.wrote(s, [k for k, _ in keys])
