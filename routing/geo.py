"""Where is a client, and which regions are nearest to it?

`GeoResolver.locate(ip)` answers once per client connection with a `ClientLocation`
whose `ranking` lists every configured region, nearest first; replica selection walks
that list. The first source that knows the address wins:

1. the CIDR table (`[geoip] networks`), longest prefix first: operators pin their own
   networks (VPNs, data centres, NAT pools) that no GeoIP database knows;
2. the GeoIP database (MaxMind City or Country format), with the `countries` and
   `continents` maps able to name a region outright;
3. the default: the proxy's own region.

Pure: no asyncio, no sockets. The only IO is the memory-mapped database file, opened
in the constructor and closed by `close()`.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

import geoip2.database
import geoip2.errors
import geoip2.models

from config.model import Config, IPNetwork, RegionConfig

__all__ = ["CACHE_SIZE", "ClientLocation", "GeoResolver", "haversine_km"]

IPAddr: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
# reader.city, reader.country or reader.enterprise; City and Enterprise subclass Country.
_Query: TypeAlias = Callable[[IPAddr], geoip2.models.Country]

# Entries in the per-network cache before it is cleared. Clearing everything at once is
# cruder than LRU but costs nothing per hit, and a lookup is cheap to redo.
CACHE_SIZE = 65536
# Cache granularity: addresses in one /24 (IPv4) or /48 (IPv6) nearly always share a
# location, but a result is only cached that broadly when the database says so.
_CACHE_PREFIX = {4: 24, 6: 48}
_EARTH_RADIUS_KM = 6371.0088
_MAPPED_V4 = ipaddress.IPv6Network("::ffff:0:0/96")

SOURCE_OVERRIDE = "override"
SOURCE_NETWORK = "network"
SOURCE_GEOIP = "geoip"
SOURCE_DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class ClientLocation:
    address: str
    source: str  # "override" | "network" | "geoip" | "default"
    country: str | None
    continent: str | None
    latitude: float | None
    longitude: float | None
    ranking: tuple[str, ...]  # region names, nearest first


@dataclass(frozen=True, slots=True)
class _Located:
    """A `ClientLocation` without the address: what the cache shares across a network."""

    source: str
    country: str | None
    continent: str | None
    latitude: float | None
    longitude: float | None
    ranking: tuple[str, ...]

    def at(self, address: str) -> ClientLocation:
        return ClientLocation(
            address,
            self.source,
            self.country,
            self.continent,
            self.latitude,
            self.longitude,
            self.ranking,
        )


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _plain(addr: IPAddr) -> IPAddr:
    """An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) as IPv4."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class _PrefixTable:
    """Longest-prefix match over a fixed set of networks, one family.

    One dict per prefix length, keyed by the masked address as an int: a lookup costs one
    mask and one dict probe per distinct prefix length in the table (a handful in
    practice), longest first.
    """

    def __init__(self, bits: int, networks: Iterable[tuple[IPNetwork, str]]) -> None:
        by_len: dict[int, dict[int, str]] = {}
        for net, region in networks:
            # The first entry for a network wins, as the file reads top to bottom.
            by_len.setdefault(net.prefixlen, {}).setdefault(int(net.network_address), region)
        full = (1 << bits) - 1
        self._levels = [
            (full ^ ((1 << (bits - plen)) - 1), table)
            for plen, table in sorted(by_len.items(), reverse=True)
        ]

    def lookup(self, value: int) -> str | None:
        for mask, table in self._levels:
            region = table.get(value & mask)
            if region is not None:
                return region
        return None


class GeoResolver:
    def __init__(self, config: Config) -> None:
        if not config.regions:
            raise ValueError("geo routing needs at least one region")
        self._regions: tuple[RegionConfig, ...] = config.regions
        names = {r.name for r in self._regions}
        home = config.proxy.region or self._regions[0].name
        _check_region(home, names, "proxy.region")
        self._home = home
        geo = config.geoip
        for net, region in geo.networks:
            _check_region(region, names, f"geoip.networks[{net}]")
        self._countries = _region_map(geo.countries, names, "geoip.countries")
        self._continents = _region_map(geo.continents, names, "geoip.continents")
        nets = [(_unmapped(n), r) for n, r in geo.networks]
        self._v4 = _PrefixTable(32, [(n, r) for n, r in nets if n.version == 4])
        self._v6 = _PrefixTable(128, [(n, r) for n, r in nets if n.version == 6])
        # Ranking from a region's own coordinates, for every region: used whenever the
        # region is known but the client's coordinates are not.
        self._from_region = {
            r.name: self._rank_from(r.name, r.latitude, r.longitude) for r in self._regions
        }
        self._default = _Located(SOURCE_DEFAULT, None, None, None, None, self._from_region[home])
        self._cache: dict[tuple[int, int], _Located] = {}
        self._reader: geoip2.database.Reader | None = None
        self._query: _Query | None = None
        if geo.database:
            self._reader = geoip2.database.Reader(geo.database, mode=geoip2.database.MODE_AUTO)
            self._query = _query_for(self._reader, geo.database)

    @property
    def region(self) -> str:
        """The proxy's own region: where clients of unknown location are placed."""
        return self._home

    def locate(self, ip: str) -> ClientLocation:
        """Where the client at `ip` is. An address that does not parse (a Unix socket
        peer, say) is placed in the proxy's region rather than refused."""
        try:
            addr = _plain(ipaddress.ip_address(ip))
        except ValueError:
            return self._default.at(ip)
        value = int(addr)
        region = (self._v4 if addr.version == 4 else self._v6).lookup(value)
        if region is not None:
            # Not cached: a CIDR entry may be narrower than the cache's /24 or /48.
            return self._region_first(SOURCE_NETWORK, region).at(ip)
        if self._query is None:
            return self._default.at(ip)
        key = (addr.version, value >> (addr.max_prefixlen - _CACHE_PREFIX[addr.version]))
        hit = self._cache.get(key)
        if hit is not None:
            return hit.at(ip)
        located, prefixlen = self._lookup_db(addr)
        # Share the answer with the whole /24 (/48) only when the database's network
        # covers all of it; a narrower network is looked up again for each address.
        if prefixlen <= _CACHE_PREFIX[addr.version]:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = located
        return located.at(ip)

    def override(self, region: str, ip: str) -> ClientLocation:
        """A location forced by the client or an admin: `region` first, then its nearest."""
        if region not in self._from_region:
            raise KeyError(f"unknown region {region!r}")
        return self._region_first(SOURCE_OVERRIDE, region).at(ip)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
            self._query = None
        self._cache.clear()

    # --- internals -----------------------------------------------------------------

    def _lookup_db(self, addr: IPAddr) -> tuple[_Located, int]:
        """The database's answer for `addr` and the prefix length it applies to."""
        assert self._query is not None
        try:
            model = self._query(addr)
        except geoip2.errors.AddressNotFoundError as e:
            net = e.network
            return self._default, net.prefixlen if net is not None else addr.max_prefixlen
        except ValueError:
            # An IPv6 address in an IPv4-only database.
            return self._default, 0
        network = model.traits.network
        prefixlen = network.prefixlen if network is not None else addr.max_prefixlen
        return self._from_model(model), prefixlen

    def _from_model(self, model: geoip2.models.Country) -> _Located:
        country = model.country.iso_code
        continent = model.continent.code
        lat = lon = None
        if isinstance(model, geoip2.models.City):
            lat, lon = model.location.latitude, model.location.longitude
        mapped = (self._countries.get(country) if country else None) or (
            self._continents.get(continent) if continent else None
        )
        if lat is not None and lon is not None:
            ranking = self._rank_from(None, lat, lon)
            if mapped is not None:
                ranking = (mapped, *(r for r in ranking if r != mapped))
            return _Located(SOURCE_GEOIP, country, continent, lat, lon, ranking)
        if mapped is not None:
            ranking = self._from_region[mapped]
            return _Located(SOURCE_GEOIP, country, continent, lat, lon, ranking)
        # Known country but nothing to place it by: the default decides the order, and
        # the record is kept for status output.
        return _Located(SOURCE_DEFAULT, country, continent, None, None, self._default.ranking)

    def _region_first(self, source: str, region: str) -> _Located:
        return _Located(source, None, None, None, None, self._from_region[region])

    def _rank_from(self, first: str | None, lat: float, lon: float) -> tuple[str, ...]:
        """Every region by distance from (lat, lon), `first` at the front; config order
        breaks ties (sorted() is stable)."""
        rest = [r for r in self._regions if r.name != first]
        rest.sort(key=lambda r: haversine_km(lat, lon, r.latitude, r.longitude))
        head = (first,) if first is not None else ()
        return head + tuple(r.name for r in rest)


def _check_region(region: str, names: set[str], field: str) -> None:
    if region not in names:
        raise ValueError(f"{field}: unknown region {region!r}")


def _region_map(pairs: Iterable[tuple[str, str]], names: set[str], field: str) -> Mapping[str, str]:
    """Code -> region, codes upper-cased as the database writes them; first entry wins."""
    out: dict[str, str] = {}
    for code, region in pairs:
        _check_region(region, names, f"{field}[{code}]")
        out.setdefault(code.upper(), region)
    return out


def _unmapped(net: IPNetwork) -> IPNetwork:
    """An entry written as ::ffff:a.b.c.d/n matches IPv4 clients (addresses are unmapped
    before lookup, so it would otherwise never match)."""
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and net.subnet_of(_MAPPED_V4):
        v4 = ipaddress.IPv4Address(int(net.network_address) & 0xFFFFFFFF)
        return ipaddress.IPv4Network((v4, net.prefixlen - 96))
    return net


def _query_for(reader: geoip2.database.Reader, path: str) -> _Query:
    """The lookup that fits the database's format; geoip2 refuses the wrong one."""
    database_type = reader.metadata().database_type
    if "City" in database_type:  # GeoIP2-City, GeoLite2-City, DBIP-City-Lite...
        return reader.city
    if "Enterprise" in database_type:  # a superset of City
        return reader.enterprise
    if "Country" in database_type:  # no coordinates: the country/continent maps place it
        return reader.country
    reader.close()
    raise ValueError(
        f"{path}: GeoIP database type {database_type!r} is not a City or Country database"
    )
