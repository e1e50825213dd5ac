"""`georedis health` as cron runs it: a subprocess of the real CLI asking a real proxy in
front of real redis-servers, its exit status and lines checked.

All well: exit 0 and one OK line. A node past 80% of its maxmemory (set on the node
itself): exit 1 and that finding. The primary SIGKILLed: exit 2 with "no primary" (the
issue's done-when). No proxy at the address: exit 2. With [[users]]: the password from
the environment variable, refused without it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.loader import load_config
from tests.helpers.backup import backup, backup_key, backup_toml
from tests.helpers.proxyrun import ProxyThread, wait_for
from tests.helpers.topology import RedisTopology, free_port

__all__ = ["backup_key"]  # the fixture

ROOT = Path(__file__).resolve().parents[2]
FAST = """
[health]
interval_ms = 100
probe_timeout_ms = 300
info_interval_ms = 200
[backend]
timeout_ms = 1000
"""
PASSWORD = "health-check-pw"
USERS = f"""
[[users]]
name = "monitor"
rules = "on +proxy|info"
password_sha256 = ["{hashlib.sha256(PASSWORD.encode()).hexdigest()}"]
"""


def health(config: Path, *flags: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    environ = {k: v for k, v in os.environ.items() if k != "GEOREDIS_PASSWORD"}
    r = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "health", "--config", str(config), *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={**environ, **(env or {})},
    )  # fmt: skip
    assert r.stderr == "", r.stderr
    return r.returncode, r.stdout.splitlines()


def settled(p: ProxyThread) -> bool:
    """Every node up, every replica eligible (lag measured): nothing to report."""
    assert p.app is not None
    snap = p.call(lambda: p.app.topo if p.app is not None else None)
    assert snap is not None
    return snap.primary is not None and all(
        n.up and (n is snap.primary or n.eligible) and n.info for n in snap.nodes
    )


@pytest.fixture
def running(topology: RedisTopology, tmp_path: Path) -> Iterator[tuple[ProxyThread, Path]]:
    cfg = topology.write_config(tmp_path / "georedis.toml", free_port(), extra=FAST)
    with ProxyThread(load_config(str(cfg))) as p:
        wait_for(lambda: settled(p), 15, "every node up and every replica eligible")
        yield p, cfg


def test_ok_then_memory_warning_then_no_primary(
    running: tuple[ProxyThread, Path], topology: RedisTopology
) -> None:
    p, cfg = running
    code, lines = health(cfg)
    assert code == 0, lines
    assert lines == [lines[0]] and lines[0].startswith(f"OK: primary {topology.primary.address}")

    # Memory: maxmemory set on one replica to just above what it uses (~85%: its use
    # moves meanwhile, by replication buffers and the probes' own clients).
    replica = topology.node("us-east-1")
    used = int(replica.info("memory")["used_memory"])
    replica.admin.config_set("maxmemory", str(int(used / 0.85)))
    try:
        wait_for(lambda: health(cfg)[0] == 1, 20, "the memory warning")
        code, lines = health(cfg)
        assert code == 1
        mine = [x for x in lines if f"node {replica.address} (us-east-1) uses " in x]
        assert mine and "% of maxmemory" in mine[0] and "warning at 80%" in mine[0], lines
        assert all(x.startswith("WARNING: ") for x in lines), lines
    finally:
        replica.admin.config_set("maxmemory", "0")

    topology.primary.kill()
    assert p.app is not None
    wait_for(lambda: p.call(lambda: p.app is not None and p.app.topo.primary is None), 15,
             "the proxy to see no primary")  # fmt: skip
    code, lines = health(cfg)
    assert code == 2, lines
    assert lines[0].startswith("CRITICAL: no primary"), lines
    assert f"WARNING: node {topology.primary.address} (ap-southeast-1) does not answer" in lines


def test_unreachable_proxy_is_critical(topology: RedisTopology, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    cfg = topology.write_config(tmp_path / "georedis.toml", port, extra=FAST)
    code, lines = health(cfg, "--timeout", "2")
    assert code == 2
    assert lines == [lines[0]] and lines[0].startswith(
        f"CRITICAL: cannot ask georedis at 127.0.0.1:{port}"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("[proxy]\nlisten = 12\n")
    code, lines = health(bad)
    assert code == 2 and lines[0].startswith("CRITICAL: cannot read the config"), lines


def test_users_log_in_with_the_password_from_the_environment(
    topology: RedisTopology, tmp_path: Path
) -> None:
    cfg = topology.write_config(tmp_path / "georedis.toml", free_port(), extra=FAST + USERS)
    with ProxyThread(load_config(str(cfg))) as p:
        wait_for(lambda: settled(p), 15, "every node up and every replica eligible")
        code, lines = health(cfg, "--user", "monitor")
        assert code == 2 and "GEOREDIS_PASSWORD" in lines[0], lines
        code, lines = health(cfg, "--user", "monitor", env={"GEOREDIS_PASSWORD": "wrong"})
        assert code == 2 and lines[0].startswith("CRITICAL: cannot ask"), lines
        assert "wrong" not in lines[0]
        flags = ("--user", "monitor", "--password-env", "MONITOR_PW")
        code, lines = health(cfg, *flags, env={"MONITOR_PW": PASSWORD})
        assert code == 0 and lines[0].startswith("OK: "), lines


@pytest.mark.usefixtures("backup_key")
def test_backup_age_from_proxy_backups(topology: RedisTopology, tmp_path: Path) -> None:
    section = backup_toml(str(tmp_path / "backups"), 'schedule = "@daily"\n')
    cfg = topology.write_config(tmp_path / "georedis.toml", free_port(), extra=FAST + section)
    with ProxyThread(load_config(str(cfg))) as p:
        wait_for(lambda: settled(p), 15, "every node up and every replica eligible")
        # The health check itself needs no backup key: it reads what the proxy lists.
        no_key = {"GEOREDIS_BACKUP_KEY": ""}
        code, lines = health(cfg, env=no_key)
        assert (code, lines) == (1, ['WARNING: no complete backup yet (schedule "@daily")'])
        backup(p.port)
        code, lines = health(cfg, env=no_key)
        assert code == 0 and lines[0].startswith("OK: "), lines
        time.sleep(2.5)  # the manifest's times are whole seconds
        code, lines = health(cfg, "--backup-max-age", "1", env=no_key)
        assert code == 1, lines
        assert lines[0].startswith("WARNING: last complete backup is "), lines
        assert lines[0].endswith(' s old, over 1 s (schedule "@daily")'), lines
