"""Text for the admin commands `PROXY INFO`, `PROXY CLIENTS` and `PROXY CONFIG GET`.

`PROXY INFO` reads like Redis' INFO (`# Section` headers, `key:value` lines, CRLF) so
the same eyes and scripts can read it; node and route lines follow INFO's `slave0:`
style (`node0:addr=...,region=...`). The data comes from `statuspage.status_json`, the
same source as the status page and /status.json.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Iterator
from enum import Enum
from fnmatch import fnmatchcase
from typing import Any

from config.aclrules import AclRules
from config.model import Address, Config, RegionConfig, UserConfig
from proxy.observe.statuspage import status_json
from proxy.stats import ClientInfo, StatusSource


def _section(name: str, lines: list[str]) -> str:
    return f"# {name}\r\n" + "".join(f"{line}\r\n" for line in lines)


def _opt(v: float | int | None, fmt: str = "{:.1f}") -> str:
    # INFO's own convention for "not known" (master_last_io_seconds_ago:-1).
    return "-1" if v is None else fmt.format(v)


def _node_line(i: int, n: dict[str, Any]) -> str:
    fields = (
        f"addr={n['addr']}",
        f"region={n['region']}",
        f"role={n['role']}",
        f"up={int(n['up'])}",
        f"link={int(n['link_up'])}",
        f"eligible={int(n['eligible'])}",
        f"reason={n['reason']}",
        f"lag_ms={_opt(n['lag_ms'])}",
        f"lag_bytes={_opt(n['lag_bytes'], '{:d}')}",
        f"outstanding={n['outstanding']}",
        f"pool={n['pool_connections']}",
        f"used_memory={_opt(n['used_memory'], '{:d}')}",
        f"maxmemory={_opt(n['maxmemory'], '{:d}')}",
    )
    return f"node{i}:" + ",".join(fields)


def render_proxy_info(source: StatusSource) -> str:
    data = status_json(source)
    p = data["proxy"]
    proxy = [
        f"georedis_version:{p['version']}",
        f"uptime_in_seconds:{p['uptime_s']}",
        f"config_file:{p['config_file']}",
        f"region:{p['region']}",
        f"workers:{p['workers']}",
        f"connected_clients:{p['clients']}",
        f"total_commands:{p['total_commands']}",
        f"ops_per_sec:{p['ops_per_sec']:.2f}",
        f"topology_version:{p['topology_version']}",
        f"primary:{p['primary'] or ''}",
        f"primary_error:{p['primary_error']}",
    ]
    stats = [f"{k}:{v}" for k, v in data["counters"].items()]
    for cls, v in data["commands"].items():
        stats.append(f"commands_{cls}:{v['total']}")
        stats.append(f"errors_{cls}:{v['errors']}")
    routing = [
        f"route{i}:client_region={r['client_region']},served_region={r['served_region']},"
        f"reads={r['reads']},pct={r['pct']:.2f}"
        for i, r in enumerate(data["routing"])
    ]
    regions = [
        f"region{i}:name={r['name']},nodes={len(r['nodes'])},"
        f"eligible_replicas={r['eligible_replicas']}"
        for i, r in enumerate(data["regions"])
    ]
    nodes = [n for r in data["regions"] for n in r["nodes"]]
    return "\r\n".join(
        (
            _section("Proxy", proxy),
            _section("Stats", stats),
            _section("Routing", routing),
            _section("Regions", regions),
            _section("Nodes", [_node_line(i, n) for i, n in enumerate(nodes)]),
        )
    )


def _client_line(c: ClientInfo) -> str:
    # CLIENT LIST's field names where they exist; names have no spaces in CLIENT LIST either.
    return (
        f"id={c.id} addr={c.addr} name={c.name.replace(' ', '_')} age={int(c.age_s)} "
        f"idle={int(c.idle_s)} flags={c.flags or 'N'} db={c.db} resp={c.protocol} "
        f"qbuf={c.qbuf} omem={c.omem} user={c.user} region={c.region} "
        f"loc={c.location_source} tot-cmds={c.commands}\n"
    )


def render_clients(source: StatusSource) -> str:
    return "".join(_client_line(c) for c in source.clients())


# --- PROXY CONFIG GET ---------------------------------------------------------------


def _value(v: object) -> str:
    """One config value as CONFIG GET would print it."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, Enum):
        return str(v.value)
    if isinstance(v, Address | ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(v)
    if isinstance(v, tuple):
        # Pairs (network/country/continent -> region) print as key=value.
        return " ".join(
            f"{_value(x[0])}={_value(x[1])}" if isinstance(x, tuple) else _value(x) for x in v
        )
    return str(v)


def _flatten(prefix: str, obj: object) -> Iterator[tuple[str, str]]:
    assert dataclasses.is_dataclass(obj)
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        name = f"{prefix}{f.name}"
        if isinstance(v, tuple) and v and isinstance(v[0], RegionConfig):
            for r in v:
                yield from _flatten(f"{name}.{r.name}.", r)
        elif isinstance(v, tuple) and v and isinstance(v[0], UserConfig):
            for u in v:
                yield from _user(f"{name}.{u.name}.", u)
        elif dataclasses.is_dataclass(v) and not isinstance(v, Address):
            yield from _flatten(f"{name}.", v)
        else:
            yield name, _value(v)


def _user(prefix: str, user: UserConfig) -> Iterator[tuple[str, str]]:
    """A user's settings; its rules without `#<hash>` words, its hashes only counted:
    a password's sha256 is a secret too (a weak password falls to a dictionary)."""
    for f in dataclasses.fields(user):
        v = getattr(user, f.name)
        if isinstance(v, AclRules):
            yield f"{prefix}{f.name}", v.text(hashes=False)
        elif f.name == "password_sha256":
            yield f"{prefix}{f.name}", f"({len(v) + len(user.rules.hashes)} hidden)"
        else:
            yield f"{prefix}{f.name}", _value(v)


def config_items(config: Config) -> list[tuple[str, str]]:
    """Every setting as (dotted name, value), in model order; regions as regions.<name>.*."""
    return list(_flatten("", config))


def config_get(
    config: Config, pattern: str, extra: Iterable[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """Settings whose dotted name matches the glob (case-insensitive, as CONFIG GET);
    `extra` first (which load is in force: `loaded.version`, `loaded.hash`)."""
    pat = pattern.lower()
    items = [*extra, *config_items(config)]
    return [(k, v) for k, v in items if fnmatchcase(k.lower(), pat)]
