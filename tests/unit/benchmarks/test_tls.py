"""benchmarks/tls.py without sockets: the georedis TOML (through `georedis check-config`'s
own code), the TLS-only redis-server command line, redis-benchmark's TLS flags, the
command line and the tables."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from benchmarks import run, tls
from benchmarks.report import Row, Run, Scenario, compute_medians
from benchmarks.targets import Target, georedis_config
from config.check import check_main
from config.loader import load_config
from tests.helpers.certs import Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_georedis_speaks_tls_to_clients_and_to_the_node(certs: Certs) -> None:
    doc = tomllib.loads(tls.georedis_tls_config(7000, 7001, certs))
    plain = tomllib.loads(georedis_config(7000, [7001], 1))
    assert doc["proxy"] == plain["proxy"] and doc["proxy"]["workers"] == 1
    assert doc["regions"] == plain["regions"]
    # No [tls] listen: [proxy] listen itself speaks TLS, nothing is served in plaintext.
    assert doc["tls"] == {"cert_file": str(certs.server.cert), "key_file": str(certs.server.key)}
    assert doc["backend"] == {"tls": True, "tls_ca_file": str(certs.ca)}


def test_check_config_accepts_it(
    certs: Certs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "georedis-tls.toml"
    path.write_text(tls.georedis_tls_config(7000, 7001, certs))
    assert check_main(str(path)) == 0
    assert "warning" not in capsys.readouterr().err
    cfg = load_config(str(path))
    assert cfg.tls.cert_file and cfg.tls.key_file and cfg.tls.listen is None
    assert cfg.backend.tls and cfg.backend.tls_verify
    assert cfg.backend.tls_ca_file == str(certs.ca.resolve())


def _flags(argv: list[str]) -> dict[str, str]:
    return dict(zip(argv[1::2], argv[2::2], strict=True))


def test_redis_server_serves_only_tls(certs: Certs, tmp_path: Path) -> None:
    argv = tls.redis_tls_argv(7005, certs, tmp_path)
    assert argv[0] == "redis-server"
    assert _flags(argv) == {
        "--port": "0",
        "--tls-port": "7005",
        "--bind": "127.0.0.1",
        "--tls-cert-file": str(certs.server.cert),
        "--tls-key-file": str(certs.server.key),
        "--tls-ca-cert-file": str(certs.ca),
        "--tls-auth-clients": "no",
        "--save": "",
        "--appendonly": "no",
        "--dir": str(tmp_path),
        "--daemonize": "no",
    }


def test_redis_benchmark_gets_the_tls_flags_only_for_tls_targets() -> None:
    sc = Scenario("P16", 50, 16, 1000, ("set", "get"))
    target = Target("direct", "127.0.0.1", 7000)
    base = run.benchmark_argv(target, sc)
    assert tls.bench_argv(target, sc, Path("/c/ca.crt")) == [
        *base, "--tls", "--cacert", "/c/ca.crt",
    ]  # fmt: skip
    assert tls.bench_argv(target, sc, None) == base
    assert base[base.index("-P") + 1] == "16" and base[base.index("-c") + 1] == "50"


def test_defaults_and_quick() -> None:
    s = tls.parse_args([])
    assert (s.rounds, s.requests, s.latency_requests, s.clients) == (3, 100000, 5000, 50)
    assert s.tests == ("set", "get") and not s.plain and not s.quick
    q = tls.parse_args(["--quick"])
    assert (q.rounds, q.requests, q.latency_requests) == (1, 5000, 500)
    mixed = tls.parse_args(["--quick", "--rounds", "2", "--requests", "777", "--plain"])
    assert (mixed.rounds, mixed.requests, mixed.plain) == (2, 777, True)
    assert tls.parse_args(["--tests", " set, get,incr ,"]).tests == ("set", "get", "incr")


@pytest.mark.parametrize(
    "args", [["--rounds", "0"], ["--requests", "-1"], ["--clients", "0"], ["--tests", " , "]]
)
def test_bad_arguments_are_refused(args: list[str]) -> None:
    with pytest.raises(SystemExit):
        tls.parse_args(args)


def test_scenarios_are_p1_p16_and_one_client_latency() -> None:
    scs = tls.scenarios(tls.parse_args(["--clients", "20", "--requests", "900"]))
    shapes = [(s.name, s.clients, s.pipeline, s.requests, s.latency) for s in scs]
    assert shapes == [
        ("P1", 20, 1, 900, False),
        ("P16", 20, 16, 900, False),
        ("latency", 1, 1, 5000, True),
    ]


def _row(test: str, rps: float, p50_ms: float = 0.1) -> Row:
    return Row(test, rps, p50_ms, 0.0, p50_ms, p50_ms, p50_ms, p50_ms)


def _runs(target: str, scenario: str, rps: list[float], p50_ms: float = 0.1) -> list[Run]:
    return [
        Run(i + 1, target, scenario, {"set": _row("set", v, p50_ms)}) for i, v in enumerate(rps)
    ]


SCS = [Scenario("P1", 50, 1, 1000, ("set",)), Scenario("lat", 1, 1, 100, ("set",), latency=True)]


def test_throughput_table_medians_and_ratio() -> None:
    runs = _runs("direct", "P1", [30000, 10000, 20000]) + _runs(
        "georedis", "P1", [5000, 40000, 8000]
    )
    assert tls.throughput_table(SCS, compute_medians(runs)) == [
        "| test | -P | direct TLS | georedis TLS | ratio |",
        "|---|---|---|---|---|",
        "| SET | 1 | 20,000 | 8,000 | 0.40x |",
    ]


def test_a_side_never_measured_shows_a_dash() -> None:
    table = tls.throughput_table(SCS, compute_medians(_runs("direct", "P1", [1000])))
    assert table[-1] == "| SET | 1 | 1,000 | — | — |"


def test_the_plain_group_appears_with_plain_runs() -> None:
    runs = _runs("direct", "P1", [4000]) + _runs("georedis", "P1", [2000])
    runs += _runs("direct-plain", "P1", [9000]) + _runs("georedis-plain", "P1", [3000])
    table = tls.throughput_table(SCS, compute_medians(runs))
    assert table[0] == (
        "| test | -P | direct TLS | georedis TLS | ratio | direct plain | georedis plain | ratio |"
    )
    assert table[2] == "| SET | 1 | 4,000 | 2,000 | 0.50x | 9,000 | 3,000 | 0.33x |"


def test_latency_table_p50_in_microseconds_and_the_difference() -> None:
    runs = _runs("direct", "lat", [1.0], p50_ms=0.031) + _runs("georedis", "lat", [1.0], 0.111)
    assert tls.latency_table(SCS, compute_medians(runs)) == [
        "| test | direct TLS p50 | georedis TLS p50 | +µs |",
        "|---|---|---|---|",
        "| SET | 31 | 111 | +80 |",
    ]
