"""`PROXY <verb> ...`: the proxy's admin commands, one small handler per verb in one table.

Later verbs (FAILOVER, BACKUP, RESTORE) slot into `_VERBS` the same way. Handlers get the
calling session (for per-connection settings) and return the encoded reply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from proxy.admin import backups, capacity, cluster, clusterfailover, failover
from proxy.admin.host import AdminClient, AdminHost
from proxy.errors import (
    FailoverError,
    ReloadError,
    bad_argument,
    not_an_integer,
    reply_for,
    usage,
    wrong_args,
)
from proxy.observe.infotext import config_get, render_clients, render_proxy_info
from proxy.observe.slowlog import encode_resp
from proxy.resp.replies import OK, encode, encode_int, encode_verbatim

# A verb that takes time (FAILOVER) returns an awaitable: the client's reply waits in
# its queue for it (`proxy.server.dispatch.elsewhere`), other clients are served meanwhile.
Reply = bytes | Awaitable[bytes]
Handler = Callable[[AdminHost, AdminClient, list[bytes]], Reply]


def handle(app: AdminHost, s: AdminClient, args: list[bytes]) -> Reply:
    if len(args) < 2:
        return wrong_args("proxy", ". Try PROXY HELP")
    verb = args[1].upper().decode(errors="replace")
    entry = _VERBS.get(verb)
    if entry is None:
        return bad_argument(f"unknown PROXY verb '{verb}'. Try PROXY HELP")
    return entry[0](app, s, args[2:])


def _help(app: AdminHost, s: AdminClient, args: list[bytes]) -> bytes:
    lines = [f"PROXY {verb} {usage}" for verb, (_, usage) in _VERBS.items()]
    return encode(lines, s.proto)  # type: ignore[arg-type]


def _region(app: AdminHost, s: AdminClient, args: list[bytes]) -> bytes:
    if len(args) != 1:
        return usage("PROXY REGION <name>|AUTO")
    ip = s.peer.rsplit(":", 1)[0].strip("[]")
    name = args[0].decode(errors="replace")
    if name.upper() == "AUTO":
        s.set_location(app.geo.locate(ip))
        return OK
    try:
        s.set_location(app.geo.override(name, ip))
    except (KeyError, ValueError):
        return bad_argument(f"unknown region '{name}'")
    return OK


def _whereami(app: AdminHost, s: AdminClient, args: list[bytes]) -> bytes:
    loc = s.location
    snap = app.topo
    serving = app.read_target(s)
    info: dict[str, object] = {
        "address": s.peer,
        "source": loc.source if loc else "default",
        "country": loc.country if loc else None,
        "continent": loc.continent if loc else None,
        "latitude": _num(loc.latitude if loc else None),
        "longitude": _num(loc.longitude if loc else None),
        "region": s.region,
        "ranking": list(s.ranking),
        "reads_served_by": f"{serving.addr} ({serving.region})" if serving else None,
        "primary": str(snap.primary.addr) if snap.primary else None,
        "max_lag_ms": s.max_lag_ms if s.max_lag_ms is not None else app.config.routing.max_lag_ms,
        "consistency": "session" if s.ryw else "eventual",
    }
    return encode(info, s.proto)  # type: ignore[arg-type]


def _num(v: float | None) -> str | None:
    return None if v is None else f"{v:g}"


def _maxlag(app: AdminHost, s: AdminClient, args: list[bytes]) -> bytes:
    if len(args) != 1:
        return usage("PROXY MAXLAG <ms>|OFF")
    if args[0].upper() == b"OFF":
        s.max_lag_ms = None
        return OK
    try:
        ms = float(args[0])
    except ValueError:
        return bad_argument("PROXY MAXLAG takes milliseconds or OFF")
    if ms < 0:
        return bad_argument("PROXY MAXLAG must be >= 0")
    s.max_lag_ms = ms
    return OK


def _consistency(app: AdminHost, s: AdminClient, args: list[bytes]) -> bytes:
    mode = args[0].lower() if len(args) == 1 else b""
    if mode == b"session":
        s.ryw = True
    elif mode == b"eventual":
        s.ryw = False
    else:
        return usage("PROXY CONSISTENCY session|eventual")
    return OK


def _backends(app: AdminHost, s: AdminClient, args: list[bytes]) -> bytes:
    rows: list[dict[str, object]] = []
    shards = cluster.node_shards(app.topo)  # empty outside cluster mode
    for n in app.topo.nodes:
        rows.append(
            {
                "node": str(n.addr),
                "region": n.region,
                "role": n.role.value,
                "up": int(n.up),
                "link": "up" if n.link_up else ("-" if n.role.value != "replica" else "down"),
                "lag_ms": None if n.lag_ms is None else f"{n.lag_ms:.1f}",
                "lag_bytes": n.lag_bytes,
                "eligible": int(n.eligible),
                "reason": n.reason.value,
                "outstanding": app.outstanding(n.addr),
                "epoch": n.epoch,
                "error": n.error or None,
            }
        )
        if n.addr in shards:  # cluster mode: the node's shard and the slots it serves
            rows[-1]["shard"], rows[-1]["slots"] = shards[n.addr]
    return encode(rows, s.proto)  # type: ignore[arg-type]


def _info(app: AdminHost, s: AdminClient, args: list[bytes]) -> bytes:
    return encode_verbatim(render_proxy_info(app), s.proto)


def _clients(app: AdminHost, s: AdminClient, args: list[bytes]) -> bytes:
    return encode_verbatim(render_clients(app), s.proto)


def _config(app: AdminHost, s: AdminClient, args: list[bytes]) -> bytes:
    if len(args) != 2 or args[0].upper() != b"GET":
        return usage("PROXY CONFIG GET <pattern>")
    pairs = config_get(app.config, args[1].decode(errors="replace"), app.loaded.items())
    return encode([x for pair in pairs for x in pair], s.proto)


def _reload(app: AdminHost, s: AdminClient, args: list[bytes]) -> Reply:
    if args:
        return usage("PROXY RELOAD")
    return _run_reload(app, s.proto)


async def _run_reload(app: AdminHost, proto: int) -> bytes:
    try:
        result = await app.reload()
    except ReloadError as e:
        return reply_for(e)
    return encode(result, proto)  # type: ignore[arg-type]


def _slowlog(app: AdminHost, s: AdminClient, args: list[bytes]) -> bytes:
    sub = args[0].upper() if args else b""
    if sub == b"GET":
        try:
            n = int(args[1]) if len(args) > 1 else 10
        except ValueError:
            return not_an_integer()
        return encode_resp(app.slowlog.get(n))
    if sub == b"RESET":
        app.slowlog.reset()
        return OK
    if sub == b"LEN":
        return encode_int(len(app.slowlog))
    return usage("PROXY SLOWLOG GET [n]|RESET|LEN")


_FAILOVER_USAGE = (
    "PROXY FAILOVER [FORCE] [SHARD <index>] [TO <host:port>|<region>] [TIMEOUT <ms>] | STATUS"
)


def _failover(app: AdminHost, s: AdminClient, args: list[bytes]) -> Reply:
    status = app.failover_status
    if len(args) == 1 and args[0].upper() == b"STATUS":
        info: dict[str, object] = {
            "running": int(status.running),
            "epoch": app.topo.epoch,
            "primary": str(app.topo.primary.addr) if app.topo.primary else None,
            "writes_held": app.hold.waiting,
            "hold": app.hold.reason or None,
            "fenced": [str(n.addr) for n in app.topo.fenced],
            "last": status.last,
        }
        return encode(info, s.proto)  # type: ignore[arg-type]
    try:
        req = clusterfailover.parse(args)  # SHARD <index>: cluster mode
    except ValueError:
        return usage(_FAILOVER_USAGE)
    if status.running:
        return bad_argument("a PROXY FAILOVER is already running")
    status.running = True  # now, not when the coroutine starts: two in one turn
    return _run_failover(app, req, s.proto)


async def _run_failover(app: AdminHost, req: failover.Request, proto: int) -> bytes:
    status = app.failover_status
    kind = "force" if req.force else "planned"
    try:
        result = await app.failover(req)
    except FailoverError as e:
        status.record({"result": "error", "kind": kind, "error": str(e)})
        _count(app, f"failovers_{kind}_error")
        return reply_for(e)
    finally:
        status.running = False
    status.record(result)
    _count(app, f"failovers_{kind}_ok")
    return encode(result, proto)  # type: ignore[arg-type]


def _count(app: AdminHost, field: str) -> None:
    stats = app.stats
    setattr(stats, field, getattr(stats, field) + 1)


_VERBS: dict[str, tuple[Handler, str]] = {
    "HELP": (_help, "- this list"),
    "INFO": (_info, "- version, uptime, clients, ops/s, routing summary, nodes"),
    "BACKENDS": (_backends, "- every node: region, role, up, link, lag, eligibility"),
    "CLUSTER": (cluster.cluster, "- cluster mode: slot map, cluster state, redirects, shards"),
    "CLIENTS": (_clients, "- the proxy's client connections"),
    "CONFIG": (_config, "GET <pattern> - effective configuration values"),
    "RELOAD": (_reload, "- read the config file again and apply it, or say why not"),
    "WHEREAMI": (_whereami, "- how this connection was located and ranked"),
    "REGION": (_region, "<name>|AUTO - override this connection's region"),
    "MAXLAG": (_maxlag, "<ms>|OFF - this connection's replica lag bound"),
    "CONSISTENCY": (_consistency, "session|eventual - read-your-writes for this connection"),
    "SLOWLOG": (_slowlog, "GET [n]|RESET|LEN - commands slower than the threshold"),
    "FAILOVER": (
        _failover,
        "[FORCE] [SHARD <index>] [TO <host:port>|<region>] [TIMEOUT <ms>] | STATUS - "
        "switch the primary without losing writes",
    ),
    "BACKUP": (
        backups.backup,
        "[FROM <host:port>|<region>] [ARCHIVE] | STATUS <id> | VERIFY <id> | STOP <id> - "
        "a sealed snapshot (and its writes after, archived), its progress, proof that it "
        "restores",
    ),
    "CAPACITY": (capacity.capacity, "[<horizon>] [RATE <pct>] [JSON] - memory growth, when full"),
    "BACKUPS": (backups.backups, "- every stored backup, with state, size, duration"),
    "RESTORE": (
        backups.restore,
        "<id> [TO <host:port>] [AT <unix-ms>] - load a backup (default: into the primary)",
    ),
}
