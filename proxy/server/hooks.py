"""Per-command hooks that cost nothing while off: CLIENT REPLY's muting and MONITOR.

While either is on for a client (`ClientState.hooked`), `Session.dispatch` hands each
command here and the raw-batch path is not taken (`Session.data_received`), so that every
command is seen on its own. The command is dispatched as usual; then its new reply slots
(those behind the queue's tail before it) tell where it went, for the monitors, and are
muted if the client asked (`replymode.after`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from proxy.server import monitor, replymode
from proxy.server.host import Client
from proxy.server.slot import Slot


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
        if st.watched and not s.on_hold:  # (a held command is shown when it goes)
            _show(s, args, new)
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


def _show(s: Client, args: list[bytes], new: list[Slot]) -> None:
    host = s.host
    info = host.table.lookup(args)
    if info.subs is not None and len(args) > 1:  # CLIENT LIST: its own flags (admin)
        info = info.subs.get(args[1].lower(), info)
    if not monitor.shown(info.flags):
        return
    node = next((slot.node for slot in new if slot.node), "")
    host.monitors.feed(s.state, args, node)
