"""Converters: each checks one raw TOML value and returns the typed value for the model.

A converter reports a problem to the `Context` and returns None rather than raising, so
one pass over a file finds every problem (see `config.context`). Which field uses which
converter is not written here but derived from the model's annotations (`config.spec`).
Like every module in config/, this one imports nothing from proxy/ or routing/.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import maxminddb

from config.aclrules import AclRules, parse_rules
from config.context import Context, Conv, got, join, suggest
from config.model import LOOPBACK_NETWORKS, Address, IPNetwork, OutputLimit

# --- scalars ------------------------------------------------------------------------


def integer(minimum: int) -> Callable[[Context, str, object], int | None]:
    def conv(ctx: Context, path: str, v: object) -> int | None:
        # bool is an int in Python but `workers = true` is a mistake, not 1.
        if not isinstance(v, int) or isinstance(v, bool):
            ctx.error(path, f"expected an integer, got {got(v)}")
            return None
        if v < minimum:
            bound = "> 0" if minimum == 1 else f">= {minimum}"
            ctx.error(path, f"must be {bound}, got {v}")
            return None
        return v

    return conv


def number(lo: float, hi: float) -> Conv:
    def conv(ctx: Context, path: str, v: object) -> float | None:
        # An integer is fine for a float field (`latitude = 1`); a string is not.
        if not isinstance(v, int | float) or isinstance(v, bool):
            ctx.error(path, f"expected a number, got {got(v)}")
            return None
        if math.isnan(v) or not lo <= v <= hi:
            ctx.error(path, f"must be between {lo:g} and {hi:g}, got {v}")
            return None
        return float(v)

    return conv


def boolean(ctx: Context, path: str, v: object) -> bool | None:
    if not isinstance(v, bool):
        ctx.error(path, f"expected true or false, got {got(v)}")
        return None
    return v


def string(ctx: Context, path: str, v: object) -> str | None:
    if not isinstance(v, str):
        ctx.error(path, f"expected a string, got {got(v)}")
        return None
    if not v:
        ctx.error(path, "must not be empty")
        return None
    return v


def region_name(ctx: Context, path: str, v: object) -> str | None:
    s = string(ctx, path, v)
    # Names are words in admin commands (`PROXY FAILOVER <region>`) and metric labels.
    if s is not None and (" " in s or not s.isprintable()):
        ctx.error(path, f"must not contain spaces or control characters, got {s!r}")
        return None
    return s


def choice(options: tuple[str, ...]) -> Callable[[Context, str, object], str | None]:
    def conv(ctx: Context, path: str, v: object) -> str | None:
        s = string(ctx, path, v)
        if s is not None and s not in options:
            listed = ", ".join(repr(o) for o in options)
            ctx.error(path, f"must be one of {listed}, got {s!r}")
            return None
        return s

    return conv


def enum(cls: type[Enum]) -> Conv:
    choose = choice(tuple(str(m.value) for m in cls))

    def conv(ctx: Context, path: str, v: object) -> Enum | None:
        s = choose(ctx, path, v)
        return None if s is None else cls(s)

    return conv


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_name(ctx: Context, path: str, v: object) -> str | None:
    s = string(ctx, path, v)
    if s is not None and not _ENV_NAME.fullmatch(s):
        ctx.error(path, f"{s!r} is not an environment variable name")
        return None
    return s


_non_negative = integer(0)


def workers(ctx: Context, path: str, v: object) -> int | None:
    # "auto" is spelled out in the file; the model encodes it as 0 (one per core).
    if v == "auto":
        return 0
    if isinstance(v, str):
        ctx.error(path, f'expected an integer >= 0 or "auto", got {got(v)}')
        return None
    return _non_negative(ctx, path, v)


# --- addresses and networks -----------------------------------------------------------

_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def _looks_like_bad_ipv4(host: str) -> bool:
    # "127.0.0.300" matches the hostname pattern but is a typo, not a name to resolve.
    if not host.replace(".", "").isdigit():
        return False
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return True
    return False


def parse_address(text: str) -> Address:
    """Parse "host:port" or "[v6]:port"; ValueError says what is wrong."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError("expected '[IPv6]:port'")
        try:
            # Normalised, so `[0::1]` and `[::1]` count as the same node.
            host = ipaddress.IPv6Address(host).compressed
        except ValueError:
            raise ValueError(f"'{host}' is not an IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError("expected 'host:port'")
        if ":" in host:
            raise ValueError("write IPv6 hosts in brackets, as '[::1]:6380'")
        if not _HOSTNAME.fullmatch(host) or _looks_like_bad_ipv4(host):
            raise ValueError(f"'{host}' is not a valid host")
        host = host.lower()  # DNS names are case-insensitive; IPv4 is unaffected
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("port must be 1-65535")
    return Address(host, int(port))


def address(ctx: Context, path: str, v: object) -> Address | None:
    if not isinstance(v, str):
        ctx.error(path, f"expected a 'host:port' string, got {got(v)}")
        return None
    try:
        return parse_address(v)
    except ValueError as e:
        ctx.error(path, f"bad address {v!r}: {e}")
        return None


def network(ctx: Context, path: str, v: str) -> IPNetwork | None:
    try:
        # strict=False: "10.1.2.3/8" means 10.0.0.0/8, as in most firewall configs.
        return ipaddress.ip_network(v, strict=False)
    except ValueError as e:
        ctx.error(path, f"bad CIDR {v!r}: {e}")
        return None


def array(item: Callable[[Context, str, object], Any], nonempty: bool) -> Conv:
    def conv(ctx: Context, path: str, v: object) -> tuple[Any, ...] | None:
        if not isinstance(v, list):
            ctx.error(path, f"expected an array, got {got(v)}")
            return None
        if nonempty and not v:
            ctx.error(path, "must not be empty")
            return None
        items = [item(ctx, f"{path}[{i}]", x) for i, x in enumerate(v)]
        return None if any(x is None for x in items) else tuple(items)

    return conv


def _cidr(ctx: Context, path: str, v: object) -> IPNetwork | None:
    if not isinstance(v, str):
        ctx.error(path, f"expected a CIDR string, got {got(v)}")
        return None
    return network(ctx, path, v)


_cidrs = array(_cidr, nonempty=False)
nodes = array(address, nonempty=True)


def peers(ctx: Context, path: str, v: object) -> tuple[IPNetwork, ...] | None:
    # `[]` reads as "no restriction" but must not mean it: with proxy_protocol on, any
    # client could then write a header claiming any address. Empty = this host only.
    nets = _cidrs(ctx, path, v)
    return LOOPBACK_NETWORKS if nets == () else nets


# --- [geoip] ------------------------------------------------------------------------

_COUNTRY = re.compile(r"[A-Z]{2}")
_CONTINENTS = ("AF", "AN", "AS", "EU", "NA", "OC", "SA")


def _region_ref(ctx: Context, path: str, v: object) -> str | None:
    name = string(ctx, path, v)
    if name is not None and name not in ctx.region_names:
        ctx.error(path, f"unknown region {name!r}" + suggest(name, ctx.region_names))
        return None
    return name


def _geo_table(key_check: Callable[[Context, str, str], Any]) -> Conv:
    """A table of lookup key -> region name; `key_check` validates/converts each key."""

    def conv(ctx: Context, path: str, v: object) -> tuple[tuple[Any, str], ...] | None:
        if not isinstance(v, dict):
            ctx.error(path, f"expected a table, got {got(v)}")
            return None
        out: list[tuple[Any, str]] = []
        for key, ref in v.items():
            where = join(path, key)
            k, region = key_check(ctx, where, key), _region_ref(ctx, where, ref)
            if k is not None and region is not None:
                out.append((k, region))
        return tuple(out)

    return conv


def _country_key(ctx: Context, path: str, key: str) -> str | None:
    if not _COUNTRY.fullmatch(key):
        ctx.error(path, f"{key!r} is not an ISO 3166 alpha-2 country code (e.g. 'SG')")
        return None
    return key


def _continent_key(ctx: Context, path: str, key: str) -> str | None:
    if key not in _CONTINENTS:
        ctx.error(path, f"{key!r} is not a continent code ({', '.join(_CONTINENTS)})")
        return None
    return key


network_table = _geo_table(network)
country_table = _geo_table(_country_key)
continent_table = _geo_table(_continent_key)


def _mmdb_problem(path: Path) -> str | None:
    if not path.exists():
        return "file not found"
    if not path.is_file():
        return "not a regular file"
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as e:
        return f"unreadable: {e.strerror or e}"
    try:
        db = maxminddb.open_database(str(path))
    except (maxminddb.InvalidDatabaseError, ValueError, OSError) as e:
        return f"not a MaxMind DB: {e}"
    kind = db.metadata().database_type
    db.close()
    # The router reads locations (City, Enterprise) or countries; an ASN, ISP or
    # anonymous-IP database opens fine but places no one, so the proxy would not start.
    if not any(k in kind for k in ("City", "Enterprise", "Country")):
        return f"database type {kind!r} is not a City or Country database"
    return None


def database(ctx: Context, path: str, v: object) -> str | None:
    name = string(ctx, path, v)
    if name is None:
        return None
    # Relative to the config file, so the file works whatever the working directory.
    resolved = ctx.base_dir / Path(name).expanduser()
    problem = _mmdb_problem(resolved)
    if problem is not None:
        ctx.error(path, f"{name!r} ({resolved}): {problem}")
        return None
    return str(resolved.resolve())


def readable_file(ctx: Context, path: str, v: object) -> str | None:
    """A file (certificate, key, CA) that must exist and be readable now, relative to
    the config file: found at check time, not at the first TLS handshake."""
    name = string(ctx, path, v)
    if name is None:
        return None
    resolved = ctx.base_dir / Path(name).expanduser()
    try:
        with open(resolved, "rb"):
            pass
    except OSError as e:
        ctx.error(path, f"{name!r} ({resolved}): {e.strerror or e}")
        return None
    return str(resolved.resolve())


# --- [policy] -----------------------------------------------------------------------

_COMMAND_NAME = re.compile(r"[a-z][a-z0-9_.-]*(\|[a-z][a-z0-9_.-]*)?")


def command_names(ctx: Context, path: str, v: object) -> tuple[str, ...] | None:
    """Command names as Redis' COMMAND spells them: "flushall", "config|set" (or the
    client's spelling, "CONFIG SET"), lowercased."""
    if not isinstance(v, list):
        ctx.error(path, f"must be an array of command names, {got(v)}")
        return None
    names: list[str] = []
    for i, item in enumerate(v):
        name = " ".join(item.lower().split()).replace(" ", "|") if isinstance(item, str) else ""
        if not _COMMAND_NAME.fullmatch(name):
            ctx.error(
                f"{path}[{i}]",
                f'must be a command name such as "flushall" or "config|set", {got(item)}',
            )
            continue
        names.append(name)
    return tuple(dict.fromkeys(names))


# --- client output buffer limits ------------------------------------------------------

# Redis' memory units (memtoull): k/m/g are powers of 1000, kb/mb/gb of 1024.
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2,
          "g": 1000**3, "gb": 1024**3}  # fmt: skip
_MEMORY = re.compile(r"(\d+)([a-z]*)")


def _memory(text: str) -> int | None:
    m = _MEMORY.fullmatch(text.lower())
    if m is None or m.group(2) not in _UNITS:
        return None
    return int(m.group(1)) * _UNITS[m.group(2)]


def memory(ctx: Context, path: str, v: object) -> int | None:
    """A size as Redis writes one: 1073741824, "1gb", "512mb" (kb/mb/gb: powers of 1024)."""
    size = v if isinstance(v, int) and not isinstance(v, bool) else None
    if isinstance(v, str):
        size = _memory(v)
    if size is None or size < 1:
        ctx.error(path, f'must be a size such as "1gb" or "512mb", {got(v)}')
        return None
    return size


def output_limit(ctx: Context, path: str, v: object) -> OutputLimit | None:
    """Redis' client-output-buffer-limit class values: "<hard> <soft> <soft seconds>"."""
    parts = v.split() if isinstance(v, str) else []
    sizes = [_memory(p) for p in parts[:2]]
    if len(parts) != 3 or None in sizes or not parts[2].isdigit():
        ctx.error(
            path, f'must be "<hard> <soft> <seconds>" as in Redis, e.g. "256mb 64mb 60", {got(v)}'
        )
        return None
    hard, soft = (s or 0 for s in sizes)
    return OutputLimit(hard, soft, int(parts[2]))


# --- [[users]] ------------------------------------------------------------------------

_SHA256 = re.compile(r"[0-9a-f]{64}")


def acl_rules(ctx: Context, path: str, v: object) -> AclRules | None:
    if not isinstance(v, str):
        ctx.error(path, f"expected a string of ACL rules, got {got(v)}")
        return None
    rules, problems = parse_rules(v)
    for problem in problems:
        ctx.error(path, problem)
    return None if problems else rules


def sha256_list(ctx: Context, path: str, v: object) -> tuple[str, ...] | None:
    """Password hashes: `echo -n "$PASSWORD" | sha256sum`, as Redis' `#<hash>` rules."""
    items = v if isinstance(v, list) else [v]
    out: list[str] = []
    for i, item in enumerate(items):
        text = item.lower() if isinstance(item, str) else ""
        if not _SHA256.fullmatch(text):
            # The value is not shown: a password pasted here by mistake would be logged.
            ctx.error(f"{path}[{i}]", "must be a sha256 hex digest (64 hex digits)")
            continue
        out.append(text)
    return tuple(dict.fromkeys(out))
