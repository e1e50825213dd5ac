"""Which arguments of a command are keys, and how each is used, from Redis 7 key specs.

The primary's `COMMAND` reply describes, for every command, where its keys are
(https://redis.io/docs/reference/key-specs): a *begin_search* step finds where to start
(a fixed index, or the argument after a keyword) and a *find_keys* step says how many
follow (a range, or a count read from a `numkeys` argument). The proxy's ACL key
patterns (`~app:*`, `%R~`, `%W~`) are checked against what this module finds, so the
rule everywhere is: when the keys cannot be known for sure, say so (None) and let the
caller deny, rather than return a partial list a crafted command could slip past.

Everything is decided once, when the COMMAND reply is parsed; `keys_of` runs per command
and only does index arithmetic and slicing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

READ = 1
WRITE = 2

# begin_search / find_keys kinds, as small ints so the hot path compares integers.
_UNKNOWN = 0
_INDEX = 1
_KEYWORD = 2
_RANGE = 1
_KEYNUM = 2

# Longest numkeys we parse: int() of a long digit string costs time (and past 4,300
# digits raises), and no command has anywhere near 10**18 arguments anyway.
_MAX_DIGITS = 18

# How each flag uses a key. Redis's own ACL check reads only the logical flags (access ->
# read; insert, update, delete -> write); the physical ones (RO, RW, OW, RM) say what
# Redis does with the value. A key's mask is the union of both, so it is never looser
# than either reading: LPUSH's "RW insert" needs read and write here (write only in
# Redis), EXISTS's bare "RO" needs read (nothing in Redis).
_FLAG_ACCESS = {
    "RO": READ,
    "RW": READ | WRITE,
    "OW": WRITE,
    "RM": WRITE,
    "ACCESS": READ,
    "INSERT": WRITE,
    "UPDATE": WRITE,
    "DELETE": WRITE,
}


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One key spec, checked and reduced to what `keys_of` needs.

    `begin` is _INDEX (keys from `pos`), _KEYWORD (keys after `keyword`, searched from
    `pos`; a negative `pos` searches backwards from the end) or _UNKNOWN (this spec, so
    the whole command, has keys that cannot be told from the arguments: an `unknown`
    type, the `incomplete` flag, or an entry this code did not understand).
    `find` is _RANGE (`lastkey`, `keystep`, `limit`) or _KEYNUM (`keynumidx`, `firstkey`,
    `keystep`). `fixed` is the last key's index when both are fixed (an index and a
    range of fixed length: GET, RENAME, most specs), 0 otherwise, so `keys_of` can take
    those without a call. `flags` are the spec's own flags, upper-cased, for callers
    that want more than `access`.
    """

    begin: int
    pos: int = 0
    keyword: bytes = b""
    find: int = _UNKNOWN
    lastkey: int = 0
    keynumidx: int = 0
    firstkey: int = 0
    keystep: int = 1
    limit: int = 0
    access: int = READ | WRITE
    not_key: bool = False
    flags: frozenset[str] = frozenset()
    fixed: int = 0

    @property
    def known(self) -> bool:
        return self.begin != _UNKNOWN


# For callers that know a command's keys are beyond its specs (a module command with
# its own getkeys callback lists `movablekeys` but may give no spec): keys_of -> None.
KEYS_UNKNOWN: tuple[KeySpec, ...] = (KeySpec(_UNKNOWN),)


def parse_key_specs(raw: object) -> tuple[KeySpec, ...]:
    """The key specs of one COMMAND entry (its 9th element), RESP2 lists or RESP3 maps,
    bytes or str. An entry that does not parse becomes an unknown spec: a reply from a
    newer Redis (or a module) must make keys_of say "unknown", never "no keys"."""
    items = _seq(raw)
    if items is None:
        return KEYS_UNKNOWN
    return tuple(_spec(item) for item in items)


def _spec(raw: object) -> KeySpec:
    fields = _fields(raw)
    names = fields.get("flags", []) if fields is not None else None
    # RESP3 sends the flags as a set. Flags that do not parse might have hidden an
    # `incomplete`, so they make the spec unknown.
    if not isinstance(names, list | tuple | set | frozenset) or not all(
        isinstance(f, bytes | str) for f in names
    ):
        return KeySpec(_UNKNOWN)
    flags = frozenset(_text(f).upper() for f in names)
    not_key = "NOT_KEY" in flags
    if fields is None or "INCOMPLETE" in flags:
        return KeySpec(_UNKNOWN, not_key=not_key, flags=flags)
    access = 0
    for flag in flags:
        access |= _FLAG_ACCESS.get(flag, 0)
    if not access or "VARIABLE_FLAGS" in flags:
        # No usage given, or one that depends on the arguments (SET ... GET): the worst.
        access = READ | WRITE
    if not_key:
        access = 0
    begin = _typed(fields.get("begin_search"))
    find = _typed(fields.get("find_keys"))
    if begin is None or find is None:
        return KeySpec(_UNKNOWN, not_key=not_key, flags=flags)
    (btype, bspec), (ftype, fspec) = begin, find
    spec = KeySpec(_UNKNOWN, access=access, not_key=not_key, flags=flags)
    try:
        if btype == "index":
            pos = _int(bspec["index"])
            # Index 0 is the command name itself: no spec means that.
            spec = replace(spec, begin=_INDEX, pos=pos) if pos >= 1 else spec
        elif btype == "keyword":
            word = bspec["keyword"]
            start = _int(bspec["startfrom"])
            if isinstance(word, bytes | str) and word and start != 0:
                kw = word.encode() if isinstance(word, str) else word
                spec = replace(spec, begin=_KEYWORD, pos=start, keyword=kw.lower())
        if not spec.known:
            return spec
        if ftype == "range":
            last, step, limit = (_int(fspec[k]) for k in ("lastkey", "keystep", "limit"))
            # A limit applies only to a range counted from the end, and Redis asserts
            # that range is lastkey -1; any other negative one is a guess, so unknown.
            if step >= 1 and limit >= 0 and (limit == 0 or last == -1 or last >= 0):
                fixed = spec.pos + last if spec.begin == _INDEX and last >= 0 else 0
                return replace(
                    spec, find=_RANGE, lastkey=last, keystep=step, limit=limit, fixed=fixed
                )
        elif ftype == "keynum":
            idx, first, step = (_int(fspec[k]) for k in ("keynumidx", "firstkey", "keystep"))
            if idx >= 0 and first >= 0 and step >= 1:
                return replace(spec, find=_KEYNUM, keynumidx=idx, firstkey=first, keystep=step)
    except (KeyError, TypeError, ValueError):
        pass
    return KeySpec(_UNKNOWN, not_key=not_key, flags=flags)


def one_key_index(specs: tuple[KeySpec, ...]) -> int | None:
    """The index of a command's only key when its specs name exactly one, at a fixed
    place (GET, SET, INCR, LPUSH...): then that argument is the whole key check (ACL)
    and the whole slot (cluster), with no `keys_of` per command. None otherwise."""
    if len(specs) != 1:
        return None
    spec = specs[0]
    if spec.not_key or not spec.fixed or spec.fixed != spec.pos:
        return None
    return spec.pos


def keys_of(
    specs: tuple[KeySpec, ...], args: list[bytes], *, include_not_keys: bool = False
) -> list[tuple[bytes, int]] | None:
    """Every key in `args` (the command name at 0; for a subcommand the indices count
    from the container's name, as in Redis) with its READ/WRITE mask, in spec order; a
    key named twice is listed twice. None when the keys cannot be known: an unknown or
    incomplete spec, or a numkeys argument that is missing, not a count, or names more
    keys than there are arguments. Specs flagged `not_key` (shard channels: SPUBLISH)
    are skipped unless `include_not_keys` (for slot hashing, as Redis Cluster does).

    Arguments too short for a spec (GET with no key) give no keys for it: a key can only
    be an argument, and Redis rejects the command for its arity before running it."""
    out: list[tuple[bytes, int]] = []
    argc = len(args)
    for spec in specs:
        if spec.not_key and not include_not_keys:
            continue
        last = spec.fixed
        if last:
            # The common case inline (the same rules as _collect's range).
            first = spec.pos
            if last < argc:
                if last == first:
                    out.append((args[first], spec.access))
                else:
                    access = spec.access
                    out.extend([(k, access) for k in args[first : last + 1 : spec.keystep]])
            elif first < argc:
                return None
            continue
        begin = spec.begin
        if begin == _INDEX:
            if not _collect(spec, args, argc, spec.pos, out):
                return None
        elif begin == _KEYWORD:
            if not _keyword(spec, args, argc, out):
                return None
        else:
            return None
    return out


def _keyword(spec: KeySpec, args: list[bytes], argc: int, out: list[tuple[bytes, int]]) -> bool:
    """Keys after every place the keyword appears, not only the first one Redis's own
    spec walk stops at: a command's parser may take a later one (GEORADIUS ... STORE a
    STORE b stores into b), or skip an earlier one as a value (XREADGROUP COUNT 1 GROUP
    STREAMS c STREAMS s 0: group "STREAMS", stream s). Checking every candidate can deny
    an odd command Redis would allow (a key itself named like the keyword), never the
    reverse. The scan is Redis's: from startfrom on, or backwards from argc + startfrom
    down to 1, never looking at the last argument (no key can follow a keyword there)."""
    kw = spec.keyword
    n = len(kw)
    start = spec.pos
    if start > 0:
        scan = range(start, argc - 1)
    else:
        start += argc
        scan = range(min(start, argc - 2), 0, -1) if start < argc else range(0)
    for i in scan:
        a = args[i]
        if len(a) == n and a.lower() == kw and not _collect(spec, args, argc, i + 1, out):
            return False
    return True


def _collect(
    spec: KeySpec, args: list[bytes], argc: int, first: int, out: list[tuple[bytes, int]]
) -> bool:
    """Append the keys of one spec whose search began at `first`; False: keys unknown."""
    if spec.find == _RANGE:
        if first >= argc:
            return True  # too few arguments: an arity error, and no key to check
        last = spec.lastkey
        if last >= 0:
            last += first
            if last >= argc:
                # Some keys present, some missing: Redis calls the spec invalid (the
                # command fails); not guessing which of the arguments it would use.
                return False
        elif spec.limit:
            # Keys take 1/limit of what follows (XREAD STREAMS s1 s2 id1 id2).
            last = first + (argc - first) // spec.limit - 1
        else:
            last += argc  # counted from the end (BLPOP k1 k2 timeout)
        # last < first: the optional keys are absent (PFMERGE dest); nothing to add.
    else:
        at = first + spec.keynumidx
        if at >= argc:
            # (Redis 7.0 compares keynumidx alone with argc: only arity keeps it in bounds.)
            return False
        raw = args[at]
        # Digits only: int() would take " 2", "+2" and "0_2", which Redis does not; a
        # count Redis would read differently from us must not pass as ours.
        if not raw.isdigit() or len(raw) > _MAX_DIGITS:
            return False
        count = int(raw)
        if count == 0:
            return True  # EVAL s 0: no keys (Redis's spec walk balks, its getkeys agrees)
        first += spec.firstkey
        # Redis's spec walk reads keystep > 1 as stepping within `numkeys` arguments;
        # the docs mean numkeys keys, each keystep apart. The latter covers more
        # arguments, so it is the one checked (no 7.0 command has keystep > 1).
        last = first + (count - 1) * spec.keystep
        if last >= argc:
            return False  # more keys claimed than arguments: Redis refuses the command
    if last >= first:
        access = spec.access
        out.extend([(k, access) for k in args[first : last + 1 : spec.keystep]])
    return True


# ---- parsing helpers: RESP2 gives flat [key, value, ...] lists, RESP3 maps; bytes or str.


def _text(v: bytes | str) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def _seq(v: object) -> list[object] | tuple[object, ...] | None:
    return v if isinstance(v, list | tuple) else None


def _fields(v: object) -> dict[str, object] | None:
    """A flat key/value list (or a map) as a dict with str keys; None if it is neither."""
    if isinstance(v, Mapping):
        pairs = list(v.items())
    else:
        seq = _seq(v)
        if seq is None or len(seq) % 2:
            return None
        pairs = list(zip(seq[::2], seq[1::2], strict=True))
    out: dict[str, object] = {}
    for key, value in pairs:
        if not isinstance(key, bytes | str):
            return None
        out[_text(key).lower()] = value
    return out


def _typed(v: object) -> tuple[str, dict[str, object]] | None:
    """begin_search / find_keys: ["type", name, "spec", [key, value, ...]]."""
    fields = _fields(v)
    if fields is None:
        return None
    kind = fields.get("type")
    spec = _fields(fields.get("spec", []))
    if not isinstance(kind, bytes | str) or spec is None:
        return None
    return _text(kind).lower(), spec


def _int(v: object) -> int:
    # bool is an int to Python, not to Redis.
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise TypeError(v)
