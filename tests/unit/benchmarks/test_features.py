"""The `--features` benchmark target without sockets: the config text it gets (loaded by
the proxy's own loader), its ACL rules against redis-benchmark's real key names, its
GeoIP database, the command line and the report's on/off ratio."""

from __future__ import annotations

import tomllib
from pathlib import Path

import maxminddb
import pytest

from benchmarks import features, report, run, targets
from benchmarks.report import Row, Run, Scenario
from config.loader import load_config, parse_config, user_password_hashes
from routing.acl import NOPERM_KEY, Permissions
from tests.helpers.commands import command_table

NODES = [7001, 7002]
TABLE = command_table()

# What redis-benchmark 7.0 sends for each test (its own templates: `key%s:__rand_int__`
# and so on, with %s empty outside cluster mode), the harness' readiness check, and
# the CONFIG GETs redis-benchmark starts with.
BENCHMARK_COMMANDS = [
    ["SET", "key:__rand_int__", "xxx"],
    ["GET", "key:__rand_int__"],
    ["INCR", "counter:__rand_int__"],
    ["LPUSH", "mylist", "xxx"],
    ["RPUSH", "mylist", "xxx"],
    ["LPOP", "mylist"],
    ["RPOP", "mylist"],
    ["LRANGE", "mylist", "0", "99"],
    ["SADD", "myset", "element:__rand_int__"],
    ["SPOP", "myset"],
    ["HSET", "myhash", "element:__rand_int__", "xxx"],
    ["ZADD", "myzset", "0", "element:__rand_int__"],
    ["ZPOPMIN", "myzset"],
    ["MSET", *(["key:__rand_int__", "xxx"] * 10)],
    ["SET", "benchmark:ready", "1"],
    ["CONFIG", "GET", "save"],
    ["PING"],
]


def _toml(tmp_path: Path) -> str:
    db = features.write_geoip_db(tmp_path / "city.mmdb")
    return features.features_config(7000, NODES, 2, str(db))


def test_features_config_is_the_plain_one_plus_the_features(tmp_path: Path) -> None:
    doc = tomllib.loads(_toml(tmp_path))
    plain = tomllib.loads(targets.georedis_config(7000, NODES, 2))
    assert doc["proxy"] == plain["proxy"]  # same listen shape, region and workers
    assert doc["regions"] == plain["regions"]  # same primary and replica
    assert doc["metrics"] == {"enabled": False, "slowlog_threshold_us": 10000}
    assert doc["routing"] == {"read_your_writes": True}
    assert doc["geoip"] == {"database": str(tmp_path / "city.mmdb")}
    (user,) = doc["users"]
    assert user["name"] == features.USER
    assert user["password_env"] == features.PASSWORD_ENV
    assert "password" not in user and "allkeys" not in user["rules"]
    assert user["rules"].startswith("on ~key:* ") and user["rules"].endswith(" +@all")


def test_the_plain_config_has_none_of_the_features() -> None:
    doc = tomllib.loads(targets.georedis_config(7000, NODES, 1))
    assert set(doc) == {"proxy", "regions", "metrics"}
    assert doc["metrics"] == {"enabled": False}


def test_the_proxy_loads_it_with_every_feature_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(features.PASSWORD_ENV, "secret-pw")
    path = tmp_path / "georedis+features.toml"
    path.write_text(_toml(tmp_path))
    cfg = load_config(str(path))
    assert cfg.routing.read_your_writes
    assert cfg.geoip.database == str((tmp_path / "city.mmdb").resolve())
    assert cfg.metrics.slowlog_threshold_us == 10000 and cfg.metrics.slowlog_max_len > 0
    (user,) = cfg.users
    assert user.rules.enabled and user_password_hashes(cfg, user)
    assert cfg.proxy.workers == 2


def _permissions(tmp_path: Path) -> Permissions:
    cfg = parse_config(tomllib.loads(_toml(tmp_path)), "features.toml")
    (user,) = cfg.users
    return Permissions(user.name, user.rules)


@pytest.mark.parametrize("args", BENCHMARK_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_redis_benchmark_command_passes_the_key_check(
    tmp_path: Path, args: list[str]
) -> None:
    raw = [a.encode() for a in args]
    assert _permissions(tmp_path).check(TABLE.lookup(raw), raw) is None


def test_the_key_check_runs_other_keys_are_refused(tmp_path: Path) -> None:
    # Not `allkeys`: the keys are found and matched, so a key outside them is refused.
    perms = _permissions(tmp_path)
    for args in (["GET", "other:1"], ["MSET", "key:1", "v", "other:1", "v"]):
        raw = [a.encode() for a in args]
        assert perms.check(TABLE.lookup(raw), raw) == NOPERM_KEY


def test_the_geoip_database_locates_loopback_clients(tmp_path: Path) -> None:
    db = features.write_geoip_db(tmp_path / "city.mmdb")
    with maxminddb.open_database(str(db)) as reader:
        assert reader.metadata().database_type == "GeoIP2-City"
        for ip in ("127.0.0.1", "127.255.0.9"):
            record = reader.get(ip)
            assert isinstance(record, dict)
            country = record["country"]
            assert isinstance(country, dict) and country["iso_code"] == "SG"
        assert reader.get("10.0.0.1") is None


def test_only_the_features_target_logs_in() -> None:
    sc = Scenario("P1", 50, 1, 1000, ("set", "get"))
    plain = run.benchmark_argv(targets.Target("georedis", "127.0.0.1", 7000), sc)
    assert "--user" not in plain and "-a" not in plain
    on = targets.Target(features.NAME, "127.0.0.1", 7001, auth=("bench", "pw"))
    argv = run.benchmark_argv(on, sc)
    assert argv[: len(plain)] == [*plain[:4], "7001", *plain[5:]]
    assert argv[len(plain) :] == ["--user", "bench", "-a", "pw"]


def test_features_flag_adds_a_replica_and_needs_georedis() -> None:
    assert run.parse_args(["--features"]).replicas == 1
    assert run.parse_args(["--features", "--replicas", "2"]).replicas == 2
    quick = run.parse_args(["--quick", "--features", "--targets", "direct,georedis"])
    assert quick.features and quick.rounds == 1 and quick.targets == ("direct", "georedis")
    plain = run.parse_args([])
    assert not plain.features and plain.replicas == 0
    with pytest.raises(SystemExit):
        run.parse_args(["--features", "--targets", "direct,twemproxy"])


def _run(target: str, rps: float) -> Run:
    return Run(1, target, "P16", {"get": Row("get", rps, 1, 1, 1, 1, 1, 1)})


def test_report_shows_features_on_over_off() -> None:
    scs = [Scenario("P16", 50, 16, 1000, ("get",))]
    runs = [_run("direct", 400.0), _run(features.NAME, 270.0), _run("georedis", 300.0)]
    medians = report.compute_medians(runs)
    names = report.ordered_targets({r.target for r in runs})
    assert names == ["direct", "georedis", features.NAME]
    header, _, row = report.throughput_table(scs, medians, names)
    assert header.endswith(f"| {features.NAME}/georedis |")
    assert row.endswith("| 0.90x |")
    record = report.to_json(scs, runs, medians, names, {})
    assert record["ratios"]["P16"]["get"][f"{features.NAME}/georedis"] == pytest.approx(0.9)


def test_report_without_features_is_unchanged() -> None:
    scs = [Scenario("P16", 50, 16, 1000, ("get",))]
    runs = [_run("direct", 400.0), _run("georedis", 300.0)]
    medians = report.compute_medians(runs)
    header = report.throughput_table(scs, medians, ["direct", "georedis"])[0]
    assert header == "| test | -P | -c | direct | georedis | georedis/direct |"
    record = report.to_json(scs, runs, medians, ["direct", "georedis"], {})
    assert set(record["ratios"]["P16"]["get"]) == {
        "georedis/twemproxy",
        "georedis/direct",
        "georedis-direct_p50_us",
    }
