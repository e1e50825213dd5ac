"""The `--features` target of benchmarks/run.py: georedis with its per-command features on.

A second georedis process (`georedis+features`) on the same primary and replicas, with
the same workers as the plain `georedis` target, and with:

- one `[[users]]` user whose ACL rules name key patterns (not `allkeys`), so every
  command's keys are found and matched, its password from an environment variable;
- `[geoip] database`: a small MaxMind City database placing 127.0.0.0/8, so every
  benchmark client is located by a database lookup, not by the default;
- `[routing] read_your_writes = true`, with a replica for reads to go to;
- the slow log at Redis' default threshold, set explicitly.

The plain target keeps its config as without `--features`; its slow log is on too, since
the config cannot turn it off (`slowlog_threshold_us` >= 0, `slowlog_max_len` >= 1).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path

from benchmarks.targets import HOST, Server, Target, Topology, command, georedis_config

NAME = "georedis+features"
USER = "bench"
PASSWORD_ENV = "GEOREDIS_BENCH_PASSWORD"
# Every key redis-benchmark's tests touch (`key:__rand_int__`, `counter:...`, `mylist`,
# `myset`, `myhash`, `myzset`, streams), and the harness' own readiness key.
KEY_PATTERNS = (
    "key:*", "counter:*", "mylist*", "myset*", "myhash*", "myzset*", "mystream*",
    "benchmark:*",
)  # fmt: skip
RULES = " ".join(["on", *(f"~{p}" for p in KEY_PATTERNS), "+@all"])
# Redis' slowlog-log-slower-than default: nothing a healthy run does takes 10 ms on its
# own (the slow log counts a command's own time, not its wait behind a pipeline).
SLOWLOG_THRESHOLD_US = 10000
# Where the benchmark clients are placed: the Singapore region georedis_config names.
LOCATED = "127.0.0.0/8"
LATITUDE, LONGITUDE = 1.29, 103.85


def features_config(port: int, nodes: list[int], workers: int, database: str) -> str:
    """The plain target's TOML plus the features; `database` is the GeoIP file."""
    metrics = f"slowlog_threshold_us = {SLOWLOG_THRESHOLD_US}\n"
    tables = (
        "\n[routing]\n"
        "read_your_writes = true\n"
        "\n[geoip]\n"
        f'database = "{database}"\n'
        "\n[[users]]\n"
        f'name = "{USER}"\n'
        f'rules = "{RULES}"\n'
        f'password_env = "{PASSWORD_ENV}"\n'
    )
    return georedis_config(port, nodes, workers, metrics=metrics, tables=tables)


def write_geoip_db(path: Path) -> Path:
    """A GeoIP2-City database (IPv6, IPv4 under ::/96, as MaxMind's) placing LOCATED."""
    # Imported here: mmdb-writer is a test dependency, and runs without --features
    # must not need it.
    import netaddr
    from mmdb_writer import MmdbF64, MmdbU16, MmdbU32, MMDBWriter

    writer = MMDBWriter(
        ip_version=6,
        database_type="GeoIP2-City",
        languages=["en"],
        description="georedis benchmark database",
        ipv4_compatible=True,
    )
    record = {
        "city": {"geoname_id": MmdbU32(1880252), "names": {"en": "Singapore"}},
        "continent": {"code": "AS", "geoname_id": MmdbU32(6255147), "names": {"en": "Asia"}},
        "country": {"iso_code": "SG", "geoname_id": MmdbU32(1880251), "names": {"en": "Singapore"}},
        "location": {
            "accuracy_radius": MmdbU16(50),
            "latitude": MmdbF64(LATITUDE),
            "longitude": MmdbF64(LONGITUDE),
        },
    }
    writer.insert_network(netaddr.IPSet([LOCATED]), record)
    writer.to_db_file(str(path))
    return path


def start(topo: Topology, nodes: list[int], workers: int) -> Target:
    """Start the features target; its password is new each run and stays in memory."""
    password = secrets.token_urlsafe(18)
    database = write_geoip_db(topo.workdir / "bench-city.mmdb")
    server: Server = topo.start_georedis(
        nodes,
        workers,
        name=NAME,
        config=lambda port: features_config(port, nodes, workers, str(database)),
        env={PASSWORD_ENV: password},
        auth=(USER, password),
    )
    return Target(NAME, HOST, server.port, auth=(USER, password))


def notes(targets: Sequence[Target]) -> list[str]:
    """What the features target had on, and how many entries each georedis' slow log
    holds: both log alike, so the slow log's recording work is the same on both sides."""
    on = next((t for t in targets if t.name == NAME), None)
    if on is None:
        return []
    text = (
        f"{NAME}: user `{USER}` (rules `{RULES}`, password from ${PASSWORD_ENV}), "
        f"[geoip] database placing {LOCATED}, read_your_writes = true, "
        f"slowlog_threshold_us = {SLOWLOG_THRESHOLD_US}; georedis has none of them but "
        "the same slow log (the config cannot turn it off)."
    )
    counts = [f"{t.name} {_slowlog_len(t)}" for t in targets if t.name in ("georedis", NAME)]
    return [text, "slow log entries after the run (at most 128): " + ", ".join(counts)]


def _slowlog_len(target: Target) -> str:
    try:
        reply = command(target.port, "PROXY", "SLOWLOG", "LEN", auth=target.auth)
    except OSError as exc:
        return f"unread ({exc})"
    return reply.decode(errors="replace").lstrip(":")
