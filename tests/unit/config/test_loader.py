"""The config loader: the shipped example, defaults, and one test per kind of error."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from config import model
from config.check import check_main
from config.loader import (
    SECTIONS,
    ConfigError,
    load_config,
    parse_address,
    parse_config,
    resolve_password,
    user_password_hashes,
)
from config.model import Address, Fallback, LogFormat

EXAMPLE = Path(__file__).parents[3] / "config" / "georedis.example.toml"

MINIMAL = """
[[regions]]
name = "ap-southeast-1"
latitude = 1.29
longitude = 103.85
nodes = ["127.0.0.1:7000"]
"""


def write(tmp_path: Path, text: str, name: str = "georedis.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def errors_of(data: dict[str, Any], source: str = "georedis.toml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source)
    return info.value.errors


def base(**sections: Any) -> dict[str, Any]:
    """A valid two-region config with `sections` merged in."""
    data: dict[str, Any] = {
        "regions": [
            {"name": "a", "latitude": 1.0, "longitude": 2.0, "nodes": ["127.0.0.1:7000"]},
            {"name": "b", "latitude": 3.0, "longitude": 4.0, "nodes": ["127.0.0.1:7001"]},
        ]
    }
    data.update(sections)
    return data


# --- the example file -------------------------------------------------------------


def test_example_loads() -> None:
    cfg = load_config(str(EXAMPLE))
    assert [r.name for r in cfg.regions] == ["ap-southeast-1", "us-east-1", "eu-west-1"]
    assert cfg.regions[0].nodes == (Address("127.0.0.1", 7000), Address("127.0.0.1", 7001))
    assert (cfg.regions[1].latitude, cfg.regions[1].longitude) == (38.13, -78.45)
    assert cfg.regions[2].nodes == (Address("127.0.0.1", 7003),)
    assert cfg.proxy.region == "ap-southeast-1"
    assert cfg.source == str(EXAMPLE)


def test_example_values_are_the_model_defaults() -> None:
    # The example documents defaults; if a default changes, the example must follow.
    cfg = load_config(str(EXAMPLE))
    sections = ("proxy", "backend", "tls", "health", "failover", "sentinel", "cluster", "backup")
    for name in (*sections, "routing", "metrics", "alerts", "policy"):
        cls = SECTIONS[name][0]
        expected = cls() if name != "proxy" else cls(region="ap-southeast-1")
        assert getattr(cfg, name) == expected, name


def test_example_documents_every_field() -> None:
    text = EXAMPLE.read_text()
    for section, (cls, _) in SECTIONS.items():
        header = f"[[{section}]]" if section == "regions" else f"[{section}]"
        assert header in text
        for f in dataclasses.fields(cls):
            # A field may be shown commented out (`# database = ...`, `# [geoip.countries]`).
            pattern = rf"^#?\s*(\[{section}\.)?{f.name}\b"
            assert re.search(pattern, text, re.M), f"{section}.{f.name} is not documented"


def test_sections_match_the_model() -> None:
    # The loader's key tables and the dataclasses must list the same fields.
    for name, (cls, spec) in SECTIONS.items():
        assert set(spec) == {f.name for f in dataclasses.fields(cls)}, name
    config_fields = {f.name for f in dataclasses.fields(model.Config)}
    assert config_fields - {"source"} == set(SECTIONS)


# --- defaults ---------------------------------------------------------------------


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.proxy == model.ProxyConfig(region="ap-southeast-1")
    assert cfg.backend == model.BackendConfig()
    assert cfg.health == model.HealthConfig()
    assert cfg.routing == model.RoutingConfig()
    assert cfg.geoip == model.GeoIPConfig()
    assert cfg.metrics == model.MetricsConfig()


def test_proxy_region_defaults_to_first_region() -> None:
    assert parse_config(base(), "x.toml").proxy.region == "a"
    assert parse_config(base(proxy={"region": "b"}), "x.toml").proxy.region == "b"


def test_typed_values() -> None:
    cfg = parse_config(
        base(
            proxy={
                "workers": "auto",
                "log_format": "json",
                "proxy_protocol_from": ["10.1.2.3/8", "::1/128"],
            },
            routing={"fallback": "error"},
            geoip={"networks": {"192.0.2.0/24": "b"}},
        ),
        "x.toml",
    )
    assert cfg.proxy.workers == 0
    assert cfg.proxy.log_format is LogFormat.JSON
    assert cfg.proxy.proxy_protocol_from == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert cfg.routing.fallback is Fallback.ERROR
    assert cfg.geoip.networks == ((ipaddress.ip_network("192.0.2.0/24"), "b"),)


def test_workers_integer() -> None:
    assert parse_config(base(proxy={"workers": 4}), "x.toml").proxy.workers == 4
    assert "proxy.workers" in errors_of(base(proxy={"workers": "four"}))[0]
    assert "proxy.workers: must be >= 0" in errors_of(base(proxy={"workers": -1}))[0]


# --- addresses --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:6380", Address("127.0.0.1", 6380)),
        ("[::1]:6380", Address("::1", 6380)),
        ("[0:0::1]:1", Address("::1", 1)),
        ("Redis-1.Example.com:65535", Address("redis-1.example.com", 65535)),
        ("localhost:7000", Address("localhost", 7000)),
    ],
)
def test_good_addresses(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


def test_ipv6_address_in_file(tmp_path: Path) -> None:
    text = MINIMAL.replace('"127.0.0.1:7000"', '"[::1]:7000"') + '[proxy]\nlisten = "[::1]:6380"\n'
    cfg = load_config(write(tmp_path, text))
    assert cfg.regions[0].nodes == (Address("::1", 7000),)
    assert str(cfg.proxy.listen) == "[::1]:6380"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("127.0.0.1:70000", "port must be 1-65535"),
        ("127.0.0.1:0", "port must be 1-65535"),
        ("127.0.0.1:x", "port must be 1-65535"),
        ("127.0.0.1", "expected 'host:port'"),
        ("::1:6380", "write IPv6 hosts in brackets"),
        ("[::1]6380", "expected '[IPv6]:port'"),
        ("[nope]:6380", "is not an IPv6 address"),
        (":6380", "is not a valid host"),
        ("bad_host:6380", "is not a valid host"),
        ("127.0.0.300:6380", "is not a valid host"),
    ],
)
def test_bad_addresses(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_address(text)


def test_bad_node_address_names_field() -> None:
    data = base()
    data["regions"][1]["nodes"] = ["127.0.0.1:70000"]
    assert errors_of(data) == [
        "georedis.toml: regions[1].nodes[0]: bad address '127.0.0.1:70000': port must be 1-65535"
    ]


# --- each kind of error -----------------------------------------------------------


def test_unknown_key_suggests_close_match() -> None:
    assert errors_of(base(proxy={"lisen": "127.0.0.1:6380"})) == [
        "georedis.toml: proxy.lisen: unknown key (did you mean 'listen'?)"
    ]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (base(prxy={}), "prxy: unknown section (did you mean 'proxy'?)"),
        (base(health={"heartbeat_msec": 1}), "health.heartbeat_msec: unknown key"),
        (base(geoip={"network": {}}), "geoip.network: unknown key (did you mean 'networks'?)"),
        (base(metrics={"zzz": 1}), "metrics.zzz: unknown key (expected one of: auth_password_env,"),
    ],
)
def test_unknown_keys_everywhere(data: dict[str, Any], field: str) -> None:
    assert errors_of(data)[0].startswith(f"georedis.toml: {field}")


def test_unknown_key_in_region() -> None:
    data = base()
    data["regions"][0]["lat"] = 1.0
    assert errors_of(data) == [
        "georedis.toml: regions[0].lat: unknown key (did you mean 'latitude'?)"
    ]


@pytest.mark.parametrize(
    ("section", "key", "value", "problem"),
    [
        ("backend", "pool_size", "2", "expected an integer, got string '2'"),
        ("backend", "pool_size", True, "expected an integer, got boolean true"),
        ("backend", "pool_size", 0, "must be > 0, got 0"),
        ("backend", "timeout_ms", 0, "must be > 0, got 0"),
        ("backend", "timeout_ms", 1.5, "expected an integer, got float 1.5"),
        ("backend", "dedicated_idle", -1, "must be >= 0, got -1"),
        ("health", "heartbeat_ms", 0, "must be > 0"),
        ("health", "heartbeat", "yes", "expected true or false, got string 'yes'"),
        ("health", "heartbeat_prefix", "", "must not be empty"),
        ("proxy", "max_bulk_len", 0, "must be > 0"),
        ("proxy", "log_level", "verbose", "must be one of 'debug', 'info', 'warning', 'error'"),
        ("proxy", "log_format", "xml", "must be one of 'text', 'json'"),
        ("proxy", "listen", 6380, "expected a 'host:port' string, got integer 6380"),
        ("proxy", "proxy_protocol_from", "10.0.0.0/8", "expected an array"),
        ("routing", "fallback", "replica", "must be one of 'primary', 'error'"),
        ("metrics", "slowlog_max_len", 0, "must be > 0"),
    ],
)
def test_bad_values(section: str, key: str, value: object, problem: str) -> None:
    errors = errors_of(base(**{section: {key: value}}))
    assert len(errors) == 1
    assert errors[0].startswith(f"georedis.toml: {section}.{key}: {problem}")


def test_section_must_be_a_table() -> None:
    assert errors_of(base(proxy=5)) == ["georedis.toml: proxy: expected a table, got integer 5"]


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("latitude", 91, "must be between -90 and 90, got 91"),
        ("longitude", -180.5, "must be between -180 and 180, got -180.5"),
        ("latitude", "1.0", "expected a number, got string '1.0'"),
        ("latitude", float("nan"), "must be between -90 and 90"),
        ("nodes", [], "must not be empty"),
        ("nodes", "127.0.0.1:7000", "expected an array"),
        ("name", "", "must not be empty"),
        ("name", "us east", "must not contain spaces"),
    ],
)
def test_bad_region_fields(key: str, value: object, problem: str) -> None:
    data = base()
    data["regions"][0][key] = value
    assert errors_of(data)[0].startswith(f"georedis.toml: regions[0].{key}: {problem}")


def test_missing_region_key() -> None:
    data = base()
    del data["regions"][1]["nodes"]
    assert errors_of(data) == ["georedis.toml: regions[1].nodes: missing required key"]


@pytest.mark.parametrize("regions", [None, [], {"name": "a"}])
def test_at_least_one_region(regions: object) -> None:
    data: dict[str, Any] = {} if regions is None else {"regions": regions}
    errors = errors_of(data)
    assert len(errors) == 1
    assert errors[0].startswith("georedis.toml: regions: ")


def test_duplicate_region_name() -> None:
    data = base()
    data["regions"][1]["name"] = "a"
    assert errors_of(data) == ["georedis.toml: regions[1].name: duplicate region name 'a'"]


def test_node_in_two_regions() -> None:
    data = base()
    data["regions"][1]["nodes"] = ["127.0.0.1:7002", "127.0.0.1:7000"]
    assert errors_of(data) == [
        "georedis.toml: regions[1].nodes[1]: node 127.0.0.1:7000 is already listed at "
        "regions[0].nodes[0]"
    ]


def test_duplicates_found_in_regions_with_other_errors() -> None:
    # The index in each message is the file's, even when an earlier region is invalid.
    data = base()
    data["regions"][0]["latitude"] = 100
    data["regions"][1]["name"] = "a"
    data["regions"][1]["nodes"] = ["[::1]:7000", "[0::1]:7000"]
    assert errors_of(data) == [
        "georedis.toml: regions[0].latitude: must be between -90 and 90, got 100",
        "georedis.toml: regions[1].name: duplicate region name 'a'",
        "georedis.toml: regions[1].nodes[1]: node [::1]:7000 is already listed at "
        "regions[1].nodes[0]",
    ]


def test_geoip_may_name_a_region_that_has_other_errors() -> None:
    # Only the region's own error is reported, not a second "unknown region" one.
    data = base(geoip={"networks": {"10.0.0.0/8": "b"}})
    data["regions"][1]["nodes"] = []
    assert errors_of(data) == ["georedis.toml: regions[1].nodes: must not be empty"]


def test_proxy_region_must_exist() -> None:
    assert errors_of(base(proxy={"region": "c"})) == [
        "georedis.toml: proxy.region: unknown region 'c' (expected one of: a, b)"
    ]


def test_listen_conflicts() -> None:
    errors = errors_of(
        base(proxy={"listen": "127.0.0.1:7000"}, metrics={"listen": "127.0.0.1:7000"})
    )
    assert errors == [
        "georedis.toml: proxy.listen: 127.0.0.1:7000 is also a node of the a region",
        "georedis.toml: metrics.listen: 127.0.0.1:7000 is also proxy.listen",
    ]


def test_relations_between_fields() -> None:
    errors = errors_of(
        base(
            backend={"reconnect_backoff_ms": 500, "reconnect_backoff_max_ms": 100},
            health={"heartbeat_ms": 100, "heartbeat_ttl_ms": 100},
        )
    )
    assert errors == [
        "georedis.toml: backend.reconnect_backoff_max_ms: must be >= reconnect_backoff_ms",
        "georedis.toml: health.heartbeat_ttl_ms: must be greater than heartbeat_ms",
    ]


def test_literal_password_rejected() -> None:
    errors = errors_of(base(backend={"password": "hunter2"}))
    assert len(errors) == 1
    assert errors[0].startswith("georedis.toml: backend.password: ")
    assert "password_env" in errors[0]
    assert "hunter2" not in errors[0]


def test_password_env_must_be_a_variable_name() -> None:
    assert errors_of(base(backend={"password_env": "MY-PASS"})) == [
        "georedis.toml: backend.password_env: 'MY-PASS' is not an environment variable name"
    ]


def test_misspelled_key_and_bad_address_both_reported(tmp_path: Path) -> None:
    text = MINIMAL.replace("7000", "70000") + '[proxy]\nlisen = "127.0.0.1:6380"\n'
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == [
        f"{path}: regions[0].nodes[0]: bad address '127.0.0.1:70000': port must be 1-65535",
        f"{path}: proxy.lisen: unknown key (did you mean 'listen'?)",
    ]
    assert str(info.value) == "\n".join(info.value.errors)


def test_errors_in_every_section_are_collected() -> None:
    data = base(
        proxy={"workers": "x"},
        backend={"pool_size": 0},
        health={"interval_ms": 0},
        routing={"max_lag_ms": 0},
        geoip={"networks": {"nope": "a"}},
        metrics={"enabled": 1},
    )
    fields = [e.split(": ")[1] for e in errors_of(data)]
    assert fields == [
        "proxy.workers",
        "backend.pool_size",
        "health.interval_ms",
        "routing.max_lag_ms",
        "geoip.networks.nope",
        "metrics.enabled",
    ]


# --- geoip ------------------------------------------------------------------------


def test_geoip_unknown_region() -> None:
    errors = errors_of(base(geoip={"networks": {"10.0.0.0/8": "bb"}}))
    assert errors == [
        "georedis.toml: geoip.networks.\"10.0.0.0/8\": unknown region 'bb' (did you mean 'b'?)"
    ]


def test_geoip_bad_cidr() -> None:
    errors = errors_of(base(geoip={"networks": {"10.0.0.0/33": "a"}}))
    assert len(errors) == 1
    assert errors[0].startswith('georedis.toml: geoip.networks."10.0.0.0/33": bad CIDR ')


def test_bad_cidr_in_proxy_protocol_from() -> None:
    errors = errors_of(base(proxy={"proxy_protocol_from": ["10.0.0.0/8", "10.0.0.300/8"]}))
    assert len(errors) == 1
    assert errors[0].startswith(
        "georedis.toml: proxy.proxy_protocol_from[1]: bad CIDR '10.0.0.300/8'"
    )


def test_same_network_twice() -> None:
    errors = errors_of(base(geoip={"networks": {"10.0.0.0/8": "a", "10.9.9.9/8": "b"}}))
    assert errors == ["georedis.toml: geoip.networks: network 10.0.0.0/8 is listed twice"]


def test_geoip_country_and_continent_keys(tmp_path: Path) -> None:
    db = make_mmdb(tmp_path / "geo.mmdb")
    data = base(
        geoip={
            "database": str(db),
            "countries": {"SG": "a", "sg": "a", "SGP": "b"},
            "continents": {"EU": "b", "XX": "a"},
        }
    )
    assert errors_of(data) == [
        "georedis.toml: geoip.countries.sg: 'sg' is not an ISO 3166 alpha-2 country code "
        "(e.g. 'SG')",
        "georedis.toml: geoip.countries.SGP: 'SGP' is not an ISO 3166 alpha-2 country code "
        "(e.g. 'SG')",
        "georedis.toml: geoip.continents.XX: 'XX' is not a continent code "
        "(AF, AN, AS, EU, NA, OC, SA)",
    ]


def test_countries_need_a_database() -> None:
    assert errors_of(base(geoip={"countries": {"SG": "a"}})) == [
        "georedis.toml: geoip.countries: needs geoip.database, where countries are looked up"
    ]


def make_mmdb(path: Path) -> Path:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Country")
    writer.insert_network(IPSet(["203.0.113.0/24"]), {"country": {"iso_code": "SG"}})
    writer.to_db_file(str(path))
    return path


def test_geoip_database_relative_to_config_file(tmp_path: Path, monkeypatch: Any) -> None:
    (tmp_path / "conf").mkdir()
    make_mmdb(tmp_path / "conf" / "geo.mmdb")
    text = MINIMAL + '[geoip]\ndatabase = "geo.mmdb"\n[geoip.countries]\nSG = "ap-southeast-1"\n'
    path = write(tmp_path / "conf", text)
    monkeypatch.chdir(tmp_path)  # somewhere the relative name does not exist
    cfg = load_config(path)
    assert cfg.geoip.database == str((tmp_path / "conf" / "geo.mmdb").resolve())
    assert cfg.geoip.countries == (("SG", "ap-southeast-1"),)


def test_geoip_database_missing(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '[geoip]\ndatabase = "nope.mmdb"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == [
        f"{path}: geoip.database: 'nope.mmdb' ({tmp_path / 'nope.mmdb'}): file not found"
    ]


@pytest.mark.parametrize("content", [b"", b"this is not a maxmind database\n" * 50])
def test_geoip_database_garbage(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "junk.mmdb").write_bytes(content)
    path = write(tmp_path, MINIMAL + '[geoip]\ndatabase = "junk.mmdb"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [error] = info.value.errors
    assert error.startswith(f"{path}: geoip.database: 'junk.mmdb' (")
    assert "not a MaxMind DB" in error


def test_geoip_database_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.mmdb").mkdir()
    path = write(tmp_path, MINIMAL + '[geoip]\ndatabase = "dir.mmdb"\n')
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(path)


# --- files ------------------------------------------------------------------------


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "[proxy]\nlisten = \n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == [f"{path}: line 8, column 10: invalid TOML: Invalid value"]


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.toml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == [f"{path}: cannot read: No such file or directory"]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"# caf\xe9\n" + MINIMAL.encode())
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(str(path))


def test_example_parses_as_plain_toml() -> None:
    # Guards the test above it: the example really is TOML, not just something we accept.
    assert "regions" in tomllib.loads(EXAMPLE.read_text())


# --- password ---------------------------------------------------------------------


def test_resolve_password(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_password(parse_config(base(), "x.toml")) is None
    cfg = parse_config(base(backend={"password_env": "GEOREDIS_TEST_PW"}), "x.toml")
    monkeypatch.setenv("GEOREDIS_TEST_PW", "s3cret")
    assert resolve_password(cfg) == "s3cret"
    monkeypatch.delenv("GEOREDIS_TEST_PW")
    with pytest.raises(ConfigError) as info:
        resolve_password(cfg)
    assert info.value.errors == [
        "x.toml: backend.password_env: environment variable 'GEOREDIS_TEST_PW' is not set"
    ]


# --- check_main -------------------------------------------------------------------


def test_check_main_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_main(str(EXAMPLE)) == 0
    out, err = capsys.readouterr()
    assert out == f"{EXAMPLE}: OK (3 regions, 4 nodes, listen 127.0.0.1:6380)\n"
    assert err == ""


def test_check_main_singular(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, MINIMAL)
    assert check_main(path) == 0
    assert capsys.readouterr().out == f"{path}: OK (1 region, 1 node, listen 127.0.0.1:6380)\n"


def test_check_main_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = MINIMAL.replace("7000", "70000") + '[proxy]\nlisen = "127.0.0.1:6380"\n'
    path = write(tmp_path, text)
    assert check_main(path) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}: regions[0].nodes[0]: bad address '127.0.0.1:70000': port must be 1-65535",
        f"{path}: proxy.lisen: unknown key (did you mean 'listen'?)",
    ]


def test_check_main_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "absent.toml")
    assert check_main(path) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{path}: cannot read: No such file or directory\n"


def test_check_main_warns_about_unset_password_env(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEOREDIS_TEST_PW", raising=False)
    path = write(tmp_path, MINIMAL + '[backend]\npassword_env = "GEOREDIS_TEST_PW"\n')
    assert check_main(path) == 0
    out, err = capsys.readouterr()
    assert out.endswith(": OK (1 region, 1 node, listen 127.0.0.1:6380)\n")
    assert "GEOREDIS_TEST_PW" in err


def test_check_main_warns_about_an_open_listener_without_users(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for listen, users, warned in (
        ("0.0.0.0:6380", "", True),
        ("[::1]:6380", "", False),
        ("10.1.2.3:6380", '[[users]]\nname = "app"\nrules = "on ~* +@all nopass"\n', False),
    ):
        path = write(tmp_path, MINIMAL + f'[proxy]\nlisten = "{listen}"\n' + users)
        assert check_main(path) == 0
        assert ("no [[users]] are configured" in capsys.readouterr().err) is warned, listen


def test_users_rules_and_passwords(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOREDIS_TEST_APP_PW", "pw")
    text = MINIMAL + (
        '[[users]]\nname = "app"\nrules = "on ~app:* +@read"\npassword_env = '
        '"GEOREDIS_TEST_APP_PW"\npassword_sha256 = ["' + "A" * 64 + '"]\n'
    )
    cfg = load_config(write(tmp_path, text))
    (user,) = cfg.users
    assert user.rules.text() == "on ~app:* resetchannels +@read"
    assert user_password_hashes(cfg, user) == (
        "a" * 64,
        "30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4",  # sha256("pw")
    )
    bad = MINIMAL + '[[users]]\nname = "x"\nrules = "on >hunter2"\npassword = "hunter2"\n'
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, bad))
    assert len(e.value.errors) == 2 and "hunter2" not in " ".join(e.value.errors)


def test_policy_refuse_takes_command_names_in_either_spelling() -> None:
    cfg = parse_config(base(policy={"refuse": ["FLUSHALL", "config set", "acl|setuser"]}), "g.toml")
    assert cfg.policy.refuse == ("flushall", "config|set", "acl|setuser")
    assert parse_config(base(policy={"refuse": []}), "g.toml").policy.refuse == ()
    assert "flushall" in parse_config(base(), "g.toml").policy.refuse  # refused by default
    assert (
        "policy.refuse[1]: must be a command name"
        in errors_of(base(policy={"refuse": ["keys", "rm -rf"]}))[0]
    )
    assert "policy.refuse: must be an array" in errors_of(base(policy={"refuse": "keys"}))[0]


def test_output_limits_take_redis_syntax_and_units() -> None:
    limits = {"client_output_buffer_limit_normal": "1gb 100mb 30",
              "client_output_buffer_limit_pubsub": "0 0 0"}  # fmt: skip
    cfg = parse_config(base(proxy=limits), "g.toml")
    lim = cfg.proxy.client_output_buffer_limit_normal
    assert (lim.hard, lim.soft, lim.soft_seconds) == (1 << 30, 100 << 20, 30)
    assert cfg.proxy.client_output_buffer_limit_pubsub.hard == 0  # off
    k = parse_config(base(proxy={"client_output_buffer_limit_normal": "64k 1kb 1"}), "g.toml")
    assert k.proxy.client_output_buffer_limit_normal.hard == 64_000  # k: 1000, kb: 1024
    for bad in ("256mb 64mb", "lots 64mb 60", "256mb 64mb soon", 5):
        msg = errors_of(base(proxy={"client_output_buffer_limit_normal": bad}))[0]
        assert 'must be "<hard> <soft> <seconds>"' in msg, msg
