"""Commands the proxy answers from the client's own state, never touching a backend.

PING, ECHO, QUIT, RESET, HELLO, SELECT, AUTH and CLIENT ... (in clientcmd.py): on a
pooled connection these would change (or report) the shared backend connection, not the
client's, so the proxy keeps that state per client and answers as Redis would.
CLUSTER, READONLY and READWRITE: georedis as a cluster of itself with `[cluster]
present_as = "cluster"` (`routing.presentcluster`), refused otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.errors import (
    USER_MAX_CLIENTS,
    Refused,
    not_an_integer,
    not_supported,
    reply_for,
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
)
from proxy.server import acl, clientcmd
from proxy.server.auth import NOAUTH_HELLO, WRONGPASS
from proxy.server.client import strict_int
from routing import presentcluster
from routing.commands import CLUSTER_FACING
from routing.slots import key_slot

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
    s.host.monitors.discard(s, (x.state for x in s.host.sessions.values()))
    s.host.tracking.disable(s)
    s.reset()
    return b"+RESET\r\n"


def _select(s: Client, args: list[bytes]) -> bytes:
    if len(args) != 2:
        return _wrong("select")
    db = strict_int(args[1])
    if db is None:
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
            if not clientcmd.valid_name(name):
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
        "mode": "cluster" if _as_cluster(s) else "standalone",
        "role": "master",
        "modules": [],
    }
    return encode(info, proto)  # type: ignore[arg-type]


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


def _as_cluster(s: Client) -> bool:
    return s.host.config.cluster.present_as == "cluster"


def _read_mode(s: Client, args: list[bytes]) -> bytes:
    """READONLY / READWRITE: nothing to switch, georedis picks each read's node itself."""
    name = args[0].decode(errors="replace").lower()
    if not _as_cluster(s):
        return reply_for(Refused(CLUSTER_FACING[name]))
    return OK if len(args) == 1 else _wrong(name)


def _cluster(s: Client, args: list[bytes]) -> bytes:
    """CLUSTER ...: georedis as a cluster of itself, at the address this client reached."""
    if not _as_cluster(s):
        return reply_for(Refused(CLUSTER_FACING["cluster"]))
    if len(args) < 2:
        return _wrong("cluster")
    sub = args[1].decode(errors="replace").lower()
    if sub == "keyslot":
        return encode_int(key_slot(args[2])) if len(args) == 3 else _wrong("cluster|keyslot")
    build = _CLUSTER.get(sub)
    if build is None:
        return reply_for(Refused(f"CLUSTER {sub.upper()} is not supported: georedis "
                                 "presents itself as a cluster"))  # fmt: skip
    if len(args) != 2:
        return _wrong(f"cluster|{sub}")
    cfg = s.host.config
    announce = cfg.cluster.announce
    if announce is not None:
        ip, port = announce.host, announce.port
    else:
        ip, port = presentcluster.endpoint(s.state.local_addr)
    ids = presentcluster.node_ids(str(cfg.proxy.listen))
    return build(ip, port or cfg.proxy.listen.port, ids, s.state.proto)


def _myid(ip: str, port: int, ids: tuple[str, ...], proto: int) -> bytes:
    return encode_bulk(ids[0])


_CLUSTER: dict[str, Callable[[str, int, tuple[str, ...], int], bytes]] = {
    "slots": presentcluster.slots_reply,
    "shards": presentcluster.shards_reply,
    "nodes": presentcluster.nodes_reply,
    "info": presentcluster.info_reply,
    "myid": _myid,
}


_HANDLERS: dict[str, Callable[[Client, list[bytes]], bytes]] = {
    "ping": _ping,
    "echo": _echo,
    "quit": _quit,
    "reset": _reset,
    "select": _select,
    "auth": _auth,
    "hello": _hello,
    "client": clientcmd.client,
    "cluster": _cluster,
    "readonly": _read_mode,
    "readwrite": _read_mode,
    **acl.HANDLERS,
}
