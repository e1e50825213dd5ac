"""Small MaxMind-format GeoIP databases for tests, written with `mmdb-writer`.

The records follow the layout of MaxMind's GeoIP2/GeoLite2 City database, so the
proxy reads them through `geoip2.database.Reader` exactly as it reads the real thing.
The databases are IPv6 with IPv4 stored under ::/96 (`ipv4_compatible`), where the
readers look IPv4 addresses up; IPv4-mapped addresses (::ffff:a.b.c.d) are not aliased
(the resolver unmaps them itself, and the tests check that it does).

The prefixes are real allocations in the right countries (not documentation ranges),
so the fixtures read like production data.
"""

from __future__ import annotations

from typing import Any

import netaddr
from mmdb_writer import MmdbF64, MmdbU16, MmdbU32, MMDBWriter

Record = dict[str, Any]

# (continent code, geoname id, English name)
_CONTINENTS = {
    "AS": (6255147, "Asia"),
    "EU": (6255148, "Europe"),
    "NA": (6255149, "North America"),
}


def city_record(
    country: str,
    country_geoname: int,
    country_name: str,
    continent: str,
    city_geoname: int,
    city_name: str,
    latitude: float,
    longitude: float,
) -> Record:
    """A GeoIP2-City record. Numbers carry MaxMind's own types (uint32 geoname ids,
    double coordinates, uint16 accuracy) rather than mmdb-writer's size-based guess."""
    continent_geoname, continent_name = _CONTINENTS[continent]
    return {
        "city": {"geoname_id": MmdbU32(city_geoname), "names": {"en": city_name}},
        "continent": {
            "code": continent,
            "geoname_id": MmdbU32(continent_geoname),
            "names": {"en": continent_name},
        },
        "country": {
            "iso_code": country,
            "geoname_id": MmdbU32(country_geoname),
            "names": {"en": country_name},
        },
        "location": {
            "accuracy_radius": MmdbU16(50),
            "latitude": MmdbF64(latitude),
            "longitude": MmdbF64(longitude),
        },
    }


DEFAULT_ENTRIES: list[tuple[str, Record]] = [
    # CNNIC, Beijing
    ("1.2.4.0/24", city_record("CN", 1814991, "China", "AS", 1816670, "Beijing", 39.9, 116.4)),
    # Globe Telecom, Manila
    (
        "112.198.0.0/16",
        city_record("PH", 1694008, "Philippines", "AS", 1701668, "Manila", 14.6, 121.0),
    ),
    # NTT, Tokyo (IPv6)
    ("2400:4050::/32", city_record("JP", 1861060, "Japan", "AS", 1850147, "Tokyo", 35.7, 139.7)),
    # UC San Diego
    (
        "132.239.0.0/16",
        city_record("US", 6252001, "United States", "NA", 5391811, "San Diego", 32.7, -117.2),
    ),
    # KTH, Stockholm
    (
        "130.237.0.0/16",
        city_record("SE", 2661886, "Sweden", "EU", 2673730, "Stockholm", 59.3, 18.1),
    ),
    # BBC, London
    (
        "212.58.224.0/19",
        city_record("GB", 2635167, "United Kingdom", "EU", 2643743, "London", 51.5, -0.13),
    ),
    # Tel Aviv (IPv6)
    ("2a02:6680::/32", city_record("IL", 294640, "Israel", "AS", 293397, "Tel Aviv", 32.1, 34.8)),
]

# Country code -> an address inside that country's network above.
SAMPLE_IPS: dict[str, str] = {
    "CN": "1.2.4.8",
    "PH": "112.198.10.20",
    "JP": "2400:4050:1234::1",
    "US": "132.239.1.1",
    "SE": "130.237.28.40",
    "GB": "212.58.237.1",
    "IL": "2a02:6680:1100::5",
}


def write_db(
    path: str,
    entries: list[tuple[str, Record]],
    database_type: str = "GeoIP2-City",
) -> str:
    """Write `entries` (CIDR, record) as an IPv6 database of `database_type`; returns path."""
    writer = MMDBWriter(
        ip_version=6,
        database_type=database_type,
        languages=["en"],
        description="georedis test database",
        ipv4_compatible=True,
    )
    for cidr, record in entries:
        writer.insert_network(netaddr.IPSet([cidr]), record)
    writer.to_db_file(path)
    return path


def write_city_db(path: str, entries: list[tuple[str, Record]] | None = None) -> str:
    """A GeoIP2-City database of `entries` (DEFAULT_ENTRIES when None); returns path."""
    return write_db(path, DEFAULT_ENTRIES if entries is None else entries)


def write_country_db(path: str, entries: list[tuple[str, Record]] | None = None) -> str:
    """A GeoIP2-Country database: the same networks with only continent and country."""
    rows = DEFAULT_ENTRIES if entries is None else entries
    countries = [
        (cidr, {k: v for k, v in rec.items() if k in ("continent", "country")})
        for cidr, rec in rows
    ]
    return write_db(path, countries, database_type="GeoIP2-Country")
