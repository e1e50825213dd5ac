"""Hot reload (SIGHUP, PROXY RELOAD) of a real `georedis run` process under load.

The issue's check: under redis-benchmark load, a region added, max_lag_ms changed and a
user added with SIGHUP: no client error, no dropped connection, the change in force; a
broken file refused, the old config serving, the reason in the log and in PROXY
RELOAD's reply. Load comes from redis-benchmark (its own error count) and from client
threads that keep one connection each and compare its CLIENT ID before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.helpers.proxyrun import FAST_HEALTH, wait_for
from tests.helpers.topology import RedisTopology, free_port

OPS_PW = "ops-reload-pw-71c3"


def _sha(pw: str) -> str:
    return hashlib.sha256(pw.encode()).hexdigest()


# A user added beside the open default: clients that never log in (the load) go on.
USERS = f"""
[[users]]
name = "default"
rules = "on nopass ~* &* +@all"

[[users]]
name = "ops"
rules = "on ~* &* +@all"
password_sha256 = ["{_sha(OPS_PW)}"]
"""


def config_text(
    topo: RedisTopology, port: int, regions: list[str], max_lag_ms: int, extra: str = ""
) -> str:
    parts = [f'[proxy]\nlisten = "127.0.0.1:{port}"\nregion = "ap-southeast-1"\n']
    for name in regions:
        lat, lon = topo.regions[name]
        addrs = [n.address for n in topo.nodes if n.region == name]
        parts.append(
            f'[[regions]]\nname = "{name}"\nlatitude = {lat}\nlongitude = {lon}\n'
            f"nodes = {json.dumps(addrs)}\n"
        )
    parts.append("[metrics]\nenabled = false\n")
    parts.append(FAST_HEALTH)
    parts.append(f"[routing]\nmax_lag_ms = {max_lag_ms}\n")
    return "\n".join(parts) + extra


class Running:
    """`georedis run --config FILE` as a subprocess, its output kept in a file."""

    def __init__(self, cfg: Path, port: int) -> None:
        self.cfg, self.port = cfg, port
        self.log = cfg.with_suffix(".log")
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "run", "--config", str(cfg)],
            stdout=self._out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.admin = redis.Redis(port=port, socket_timeout=10)
        wait_for(lambda: self._pings(), 30.0, "georedis to serve")

    def _pings(self) -> bool:
        try:
            return bool(self.admin.ping())
        except redis.ConnectionError:
            return False

    def config(self, name: str) -> str:
        reply = self.admin.execute_command("PROXY", "CONFIG", "GET", name)
        return dict(zip(reply[::2], reply[1::2], strict=True))[name.encode()].decode()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)
        self._out.close()


@pytest.fixture
def running(topology: RedisTopology, tmp_path: Path) -> Iterator[tuple[Running, RedisTopology]]:
    port = free_port()
    cfg = tmp_path / "georedis.toml"
    cfg.write_text(config_text(topology, port, ["ap-southeast-1", "us-east-1"], 1000))
    r = Running(cfg, port)
    try:
        yield r, topology
    finally:
        r.stop()


class Load:
    """Client threads, one connection each, SET/GET in a loop until stopped."""

    def __init__(self, port: int, threads: int = 4) -> None:
        self.port = port
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.ops = 0
        self.ids: list[tuple[int, int]] = []  # CLIENT ID before, after
        self.started = threading.Barrier(threads + 1, timeout=20)  # each has done one op
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, i: int) -> None:
        c = redis.Redis(port=self.port, socket_timeout=10, single_connection_client=True)
        try:
            first = int(c.client_id())
            c.set(f"reload:{i}", 0)
            self.started.wait()
            n = 0
            while not self.stop.is_set():
                c.set(f"reload:{i}", n)
                c.get(f"reload:{i}")
                n += 1
            self.ops += n
            self.ids.append((first, int(c.client_id())))
        except redis.RedisError as e:
            self.errors.append(f"{type(e).__name__}: {e}")
        finally:
            c.close()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def _benchmark(port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["redis-benchmark", "-p", str(port), "-t", "set,get", "-n", "2000000", "-c", "8",
         "-P", "16", "-q", "-e"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_sighup_under_load_adds_a_region_a_user_and_a_lag_bound(
    running: tuple[Running, RedisTopology],
) -> None:
    r, topo = running
    eu = next(n for n in topo.nodes if n.region == "eu-west-1")
    assert eu.address not in str(r.admin.execute_command("PROXY", "BACKENDS"))
    bench = _benchmark(r.port)
    load = Load(r.port)
    try:
        load.started.wait()  # every client has a connection and has been answered
        wait_for(lambda: _served(r) > 50_000, 20, "redis-benchmark under way")
        regions = ["ap-southeast-1", "us-east-1", "eu-west-1"]
        r.cfg.write_text(config_text(topo, r.port, regions, 250, USERS))
        os.kill(r.proc.pid, signal.SIGHUP)
        wait_for(lambda: r.config("loaded.version") == "2", 15, "the reload")
        assert r.config("routing.max_lag_ms") == "250"
        wait_for(
            lambda: eu.address in str(r.admin.execute_command("PROXY", "BACKENDS")),
            15, "the new region's node probed",
        )  # fmt: skip
        ops = redis.Redis(port=r.port, username="ops", password=OPS_PW, socket_timeout=5)
        assert ops.execute_command("ACL", "WHOAMI") == b"ops"
        ops.execute_command("PROXY", "REGION", "eu-west-1")  # the new region is known
        assert bench.poll() is None, "redis-benchmark ended before the reload was seen"
    finally:
        load.finish()
    out, _ = bench.communicate(timeout=120)
    assert load.errors == [], load.errors
    assert len(load.ids) == len(load.threads)
    assert all(a == b for a, b in load.ids), load.ids  # the same connection throughout
    assert bench.returncode == 0, out
    # -e prints each error reply ("Error from server: ..."); its warning line says "error" too.
    assert "Error from server" not in out and "rror:" not in out, out
    assert "GET: " in out and "SET: " in out, out  # both ran to the end
    assert "config_reloaded" in r.text()


def _served(r: Running) -> int:
    """Commands georedis answered so far (PROXY INFO's total_commands)."""
    info = r.admin.execute_command("PROXY", "INFO").decode()
    return int(next(x.split(":")[1] for x in info.split() if x.startswith("total_commands:")))


def test_a_broken_config_is_refused_whole_and_the_old_one_serves(
    running: tuple[Running, RedisTopology],
) -> None:
    r, _ = running
    good = r.cfg.read_text()
    r.admin.set("before", "1")
    r.cfg.write_text(good.replace("max_lag_ms = 1000", "max_lag_ms = -5"))
    with pytest.raises(redis.ResponseError, match=r"refused, the old one stays.*max_lag_ms"):
        r.admin.execute_command("PROXY", "RELOAD")
    os.kill(r.proc.pid, signal.SIGHUP)
    wait_for(lambda: r.text().count("config_reload_refused") >= 2, 10, "the refusal logged")
    assert "max_lag_ms" in r.text()
    assert r.config("loaded.version") == "1"
    assert r.config("routing.max_lag_ms") == "1000"
    assert r.admin.get("before") == b"1"  # still serving
    r.cfg.write_text(good.replace("max_lag_ms = 1000", "max_lag_ms = 400"))
    reply = r.admin.execute_command("PROXY", "RELOAD")
    assert reply[b"changed"] == [b"routing.max_lag_ms"] and r.config("loaded.version") == "2"


def test_a_new_listen_address_is_bound_and_old_connections_stay(
    running: tuple[Running, RedisTopology],
) -> None:
    r, _ = running
    new_port = free_port()
    old_client = redis.Redis(port=r.port, socket_timeout=5, single_connection_client=True)
    old_id = old_client.client_id()
    text = r.cfg.read_text().replace(f"127.0.0.1:{r.port}", f"127.0.0.1:{new_port}")
    r.cfg.write_text(text)
    reply = r.admin.execute_command("PROXY", "RELOAD")
    assert b"proxy.listen" in reply[b"changed"]
    assert redis.Redis(port=new_port, socket_timeout=5).ping()
    assert old_client.client_id() == old_id  # not dropped
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=r.port, socket_timeout=2).ping()


def test_with_workers_a_reload_reaches_every_worker(
    topology: RedisTopology, tmp_path: Path
) -> None:
    port = free_port()
    cfg = tmp_path / "georedis.toml"
    base = config_text(topology, port, ["ap-southeast-1", "us-east-1"], 1000)
    cfg.write_text(base.replace("[proxy]\n", "[proxy]\nworkers = 2\n", 1))
    r = Running(cfg, port)
    try:
        conns = [redis.Redis(port=port, socket_timeout=5, single_connection_client=True)
                 for _ in range(12)]  # fmt: skip
        for c in conns:
            with pytest.raises(redis.ResponseError, match="refused by the command policy"):
                c.keys("*")
        cfg.write_text(cfg.read_text() + '\n[policy]\nrefuse = ["flushall"]\n')
        reply = r.admin.execute_command("PROXY", "RELOAD")  # answered by one worker
        assert b"policy.refuse" in reply[b"changed"]
        assert reply[b"workers"] == {b"0": b"ok", b"1": b"ok"}  # each applied it, and said so

        def everywhere() -> bool:
            return all(c.execute_command("PROXY", "CONFIG", "GET", "loaded.version")[1] == b"2"
                       for c in conns)  # fmt: skip

        wait_for(everywhere, 10, "every worker on the new config")
        for c in conns:  # spread over both workers by the kernel; none refuses KEYS now
            assert isinstance(c.keys("*"), list)
        os.kill(r.proc.pid, signal.SIGHUP)  # to the supervisor: the file again, unchanged
        wait_for(lambda: r.text().count("config_reloaded") >= 2, 10, "the SIGHUP reload")
        assert all(c.ping() for c in conns)  # no connection dropped
    finally:
        r.stop()


def test_a_refused_reload_leaves_the_old_listener_serving(
    running: tuple[Running, RedisTopology],
) -> None:
    r, _ = running
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    try:
        text = r.cfg.read_text().replace(f"127.0.0.1:{r.port}", f"127.0.0.1:{free_port()}")
        r.cfg.write_text(text.replace(
            "[metrics]\nenabled = false\n", f'[metrics]\nlisten = "127.0.0.1:{busy}"\n'
        ))  # fmt: skip
        with pytest.raises(redis.ResponseError, match="metrics listen"):
            r.admin.execute_command("PROXY", "RELOAD")
    finally:
        taken.close()
    assert redis.Redis(port=r.port, socket_timeout=5).ping()  # a new client, on the old port
    assert r.config("loaded.version") == "1"


def test_an_empty_refuse_list_allows_what_the_old_one_refused(
    running: tuple[Running, RedisTopology],
) -> None:
    r, _ = running
    with pytest.raises(redis.ResponseError, match="refused by the command policy"):
        r.admin.keys("*")
    r.cfg.write_text(r.cfg.read_text() + "\n[policy]\nrefuse = []\n")
    r.admin.execute_command("PROXY", "RELOAD")
    assert isinstance(r.admin.keys("*"), list)


def test_users_added_without_a_default_keep_the_connected_clients(
    running: tuple[Running, RedisTopology],
) -> None:
    """As Redis when requirepass is set: connections already open stay, new ones log in."""
    r, _ = running
    before = redis.Redis(port=r.port, socket_timeout=5, single_connection_client=True)
    before.set("k", "v")
    only_ops = '\n[[users]]\nname = "ops"\nrules = "on ~* &* +@all"\n'
    only_ops += f'password_sha256 = ["{_sha(OPS_PW)}"]\n'
    r.cfg.write_text(r.cfg.read_text() + only_ops)
    r.admin.execute_command("PROXY", "RELOAD")
    assert before.get("k") == b"v"  # not dropped, and still allowed
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=r.port, socket_timeout=5).get("k")
    ops = redis.Redis(port=r.port, username="ops", password=OPS_PW, socket_timeout=5)
    assert ops.get("k") == b"v"
