"""CLIENT PAUSE and UNPAUSE through georedis: this proxy's clients wait, the backends
are never paused (another proxy, or a client of Redis itself, writes on), and a pause
longer than the failover's `hold_ms` still only delays writes, as Redis' pause does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tests.helpers.proxyrun import FAST_HEALTH, ProxyThread, config_from_toml
from tests.helpers.raw import Raw
from tests.helpers.topology import RedisTopology, free_port


@pytest.fixture
def paused_proxy(topology: RedisTopology) -> Iterator[ProxyThread]:
    extra = FAST_HEALTH + "[failover]\nhold_ms = 300\n"
    with ProxyThread(config_from_toml(topology.config_toml(free_port(), extra=extra))) as p:
        yield p


def _timed(port: int, *cmd: str) -> tuple[list[float], list[object]]:
    """Send `cmd` from a thread; (seconds until its reply, the reply), filled when done."""
    took: list[float] = []
    got: list[object] = []

    def run() -> None:
        c = Raw(port, timeout=10)
        t0 = time.monotonic()
        got.append(c.call(*cmd))
        took.append(time.monotonic() - t0)
        c.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    _timed.threads.append(t)  # type: ignore[attr-defined]
    return took, got


_timed.threads = []  # type: ignore[attr-defined]


def _join() -> None:
    for t in _timed.threads:  # type: ignore[attr-defined]
        t.join(10)
    _timed.threads.clear()  # type: ignore[attr-defined]


def test_pause_write_holds_writes_not_reads(
    topology: RedisTopology, paused_proxy: ProxyThread
) -> None:
    admin = Raw(paused_proxy.port)
    assert admin.call("SET", "k", "before") == b"OK"
    assert admin.call("CLIENT", "PAUSE", "1500", "WRITE") == b"OK"
    t0 = time.monotonic()
    write_took, write_got = _timed(paused_proxy.port, "SET", "k", "during")
    read_took, read_got = _timed(paused_proxy.port, "PING", "read")
    time.sleep(0.3)
    # The backend itself is not paused: a direct write lands at once.
    topology.primary.client().set("direct", "1")
    assert topology.primary.client().get("k") == b"before"
    _join()
    assert write_got == [b"OK"] and write_took[0] >= 1.4  # longer than hold_ms: no error
    assert read_got == [b"read"] and read_took[0] < 1.0  # not held (the pause: 1.5 s)
    assert time.monotonic() - t0 < 8
    assert topology.primary.client().get("k") == b"during"


def test_unpause_releases_at_once(paused_proxy: ProxyThread) -> None:
    admin = Raw(paused_proxy.port)
    assert admin.call("CLIENT", "PAUSE", "20000", "WRITE") == b"OK"
    took, got = _timed(paused_proxy.port, "INCR", "n")
    time.sleep(0.3)
    assert got == []
    assert admin.call("CLIENT", "UNPAUSE") == b"OK"
    _join()
    assert got == [1] and 0.25 < took[0] < 3


def test_pause_all_holds_every_other_client(paused_proxy: ProxyThread) -> None:
    admin = Raw(paused_proxy.port)
    assert admin.call("CLIENT", "PAUSE", "600") == b"OK"  # ALL by default, as Redis
    took, got = _timed(paused_proxy.port, "PING", "waits")
    time.sleep(0.1)
    assert admin.call("PING", "caller") == b"caller"  # the caller can still UNPAUSE
    _join()
    assert got == [b"waits"] and took[0] >= 0.4


def test_pause_errors_in_redis_words(paused_proxy: ProxyThread) -> None:
    c = Raw(paused_proxy.port)
    assert str(c.call("CLIENT", "PAUSE", "x")) == "ERR timeout is not an integer or out of range"
    assert str(c.call("CLIENT", "PAUSE", "-1")) == "ERR timeout is negative"
    assert (
        str(c.call("CLIENT", "PAUSE", "1", "bogus")) == "ERR CLIENT PAUSE mode must be WRITE or ALL"
    )
    assert "wrong number of arguments" in str(c.call("CLIENT", "PAUSE"))


@pytest.mark.parametrize("mode", ["TIMEOUT", "ERROR"])
def test_client_unblock_of_a_georedis_client(
    topology: RedisTopology, paused_proxy: ProxyThread, mode: str
) -> None:
    """CLIENT UNBLOCK names the georedis client id; the blocked BLPOP is answered as
    Redis answers it directly (null, or -UNBLOCKED), and the client goes on."""
    direct = []
    for port in (topology.primary.port, paused_proxy.port):
        blocked = Raw(port, timeout=10)
        cid = blocked.call("CLIENT", "ID")
        blocked.send(["BLPOP", "never", "0"])
        time.sleep(0.3)
        other = Raw(port)
        assert other.call("CLIENT", "UNBLOCK", str(cid), mode) == 1
        direct.append(repr(blocked.read(1)))
        assert blocked.call("PING") == b"PONG"
        assert other.call("CLIENT", "UNBLOCK", str(cid), mode) == 0  # not blocked now
        blocked.close()
        other.close()
    assert direct[0] == direct[1]


def test_client_unblock_errors(paused_proxy: ProxyThread) -> None:
    c = Raw(paused_proxy.port)
    assert str(c.call("CLIENT", "UNBLOCK", "x")) == "ERR value is not an integer or out of range"
    assert str(c.call("CLIENT", "UNBLOCK", "1", "bad")) == (
        "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"
    )
    assert c.call("CLIENT", "UNBLOCK", "999999") == 0
