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
from proxy.server.reload import GeoWatch, changed, relocate
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


def test_a_reload_gives_a_logged_in_client_its_users_new_rules_or_closes_it() -> None:
    before = Users(config(users=(_user("app", "on nopass ~app:* +get"),)), ProxyStats())
    st = ClientState(1, 0.0, (AP,), AP, False)
    user = before.by_name["app"]
    assert before.enter(st, user)
    assert st.perms is user.perms
    after = Users(config(users=(_user("app", "on nopass ~app:* +get +set"),)), ProxyStats())
    assert after.keep(st)
    assert st.perms is after.by_name["app"].perms and st.user == "app"
    gone = Users(config(users=(_user("other", "on nopass ~* +@all"),)), ProxyStats())
    assert not gone.keep(st)  # its user was removed: the connection is closed
    off = Users(config(users=(_user("app", "off nopass ~* +@all"),)), ProxyStats())
    assert not off.keep(st)


def test_a_client_not_logged_in_is_as_a_new_connection_after_a_reload() -> None:
    st = ClientState(1, 0.0, (AP,), AP, False)
    st.perms, st.authed = NOT_AUTHENTICATED, False
    open_default = Users(config(users=(_user("default", "on nopass ~* +@all"),)), ProxyStats())
    assert open_default.keep(st)
    assert st.authed and st.perms is open_default.by_name["default"].perms
    assert Users(config(), ProxyStats()).keep(st) and st.perms is None  # no users: open


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
