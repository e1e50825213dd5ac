"""The command table: how each command is handled, from the backend's own COMMAND reply.

Flags and key positions come from the primary (`COMMAND`), so module commands and
commands newer than this code route correctly: anything flagged `readonly` takes the read
path, everything else goes to the primary. A short list of names the proxy must treat
specially (transactions, blocking, pub/sub, commands it answers or refuses) is layered on
top; those rules are about connection state, which no flag describes.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum

from proxy.resp.limits import same_first
from routing.keyspecs import KEYS_UNKNOWN, KeySpec, parse_key_specs


class Kind(IntEnum):
    READ = 0  # readonly: the read path (nearest eligible replica)
    WRITE = 1  # everything else: the primary
    LOCAL = 2  # answered by the proxy from the client's own state
    TX = 3  # MULTI/EXEC/DISCARD/WATCH/UNWATCH: pins the client to a primary connection
    BLOCKING = 4  # runs on a connection of its own
    SUBSCRIBE = 5  # (P|S)(UN)SUBSCRIBE: the client's pub/sub connection
    SCRIPT = 6  # SCRIPT LOAD/FLUSH: primary and every replica
    REFUSED = 7  # not allowed through the proxy
    ADMIN = 8  # PROXY ...: the proxy's admin verbs
    # EVAL*, EVALSHA*, FCALL*: the read or write path by flags, under the script deadline.
    # A kind of its own keeps the plain-batch fast path free of any per-command test.
    RUN_SCRIPT = 9
    KILL = 10  # SCRIPT KILL / FUNCTION KILL: every node, on a connection of its own
    MASKED = 11  # CONFIG GET: forwarded, the backends' secrets hidden in the reply
    DENIED = 12  # NOAUTH / NOPERM for this user (`routing.acl`): answered, never sent
    # SCAN, SSCAN, HSCAN, ZSCAN: a read whose cursor continues on the node that issued it
    # (`routing.cursors`). A kind of its own, so that plain reads pay no test for it.
    SCAN = 13
    # PUBLISH, SPUBLISH (the primary, plus this proxy's own subscribers in the count) and
    # PUBSUB's subcommands (every node, merged): `proxy.server.pubsubcount`.
    PUBSUB = 14
    # CONFIG SET: the primary and every replica that is up (`proxy.server.configset`).
    CONFIG_SET = 15
    MONITOR = 16  # served by georedis from what it dispatches (`proxy.server.monitor`)
    # DEBUG, when the policy allows it: the primary, the reply as it is (no retry, hold
    # or reroute: DEBUG ERROR makes any reply, -READONLY and -LOADING too).
    AS_IS = 17


# Python 3.11 reads an enum member off its class in ~150 ns (a module global: ~20 ns).
# The per-command path compares kinds against these; they are the same members.
KIND_READ, KIND_WRITE, KIND_LOCAL, KIND_DENIED = Kind.READ, Kind.WRITE, Kind.LOCAL, Kind.DENIED


class CommandInfo:
    __slots__ = ("arity", "categories", "first_key", "flags", "granted", "has_keys",
                 "key_specs", "key_step", "kind", "last_key", "name", "subs")  # fmt: skip

    def __init__(
        self,
        name: str,
        kind: Kind,
        arity: int = -1,
        flags: frozenset[str] = frozenset(),
        first_key: int = 0,
        last_key: int = 0,
        key_step: int = 0,
        subs: Mapping[bytes, CommandInfo] | None = None,
        categories: frozenset[str] = frozenset(),
        key_specs: tuple[KeySpec, ...] = (),
    ) -> None:
        self.name = name
        self.kind = kind
        self.arity = arity
        self.flags = flags
        self.first_key = first_key
        self.last_key = last_key
        self.key_step = key_step
        self.subs = subs
        self.categories = categories  # ACL categories, "@read" ..., from COMMAND
        self.key_specs = key_specs  # where its keys are (routing.keyspecs)
        # Keys to check (ACL) or hash: any spec, a first key, or keys that move.
        self.has_keys = bool(key_specs) or first_key > 0 or "movablekeys" in flags
        # For a command the policy refuses: itself as it would be without the policy,
        # run for a user whose rules name it (`routing.acl`). None otherwise.
        self.granted: CommandInfo | None = None

    def __repr__(self) -> str:
        return f"CommandInfo({self.name!r}, {self.kind.name})"


LOCAL_COMMANDS = frozenset(
    {"ping", "echo", "quit", "reset", "hello", "client", "select", "auth",
     "cluster", "readonly", "readwrite"}
)  # fmt: skip
TX_COMMANDS = frozenset({"multi", "exec", "discard", "watch", "unwatch"})
SUBSCRIBE_COMMANDS = frozenset(
    {"subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe"}
)
BLOCKING_COMMANDS = frozenset(
    {
        "blpop", "brpop", "brpoplpush", "blmove", "blmpop",
        "bzpopmin", "bzpopmax", "bzmpop", "wait", "waitaof",
    }
)  # fmt: skip
# Blocking only with a BLOCK argument.
MAYBE_BLOCKING = frozenset({"xread", "xreadgroup"})
REFUSED_COMMANDS: Mapping[str, str] = {
    "sync": "replication commands are not supported through georedis",
    "psync": "replication commands are not supported through georedis",
    "shutdown": "SHUTDOWN is not allowed through georedis",
    "replicaof": "REPLICAOF is not allowed through georedis; use the admin commands",
    "slaveof": "SLAVEOF is not allowed through georedis; use the admin commands",
    "failover": "FAILOVER is not allowed through georedis; use the admin commands",
}
# Answered by georedis as a cluster of itself with `[cluster] present_as = "cluster"`
# (`routing.presentcluster`); refused in these words otherwise (the default). LOCAL in
# both cases, since the table is built without the config: the handler decides.
CLUSTER_FACING: Mapping[str, str] = {
    "cluster": "CLUSTER is not supported: georedis presents itself as a standalone Redis "
    '([cluster] present_as = "standalone")',
    "readonly": "READONLY is for cluster replicas; georedis routes reads itself",
    "readwrite": "READWRITE is for cluster replicas; georedis routes reads itself",
}
# ACL is answered by georedis, never forwarded: the backends' users (and their password
# hashes) are not the clients' business, and a backend user made through the proxy could
# log in to the nodes directly. Subcommands not listed here (SETUSER, DELUSER, SAVE,
# LOAD, DRYRUN) are refused (`refusal`).
ACL_LOCAL = frozenset(
    {"acl|whoami", "acl|list", "acl|users", "acl|getuser", "acl|cat", "acl|log", "acl|help",
     "acl|genpass", "acl|deluser"}
)  # fmt: skip
MASKED_COMMANDS = frozenset({"config|get"})
# The backends' credentials: hidden from CONFIG GET, refused to CONFIG SET.
SECRET_PARAMETERS = frozenset(
    {b"requirepass", b"masterauth", b"masteruser", b"tls-key-file-pass",
     b"tls-client-key-file-pass"}
)  # fmt: skip
SCRIPT_BROADCAST = frozenset({b"load", b"flush"})
RUN_SCRIPT_COMMANDS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})
KILL_COMMANDS = frozenset({"script|kill", "function|kill"})
SCAN_COMMANDS = frozenset({"scan", "sscan", "hscan", "zscan"})
# PROXY verbs in ACL rules (`proxy|<verb>`): reading status, or changing state. The
# others (HELP, WHEREAMI, REGION, MAXLAG, CONSISTENCY) are per connection, open to all.
PROXY_STATUS = frozenset(
    {"info", "backends", "clients", "slowlog", "config", "backups", "capacity", "cluster"}
)
PROXY_ADMIN = frozenset({"failover", "backup", "restore", "reload"})


def classify(name: str, flags: frozenset[str], refuse: frozenset[str] = frozenset()) -> Kind:
    """How the proxy handles a command; `refuse` is the command policy (`[policy] refuse`)."""
    if name in refuse:
        return Kind.REFUSED
    if name in LOCAL_COMMANDS or name in ACL_LOCAL:
        return Kind.LOCAL
    if name.startswith("acl|"):
        return Kind.REFUSED
    if name in MASKED_COMMANDS:
        return Kind.MASKED
    if name in TX_COMMANDS:
        return Kind.TX
    if name in SUBSCRIBE_COMMANDS:
        return Kind.SUBSCRIBE
    if name in BLOCKING_COMMANDS or name in MAYBE_BLOCKING:
        # XREAD/XREADGROUP too: the session pins a call with BLOCK (`is_blocking_call`)
        # and sends one without BLOCK down the read or write path, by its flags.
        return Kind.BLOCKING
    if name in REFUSED_COMMANDS:
        return Kind.REFUSED
    if name == "proxy":
        return Kind.ADMIN
    if name == "script|load" or name == "script|flush":
        return Kind.SCRIPT
    if name in RUN_SCRIPT_COMMANDS:
        return Kind.RUN_SCRIPT
    if name in KILL_COMMANDS:
        return Kind.KILL
    if name in SCAN_COMMANDS:
        return Kind.SCAN
    if name in ("publish", "spublish") or name.startswith("pubsub|"):
        return Kind.PUBSUB
    if name == "config|set":
        return Kind.CONFIG_SET
    if name == "monitor":
        return Kind.MONITOR
    if name == "debug" or name.startswith("debug|"):
        return Kind.AS_IS
    if "readonly" in flags and "write" not in flags:
        return Kind.READ
    return Kind.WRITE


def refusal(name: str, refuse: frozenset[str]) -> str:
    """Why a REFUSED command is refused, in words for the client."""
    if name in REFUSED_COMMANDS:
        return REFUSED_COMMANDS[name]
    spelled = name.replace("|", " ").upper()
    if name in refuse:
        return f"{spelled} is refused by the command policy ([policy] refuse)"
    if name.startswith("acl|"):
        return f"{spelled}: the backends' users are not managed through georedis"
    return f"{spelled} is not supported"


def _entry(raw: list[object], refuse: frozenset[str]) -> CommandInfo:
    """One element of the COMMAND reply: [name, arity, flags, first, last, step, ..., subs]."""
    name = _text(raw[0]).lower()
    flags = frozenset(_text(f).lower() for f in _list(raw[2]))
    subs: dict[bytes, CommandInfo] | None = None
    if len(raw) > 9 and _list(raw[9]):
        subs = {}
        for sub in _list(raw[9]):
            info = _entry(_list(sub), refuse)
            subs[info.name.split("|", 1)[-1].encode()] = info
    info = CommandInfo(
        name=name,
        kind=classify(name, flags, refuse),
        arity=_int(raw[1]),
        flags=flags,
        first_key=_int(raw[3]),
        last_key=_int(raw[4]),
        key_step=_int(raw[5]),
        subs=subs,
        categories=frozenset(_text(c).lower() for c in _list(raw[6]))
        if len(raw) > 6
        else frozenset(),
        key_specs=_key_specs(raw, flags),
    )
    if info.kind == Kind.REFUSED and name in refuse:
        info.granted = _entry(raw, frozenset())
    return info


def _key_specs(raw: list[object], flags: frozenset[str]) -> tuple[KeySpec, ...]:
    """Where a command's keys are. Before Redis 7 (no specs) a command with keys has
    them "unknown": an ACL key rule then needs `allkeys`, never a guess."""
    specs = parse_key_specs(raw[8]) if len(raw) > 8 else ()
    if not specs and (_int(raw[3]) > 0 or "movablekeys" in flags):
        return KEYS_UNKNOWN
    return specs


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _int(v: object) -> int:
    return v if isinstance(v, int) else int(_text(v))


def _list(v: object) -> list[object]:
    if isinstance(v, list):
        return v
    if isinstance(v, set | frozenset | tuple):
        return list(v)
    return []


# When no COMMAND reply has arrived yet, every command is treated as a write (primary):
# safe, since the primary can answer everything.
_BOOT_WRITE = CommandInfo("unknown", Kind.WRITE)


class CommandTable:
    """Case-insensitive lookup of CommandInfo by the raw command name a client sent."""

    __slots__ = ("_base", "_cache", "refuse")

    def __init__(
        self, base: Mapping[str, CommandInfo] | None = None, refuse: frozenset[str] = frozenset()
    ) -> None:
        self.refuse = refuse
        self._base: dict[bytes, CommandInfo] = {}
        for name, info in (base or {}).items():
            self._base[name.encode()] = info
        # (MONITOR too: on a shared connection Redis' own would stream to other clients.)
        for name in (*LOCAL_COMMANDS, *TX_COMMANDS, *SUBSCRIBE_COMMANDS, "proxy", "monitor"):
            self._base.setdefault(name.encode(), CommandInfo(name, classify(name, frozenset())))
        for name in REFUSED_COMMANDS:
            self._base.setdefault(name.encode(), CommandInfo(name, Kind.REFUSED))
        # Before the first COMMAND reply (and for names it lacks), the rules that keep
        # secrets and data safe hold too: refused, local and masked (sub)commands.
        for name in (*refuse, *ACL_LOCAL, *MASKED_COMMANDS, "acl|setuser"):
            self._ensure(name, classify(name, frozenset(), refuse))
        # Names as clients spell them (b"GET", b"get"), filled on first use.
        self._cache: dict[bytes, CommandInfo] = dict(self._base)

    def _ensure(self, name: str, kind: Kind) -> None:
        parent, _, sub = name.partition("|")
        top = self._base.get(parent.encode())
        if not sub:
            if top is None:
                self._base[parent.encode()] = CommandInfo(name, kind)
            return
        if top is None:
            top = self._base[parent.encode()] = CommandInfo(parent, Kind.WRITE, subs={})
        if top.subs is None:
            top.subs = {}
        subs = dict(top.subs)
        subs.setdefault(sub.encode(), CommandInfo(name, kind))
        top.subs = subs

    @classmethod
    def from_command_reply(
        cls, reply: list[object], refuse: frozenset[str] = frozenset()
    ) -> CommandTable:
        infos = {}
        for raw in reply:
            info = _entry(_list(raw), refuse)
            infos[info.name] = info
        return cls(infos, refuse)

    def __len__(self) -> int:
        return len(self._base)

    def repeats(self, cmds: list[list[bytes]], first: CommandInfo) -> bool:
        """A batch (of more than one) that is one command n times: every name byte-equal
        to the first's (`same_first`), and not a container's, whose subcommands may
        differ, so that `first`, its looked-up entry, stands for every command."""
        return (len(cmds) > 1 and first.subs is None and same_first(cmds)
                and self.lookup(cmds[0][:1]) is first)  # fmt: skip

    def lookup(self, args: list[bytes]) -> CommandInfo:
        """The CommandInfo for a command (its subcommand's, for container commands)."""
        name = args[0]
        info = self._cache.get(name)
        if info is None:
            info = self._base.get(name.lower())
            if info is None:
                return _BOOT_WRITE if not self._base else self.unknown(name)
            if len(self._cache) < 4096:  # bounded: clients choose the spellings
                self._cache[name] = info
        subs = info.subs
        # Only a plain container (CONFIG, OBJECT, SCRIPT) takes its subcommand's kind; one
        # with a rule of its own keeps it for all of them (CLIENT: local, CLUSTER: refused).
        if subs is not None and len(args) > 1 and info.kind <= Kind.WRITE:
            sub = subs.get(args[1].lower())
            if sub is not None:
                return sub
        return info

    def unknown(self, name: bytes) -> CommandInfo:
        # Unknown to the primary: send it there anyway, so the client gets Redis' own error.
        return _BOOT_WRITE

    def has(self, name: str) -> bool:
        return name.encode() in self._base

    def _all(self) -> list[CommandInfo]:
        out: list[CommandInfo] = []
        for info in self._base.values():
            out.append(info)
            out.extend((info.subs or {}).values())
        return out

    def categories(self) -> list[str]:
        """ACL categories ("@read", ...) of the known commands, and georedis' own."""
        found = {c for info in self._all() for c in info.categories}
        return sorted(found | {"@proxystatus", "@proxyadmin"})

    def in_category(self, category: str) -> list[str] | None:
        """Command names in `category` ("config|get" style); None for no such one."""
        if category == "@proxystatus" or category == "@proxyadmin":
            verbs = PROXY_STATUS if category == "@proxystatus" else PROXY_ADMIN
            return sorted(f"proxy|{v}" for v in verbs)
        if category not in self.categories():
            return None
        return sorted(info.name for info in self._all() if category in info.categories)


def is_blocking_call(info: CommandInfo, args: list[bytes]) -> bool:
    """XREAD/XREADGROUP block only when they carry a BLOCK argument."""
    if info.name in MAYBE_BLOCKING:
        return any(a.upper() == b"BLOCK" for a in args[1:])
    return False
