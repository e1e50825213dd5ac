"""What the backup tests share: a master key, mixed data, digests to compare, PROXY calls."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

KEY_HEX = "a1" * 32  # the master key the tests' proxies read from GEOREDIS_BACKUP_KEY
KEY_ENV = "GEOREDIS_BACKUP_KEY"


@pytest.fixture
def backup_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY_HEX)
    return KEY_HEX


def backup_toml(directory: str, extra: str = "") -> str:
    return f'[backup]\ndirectory = "{directory}"\nkey_env = "{KEY_ENV}"\n{extra}'


def fill_mixed(c: redis.Redis, n: int, prefix: str = "k") -> None:
    """`n` keys of every type, ~1 in 7 with a TTL, written in pipelined batches."""
    p = c.pipeline(transaction=False)
    for i in range(n):
        k = f"{prefix}:{i}"
        kind = i % 7
        if kind == 0:
            p.set(k, f"value-{i}" * (1 + i % 5))
        elif kind == 1:
            p.hset(k, mapping={f"f{j}": j * i for j in range(1 + i % 9)})
        elif kind == 2:
            p.rpush(k, *[f"e{j}" for j in range(1 + i % 6)])
        elif kind == 3:
            p.sadd(k, *[j * 3 for j in range(1 + i % 8)])
        elif kind == 4:
            p.zadd(k, {f"m{j}": j / 3 for j in range(1 + i % 7)})
        elif kind == 5:
            p.xadd(k, {"n": i, "s": "x" * (i % 30)})
        else:
            p.set(k, i, ex=3600)
        if i % 11 == 0:
            p.expire(k, 7200)
        if len(p) >= 2000:
            p.execute()
    p.execute()


def user_keys(c: redis.Redis) -> list[bytes]:
    return sorted(k for k in c.scan_iter(count=5000) if not k.startswith(b"georedis:"))


def digests(c: redis.Redis, keys: list[bytes]) -> Iterator[tuple[bytes, Any, bool]]:
    """(key, DEBUG DIGEST-VALUE, has a TTL) for every key (needs enable-debug-command)."""
    for i in range(0, len(keys), 1000):
        chunk = keys[i : i + 1000]
        values = c.execute_command("DEBUG", "DIGEST-VALUE", *chunk)  # type: ignore[no-untyped-call]
        p = c.pipeline(transaction=False)
        for k in chunk:
            p.pttl(k)
        ttls = p.execute()
        for k, d, t in zip(chunk, values, ttls, strict=True):
            yield k, d, t != -1


def pairs(reply: object) -> dict[str, Any]:
    if isinstance(reply, dict):
        return {str(k): v for k, v in reply.items()}
    assert isinstance(reply, list), reply
    return {str(k): v for k, v in zip(reply[::2], reply[1::2], strict=True)}


def proxy_cmd(port: int, *args: str, timeout: float = 60) -> Any:
    c = redis.Redis(port=port, socket_timeout=timeout, decode_responses=True)
    try:
        return c.execute_command("PROXY", *args)  # type: ignore[no-untyped-call]
    finally:
        c.close()


def backup(port: int, *args: str, timeout: float = 120) -> dict[str, Any]:
    """PROXY BACKUP `args`, then BACKUP STATUS until it ends; the final status."""
    ident = proxy_cmd(port, "BACKUP", *args)
    assert isinstance(ident, str), ident
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = pairs(proxy_cmd(port, "BACKUP", "STATUS", ident))
        if status["state"] != "running":
            assert status["state"] == "complete", status
            return status
        time.sleep(0.05)
    raise AssertionError(f"backup {ident} still running after {timeout} s")


def set_env(env: dict[str, str] | None = None) -> dict[str, str]:
    out = dict(os.environ)
    out[KEY_ENV] = KEY_HEX
    out.update(env or {})
    return out
