"""PROXY BACKUP / RESTORE / VERIFY against real redis-server processes.

A backup is an RDB fetched from a replica over the replication protocol, sealed as it
streams, and stored beside its manifest; a restore checks all of it, then serves it to
the target as its master. Checked here as an operator would: every user key restored
with the same DEBUG DIGEST-VALUE and TTL presence, no plaintext in the stored file, a
damaged backup refused before the target is touched, writes held (not lost) while the
primary is restored, and the replicas following the restored primary.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from proxy.backup.manifest import Manifest
from proxy.backup.sealed import MasterKey
from tests.helpers.backup import (
    KEY_ENV,
    backup,
    backup_key,
    backup_toml,
    digests,
    fill_mixed,
    pairs,
    proxy_cmd,
    set_env,
    user_keys,
)
from tests.helpers.proxyrun import FAST_HEALTH, ProxyThread, config_from_toml, wait_for
from tests.helpers.topology import RedisNode, RedisTopology, free_port

__all__ = ["backup_key"]  # the fixture, imported for pytest


def _proxy(topology: RedisTopology, directory: Path, extra: str = "") -> ProxyThread:
    toml = topology.config_toml(free_port(), extra=FAST_HEALTH + backup_toml(str(directory), extra))
    return ProxyThread(config_from_toml(toml))


def _ready(p: ProxyThread) -> None:
    wait_for(lambda: p.call(lambda: bool(p.app and p.app.topo.primary)), 10, "a primary")
    wait_for(
        lambda: p.call(lambda: sum(n.eligible for n in p.app.topo.nodes) >= 3),  # type: ignore[union-attr]
        10,
        "eligible replicas",
    )


def _empty_server(topology: RedisTopology, tmp: Path) -> RedisNode:
    node = RedisNode("scratch", free_port(), tmp)
    node.wait_ready()
    return node


def _cli_restore(config: Path, ident: str, to: str,
                 *extra: str) -> subprocess.CompletedProcess[str]:  # fmt: skip
    cmd = ["restore", ident, "--to", to, "--config", str(config), *extra]
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", *cmd],
        capture_output=True, text=True, timeout=120, env=set_env(),
    )  # fmt: skip


def test_backup_from_a_replica_restores_every_key(
    topology: RedisTopology, tmp_path: Path, backup_key: str
) -> None:
    primary = topology.primary.client()
    fill_mixed(primary, 100_000)
    topology.wait_synced()
    expected = {k: (d, t) for k, d, t in digests(primary, user_keys(primary))}
    with _proxy(topology, tmp_path / "b") as p:
        _ready(p)
        status = backup(p.port)
        ident = status["id"]
        assert "ap-southeast-1" in status["source"] or "us-east-1" in status["source"]
        assert str(topology.primary.port) not in status["source"]  # a replica served it
        assert status["keys"] == 100_000
        listed = proxy_cmd(p.port, "BACKUPS")
        assert [pairs(r)["id"] for r in listed] == [ident]
    sealed = (tmp_path / "b" / f"{ident}.grbk").read_bytes()
    assert b"REDIS" not in sealed and b"k:12345" not in sealed and b"value-" not in sealed
    config_path = tmp_path / "georedis.toml"
    config_path.write_text(backup_toml(str(tmp_path / "b")) + _regions(topology))
    target = _empty_server(topology, tmp_path)
    try:
        done = _cli_restore(config_path, ident, target.address)
        assert done.returncode == 0, done.stderr
        c = target.client()
        got = {k: (d, t) for k, d, t in digests(c, user_keys(c))}
        assert got == expected
        assert not list(c.scan_iter(match="georedis:*"))  # the source's heartbeats left out
    finally:
        target.stop()


def _regions(topology: RedisTopology) -> str:
    # A config `georedis restore` can read: [backup] comes from it, the nodes do not matter.
    toml = topology.config_toml(free_port())
    return "\n" + toml


@pytest.mark.parametrize("damage", ["flip", "cut", "manifest"])
def test_damaged_backup_is_refused_before_the_target_is_touched(
    topology: RedisTopology, tmp_path: Path, backup_key: str, damage: str
) -> None:
    fill_mixed(topology.primary.client(), 2000)
    topology.wait_synced()
    with _proxy(topology, tmp_path / "b") as p:
        _ready(p)
        ident = backup(p.port)["id"]
    path = tmp_path / "b" / f"{ident}.grbk"
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x40
    elif damage == "cut":
        data = data[: len(data) - 100]
    else:
        # A shorter RDB claimed, and signed with the key (as by someone who has it): a
        # payload cut at a segment boundary passes every tag; the length check refuses.
        path_m = tmp_path / "b" / f"{ident}.json"
        m = Manifest.from_json(path_m.read_bytes())
        m.rdb_bytes = 1 << 20
        m.mac = MasterKey.parse(backup_key).mac(m.signed())
        path_m.write_bytes(m.to_json())
    path.write_bytes(bytes(data))
    config_path = tmp_path / "georedis.toml"
    config_path.write_text(backup_toml(str(tmp_path / "b")) + _regions(topology))
    target = _empty_server(topology, tmp_path)
    try:
        target.client().set("precious", "still here")
        done = _cli_restore(config_path, ident, target.address)
        assert done.returncode == 1
        assert "fails its check" in done.stderr, done.stderr
        assert target.client().get("precious") == b"still here"
        assert target.role() == "master"
    finally:
        target.stop()


def test_no_master_key_is_a_clear_error(topology: RedisTopology, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv(KEY_ENV, raising=False)
    with _proxy(topology, tmp_path / "b") as p:
        _ready(p)
        with pytest.raises(redis.ResponseError, match=f"set environment variable {KEY_ENV}"):
            proxy_cmd(p.port, "BACKUP")


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_proxy_memory_stays_far_below_the_rdb_size(topology: RedisTopology, tmp_path: Path) -> None:
    # 128 MB of incompressible values: the backup streams through the proxy twice
    # (backup, then restore), and neither may hold it. (Four servers hold it too: more
    # would make the machine page and compact, and later timing tests pay for that.)
    primary = topology.primary.client()
    for i in range(128):
        primary.set(f"big:{i}", os.urandom(1 << 20))
    topology.wait_synced(timeout=60)
    port = free_port()
    extra = FAST_HEALTH + backup_toml(str(tmp_path / "b"))
    cfg = topology.write_config(tmp_path / "georedis.toml", port, extra=extra)
    log = (tmp_path / "proxy.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "proxy.cli", "run", "--config", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT, env=set_env())  # fmt: skip
    target = _empty_server(topology, tmp_path)
    try:
        wait_for(lambda: _answers(port), 20, "the proxy")
        wait_for(lambda: sum(pairs(r)["eligible"] for r in proxy_cmd(port, "BACKENDS")) >= 3, 10,
                 "eligible replicas")  # fmt: skip
        before = _hwm_mb(proc.pid)
        status = backup(port)
        after_backup = _hwm_mb(proc.pid)
        assert status["rdb_bytes"] > 127 << 20
        result = pairs(proxy_cmd(port, "RESTORE", status["id"], "TO", target.address, timeout=120))
        after_restore = _hwm_mb(proc.pid)
        assert result["keys"] == 128
        assert target.client().get("big:7") == primary.get("big:7")
        # The proxy's peak RSS grew by a small fraction of the 128 MB that went through it.
        assert after_backup - before < 32, (before, after_backup)
        assert after_restore - before < 32, (before, after_restore)
    finally:
        proc.terminate()
        proc.wait(10)
        target.stop()


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def test_interrupted_restore_leaves_the_target_a_master(
    topology: RedisTopology, tmp_path: Path, backup_key: str
) -> None:
    primary = topology.primary.client()
    for i in range(64):
        primary.set(f"big:{i}", os.urandom(1 << 20))
    topology.wait_synced(timeout=60)
    with _proxy(topology, tmp_path / "b") as p:
        _ready(p)
        ident = backup(p.port)["id"]
    config_path = tmp_path / "georedis.toml"
    config_path.write_text(backup_toml(str(tmp_path / "b")) + _regions(topology))
    target = _empty_server(topology, tmp_path)
    cmd = ["restore", ident, "--to", target.address, "--config", str(config_path)]
    proc = subprocess.Popen([sys.executable, "-m", "proxy.cli", *cmd], env=set_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: target.role() == "slave", 60, "the transfer to start")
        proc.send_signal(signal.SIGINT)  # Ctrl-C, mid-transfer or mid-load
        proc.wait(60)
        assert proc.returncode != 0
        wait_for(lambda: target.role() == "master", 5, "the target to be a master again")
        assert target.client().config_get("masterauth")["masterauth"] == ""
    finally:
        proc.kill()
        target.stop()
