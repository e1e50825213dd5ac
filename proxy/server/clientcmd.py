"""CLIENT ...: answered from georedis' own clients, in Redis' words and formats.

A client's backend connections are shared (or, when dedicated, not the client's own
name, id or database), so CLIENT INFO, LIST, KILL, ID and the names describe the
georedis connection, with Redis 7's fields in Redis' order; georedis' own fields
(`region`, the client's region, and `served-by`, the node its reads go to now) come
last, where parsers that split on spaces and `=` take them as extra fields. CLIENT
SETINFO (Redis 7.2) is answered whatever the backends' version; before 7.2 its two fields
follow georedis' own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.errors import BackendError, reply_for, syntax_error, wrong_args
from proxy.resp.replies import (
    OK,
    encode_bulk,
    encode_error,
    encode_int,
    encode_null,
    encode_verbatim,
)
from proxy.resp.requests import pack
from proxy.server import replymode, trackcmd
from proxy.server.client import strict_int
from proxy.server.slot import Slot
from proxy.stats import CLASS_OTHER, ClientInfo
from routing.select import NO_REQUIREMENTS

if TYPE_CHECKING:
    from proxy.server.host import Client

# Redis 7.2 added CLIENT SETINFO and the lib-name and lib-ver fields, after `resp`.
_LIB_FIELDS_FROM = (7, 2)


def client(s: Client, args: list[bytes]) -> bytes:
    if len(args) < 2:
        return wrong_args("client")
    sub = args[1].lower().decode(errors="replace")
    handler = _CLIENT.get(sub)
    if handler is None:
        text = args[1].decode(errors="replace")  # as the client wrote it, as Redis does
        return encode_error(f"ERR unknown subcommand '{text}'. Try CLIENT HELP.")
    return handler(s, args)


def valid_name(name: bytes) -> bool:
    return all(33 <= c <= 126 for c in name)


def _setname(s: Client, args: list[bytes]) -> bytes:
    if len(args) != 3:
        return wrong_args("client|setname")
    if not valid_name(args[2]):
        return encode_error(
            "ERR Client names cannot contain spaces, newlines or special characters."
        )
    s.state.name = args[2]
    return OK


def _getname(s: Client, args: list[bytes]) -> bytes:
    return encode_bulk(s.state.name) if s.state.name else encode_null(s.state.proto)


def _id(s: Client, args: list[bytes]) -> bytes:
    return encode_int(s.state.id)


def _setinfo(s: Client, args: list[bytes]) -> bytes:
    if len(args) != 4:
        return wrong_args("client|setinfo")
    attr = args[2].lower()
    if attr == b"lib-name":
        if not valid_name(args[3]):
            return encode_error(
                "ERR lib-name cannot contain spaces, newlines or special characters."
            )
        s.state.lib_name = args[3]
    elif attr == b"lib-ver":
        s.state.lib_ver = args[3]
    else:
        return encode_error(f"ERR Unrecognized option '{args[2].decode(errors='replace')}'")
    return OK


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(".")[:2])
    except ValueError:
        return (0,)


def command_name(s: Client, args: list[bytes] | None) -> str:
    """The `cmd=` field: Redis' full name of the last command (`client|info`), NULL
    before the first one."""
    if not args:
        return "NULL"
    info = s.host.table.lookup(args[:1])
    name = args[0].lower().decode(errors="replace")
    if info.subs is not None and len(args) > 1 and args[1].lower() in info.subs:
        return f"{name}|{args[1].lower().decode(errors='replace')}"
    return name


def client_line(s: Client, caller: Client | None = None, args: list[bytes] | None = None) -> str:
    """One CLIENT LIST line, in Redis 7's fields and order, georedis' own last. For the
    caller itself (`args`: the CLIENT command being answered), the query buffer holds that
    command, as Redis counts it."""
    st = s.state
    now = s.host.loop.time()
    current = args if s is caller else None
    cmd_bytes = sum(len(a) for a in current) if current else 0
    qbuf = s.parser.pending_bytes + (_packed_len(current) if current else 0)
    out_bytes = sum(map(len, s.out)) + (s.transport.get_write_buffer_size() if s.transport else 0)
    fields = [
        f"id={st.id}", f"addr={st.peer}", f"laddr={st.local_addr}", f"fd={st.fd}",
        f"name={st.name_text}", f"age={int(now - st.created)}",
        f"idle={0 if current else int(now - st.last_cmd)}", f"flags={_flags(s)}",
        f"db={st.db}", f"sub={st.sub}", f"psub={st.psub}", f"ssub={st.ssub}",
        f"multi={st.multi}", f"qbuf={qbuf}", f"qbuf-free={max(0, 20474 - qbuf) if qbuf else 0}",
        f"argv-mem={cmd_bytes}", "multi-mem=0", "rbs=1024", "rbp=0",
        f"obl={min(out_bytes, 16384)}", f"oll={len(s.queue)}", f"omem={out_bytes}",
        f"tot-mem={1024 + qbuf + out_bytes}", f"events={'rw' if out_bytes else 'r'}",
        f"cmd={command_name(s, current or st.last)}", f"user={st.user}", "redir=-1",
        f"resp={st.proto}",
    ]  # fmt: skip
    lib = [f"lib-name={st.lib_name.decode(errors='replace')}",
           f"lib-ver={st.lib_ver.decode(errors='replace')}"]  # fmt: skip
    node = s.fwd.read_node(NO_REQUIREMENTS)
    own = [f"region={st.region}", f"served-by={node.addr if node is not None else ''}"]
    if _version(s.host.redis_version()) >= _LIB_FIELDS_FROM:
        fields += lib + own
    else:  # georedis answers CLIENT SETINFO itself: shown after its own fields
        fields += own + lib
    return " ".join(fields)


def _packed_len(args: list[bytes]) -> int:
    """Bytes of `args` as a multibulk request."""
    n = len(str(len(args))) + 3
    for a in args:
        n += len(str(len(a))) + len(a) + 5
    return n


def _flags(s: Client) -> str:
    if s.in_multi:
        flags = "x"
    elif s.subscribed:
        flags = "P"
    elif s.blocked is not None:
        flags = "b"
    else:
        flags = ""
    flags += "e" if s.state.no_evict else ""
    return flags or "N"


def _info(s: Client, args: list[bytes]) -> bytes:
    return encode_verbatim(client_line(s, s, args) + "\n", s.state.proto)


def _list(s: Client, args: list[bytes]) -> bytes:
    sessions = list(s.host.sessions.values())
    if len(args) >= 4 and args[2].upper() == b"ID":
        parsed = [strict_int(a) for a in args[3:]]
        if any(i is None for i in parsed):
            return encode_error("ERR Invalid client ID")
        ids = set(parsed)
        sessions = [x for x in sessions if x.state.id in ids]
    elif len(args) >= 4 and args[2].upper() == b"TYPE":
        typed = _of_type(sessions, args[3])
        if isinstance(typed, bytes):
            return typed
        sessions = typed
    elif len(args) != 2:
        return syntax_error()
    text = "".join(client_line(x, s, args) + "\n" for x in sessions)
    return encode_verbatim(text, s.state.proto)


def _kill(s: Client, args: list[bytes]) -> bytes:
    """CLIENT KILL addr (old form) or filters: ID, ADDR, LADDR, SKIPME, TYPE, USER."""
    sessions = list(s.host.sessions.values())
    if len(args) < 3:
        return wrong_args("client|kill")
    if len(args) == 3:
        target = args[2].decode(errors="replace")
        victims = [x for x in sessions if x.state.peer == target]
        if not victims:
            return encode_error("ERR No such client")
        victims[0].close_now(abort=True)
        return OK
    if len(args) % 2:
        return syntax_error()
    chosen = _filtered(sessions, args)
    if isinstance(chosen, bytes):
        return chosen
    skipme = not any(
        args[i].upper() == b"SKIPME" and args[i + 1].lower() == b"no"
        for i in range(2, len(args), 2)
    )
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


def _of_type(clients: list[Client], kind: bytes) -> list[Client] | bytes:
    """CLIENT LIST/KILL TYPE: georedis' clients are normal or pubsub, never replicas."""
    low = kind.lower()
    if low == b"pubsub":
        return [x for x in clients if x.subscribed]
    if low == b"normal":
        return [x for x in clients if not x.subscribed]
    if low in (b"master", b"replica", b"slave"):
        return []
    return encode_error(f"ERR Unknown client type '{kind.decode(errors='replace')}'")


def _filtered(chosen: list[Client], args: list[bytes]) -> list[Client] | bytes:
    """The clients every filter of CLIENT KILL matches, or Redis' error."""
    for i in range(2, len(args), 2):
        key, val = args[i].upper(), args[i + 1]
        text = val.decode(errors="replace")
        if key == b"ID":
            cid = strict_int(val)
            if cid is None or cid <= 0:
                return encode_error("ERR client-id should be greater than 0")
            chosen = [x for x in chosen if x.state.id == cid]
        elif key == b"ADDR":
            chosen = [x for x in chosen if x.state.peer == text]
        elif key == b"LADDR":
            chosen = [x for x in chosen if x.state.local_addr == text]
        elif key == b"SKIPME":
            if val.lower() not in (b"yes", b"no"):
                return syntax_error()
        elif key == b"TYPE":
            typed = _of_type(chosen, val)
            if isinstance(typed, bytes):
                return typed
            chosen = typed
        elif key == b"USER":
            chosen = [x for x in chosen if x.state.user == text]
        else:
            return syntax_error()
    return chosen


def _pause(s: Client, args: list[bytes]) -> bytes:
    """CLIENT PAUSE <ms> [WRITE|ALL]: this georedis' clients wait (the failover's write
    hold, ending by time); the backends are not paused."""
    if len(args) not in (3, 4):
        return wrong_args("client|pause")
    ms = strict_int(args[2])
    if ms is None:
        return encode_error("ERR timeout is not an integer or out of range")
    if ms < 0:
        return encode_error("ERR timeout is negative")
    mode = args[3].lower() if len(args) == 4 else b"all"
    if mode not in (b"write", b"all"):
        return encode_error("ERR CLIENT PAUSE mode must be WRITE or ALL")
    others = None
    if mode == b"all":
        others = {cid: x for cid, x in s.host.sessions.items() if x is not s}
    s.host.hold.pause(ms, others)
    return OK


def _unpause(s: Client, args: list[bytes]) -> bytes:
    if len(args) != 2:
        return wrong_args("client|unpause")
    s.host.hold.unpause()
    return OK


def _no_evict(s: Client, args: list[bytes]) -> bytes:
    """georedis evicts no client for memory (Redis' maxmemory-clients): every client
    is as NO-EVICT asks; the flag is kept for CLIENT LIST."""
    if len(args) != 3:
        return wrong_args("client|no-evict")
    mode = args[2].lower()
    if mode not in (b"on", b"off"):
        return syntax_error()
    s.state.no_evict = mode == b"on"
    return OK


def _unblock(s: Client, args: list[bytes]) -> bytes:
    """CLIENT UNBLOCK <georedis id> [TIMEOUT|ERROR]: Redis' own UNBLOCK of that client's
    dedicated connection (its `backend_id`), so Redis answers the blocked command (a
    timeout's null, or -UNBLOCKED) and nothing it popped is lost; Redis' 1 or 0 is the
    reply. 0 for a client that is not blocked (or whose CLIENT ID is not back yet)."""
    if len(args) not in (3, 4):
        return wrong_args("client|unblock")
    cid = strict_int(args[2])
    if cid is None:
        return encode_error("ERR value is not an integer or out of range")
    mode = args[3].upper() if len(args) == 4 else b"TIMEOUT"
    if mode not in (b"TIMEOUT", b"ERROR"):
        return encode_error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
    target = s.host.sessions.get(cid)
    blocked = target.blocked if target is not None else None
    if blocked is None or blocked.backend_id is None:
        return encode_int(0)
    pool = s.host.pools[blocked.conn.addr]
    slot = Slot(s, [args], CLASS_OTHER, 0, s.host.loop.time(), pool.name, None)
    s.queue.append(slot)
    try:
        conn = pool.shared(s.state.id, 2, 0)
    except BackendError as e:
        slot.deliver(reply_for(e))
        return replymode.NOTHING
    conn.send(pack([b"CLIENT", b"UNBLOCK", b"%d" % blocked.backend_id, mode]), slot)
    return replymode.NOTHING  # the slot above is the reply


_CLIENT: dict[str, Callable[[Client, list[bytes]], bytes]] = {
    "setname": _setname,
    "getname": _getname,
    "id": _id,
    "info": _info,
    "list": _list,
    "kill": _kill,
    "setinfo": _setinfo,
    "reply": replymode.client_reply,
    "pause": _pause,
    "unpause": _unpause,
    "no-evict": _no_evict,
    "unblock": _unblock,
    "tracking": trackcmd.tracking,
    "caching": trackcmd.caching,
    "getredir": trackcmd.getredir,
    "trackinginfo": trackcmd.trackinginfo,
}
# These change the state of the backend connection, which pooled clients share.


def client_infos(sessions: list[Client], now: float) -> list[ClientInfo]:
    """PROXY CLIENTS' rows (`StatusSource.clients`)."""
    return [
        ClientInfo(
            id=c.id,
            addr=c.peer,
            name=c.name_text,
            db=c.db,
            protocol=c.proto,
            region=c.region,
            location_source=c.location.source if c.location else "default",
            age_s=now - c.created,
            idle_s=now - c.last_cmd,
            commands=c.commands,
            flags=("x" if s.in_multi else "") + ("P" if s.subscribed else ""),
            user=c.user,
            qbuf=s.parser.pending_bytes,
            omem=s.transport.get_write_buffer_size() if s.transport is not None else 0,
        )
        for s in sessions
        for c in (s.state,)
    ]
