"""What the failover tests share: a numbered-write load, and reading every write back."""

from __future__ import annotations

import threading
import time

import redis

from tests.helpers.proxyrun import ProxyThread
from tests.helpers.topology import RedisNode, no_retry


class WriteLoad(threading.Thread):
    """Numbered writes and reads of the keys written, through one proxy, until stopped."""

    def __init__(self, proxy: ProxyThread | int, name: str) -> None:
        super().__init__(daemon=True)
        self.port = proxy if isinstance(proxy, int) else proxy.port
        self.prefix = name
        self.stop_flag = threading.Event()
        self.acked: list[str] = []
        self.write_errors: list[str] = []
        self.read_errors: list[str] = []
        self.reads = 0
        self.longest_stall = 0.0

    def run(self) -> None:
        c = redis.Redis(port=self.port, retry=no_retry(), socket_timeout=10)
        last = time.monotonic()
        i = 0
        while not self.stop_flag.is_set():
            i += 1
            key = f"{self.prefix}:{i}"
            try:
                c.set(key, i)
                self.acked.append(key)
                now = time.monotonic()
                self.longest_stall = max(self.longest_stall, now - last)
                last = now
            except redis.RedisError as e:
                self.write_errors.append(str(e))
            try:
                c.get(self.acked[-1] if self.acked else "none")
                self.reads += 1
            except redis.RedisError as e:
                self.read_errors.append(str(e))
            time.sleep(0.002)

    def finish(self) -> None:
        self.stop_flag.set()
        self.join(15)


def missing_on(node: RedisNode, loads: list[WriteLoad]) -> list[str]:
    c = node.client()
    missing = []
    for load in loads:
        keys = load.acked
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            missing += [k for k, v in zip(chunk, c.mget(chunk), strict=True) if v is None]
    return missing


def proxy_failover(p: ProxyThread | int, *args: str) -> dict[str, object]:
    port = p if isinstance(p, int) else p.port
    client = redis.Redis(port=port, socket_timeout=30, decode_responses=True)
    reply = client.execute_command("PROXY", "FAILOVER", *args)  # type: ignore[no-untyped-call]
    assert isinstance(reply, list | dict), reply
    if isinstance(reply, list):
        reply = dict(zip(reply[::2], reply[1::2], strict=True))
    return reply


def failover_under_load(proxy: ProxyThread | int, loads: list[WriteLoad],
                        *args: str) -> dict[str, object]:  # fmt: skip
    """Start the loads, PROXY FAILOVER `args` after 1 s of them, stop them 1 s later."""
    for load in loads:
        load.start()
    time.sleep(1.0)
    result = proxy_failover(proxy, *args)
    time.sleep(1.0)
    for load in loads:
        load.finish()
    return result


def assert_clean(loads: list[WriteLoad], min_acked: int = 100) -> None:
    """No failed command on any load, and no write stalled for 2 s or more."""
    for load in loads:
        assert len(load.acked) > min_acked, load.prefix
        assert load.write_errors == [], (load.prefix, load.write_errors[:5])
        assert load.read_errors == [], (load.prefix, load.read_errors[:5])
        assert load.longest_stall < 2.0, (load.prefix, load.longest_stall)
