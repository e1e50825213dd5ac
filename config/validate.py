"""Cross-field checks: rules about several fields at once, run after each is converted.

A converter sees one value; these see the whole file: region names and node addresses
each listed once, listen addresses that collide with nodes, bounds between two settings,
and [geoip] tables that need the database. Problems go to the same `Context` as every
other, so they are reported together. Like every module in config/, this one imports
nothing from proxy/ or routing/.
"""

from __future__ import annotations

from typing import Any

from config.alertsconv import check_alerts
from config.context import Context
from config.model import Address, Config, IPNetwork


def check_unique(ctx: Context, regions: list[tuple[int, dict[str, Any]]]) -> None:
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


def check_cross(ctx: Context, cfg: Config) -> None:
    """The rules between sections and between two fields of one section."""
    nodes = {addr: f"{name} region" for name, addr in cfg.all_nodes()}
    if cfg.proxy.listen in nodes:
        where = nodes[cfg.proxy.listen]
        ctx.error("proxy.listen", f"{cfg.proxy.listen} is also a node of the {where}")
    if cfg.metrics.enabled and cfg.metrics.listen == cfg.proxy.listen:
        ctx.error("metrics.listen", f"{cfg.metrics.listen} is also proxy.listen")
    regions = {r.name for r in cfg.regions}
    for i, u in enumerate(cfg.users):
        if u.region is not None and regions and u.region not in regions:
            ctx.error(f"users[{i}].region", f"unknown region {u.region!r}")
    _check_tls(ctx, cfg)
    check_alerts(ctx, cfg.alerts)
    s = cfg.sentinel
    if (s.master_name is None) != (not s.addresses):
        ctx.error("sentinel.addresses" if s.master_name else "sentinel.master_name",
                  "master_name and addresses go together")  # fmt: skip
    if cfg.cluster.seeds and s.master_name is not None:
        # A cluster's masters are its own to elect; there is no one primary to follow.
        ctx.error("cluster.seeds", "cluster mode and [sentinel] do not go together")
    if cfg.cluster.announce is not None and cfg.cluster.present_as != "cluster":
        # Only the CLUSTER replies name it: set alone it would silently do nothing.
        ctx.error("cluster.announce", 'only used with present_as = "cluster"')
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


def _check_tls(ctx: Context, cfg: Config) -> None:
    t, b = cfg.tls, cfg.backend
    if (t.cert_file is None) != (t.key_file is None):
        ctx.error("tls.key_file" if t.key_file is None else "tls.cert_file",
                  "cert_file and key_file go together")  # fmt: skip
    if t.cert_file is None and (t.listen is not None or t.client_auth != "no"):
        ctx.error("tls.cert_file", "needed for [tls] listen and client_auth")
    if t.client_auth != "no" and t.ca_file is None:
        ctx.error("tls.ca_file", f"client_auth = {t.client_auth!r} needs the CA of the clients")
    if t.user_from_cn and t.client_auth == "no":
        ctx.error("tls.user_from_cn", 'needs client_auth = "optional" or "required"')
    if t.listen is not None and t.listen == cfg.proxy.listen:
        ctx.error("tls.listen", f"{t.listen} is also proxy.listen")
    m = cfg.metrics
    if (m.auth_user is None) != (m.auth_password_env is None):
        ctx.error("metrics.auth_password_env", "auth_user and auth_password_env go together")
    if m.tls and t.cert_file is None:
        ctx.error("metrics.tls", "needs [tls] cert_file and key_file")
    if (b.tls_cert_file is None) != (b.tls_key_file is None):
        ctx.error("backend.tls_key_file", "tls_cert_file and tls_key_file go together")
