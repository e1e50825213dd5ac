"""Client geolocation: CIDR table, GeoIP database (real .mmdb files), overrides, ranking."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.model import Config, GeoIPConfig, IPNetwork, ProxyConfig, RegionConfig
from routing import geo
from routing.geo import ClientLocation, GeoResolver, haversine_km
from tests.helpers.mmdb import (
    DEFAULT_ENTRIES,
    SAMPLE_IPS,
    city_record,
    write_city_db,
    write_country_db,
    write_db,
)

AP, US, EU = "ap-southeast-1", "us-east-1", "eu-west-1"
REGIONS = (
    RegionConfig(AP, 1.29, 103.85, ()),
    RegionConfig(US, 38.13, -78.45, ()),
    RegionConfig(EU, 53.35, -6.26, ()),
)
# Every region by distance from each region (worked out by hand from the coordinates).
FROM = {AP: (AP, EU, US), US: (US, EU, AP), EU: (EU, US, AP)}


def make_config(
    database: str | None = None,
    *,
    home: str = US,
    networks: tuple[tuple[str, str], ...] = (),
    countries: tuple[tuple[str, str], ...] = (),
    continents: tuple[tuple[str, str], ...] = (),
    regions: tuple[RegionConfig, ...] = REGIONS,
) -> Config:
    nets: tuple[tuple[IPNetwork, str], ...] = tuple(
        (ipaddress.ip_network(n), r) for n, r in networks
    )
    return Config(
        proxy=ProxyConfig(region=home),
        regions=regions,
        geoip=GeoIPConfig(
            database=database, networks=nets, countries=countries, continents=continents
        ),
    )


@pytest.fixture
def city_db(tmp_path: Path) -> str:
    return write_city_db(str(tmp_path / "city.mmdb"))


@pytest.fixture
def resolver(city_db: str) -> Iterator[GeoResolver]:
    r = GeoResolver(make_config(city_db))
    yield r
    r.close()


# --- GeoIP ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "continent", "ranking"),
    [
        ("CN", "AS", (AP, EU, US)),
        ("PH", "AS", (AP, EU, US)),
        ("JP", "AS", (AP, EU, US)),  # IPv6
        ("US", "NA", (US, EU, AP)),
        ("SE", "EU", (EU, US, AP)),
        ("GB", "EU", (EU, US, AP)),
        ("IL", "AS", (EU, AP, US)),  # IPv6; Asia, but Dublin is nearest
    ],
)
def test_nearest_region_by_geoip(
    resolver: GeoResolver, country: str, continent: str, ranking: tuple[str, ...]
) -> None:
    ip = SAMPLE_IPS[country]
    loc = resolver.locate(ip)
    assert loc.address == ip
    assert loc.source == "geoip"
    assert (loc.country, loc.continent) == (country, continent)
    assert loc.latitude is not None and loc.longitude is not None
    assert loc.ranking == ranking


def test_coordinates_come_from_the_database(resolver: GeoResolver) -> None:
    loc = resolver.locate(SAMPLE_IPS["JP"])
    assert (loc.latitude, loc.longitude) == (35.7, 139.7)


def test_every_sample_ip_is_inside_its_network() -> None:
    nets = {rec["country"]["iso_code"]: ipaddress.ip_network(c) for c, rec in DEFAULT_ENTRIES}
    for country, ip in SAMPLE_IPS.items():
        assert ipaddress.ip_address(ip) in nets[country]


def test_ipv4_mapped_ipv6_is_treated_as_ipv4(resolver: GeoResolver) -> None:
    ip = "::ffff:" + SAMPLE_IPS["CN"]
    loc = resolver.locate(ip)
    assert loc.address == ip
    assert (loc.source, loc.country, loc.ranking) == ("geoip", "CN", (AP, EU, US))


@pytest.mark.parametrize("ip", ["8.8.8.8", "2001:db8::1", "127.0.0.1", "::1", "::ffff:8.8.8.8"])
def test_unknown_address_goes_to_the_proxy_region(resolver: GeoResolver, ip: str) -> None:
    loc = resolver.locate(ip)
    assert loc == ClientLocation(ip, "default", None, None, None, None, FROM[US])


@pytest.mark.parametrize("home", [AP, US, EU])
def test_default_ranking_starts_at_the_proxy_region(city_db: str, home: str) -> None:
    r = GeoResolver(make_config(city_db, home=home))
    assert r.region == home
    assert r.locate("8.8.8.8").ranking == FROM[home]
    r.close()


def test_without_proxy_region_the_first_region_is_home() -> None:
    r = GeoResolver(make_config(home=""))
    assert r.region == AP
    assert r.locate(SAMPLE_IPS["US"]).ranking == FROM[AP]


def test_without_database_everything_is_default() -> None:
    r = GeoResolver(make_config(None, home=EU))
    loc = r.locate(SAMPLE_IPS["CN"])
    assert (loc.source, loc.country, loc.ranking) == ("default", None, FROM[EU])
    r.close()


@pytest.mark.parametrize("address", ["", "not-an-ip", "/tmp/georedis.sock", "1.2.3.4:5"])
def test_unparsable_address_is_default(resolver: GeoResolver, address: str) -> None:
    loc = resolver.locate(address)
    assert (loc.address, loc.source, loc.ranking) == (address, "default", FROM[US])


def test_close_stops_database_lookups(city_db: str) -> None:
    r = GeoResolver(make_config(city_db))
    assert r.locate(SAMPLE_IPS["CN"]).source == "geoip"
    r.close()
    r.close()  # idempotent
    assert r.locate(SAMPLE_IPS["CN"]).source == "default"


# --- the cache -----------------------------------------------------------------------


def test_cache_shares_a_slash24_but_keeps_each_address(resolver: GeoResolver) -> None:
    first = resolver.locate("1.2.4.8")
    second = resolver.locate("1.2.4.9")
    assert second.address == "1.2.4.9"
    assert (first.country, first.ranking) == (second.country, second.ranking)


def test_database_networks_narrower_than_the_cache_prefix(tmp_path: Path) -> None:
    # Two /25s in one /24, and two /64s in one /48, in different countries.
    cn = city_record("CN", 1, "China", "AS", 2, "Beijing", 39.9, 116.4)
    us = city_record("US", 3, "United States", "NA", 4, "San Diego", 32.7, -117.2)
    entries = [
        ("1.2.4.0/25", cn),
        ("1.2.4.128/25", us),
        ("2400:4050:1:1::/64", cn),
        ("2400:4050:1:2::/64", us),
    ]
    r = GeoResolver(make_config(write_city_db(str(tmp_path / "narrow.mmdb"), entries)))
    for _ in range(2):  # the second round would hit a wrongly shared cache entry
        assert r.locate("1.2.4.1").country == "CN"
        assert r.locate("1.2.4.200").country == "US"
        assert r.locate("2400:4050:1:1::1").country == "CN"
        assert r.locate("2400:4050:1:2::1").country == "US"
        assert r.locate("1.2.5.1").source == "default"
    r.close()


def test_cache_is_bounded(resolver: GeoResolver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(geo, "CACHE_SIZE", 8)
    for i in range(50):
        loc = resolver.locate(f"132.239.{i}.1")
        assert loc.country == "US"
        assert len(resolver._cache) <= 8


# --- CIDR table ----------------------------------------------------------------------

NETWORKS = (
    ("10.0.0.0/8", US),
    ("10.1.0.0/16", EU),
    ("10.1.2.0/24", AP),
    ("10.1.2.128/25", US),
    ("10.1.2.200/32", EU),
    ("fd00::/8", US),
    ("fd00:1::/32", EU),
    ("fd00:1:2::/48", AP),
    ("fd00:1:2:3::/64", US),
    ("1.2.4.0/26", EU),  # inside the database's Chinese /24
    ("::ffff:192.168.0.0/112", AP),  # IPv4-mapped spelling of 192.168.0.0/16
)


@pytest.mark.parametrize(
    ("ip", "region"),
    [
        ("10.200.0.1", US),
        ("10.1.200.1", EU),
        ("10.1.2.1", AP),
        ("10.1.2.129", US),
        ("10.1.2.200", EU),
        ("10.1.2.201", US),
        ("::ffff:10.1.2.1", AP),
        ("fd99::1", US),
        ("fd00:1:ffff::1", EU),
        ("fd00:1:2:ffff::1", AP),
        ("fd00:1:2:3::1", US),
        ("1.2.4.8", EU),
        ("192.168.7.7", AP),
    ],
)
def test_cidr_longest_prefix_wins(city_db: str, ip: str, region: str) -> None:
    r = GeoResolver(make_config(city_db, networks=NETWORKS))
    loc = r.locate(ip)
    assert (loc.source, loc.country, loc.latitude) == ("network", None, None)
    assert loc.ranking == FROM[region]
    r.close()


def test_cidr_entry_inside_a_cached_slash24(city_db: str) -> None:
    # 1.2.4.0/26 is in the table; the rest of 1.2.4.0/24 comes from the database. The
    # order of lookups must not matter.
    r = GeoResolver(make_config(city_db, networks=NETWORKS))
    for ip, source in [("1.2.4.100", "geoip"), ("1.2.4.8", "network"), ("1.2.4.101", "geoip")]:
        assert r.locate(ip).source == source
    r.close()


def test_first_cidr_entry_wins_for_a_duplicate_network() -> None:
    r = GeoResolver(make_config(networks=(("10.0.0.0/8", EU), ("10.0.0.0/8", AP))))
    assert r.locate("10.0.0.1").ranking[0] == EU


# --- country and continent maps ------------------------------------------------------


def test_country_map_puts_its_region_first(city_db: str) -> None:
    r = GeoResolver(make_config(city_db, countries=(("il", AP),)))
    il = r.locate(SAMPLE_IPS["IL"])
    assert (il.source, il.country, il.ranking) == ("geoip", "IL", (AP, EU, US))
    # Other countries keep the distance order.
    assert r.locate(SAMPLE_IPS["GB"]).ranking == (EU, US, AP)
    r.close()


def test_continent_map_puts_its_region_first(city_db: str) -> None:
    r = GeoResolver(make_config(city_db, continents=(("EU", US),)))
    assert r.locate(SAMPLE_IPS["SE"]).ranking == (US, EU, AP)
    assert r.locate(SAMPLE_IPS["GB"]).ranking == (US, EU, AP)
    assert r.locate(SAMPLE_IPS["IL"]).ranking == (EU, AP, US)  # Asia: unaffected
    r.close()


def test_country_map_beats_continent_map(city_db: str) -> None:
    r = GeoResolver(make_config(city_db, countries=(("GB", AP),), continents=(("EU", US),)))
    assert r.locate(SAMPLE_IPS["GB"]).ranking == (AP, EU, US)
    assert r.locate(SAMPLE_IPS["SE"]).ranking == (US, EU, AP)
    r.close()


def test_cidr_table_beats_country_map(city_db: str) -> None:
    r = GeoResolver(make_config(city_db, networks=(("1.2.4.0/24", US),), countries=(("CN", EU),)))
    assert r.locate(SAMPLE_IPS["CN"]).ranking == FROM[US]
    r.close()


# --- Country-format databases --------------------------------------------------------


def test_country_database_without_a_mapping_is_default(tmp_path: Path) -> None:
    r = GeoResolver(make_config(write_country_db(str(tmp_path / "country.mmdb")), home=EU))
    loc = r.locate(SAMPLE_IPS["CN"])
    # No coordinates and no map entry: placed by default, the country still reported.
    assert (loc.source, loc.country, loc.latitude, loc.ranking) == ("default", "CN", None, FROM[EU])
    r.close()


def test_country_database_with_maps(tmp_path: Path) -> None:
    path = write_country_db(str(tmp_path / "country.mmdb"))
    r = GeoResolver(make_config(path, countries=(("CN", AP),), continents=(("EU", EU),)))
    cn = r.locate(SAMPLE_IPS["CN"])
    assert (cn.source, cn.continent, cn.ranking) == ("geoip", "AS", FROM[AP])
    assert r.locate(SAMPLE_IPS["JP"]).source == "default"
    assert r.locate(SAMPLE_IPS["SE"]).ranking == FROM[EU]
    r.close()


def test_unsupported_database_type_is_refused(tmp_path: Path) -> None:
    path = write_db(str(tmp_path / "asn.mmdb"), DEFAULT_ENTRIES, database_type="GeoLite2-ASN")
    with pytest.raises(ValueError, match="GeoLite2-ASN"):
        GeoResolver(make_config(path))


# --- explicit override ---------------------------------------------------------------


def test_override(resolver: GeoResolver) -> None:
    loc = resolver.override(EU, SAMPLE_IPS["CN"])
    assert loc == ClientLocation(SAMPLE_IPS["CN"], "override", None, None, None, None, FROM[EU])
    assert resolver.override(AP, "8.8.8.8").ranking == FROM[AP]


def test_override_unknown_region(resolver: GeoResolver) -> None:
    with pytest.raises(KeyError, match="mars-1"):
        resolver.override("mars-1", "1.2.3.4")


# --- configuration errors and ranking details ----------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"home": "mars-1"},
        {"networks": (("10.0.0.0/8", "mars-1"),)},
        {"countries": (("CN", "mars-1"),)},
        {"continents": (("AS", "mars-1"),)},
    ],
)
def test_unknown_region_in_config_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="mars-1"):
        GeoResolver(make_config(**kwargs))  # type: ignore[arg-type]


def test_no_regions_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one region"):
        GeoResolver(make_config(home="", regions=()))


def test_ties_are_broken_by_config_order(city_db: str) -> None:
    # Two regions on the same spot: config order decides, both ways round.
    twin_a = RegionConfig("twin-a", 53.35, -6.26, ())
    twin_b = RegionConfig("twin-b", 53.35, -6.26, ())
    for regions, expected in [
        ((REGIONS[0], twin_a, twin_b), ("twin-a", "twin-b", AP)),
        ((REGIONS[0], twin_b, twin_a), ("twin-b", "twin-a", AP)),
    ]:
        r = GeoResolver(make_config(city_db, home=AP, regions=regions))
        assert r.locate(SAMPLE_IPS["GB"]).ranking == expected
        assert r.override(AP, "1.1.1.1").ranking == (AP, *expected[:2])
        r.close()


def test_haversine() -> None:
    assert haversine_km(51.5, -0.13, 53.35, -6.26) == pytest.approx(464, abs=2)  # London-Dublin
    assert haversine_km(1.29, 103.85, 1.29, 103.85) == 0.0
    assert haversine_km(0, 0, 0, 180) == pytest.approx(20015, abs=2)  # half the equator
