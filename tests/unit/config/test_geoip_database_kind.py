"""`[geoip] database` must be one the router can use: check-config says so, not start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter

from config.loader import ConfigError, parse_config

REGIONS = [{"name": "a", "latitude": 1.0, "longitude": 2.0, "nodes": ["127.0.0.1:7000"]}]


def load_with(tmp_path: Path, database_type: str) -> None:
    MMDBWriter(database_type=database_type).to_db_file(str(tmp_path / "db.mmdb"))
    data = {"regions": REGIONS, "geoip": {"database": "db.mmdb"}}
    parse_config(data, str(tmp_path / "georedis.toml"))


@pytest.mark.parametrize("kind", ["GeoLite2-ASN", "GeoIP2-ISP", "GeoIP2-Anonymous-IP"])
def test_a_database_without_locations_is_refused(tmp_path: Path, kind: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_with(tmp_path, kind)
    (error,) = info.value.errors
    assert error.startswith(f"{tmp_path / 'georedis.toml'}: geoip.database: 'db.mmdb'")
    assert error.endswith(f"database type {kind!r} is not a City or Country database")


@pytest.mark.parametrize(
    "kind",
    ["GeoIP2-City", "GeoLite2-City", "GeoIP2-Country", "GeoIP2-Enterprise", "DBIP-City-Lite"],
)
def test_location_databases_are_accepted(tmp_path: Path, kind: str) -> None:
    load_with(tmp_path, kind)
