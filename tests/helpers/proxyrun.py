"""Run the real proxy (`proxy.server.app.App`) in a thread with its own event loop.

Tests use blocking redis-py clients against it, and can look at the proxy's state
(`app.topo`, `app.stats`) through `call`. The loop is uvloop unless GEOREDIS_LOOP=asyncio,
so the suite runs under both.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import redis

from config.loader import parse_config
from config.model import Config
from proxy.server.app import App
from tests.helpers.topology import RedisTopology, free_port

T = TypeVar("T")


def new_loop() -> asyncio.AbstractEventLoop:
    if os.environ.get("GEOREDIS_LOOP", "uvloop") == "asyncio":
        return asyncio.new_event_loop()
    import uvloop

    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def config_from_toml(text: str, source: str = "test.toml") -> Config:
    import tomllib

    return parse_config(tomllib.loads(text), source)


class ProxyThread:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.loop = new_loop()
        self.app: App | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="georedis-test")
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return self.config.proxy.listen.port

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as e:  # reported to the starting thread
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self.app = App(self.config, instance_id=f"test-{os.getpid()}-{id(self)}")
        await self.app.start()

    def start(self) -> ProxyThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the proxy's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(_wrap(fn), self.loop).result(10)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def refresh(self) -> None:
        """Probe the topology now (instead of waiting for the next round)."""
        assert self.app is not None
        self.run(self.app.health.refresh())

    def stop(self) -> None:
        if self.app is not None and self._thread.is_alive():
            try:
                self.run(self.app.stop())
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(10)
        if not self.loop.is_running():
            self.loop.close()

    def client(self, **kw: Any) -> redis.Redis:
        kw.setdefault("socket_timeout", 10)
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def __enter__(self) -> ProxyThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _wrap(fn: Callable[[], T]) -> T:
    return fn()


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# Probes every 100 ms and a 1 s backend deadline: faults are seen quickly in tests.
FAST_HEALTH = "[health]\ninterval_ms = 100\nprobe_timeout_ms = 300\n"


def fast_config(topology: RedisTopology, backend: str = "", routing: str = "") -> Config:
    """A proxy config for `topology` with FAST_HEALTH; `backend`/`routing` add keys."""
    extra = FAST_HEALTH + "[backend]\ntimeout_ms = 1000\n" + backend
    if routing:
        extra += "[routing]\n" + routing
    return config_from_toml(topology.config_toml(free_port(), extra=extra))


def single_node_toml(port: int, backend: str = "", metrics: str = "enabled = false",
                     extra: str = "") -> str:  # fmt: skip
    """A proxy config (TOML) in front of one standalone redis-server on `port`;
    `backend` adds [backend] keys, `metrics` replaces [metrics]' body, `extra` appends."""
    return f"""
[proxy]
listen = "127.0.0.1:{free_port()}"
[[regions]]
name = "ap-southeast-1"
latitude = 1.29
longitude = 103.85
nodes = ["127.0.0.1:{port}"]
[backend]
{backend}
[metrics]
{metrics}
{extra}
"""
