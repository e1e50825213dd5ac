"""Read a georedis TOML file and validate it into the frozen `config.model.Config`.

Strategy: every section is described by a table mapping each key to a *converter*. A
converter checks one raw TOML value and returns the typed value, or reports a problem and
returns None (TOML has no null, so None always means "invalid"). Nothing raises while
parsing: every problem is appended to one list, so a user who runs `georedis check-config`
sees all of them at once, and only then is one `ConfigError` raised.

Fields left out of the file take the defaults declared in `config.model`, the single place
defaults live. Keys that are not fields are errors (a typo must never fall back to a
default silently), with the closest valid key suggested.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import maxminddb

from config.errors import ConfigError
from config.model import (
    LOOPBACK_NETWORKS,
    Address,
    BackendConfig,
    Config,
    Fallback,
    GeoIPConfig,
    HealthConfig,
    IPNetwork,
    LogFormat,
    MetricsConfig,
    ProxyConfig,
    RegionConfig,
    RoutingConfig,
)


class _Ctx:
    """What converters share: where errors go, and what cross-field checks need."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.base_dir = Path(source).parent
        self.errors: list[str] = []
        # Every well-formed region name, filled before [geoip] is read.
        self.region_names: list[str] = []

    def error(self, path: str, problem: str) -> None:
        where = f"{self.source}: {path}: " if path else f"{self.source}: "
        self.errors.append(where + problem)


# A converter: (ctx, dotted path of the value, raw value) -> typed value, or None if bad.
Conv = Callable[[_Ctx, str, object], Any]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _join(path: str, key: str) -> str:
    # Quote keys as TOML would, so `geoip.networks."10.0.0.0/8"` can be pasted back.
    part = key if _BARE_KEY.fullmatch(key) else '"' + key.replace('"', '\\"') + '"'
    return f"{path}.{part}" if path else part


def _kind(value: object) -> str:
    """The TOML name of a parsed value's type, for messages."""
    names: tuple[tuple[type, str], ...] = (
        (bool, "boolean"),  # before int: bool is an int subclass
        (int, "integer"),
        (float, "float"),
        (str, "string"),
        (list, "array"),
        (dict, "table"),
    )
    for typ, name in names:
        if isinstance(value, typ):
            return name
    return "date/time"


def _got(value: object) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"  # as written in TOML
    return f"{_kind(value)} {value!r}" if isinstance(value, str | int | float) else _kind(value)


def _suggest(key: str, valid: Iterable[str]) -> str:
    choices = sorted(valid)
    close = difflib.get_close_matches(key, choices, n=1)
    # difflib misses abbreviations ("lat" for "latitude"); a prefix is a good guess.
    close = close or [c for c in choices if c.startswith(key) or key.startswith(c)]
    if close:
        return f" (did you mean '{close[0]}'?)"
    return " (expected one of: " + ", ".join(choices) + ")" if choices else ""


# --- scalar converters --------------------------------------------------------------


def _int(minimum: int) -> Callable[[_Ctx, str, object], int | None]:
    def conv(ctx: _Ctx, path: str, v: object) -> int | None:
        # bool is an int in Python but `workers = true` is a mistake, not 1.
        if not isinstance(v, int) or isinstance(v, bool):
            ctx.error(path, f"expected an integer, got {_got(v)}")
            return None
        if v < minimum:
            bound = "> 0" if minimum == 1 else f">= {minimum}"
            ctx.error(path, f"must be {bound}, got {v}")
            return None
        return v

    return conv


_ms = _int(1)  # durations in milliseconds: zero would mean "no deadline" or a busy loop
_count = _int(0)


def _float(lo: float, hi: float) -> Conv:
    def conv(ctx: _Ctx, path: str, v: object) -> float | None:
        # An integer is fine for a float field (`latitude = 1`); a string is not.
        if not isinstance(v, int | float) or isinstance(v, bool):
            ctx.error(path, f"expected a number, got {_got(v)}")
            return None
        if math.isnan(v) or not lo <= v <= hi:
            ctx.error(path, f"must be between {lo:g} and {hi:g}, got {v}")
            return None
        return float(v)

    return conv


def _bool(ctx: _Ctx, path: str, v: object) -> bool | None:
    if not isinstance(v, bool):
        ctx.error(path, f"expected true or false, got {_got(v)}")
        return None
    return v


def _string(ctx: _Ctx, path: str, v: object) -> str | None:
    if not isinstance(v, str):
        ctx.error(path, f"expected a string, got {_got(v)}")
        return None
    if not v:
        ctx.error(path, "must not be empty")
        return None
    return v


def _region_name(ctx: _Ctx, path: str, v: object) -> str | None:
    s = _string(ctx, path, v)
    # Names are words in admin commands (`PROXY FAILOVER <region>`) and metric labels.
    if s is not None and (" " in s or not s.isprintable()):
        ctx.error(path, f"must not contain spaces or control characters, got {s!r}")
        return None
    return s


def _choice(options: tuple[str, ...]) -> Callable[[_Ctx, str, object], str | None]:
    def conv(ctx: _Ctx, path: str, v: object) -> str | None:
        s = _string(ctx, path, v)
        if s is not None and s not in options:
            listed = ", ".join(repr(o) for o in options)
            ctx.error(path, f"must be one of {listed}, got {s!r}")
            return None
        return s

    return conv


def _enum(cls: type[Enum]) -> Conv:
    choose = _choice(tuple(str(m.value) for m in cls))

    def conv(ctx: _Ctx, path: str, v: object) -> Enum | None:
        s = choose(ctx, path, v)
        return None if s is None else cls(s)

    return conv


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_name(ctx: _Ctx, path: str, v: object) -> str | None:
    s = _string(ctx, path, v)
    if s is not None and not _ENV_NAME.fullmatch(s):
        ctx.error(path, f"{s!r} is not an environment variable name")
        return None
    return s


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


def _address(ctx: _Ctx, path: str, v: object) -> Address | None:
    if not isinstance(v, str):
        ctx.error(path, f"expected a 'host:port' string, got {_got(v)}")
        return None
    try:
        return parse_address(v)
    except ValueError as e:
        ctx.error(path, f"bad address {v!r}: {e}")
        return None


def _network(ctx: _Ctx, path: str, v: str) -> IPNetwork | None:
    try:
        # strict=False: "10.1.2.3/8" means 10.0.0.0/8, as in most firewall configs.
        return ipaddress.ip_network(v, strict=False)
    except ValueError as e:
        ctx.error(path, f"bad CIDR {v!r}: {e}")
        return None


def _list(item: Callable[[_Ctx, str, object], Any], nonempty: bool) -> Conv:
    def conv(ctx: _Ctx, path: str, v: object) -> tuple[Any, ...] | None:
        if not isinstance(v, list):
            ctx.error(path, f"expected an array, got {_got(v)}")
            return None
        if nonempty and not v:
            ctx.error(path, "must not be empty")
            return None
        items = [item(ctx, f"{path}[{i}]", x) for i, x in enumerate(v)]
        return None if any(x is None for x in items) else tuple(items)

    return conv


def _cidr(ctx: _Ctx, path: str, v: object) -> IPNetwork | None:
    if not isinstance(v, str):
        ctx.error(path, f"expected a CIDR string, got {_got(v)}")
        return None
    return _network(ctx, path, v)


_cidrs = _list(_cidr, nonempty=False)


def _proxy_protocol_from(ctx: _Ctx, path: str, v: object) -> tuple[IPNetwork, ...] | None:
    # `[]` reads as "no restriction" but must not mean it: with proxy_protocol on, any
    # client could then write a header claiming any address. Empty = this host only.
    nets = _cidrs(ctx, path, v)
    return LOOPBACK_NETWORKS if nets == () else nets


def _workers(ctx: _Ctx, path: str, v: object) -> int | None:
    # "auto" is spelled out in the file; the model encodes it as 0 (one per core).
    if v == "auto":
        return 0
    if isinstance(v, str):
        ctx.error(path, f'expected an integer >= 0 or "auto", got {_got(v)}')
        return None
    return _count(ctx, path, v)


# --- [geoip] ------------------------------------------------------------------------

_COUNTRY = re.compile(r"[A-Z]{2}")
_CONTINENTS = ("AF", "AN", "AS", "EU", "NA", "OC", "SA")


def _region_ref(ctx: _Ctx, path: str, v: object) -> str | None:
    name = _string(ctx, path, v)
    if name is not None and name not in ctx.region_names:
        ctx.error(path, f"unknown region {name!r}" + _suggest(name, ctx.region_names))
        return None
    return name


def _geo_table(key_check: Callable[[_Ctx, str, str], Any]) -> Conv:
    """A table of lookup key -> region name; `key_check` validates/converts each key."""

    def conv(ctx: _Ctx, path: str, v: object) -> tuple[tuple[Any, str], ...] | None:
        if not isinstance(v, dict):
            ctx.error(path, f"expected a table, got {_got(v)}")
            return None
        out: list[tuple[Any, str]] = []
        for key, ref in v.items():
            where = _join(path, key)
            k, region = key_check(ctx, where, key), _region_ref(ctx, where, ref)
            if k is not None and region is not None:
                out.append((k, region))
        return tuple(out)

    return conv


def _country_key(ctx: _Ctx, path: str, key: str) -> str | None:
    if not _COUNTRY.fullmatch(key):
        ctx.error(path, f"{key!r} is not an ISO 3166 alpha-2 country code (e.g. 'SG')")
        return None
    return key


def _continent_key(ctx: _Ctx, path: str, key: str) -> str | None:
    if key not in _CONTINENTS:
        ctx.error(path, f"{key!r} is not a continent code ({', '.join(_CONTINENTS)})")
        return None
    return key


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


def _database(ctx: _Ctx, path: str, v: object) -> str | None:
    name = _string(ctx, path, v)
    if name is None:
        return None
    # Relative to the config file, so the file works whatever the working directory.
    resolved = ctx.base_dir / Path(name).expanduser()
    problem = _mmdb_problem(resolved)
    if problem is not None:
        ctx.error(path, f"{name!r} ({resolved}): {problem}")
        return None
    return str(resolved.resolve())


# --- sections -----------------------------------------------------------------------

_PROXY: dict[str, Conv] = {
    "listen": _address,
    "region": _string,
    "workers": _workers,
    "proxy_protocol": _bool,
    "proxy_protocol_from": _proxy_protocol_from,
    "proxy_protocol_timeout_ms": _ms,
    "max_clients": _int(1),
    "drain_timeout_ms": _ms,
    "max_bulk_len": _int(1),
    "max_multibulk_len": _int(1),
    "max_inline_len": _int(1),
    "log_format": _enum(LogFormat),
    "log_level": _choice(("debug", "info", "warning", "error")),
}
_REGION: dict[str, Conv] = {
    "name": _region_name,
    "latitude": _float(-90.0, 90.0),
    "longitude": _float(-180.0, 180.0),
    "nodes": _list(_address, nonempty=True),
}
_BACKEND: dict[str, Conv] = {
    "username": _string,
    "password_env": _env_name,
    "timeout_ms": _ms,
    "script_timeout_ms": _ms,
    "connect_timeout_ms": _ms,
    "pool_size": _int(1),
    "dedicated_idle": _count,
    "reconnect_backoff_ms": _ms,
    "reconnect_backoff_max_ms": _ms,
}
_HEALTH: dict[str, Conv] = {
    "interval_ms": _ms,
    "probe_timeout_ms": _ms,
    "failures_to_down": _int(1),
    "heartbeat": _bool,
    "heartbeat_ms": _ms,
    "heartbeat_prefix": _string,
    "heartbeat_ttl_ms": _ms,
    "info_interval_ms": _ms,
}
_ROUTING: dict[str, Conv] = {
    "max_lag_ms": _ms,
    # A hold-down, not a deadline: 0 (take reads back at once) is meaningful.
    "lag_recovery_ms": _count,
    "fallback": _enum(Fallback),
    "read_your_writes": _bool,
}
_GEOIP: dict[str, Conv] = {
    "database": _database,
    "networks": _geo_table(_network),
    "countries": _geo_table(_country_key),
    "continents": _geo_table(_continent_key),
}
_METRICS: dict[str, Conv] = {
    "enabled": _bool,
    "listen": _address,
    # Same meaning as Redis' slowlog-log-slower-than: 0 logs every command.
    "slowlog_threshold_us": _count,
    "slowlog_max_len": _int(1),
}
# Every section's spec with its dataclass: `tests` checks they list exactly its fields.
SECTIONS: dict[str, tuple[type[Any], dict[str, Conv]]] = {
    "proxy": (ProxyConfig, _PROXY),
    "regions": (RegionConfig, _REGION),
    "backend": (BackendConfig, _BACKEND),
    "health": (HealthConfig, _HEALTH),
    "routing": (RoutingConfig, _ROUTING),
    "geoip": (GeoIPConfig, _GEOIP),
    "metrics": (MetricsConfig, _METRICS),
}
_PASSWORD_HINT = (
    "a literal password is not allowed in the file; put it in an environment variable "
    'and name that variable with password_env = "REDIS_PASSWORD"'
)


def _table(ctx: _Ctx, path: str, v: object) -> dict[str, object] | None:
    if not isinstance(v, dict):
        ctx.error(path, f"expected a table, got {_got(v)}")
        return None
    return v


def _fields(
    ctx: _Ctx, path: str, raw: Mapping[str, object], spec: Mapping[str, Conv]
) -> dict[str, Any]:
    """Convert the keys of one table that `spec` knows; report every other key."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        conv = spec.get(key)
        if conv is None:
            ctx.error(_join(path, key), "unknown key" + _suggest(key, spec))
            continue
        typed = conv(ctx, _join(path, key), value)
        if typed is not None:
            out[key] = typed
    return out


def _section(ctx: _Ctx, data: Mapping[str, object], name: str) -> Any:
    """Build one single-table section; its defaults stand in for absent or bad keys."""
    cls, spec = SECTIONS[name]
    raw = _table(ctx, name, data.get(name, {})) or {}
    if name == "backend" and "password" in raw:
        ctx.error("backend.password", _PASSWORD_HINT)
        raw = {k: v for k, v in raw.items() if k != "password"}
    return cls(**_fields(ctx, name, raw, spec))


def _regions(ctx: _Ctx, data: Mapping[str, object]) -> list[RegionConfig]:
    raw = data.get("regions")
    if raw is None or raw == []:
        ctx.error("regions", "at least one [[regions]] table is required")
        return []
    if not isinstance(raw, list):
        ctx.error("regions", f"expected an array of tables ([[regions]]), got {_got(raw)}")
        return []
    regions: list[RegionConfig] = []
    checked: list[tuple[int, dict[str, Any]]] = []
    for i, item in enumerate(raw):
        path = f"regions[{i}]"
        table = _table(ctx, path, item)
        if table is None:
            continue
        fields = _fields(ctx, path, table, _REGION)
        for key in _REGION:
            if key not in table:
                ctx.error(f"{path}.{key}", "missing required key")
        if "name" in fields:
            # Kept even when the region has other errors, so geoip references to it
            # do not produce a second, misleading "unknown region" error.
            ctx.region_names.append(fields["name"])
        checked.append((i, fields))
        if fields.keys() == _REGION.keys():
            regions.append(RegionConfig(**fields))
    _check_unique(ctx, checked)
    return regions


# --- cross-field checks ---------------------------------------------------------------


def _check_unique(ctx: _Ctx, regions: list[tuple[int, dict[str, Any]]]) -> None:
    """Region names and node addresses, each once; also in regions with other errors."""
    names: set[str] = set()
    first_node: dict[Address, str] = {}
    for i, fields in regions:
        name = fields.get("name")
        if name in names:
            ctx.error(f"regions[{i}].name", f"duplicate region name {name!r}")
        if name is not None:
            names.add(name)
        for j, addr in enumerate(fields.get("nodes", ())):
            path = f"regions[{i}].nodes[{j}]"
            if addr in first_node:
                ctx.error(path, f"node {addr} is already listed at {first_node[addr]}")
            first_node.setdefault(addr, path)


def _check_cross(ctx: _Ctx, cfg: Config) -> None:
    nodes = {addr: f"{name} region" for name, addr in cfg.all_nodes()}
    if cfg.proxy.listen in nodes:
        where = nodes[cfg.proxy.listen]
        ctx.error("proxy.listen", f"{cfg.proxy.listen} is also a node of the {where}")
    if cfg.metrics.enabled and cfg.metrics.listen == cfg.proxy.listen:
        ctx.error("metrics.listen", f"{cfg.metrics.listen} is also proxy.listen")
    b, h, g = cfg.backend, cfg.health, cfg.geoip
    if b.reconnect_backoff_max_ms < b.reconnect_backoff_ms:
        ctx.error("backend.reconnect_backoff_max_ms", "must be >= reconnect_backoff_ms")
    if h.heartbeat and h.heartbeat_ttl_ms <= h.heartbeat_ms:
        # Otherwise the key expires between two writes and lag reads as unknown.
        ctx.error("health.heartbeat_ttl_ms", "must be greater than heartbeat_ms")
    seen: set[IPNetwork] = set()
    for net, _ in g.networks:
        if net in seen:
            ctx.error("geoip.networks", f"network {net} is listed twice")
        seen.add(net)
    for key, table in (("countries", g.countries), ("continents", g.continents)):
        if table and g.database is None:
            # Country and continent come from the database; without it the table is dead.
            ctx.error(f"geoip.{key}", "needs geoip.database, where countries are looked up")


def _proxy(ctx: _Ctx, data: Mapping[str, object]) -> ProxyConfig:
    proxy: ProxyConfig = _section(ctx, data, "proxy")
    raw = data.get("proxy")
    if isinstance(raw, dict) and "region" in raw:
        # Checked only when well-formed: `_string` has already reported a bad value.
        if proxy.region and ctx.region_names and proxy.region not in ctx.region_names:
            problem = f"unknown region {proxy.region!r}"
            ctx.error("proxy.region", problem + _suggest(proxy.region, ctx.region_names))
        return proxy
    # Omitted: the proxy runs in the first region listed.
    first = ctx.region_names[0] if ctx.region_names else ""
    return dataclasses.replace(proxy, region=first)


def parse_config(data: Mapping[str, object], source: str) -> Config:
    """Validate parsed TOML `data` (from file `source`) into a Config, or raise ConfigError."""
    ctx = _Ctx(source)
    for key in data:
        if key not in SECTIONS:
            ctx.error(_join("", key), "unknown section" + _suggest(key, SECTIONS))
    regions = _regions(ctx, data)
    cfg = Config(
        proxy=_proxy(ctx, data),
        regions=tuple(regions),
        backend=_section(ctx, data, "backend"),
        health=_section(ctx, data, "health"),
        routing=_section(ctx, data, "routing"),
        geoip=_section(ctx, data, "geoip"),
        metrics=_section(ctx, data, "metrics"),
        source=source,
    )
    _check_cross(ctx, cfg)
    if ctx.errors:
        raise ConfigError(ctx.errors)
    return cfg


_TOML_POS = re.compile(r"(.*) \(at line (\d+), column (\d+)\)$")


def load_config(path: str) -> Config:
    """Read and validate the TOML file at `path`; raise ConfigError listing every problem."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror or e}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: not UTF-8 text: {e.reason} at byte {e.start}"]) from None
    except tomllib.TOMLDecodeError as e:
        m = _TOML_POS.match(str(e))
        problem = f"line {m[2]}, column {m[3]}: invalid TOML: {m[1]}" if m else f"invalid TOML: {e}"
        raise ConfigError([f"{path}: {problem}"]) from None
    return parse_config(data, path)


def resolve_password(cfg: Config) -> str | None:
    """The backend password from the environment variable the config names, if any."""
    name = cfg.backend.password_env
    if name is None:
        return None
    value = os.environ.get(name)
    if value is None:
        raise ConfigError(
            [f"{cfg.source}: backend.password_env: environment variable {name!r} is not set"]
        )
    return value
