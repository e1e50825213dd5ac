"""Hot reload's pure parts: what changed and what needs a restart, a user's connections
after a reload, clients located again, and the GeoIP file re-opened when replaced
(real .mmdb files; no sockets)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from config.aclrules import parse_rules
from config.model import (
    Address,
    BackendConfig,
    Config,
    GeoIPConfig,
    ProxyConfig,
    RegionConfig,
    RoutingConfig,
    UserConfig,
)
from proxy.server.auth import Users
from proxy.server.client import ClientState
from proxy.server.geowatch import GeoWatch, relocate
from proxy.server.reload import changed, in_force, scan_warning
from proxy.stats import ProxyStats
from routing.acl import NOT_AUTHENTICATED
from routing.geo import GeoResolver
from tests.helpers.mmdb import DEFAULT_ENTRIES, SAMPLE_IPS, city_record, write_city_db

AP, US, EU = "ap-southeast-1", "us-east-1", "eu-west-1"
REGIONS = (
    RegionConfig(AP, 1.29, 103.85, ()),
    RegionConfig(US, 38.13, -78.45, ()),
    RegionConfig(EU, 53.35, -6.26, ()),
)


def config(**kw: Any) -> Config:
    base: dict[str, Any] = {"proxy": ProxyConfig(region=AP), "regions": REGIONS}
    base.update(kw)
    return Config(**base)


def test_changed_names_each_field_and_what_needs_a_restart() -> None:
    old = config()
    new = dataclasses.replace(
        old,
        routing=RoutingConfig(max_lag_ms=250),
        backend=BackendConfig(pool_size=4),
        regions=REGIONS[:2],
    )
    diff, restart = changed(old, new)
    assert diff == ["regions", "backend.pool_size", "routing.max_lag_ms"]
    assert restart == ["backend.pool_size"]
    assert changed(old, dataclasses.replace(old, source="other.toml")) == ([], [])


def _user(name: str, rules: str) -> UserConfig:
    return UserConfig(name=name, rules=parse_rules(rules)[0])


def _users(*users: UserConfig) -> tuple[Users, tuple[UserConfig, ...]]:
    return Users(config(users=users), ProxyStats()), users


def test_a_reload_gives_a_logged_in_client_its_users_new_rules_or_closes_it() -> None:
    before, old = _users(_user("app", "on nopass ~app:* +get"))
    st = ClientState(1, 0.0, (AP,), AP, False)
    user = before.by_name["app"]
    assert before.enter(st, user)
    assert st.perms is user.perms
    after, _ = _users(_user("app", "on nopass ~app:* +get +set"))
    assert after.keep(st, before, old)
    assert st.perms is after.by_name["app"].perms and st.user == "app"
    gone, _ = _users(_user("other", "on nopass ~* +@all"))
    assert not gone.keep(st, before, old)  # its user was deleted: the connection is closed
    off, _ = _users(_user("app", "off nopass ~* +@all"))
    assert off.keep(st, before, old)  # as Redis: a user turned off keeps its connections


def test_the_open_default_keeps_its_connections_when_users_are_added() -> None:
    before, old = _users()  # no [[users]]: everyone is the open default
    st = ClientState(1, 0.0, (AP,), AP, False)
    st.perms, st.authed = None, True
    after, _ = _users(_user("ops", "on nopass ~* +@all"))  # no default among them
    assert after.keep(st, before, old)
    assert st.authed and st.perms is None  # as Redis' connections when requirepass is set
    new_st = ClientState(2, 0.0, (AP,), AP, False)
    new_st.perms, new_st.authed = after.initial()
    assert not new_st.authed  # a new connection must AUTH


def test_a_users_options_are_set_again_only_when_the_reload_changed_them() -> None:
    eu = dataclasses.replace(_user("eu", "on nopass ~* +@all"), max_lag_ms=250)
    before, old = _users(eu)
    st = ClientState(1, 0.0, (AP,), AP, False)
    assert before.enter(st, before.by_name["eu"]) and st.max_lag_ms == 250
    st.max_lag_ms = 50.0  # the client's own PROXY MAXLAG 50
    same, _ = _users(eu)
    assert same.keep(st, before, old) and st.max_lag_ms == 50.0
    changed_eu, _ = _users(dataclasses.replace(eu, max_lag_ms=400))
    assert changed_eu.keep(st, before, old) and st.max_lag_ms == 400.0


def test_a_client_not_logged_in_is_as_a_new_connection_after_a_reload() -> None:
    before, old = _users(_user("ops", "on nopass ~* +@all"))
    st = ClientState(1, 0.0, (AP,), AP, False)
    st.perms, st.authed = NOT_AUTHENTICATED, False
    open_default, _ = _users(_user("default", "on nopass ~* +@all"))
    assert open_default.keep(st, before, old)
    assert st.authed and st.perms is open_default.by_name["default"].perms
    assert Users(config(), ProxyStats()).keep(st, before, old) and st.perms is None


def test_in_force_keeps_what_only_a_restart_changes() -> None:
    old = config()
    given = dataclasses.replace(
        old,
        backend=BackendConfig(pool_size=4, username="rotated"),
        routing=RoutingConfig(max_lag_ms=250),
        proxy=dataclasses.replace(old.proxy, workers=4, max_clients=50),
    )
    new = in_force(old, given)
    assert new.backend == old.backend and new.proxy.workers == old.proxy.workers
    assert new.proxy.max_clients == 50 and new.routing.max_lag_ms == 250


def test_a_reload_that_moves_nodes_warns_about_scan_cursors() -> None:
    a, b, c = (Address("127.0.0.1", p) for p in (7000, 7001, 7002))
    regs = (RegionConfig(AP, 1.29, 103.85, (a,)), RegionConfig(US, 38.13, -78.45, (b,)))
    old = config(regions=regs)
    added = config(regions=(*regs, RegionConfig(EU, 53.35, -6.26, (c,))))
    assert scan_warning(old, added) == []  # appended: every cursor's node keeps its number
    inserted = config(regions=(regs[0], RegionConfig(EU, 53.35, -6.26, (c,)), regs[1]))
    assert scan_warning(old, inserted)


def test_relocate_follows_the_new_regions(tmp_path: Path) -> None:
    geo = GeoResolver(config())
    st = ClientState(1, 0.0, (AP,), AP, False)
    st.set_location(geo.override(EU, "10.0.0.1"))
    assert st.region == EU
    two = GeoResolver(config(regions=REGIONS[:2]))
    relocate(st, two)  # its region is gone: located as any other client from there
    assert st.region == AP and EU not in st.ranking
    relocate(st, geo)
    assert st.ranking == geo.locate("10.0.0.1").ranking


class _Host:
    """What GeoWatch touches of the process."""

    def __init__(self, cfg: Config) -> None:
        self.config = cfg
        self.geo = GeoResolver(cfg)
        self.default_ranking = self.geo.locate("").ranking
        self.sessions: dict[int, Any] = {}


class _Served:
    def __init__(self, st: ClientState) -> None:
        self.state = st

    def close_now(self, abort: bool = False) -> None:
        raise AssertionError("a GeoIP reopen closes no client")


def test_geowatch_reopens_a_replaced_database_and_locates_clients_again(tmp_path: Path) -> None:
    path = write_city_db(str(tmp_path / "city.mmdb"))
    host = _Host(config(geoip=GeoIPConfig(database=path)))
    us_ip = SAMPLE_IPS["US"]
    st = ClientState(1, 0.0, (AP,), AP, False)
    st.set_location(host.geo.locate(us_ip))
    host.sessions[1] = _Served(st)
    assert st.region == US
    watch = GeoWatch(host)  # type: ignore[arg-type]
    watch.check()  # unchanged file: nothing happens
    assert st.region == US
    # geoipupdate writes a new file beside the old one and renames it over it.
    sweden = city_record("SE", 2661886, "Sweden", "EU", 2673730, "Stockholm", 59.3, 18.1)
    moved = [(cidr, sweden if cidr.startswith("132.239") else rec) for cidr, rec in DEFAULT_ENTRIES]
    write_city_db(str(tmp_path / "city.mmdb.new"), moved)
    os.replace(tmp_path / "city.mmdb.new", path)
    old = host.geo
    watch.check()
    assert host.geo is not old
    assert host.geo.locate(us_ip).country == "SE"
    assert st.region == EU  # the connected client located again by the new file
