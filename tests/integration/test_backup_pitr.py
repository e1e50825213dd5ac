"""Point-in-time restore: PROXY BACKUP ARCHIVE, then PROXY RESTORE <id> AT <unix-ms>.

Numbered writes go through the proxy while the archive runs, each stamped with when it
was sent and when it was acknowledged. A restore AT t must hold every write
acknowledged before t minus the resolution (the replication delay to the proxy: a
few ms on loopback; 50 ms allowed) and none sent after t, and every MULTI block whole.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import redis

from tests.helpers.backup import backup, backup_key, backup_toml, pairs, proxy_cmd
from tests.helpers.proxyrun import FAST_HEALTH, ProxyThread, config_from_toml, wait_for
from tests.helpers.topology import RedisNode, RedisTopology, free_port, no_retry

__all__ = ["backup_key"]
RESOLUTION_MS = 50


class StampedWrites(threading.Thread):
    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.done: list[tuple[int, float, float]] = []  # (i, sent ms, acked ms)

    def run(self) -> None:
        c = redis.Redis(port=self.port, retry=no_retry(), socket_timeout=10)
        i = 0
        while not self.stop.is_set():
            i += 1
            sent = time.time() * 1000
            if i % 5 == 0:
                p = c.pipeline(transaction=True)
                p.set(f"tx:a:{i}", i)
                p.set(f"tx:b:{i}", i)
                p.execute()
            else:
                c.set(f"pit:{i}", i)
            self.done.append((i, sent, time.time() * 1000))
            time.sleep(0.003)


def _manifest(directory: Path, ident: str) -> dict[str, object]:
    return json.loads((directory / f"{ident}.json").read_text())  # type: ignore[no-any-return]


def _archived_to(directory: Path, ident: str) -> float:
    segments = _manifest(directory, ident).get("archive") or []
    assert isinstance(segments, list)
    return float(segments[-1]["to_ms"]) if segments else 0.0


def test_restore_at_a_moment_keeps_exactly_the_writes_before_it(
    topology: RedisTopology, tmp_path: Path, backup_key: str
) -> None:
    section = backup_toml(str(tmp_path), "archive_segment_ms = 300\n")
    toml = topology.config_toml(free_port(), extra=FAST_HEALTH + section)
    target = RedisNode("scratch", free_port(), tmp_path)
    target.wait_ready()
    with ProxyThread(config_from_toml(toml)) as p:
        wait_for(lambda: p.call(lambda: bool(p.app and p.app.topo.primary)), 10, "a primary")
        topology.primary.client().set("before-snapshot", 1)
        status = backup(p.port, "ARCHIVE")
        ident = status["id"]
        writes = StampedWrites(p.port)
        writes.start()
        time.sleep(2.0)
        moment = time.time() * 1000
        time.sleep(1.5)
        writes.stop.set()
        writes.join(10)
        wait_for(lambda: _archived_to(tmp_path, ident) > moment + 200, 10, "the archive to pass t")
        with pytest.raises(redis.ResponseError, match="before backup"):
            proxy_cmd(p.port, "RESTORE", ident, "TO", target.address, "AT", "1000")
        with pytest.raises(redis.ResponseError, match="archive reaches"):
            later = str(int(moment + 3.6e6))  # an hour past what is archived
            proxy_cmd(p.port, "RESTORE", ident, "TO", target.address, "AT", later)
        result = pairs(proxy_cmd(p.port, "RESTORE", ident, "TO", target.address, "AT",
                                 str(int(moment)), timeout=60))  # fmt: skip
        assert result["replayed"] > 100, result
        proxy_cmd(p.port, "BACKUP", "STOP", ident)
    try:
        c = target.client()
        assert c.get("before-snapshot") == b"1"
        early = [i for i, _, acked in writes.done if acked < moment - RESOLUTION_MS]
        late = [i for i, sent, _ in writes.done if sent > moment]
        assert len(early) > 100 and len(late) > 100
        missing = [i for i in early if not c.exists(_key(i))]
        extra = [i for i in late if c.exists(_key(i))]
        assert missing == [] and extra == [], (missing[:5], extra[:5])
        for i, _, _ in writes.done:
            if i % 5 == 0:
                assert c.exists(f"tx:a:{i}") == c.exists(f"tx:b:{i}"), i  # whole or none
    finally:
        target.stop()


def _key(i: int) -> str:
    return f"tx:a:{i}" if i % 5 == 0 else f"pit:{i}"
