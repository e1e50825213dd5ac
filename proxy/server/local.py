"""Commands the proxy answers from the client's own state, never touching a backend.

PING, ECHO, QUIT, RESET, HELLO, SELECT, AUTH and CLIENT ...: on a pooled connection these
would change (or report) the shared backend connection, not the client's, so the proxy
keeps that state per client and answers as Redis would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.errors import (
    USER_MAX_CLIENTS,
    not_an_integer,
    not_supported,
    syntax_error,
    unknown_command,
    wrong_args,
)
from proxy.resp.replies import (
    OK,
    PONG,
    encode,
    encode_bulk,
    encode_error,
    encode_int,
    encode_null,
    encode_verbatim,
)
from proxy.server import acl
from proxy.server.auth import NOAUTH_HELLO, WRONGPASS

if TYPE_CHECKING:
    from proxy.server.host import Client

DATABASES = 16


def handle(s: Client, args: list[bytes], name: str) -> bytes:
    handler = _HANDLERS.get(name)
    if handler is None:
        return unknown_command(name)
    return handler(s, args)


_wrong = wrong_args


def _ping(s: Client, args: list[bytes]) -> bytes:
    if len(args) == 1:
        return PONG
    if len(args) == 2:
        return encode_bulk(args[1])
    return _wrong("ping")


def _echo(s: Client, args: list[bytes]) -> bytes:
    return encode_bulk(args[1]) if len(args) == 2 else _wrong("echo")


def _quit(s: Client, args: list[bytes]) -> bytes:
    s.quit_after_reply()
    return OK


def _reset(s: Client, args: list[bytes]) -> bytes:
    s.reset()
    return b"+RESET\r\n"


def _select(s: Client, args: list[bytes]) -> bytes:
    if len(args) != 2:
        return _wrong("select")
    try:
        db = int(args[1])
    except ValueError:
        return not_an_integer()
    if not 0 <= db < s.host.databases:
        return encode_error("ERR DB index is out of range")
    # (A pinned client's SELECT goes to its Transaction instead.)
    s.state.db = db
    return OK


def _auth(s: Client, args: list[bytes]) -> bytes:
    if len(args) == 2 and not s.host.users.configured:
        return encode_error(
            "ERR AUTH <password> called without any password configured for the default "
            "user. Are you sure your configuration is correct?"
        )
    if len(args) not in (2, 3):
        return _wrong("auth")
    name = args[1] if len(args) == 3 else b"default"
    return _log_in(s, name, args[-1]) or OK


def _log_in(s: Client, name: bytes, password: bytes) -> bytes | None:
    """AUTH and HELLO AUTH: the client becomes that user (None), or stays who it was
    (the error)."""
    st, host = s.state, s.host
    ip = st.peer.rpartition(":")[0].strip("[]")
    user = host.users.login(name.decode(errors="replace"), password, ip, host.loop.time())
    if user is None:
        return encode_error(WRONGPASS)
    if not host.users.enter(st, user):
        return USER_MAX_CLIENTS
    region = user.options.region if user.options is not None else None
    if region is not None:
        st.set_location(host.geo.override(region, ip))
    return None


def _hello(s: Client, args: list[bytes]) -> bytes:
    proto = s.state.proto
    i = 1
    if len(args) > 1:
        try:
            proto = int(args[1])
        except ValueError:
            return encode_error("ERR Protocol version is not an integer or out of range")
        if proto not in (2, 3):
            return encode_error("NOPROTO unsupported protocol version")
        i = 2
    name = s.state.name
    login: tuple[bytes, bytes] | None = None
    while i < len(args):
        opt = args[i].upper()
        if opt == b"AUTH" and i + 2 < len(args):
            login = (args[i + 1], args[i + 2])
            i += 3
        elif opt == b"SETNAME" and i + 1 < len(args):
            name = args[i + 1]
            if not _valid_name(name):
                return encode_error(
                    "ERR Client names cannot contain spaces, newlines or special characters."
                )
            i += 2
        else:
            return encode_error(
                f"ERR Syntax error in HELLO option '{args[i].decode(errors='replace')}'"
            )
    if proto != s.state.proto and (s.pinned or s.subscribed):
        return not_supported("changing the protocol inside MULTI, WATCH or pub/sub")
    refused = _log_in(s, *login) if login is not None else None
    if refused is not None:
        return refused
    if not s.state.authed:
        return encode_error(NOAUTH_HELLO)
    s.state.proto = proto
    s.state.name = name
    info: dict[str, object] = {
        "server": "redis",
        "version": s.host.redis_version(),
        "proto": proto,
        "id": s.state.id,
        "mode": "standalone",
        "role": "master",
        "modules": [],
    }
    return encode(info, proto)  # type: ignore[arg-type]


def _valid_name(name: bytes) -> bool:
    return all(33 <= c <= 126 for c in name)


# ------------------------------------------------------------------ CLIENT


def _client(s: Client, args: list[bytes]) -> bytes:
    if len(args) < 2:
        return _wrong("client")
    sub = args[1].lower().decode(errors="replace")
    handler = _CLIENT.get(sub)
    if handler is None:
        if sub in _CLIENT_UNSUPPORTED:
            return not_supported(f"CLIENT {sub.upper()}")
        return encode_error(f"ERR unknown subcommand '{sub}'. Try CLIENT HELP.")
    return handler(s, args)


def _client_setname(s: Client, args: list[bytes]) -> bytes:
    if len(args) != 3:
        return _wrong("client|setname")
    if not _valid_name(args[2]):
        return encode_error(
            "ERR Client names cannot contain spaces, newlines or special characters."
        )
    s.state.name = args[2]
    return OK


def _client_getname(s: Client, args: list[bytes]) -> bytes:
    return encode_bulk(s.state.name) if s.state.name else encode_null(s.state.proto)


def _client_id(s: Client, args: list[bytes]) -> bytes:
    return encode_int(s.state.id)


def _client_setinfo(s: Client, args: list[bytes]) -> bytes:
    if len(args) != 4:
        return _wrong("client|setinfo")
    attr = args[2].lower()
    if attr == b"lib-name":
        if not _valid_name(args[3]):
            return encode_error(
                "ERR lib-name cannot contain spaces, newlines or special characters."
            )
        s.state.lib_name = args[3]
    elif attr == b"lib-ver":
        s.state.lib_ver = args[3]
    else:
        return encode_error(f"ERR Unrecognized option '{args[2].decode(errors='replace')}'")
    return OK


def client_line(s: Client) -> str:
    """One CLIENT LIST line for a proxy client, in Redis' field format."""
    now = s.host.loop.time()
    flags = "x" if s.in_multi else ("P" if s.subscribed else "N")
    return (
        f"id={s.state.id} addr={s.state.peer} laddr={s.state.local_addr} fd=-1 "
        f"name={s.state.name.decode(errors='replace')} age={int(now - s.state.created)} "
        f"idle={int(now - s.state.last_cmd)} flags={flags} db={s.state.db} sub=0 psub=0 ssub=0 "
        f"multi={-1 if not s.in_multi else 0} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 "
        f"rbs=0 rbp=0 obl=0 oll={len(s.queue)} omem=0 tot-mem=0 events=r cmd=NULL "
        f"user=default redir=-1 resp={s.state.proto} "
        f"lib-name={s.state.lib_name.decode(errors='replace')} "
        f"lib-ver={s.state.lib_ver.decode(errors='replace')} region={s.state.region}"
    )


def _client_info(s: Client, args: list[bytes]) -> bytes:
    return encode_verbatim(client_line(s) + "\n", s.state.proto)


def _client_list(s: Client, args: list[bytes]) -> bytes:
    sessions = list(s.host.sessions.values())
    if len(args) >= 4 and args[2].upper() == b"ID":
        try:
            ids = {int(a) for a in args[3:]}
        except ValueError:
            return encode_error("ERR Invalid client ID")
        sessions = [x for x in sessions if x.state.id in ids]
    elif len(args) >= 4 and args[2].upper() == b"TYPE":
        kind = args[3].lower()
        if kind == b"pubsub":
            sessions = [x for x in sessions if x.subscribed]
        elif kind == b"normal":
            sessions = [x for x in sessions if not x.subscribed]
        elif kind in (b"master", b"replica", b"slave"):
            sessions = []
        else:
            return encode_error(f"ERR Unknown client type '{kind.decode(errors='replace')}'")
    text = "".join(client_line(x) + "\n" for x in sessions)
    return encode_verbatim(text, s.state.proto)


def _client_kill(s: Client, args: list[bytes]) -> bytes:
    """CLIENT KILL addr (old form) or filters: ID, ADDR, LADDR, SKIPME, TYPE."""
    sessions = list(s.host.sessions.values())
    if len(args) == 3:
        target = args[2].decode(errors="replace")
        victims = [x for x in sessions if x.state.peer == target]
        if not victims:
            return encode_error("ERR No such client")
        victims[0].close_now(abort=True)
        return OK
    if len(args) < 4 or len(args) % 2:
        return syntax_error()
    skipme = True
    chosen = sessions
    for i in range(2, len(args), 2):
        key, val = args[i].upper(), args[i + 1]
        if key == b"ID":
            try:
                cid = int(val)
            except ValueError:
                return encode_error("ERR client-id should be greater than 0")
            chosen = [x for x in chosen if x.state.id == cid]
        elif key == b"ADDR":
            chosen = [x for x in chosen if x.state.peer == val.decode(errors="replace")]
        elif key == b"LADDR":
            chosen = [x for x in chosen if x.state.local_addr == val.decode(errors="replace")]
        elif key == b"SKIPME":
            skipme = val.lower() != b"no"
        elif key == b"TYPE":
            if val.lower() == b"pubsub":
                chosen = [x for x in chosen if x.subscribed]
            elif val.lower() == b"normal":
                chosen = [x for x in chosen if not x.subscribed]
        elif key == b"USER":
            chosen = chosen if val == b"default" else []
        else:
            return syntax_error()
    killed = 0
    for x in chosen:
        if skipme and x is s:
            continue
        if x is s:
            s.quit_after_reply()
        else:
            x.close_now(abort=True)
        killed += 1
    return encode_int(killed)


def _client_noop(s: Client, args: list[bytes]) -> bytes:
    return OK


_CLIENT: dict[str, Callable[[Client, list[bytes]], bytes]] = {
    "setname": _client_setname,
    "getname": _client_getname,
    "id": _client_id,
    "info": _client_info,
    "list": _client_list,
    "kill": _client_kill,
    "setinfo": _client_setinfo,
}
# These change the state of the backend connection, which pooled clients share.
_CLIENT_UNSUPPORTED = frozenset(
    {"tracking", "caching", "getredir", "trackinginfo", "reply", "no-evict", "no-touch",
     "pause", "unpause", "unblock"}
)  # fmt: skip


def unsubscribe_reply(args: list[bytes], proto: int) -> bytes:
    """(P|S)UNSUBSCRIBE from a client with no subscriptions: Redis' own answer."""
    kind = args[0].lower()
    head = b">3\r\n" if proto == 3 else b"*3\r\n"
    channels: list[bytes | None] = [*args[1:]] or [None]
    out = []
    for ch in channels:
        out.append(head + encode_bulk(kind) + (encode_bulk(ch) if ch else encode_null(proto)))
        out.append(b":0\r\n")
    return b"".join(out)


_HANDLERS: dict[str, Callable[[Client, list[bytes]], bytes]] = {
    "ping": _ping,
    "echo": _echo,
    "quit": _quit,
    "reset": _reset,
    "select": _select,
    "auth": _auth,
    "hello": _hello,
    "client": _client,
    **acl.HANDLERS,
}
