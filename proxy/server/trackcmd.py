"""CLIENT TRACKING, CACHING, GETREDIR and TRACKINGINFO, in Redis' words.

The options live in `ClientState.tracking` (`TrackOpts`); what they do is
`proxy/server/tracking.py`'s (the table of who read what from which node, and the
invalidations). Redis' rules, checked here as Redis checks them: OPTIN and OPTOUT
exclude each other, PREFIX needs BCAST, prefixes of one client may not overlap, a
REDIRECT target must exist, and BCAST cannot be switched while tracking is on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.errors import syntax_error, wrong_args
from proxy.resp.replies import OK, encode, encode_error, encode_int
from proxy.server import replymode
from proxy.server.client import TrackOpts
from proxy.server.slot import Slot
from proxy.stats import CLASS_OTHER
from routing.select import NO_REQUIREMENTS

if TYPE_CHECKING:
    from proxy.server.host import Client

_NOT_INT = "ERR value is not an integer or out of range"
_NO_TARGET = "ERR The client ID you want redirect to does not exist"


def tracking(s: Client, args: list[bytes]) -> bytes:
    if len(args) < 3:
        return wrong_args("client|tracking")
    mode = args[2].lower()
    st = s.state
    if mode == b"off":
        # Redis reads OFF's options too (redis-py sends OFF REDIRECT <id>): only their
        # syntax and the redirect target are checked, as there.
        parsed = _parse(s, args[3:], check=False)
        if isinstance(parsed, bytes):
            return parsed
        s.host.tracking.disable(s)
        st.tracking = None
        st.rehook()
        return OK
    if mode != b"on":
        return syntax_error()
    opts = _parse(s, args[3:])
    if isinstance(opts, bytes):
        return opts
    if st.tracking is not None and st.tracking.bcast != opts.bcast:
        return encode_error(
            "ERR You can't switch BCAST mode on/off before disabling tracking for this "
            "client, and then re-enabling it with a different mode."
        )
    st.tracking = opts
    st.rehook()
    node = s.fwd.read_node(NO_REQUIREMENTS)
    addr = node.addr if node is not None else None
    pending = s.host.tracking.enable(s, str(addr) if addr is not None else "", addr)
    if pending is None:
        return OK
    slot = Slot(s, [args], CLASS_OTHER, 0, s.host.loop.time(), "", None)
    s.queue.append(slot)
    pending.waiting.append(slot)
    return replymode.NOTHING  # the slot is the reply, once the node is heard


def _parse(s: Client, words: list[bytes], check: bool = True) -> TrackOpts | bytes:
    opts = TrackOpts()
    prefixes: list[bytes] = []
    i = 0
    while i < len(words):
        w = words[i].lower()
        if w in (b"redirect", b"prefix"):
            if i + 1 >= len(words):
                return syntax_error()
            i += 1
            if w == b"prefix":
                prefixes.append(words[i])
            else:
                try:
                    opts.redirect = int(words[i])
                except ValueError:
                    return encode_error(_NOT_INT)
        elif w in (b"bcast", b"optin", b"optout", b"noloop"):
            setattr(opts, w.decode(), True)
        else:
            return syntax_error()
        i += 1
    if not check:
        if opts.redirect and opts.redirect not in s.host.sessions:
            return encode_error(_NO_TARGET)
        return opts
    return _checked(s, opts, prefixes)


def _checked(s: Client, opts: TrackOpts, prefixes: list[bytes]) -> TrackOpts | bytes:
    if opts.optin and opts.optout:
        return encode_error("ERR You can't specify both OPTIN mode and OPTOUT mode")
    if (opts.optin or opts.optout) and opts.bcast:
        return encode_error("ERR OPTIN and OPTOUT are not compatible with BCAST")
    if prefixes and not opts.bcast:
        return encode_error("ERR PREFIX option requires BCAST mode to be enabled")
    for a in prefixes:
        for b in prefixes:
            if a is not b and (a.startswith(b) or b.startswith(a)):
                shorter, longer = (a, b) if len(a) <= len(b) else (b, a)
                return encode_error(
                    f"ERR Prefix '{shorter.decode(errors='replace')}' overlaps with another "
                    f"provided prefix '{longer.decode(errors='replace')}'. Prefixes for a "
                    "single client must not overlap."
                )
    if opts.redirect and opts.redirect not in s.host.sessions:
        return encode_error(_NO_TARGET)
    opts.prefixes = tuple(prefixes)
    return opts


def caching(s: Client, args: list[bytes]) -> bytes:
    if len(args) != 3:
        return wrong_args("client|caching")
    opts = s.state.tracking
    if opts is None or not (opts.optin or opts.optout):
        return encode_error(
            "ERR CLIENT CACHING can be called only when the client is in tracking mode "
            "with OPTIN or OPTOUT mode enabled"
        )
    word = args[2].lower()
    if word not in (b"yes", b"no"):
        return syntax_error()
    opts.caching = word == b"yes"
    return OK


def getredir(s: Client, args: list[bytes]) -> bytes:
    if len(args) != 2:
        return wrong_args("client|getredir")
    opts = s.state.tracking
    return encode_int(-1 if opts is None else opts.redirect)


def trackinginfo(s: Client, args: list[bytes]) -> bytes:
    if len(args) != 2:
        return wrong_args("client|trackinginfo")
    opts = s.state.tracking
    if opts is None:
        flags: list[bytes] = [b"off"]
        redirect, prefixes = -1, []
    else:
        flags = [b"on"] + [
            name.encode() for name in ("bcast", "optin", "optout", "noloop")
            if getattr(opts, name)
        ]  # fmt: skip
        if opts.caching is not None:
            flags.append(b"caching-yes" if opts.caching else b"caching-no")
        redirect, prefixes = opts.redirect, list(opts.prefixes)
    value = {"flags": flags, "redirect": redirect, "prefixes": prefixes}
    return encode(value, s.state.proto)  # type: ignore[arg-type]
