"""CLIENT REPLY ON|OFF|SKIP: the proxy owns each client's reply stream, so it mutes it.

Redis' rules (networking.c): OFF mutes every reply from the next command on (its own
too), SKIP only the next command's (and its own; ignored while OFF), ON unmutes and
answers OK. A backend connection is shared, so the command still goes and its reply
comes back; what changes is that the client's slot discards it (`discard_replies`, the
same as for a client that left), and a reply georedis makes itself is dropped. Only
commands dispatched one by one can be muted: `Session.data_received` sends no raw batch
while `ClientState.hooked`, and `Session.dispatch` hands each command to `hooks.dispatch`,
which calls `after` here once it is dispatched.
Pushes (pub/sub messages) are not replies and pass, as Redis passes pushes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.errors import syntax_error, wrong_args
from proxy.resp.replies import OK
from proxy.server.slot import discard_replies

if TYPE_CHECKING:
    from proxy.server.host import Client
    from proxy.server.slot import Slot

ON = 0
OFF = -1
SKIP_NEXT = 1  # the next command's reply is dropped
NOTHING = b""  # what OFF and SKIP answer: written, it is nothing on the wire


def client_reply(s: Client, args: list[bytes]) -> bytes:
    """CLIENT REPLY, not muted: the new mode."""
    if len(args) != 3:
        return wrong_args("client|reply")
    mode = args[2].lower()
    st = s.state
    if mode == b"on":
        st.mute = ON
    elif mode == b"off":
        st.mute = OFF
    elif mode == b"skip":
        if st.mute != OFF:
            st.mute = SKIP_NEXT
    else:
        return syntax_error()
    st.rehook()
    return OK if mode == b"on" else NOTHING


def _mode(args: list[bytes]) -> bytes | None:
    if len(args) == 3 and args[0].lower() == b"client" and args[1].lower() == b"reply":
        mode = args[2].lower()
        return mode if mode in (b"on", b"off", b"skip") else None
    return None


def after(s: Client, args: list[bytes], before: int, new: list[Slot], written: int) -> None:
    """A command dispatched while muted (`before`: the mode then; `new`: its slots;
    `written`: the length of the client's output before it): its reply dropped (but
    CLIENT REPLY ON's), and the mode moved on (SKIP lasts one command)."""
    st = s.state
    mode = _mode(args)
    if mode == b"on" or args[0].lower() == b"reset":
        return  # its reply goes out (RESET turns replies on, as in Redis), and what follows
    for slot in new:
        discard_replies(slot)
    del s.out[written:]
    if before == OFF or mode == b"off":
        st.mute = OFF
    elif mode == b"skip":
        st.mute = SKIP_NEXT
    else:
        st.mute = ON  # the skipped command was this one
