"""Users and ACL rules at the proxy, against a real topology: NOAUTH before AUTH,
WRONGPASS for a bad pair, NOPERM (Redis 7.0's words) for commands, keys, channels and
PROXY verbs outside a user's rules, and redis-py's username/password login in RESP2 and
RESP3. The backends run without passwords: every refusal here is the proxy's."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import hiredis
import pytest
import redis

from tests.helpers.proxyrun import FAST_HEALTH, ProxyThread, config_from_toml, wait_for
from tests.helpers.raw import Raw
from tests.helpers.topology import RedisTopology, free_port

APP_PW = "app-secret-4b1d"
OPS_PW = "ops-secret-9e2c"
OPS_ENV = "GEOREDIS_TEST_OPS_PW"
APP_RULES = (
    "on ~app:* &app:* +@read +@write +@connection +@pubsub +@scripting +@transaction"
    " +acl|whoami -@dangerous"
)


def _sha(pw: str) -> str:
    return hashlib.sha256(pw.encode()).hexdigest()


USERS = f"""
[[users]]
name = "app"
rules = "{APP_RULES}"
password_sha256 = ["{_sha(APP_PW)}"]

[[users]]
name = "reader"
rules = "on #{_sha("reader-pw")} ~* +@read +@connection"

[[users]]
name = "ops"
password_env = "{OPS_ENV}"
rules = "on ~* &* +@all +config|resetstat"

[[users]]
name = "eu"
rules = "on ~* +@all"
password_sha256 = ["{_sha("eu-pw")}"]
region = "eu-west-1"
max_lag_ms = 250
read_your_writes = false
max_clients = 2

[[users]]
name = "gone"
rules = "off nopass ~* +@all"
"""


@pytest.fixture(scope="module")
def proxy(topology_module: RedisTopology) -> Iterator[ProxyThread]:
    mp = pytest.MonkeyPatch()
    mp.setenv(OPS_ENV, OPS_PW)
    # Every test logs in from 127.0.0.1: the failure limit has its own test.
    options = {"auth_max_failures": 0}
    text = topology_module.config_toml(free_port(), extra=FAST_HEALTH + USERS,
                                       proxy_options=options)  # fmt: skip
    try:
        with ProxyThread(config_from_toml(text)) as p:
            yield p
    finally:
        mp.undo()


def _app(p: ProxyThread, protocol: int = 2) -> redis.Redis:
    return p.client(username="app", password=APP_PW, protocol=protocol)


def _words(reply: object) -> str:
    assert isinstance(reply, hiredis.ReplyError), reply
    return str(reply)


def _error(c: redis.Redis, *args: object) -> str:
    with pytest.raises(redis.ResponseError) as e:
        c.execute_command(*args)
    # redis-py keeps the words after the error code: NOPERM is its NoPermissionError.
    noperm = isinstance(e.value, redis.exceptions.NoPermissionError)
    return ("NOPERM " if noperm else "") + str(e.value)


def test_no_auth_is_noauth(proxy: ProxyThread) -> None:
    # redis-py 8 starts with HELLO 3: Redis' NOAUTH words for HELLO.
    with pytest.raises(redis.AuthenticationError, match="already authenticated"):
        proxy.client(protocol=3).get("app:1")
    raw = Raw(proxy.port)
    assert _words(raw.call("PING")) == "NOAUTH Authentication required."
    assert _words(raw.call("HELLO", "3")).startswith("NOAUTH HELLO must be called with the")
    assert raw.call("QUIT") == b"OK"


def test_wrong_password_is_wrongpass(proxy: ProxyThread) -> None:
    for user, pw in (("app", "nope"), ("nobody", APP_PW), ("gone", "x")):
        with pytest.raises(redis.AuthenticationError, match="invalid username-password"):
            proxy.client(username=user, password=pw).ping()


@pytest.mark.parametrize("protocol", [2, 3])
def test_app_reads_and_writes_its_keys_only(proxy: ProxyThread, protocol: int) -> None:
    c = _app(proxy, protocol)
    assert c.set("app:1", "v") is True
    assert c.get("app:1") == b"v"
    assert c.mget("app:1", "app:2") == [b"v", None]
    assert c.execute_command("ACL", "WHOAMI") in (b"app", "app")
    key = "NOPERM this user has no permissions to access one of the keys used as arguments"
    assert _error(c, "GET", "other:1") == key
    assert _error(c, "MSET", "app:3", "1", "other:3", "1") == key
    # Movable keys are found from the key specs: no way round `~app:*`.
    assert _error(c, "EVAL", "return 1", "1", "other:1") == key
    assert c.eval("return redis.call('GET', KEYS[1])", 1, "app:1") == b"v"
    assert _error(c, "ZUNIONSTORE", "app:z", "2", "app:a", "other:b") == key
    assert _error(c, "FLUSHALL") == (
        "NOPERM this user has no permissions to run the 'flushall' command"
    )
    assert _error(c, "PROXY", "FAILOVER") == (
        "NOPERM this user has no permissions to run the 'proxy|failover' command"
    )
    assert _error(c, "PROXY", "BACKENDS").startswith("NOPERM")
    assert c.execute_command("PROXY", "WHEREAMI")  # a per-connection knob: open to all


def test_app_channels(proxy: ProxyThread) -> None:
    c = _app(proxy)
    assert c.publish("app:news", "hi") == 0
    assert _error(c, "PUBLISH", "other", "hi") == (
        "NOPERM this user has no permissions to access one of the channels used as arguments"
    )


def test_a_read_only_user_cannot_write(proxy: ProxyThread) -> None:
    c = proxy.client(username="reader", password="reader-pw")
    assert c.get("app:1") in (b"v", None)
    assert _error(c, "SET", "app:1", "x") == (
        "NOPERM this user has no permissions to run the 'set' command"
    )


def test_a_refused_command_inside_multi_aborts_exec(proxy: ProxyThread) -> None:
    c = _app(proxy)
    pipe = c.pipeline(transaction=True)
    pipe.set("app:tx", "1")
    pipe.get("other:tx")
    with pytest.raises(redis.ResponseError) as e:
        pipe.execute()
    assert isinstance(e.value.__context__, redis.exceptions.ExecAbortError)
    assert c.get("app:tx") is None


def test_a_refused_command_runs_for_a_user_that_names_it(proxy: ProxyThread) -> None:
    """CONFIG RESETSTAT is in the default policy: refused even with +@all, run for ops,
    whose rules name it."""
    ops = proxy.client(username="ops", password=OPS_PW)
    assert ops.execute_command("CONFIG", "RESETSTAT") in (b"OK", "OK", True)
    eu = proxy.client(username="eu", password="eu-pw")
    with pytest.raises(redis.ResponseError, match="refused by the command policy"):
        eu.execute_command("CONFIG", "RESETSTAT")


def test_ops_runs_admin_verbs(proxy: ProxyThread, topology_module: RedisTopology) -> None:
    c = proxy.client(username="ops", password=OPS_PW)
    backends = c.execute_command("PROXY", "BACKENDS")
    assert len(backends) == len(topology_module.nodes)
    assert c.set("other:1", "x") is True
    c.delete("other:1", "app:1")


def test_auth_after_connect_and_reset(proxy: ProxyThread) -> None:
    raw = Raw(proxy.port)
    assert raw.call("AUTH", "app", APP_PW) == b"OK"
    assert raw.call("SET", "app:r", "1") == b"OK"
    assert raw.call("RESET") == b"RESET"
    # RESET logs back in as `default`, which is not configured here.
    assert _words(raw.call("GET", "app:r")) == "NOAUTH Authentication required."
    hello = raw.call("HELLO", "3", "AUTH", "app", APP_PW)
    assert isinstance(hello, dict) and hello[b"proto"] == 3
    # A read goes to a replica, which may lag the SET by a moment (a CI run saw None).
    wait_for(lambda: raw.call("GET", "app:r") == b"1", 5, "app:r readable as app")


def test_acl_list_shows_rules_never_passwords(proxy: ProxyThread) -> None:
    c = proxy.client(username="ops", password=OPS_PW)
    lines = [x.decode() for x in c.execute_command("ACL", "LIST")]
    assert f"user app {APP_RULES}" in lines
    assert any(line.startswith("user default off") for line in lines)
    settings = c.execute_command("PROXY", "CONFIG", "GET", "users.*")
    assert b"users.app.rules" in settings and b"(1 hidden)" in settings
    text = " ".join(lines) + " ".join(x.decode() for x in settings)
    for secret in (APP_PW, OPS_PW, _sha(APP_PW), _sha("reader-pw")):
        assert secret not in text
    assert b"read" in c.execute_command("ACL", "CAT")
    assert b"proxy|backends" in c.execute_command("ACL", "CAT", "proxystatus")


def test_failed_logins_are_counted_and_logged_without_the_password(
    proxy: ProxyThread, caplog: pytest.LogCaptureFixture
) -> None:
    assert proxy.app is not None
    before = proxy.app.stats.auth_failures
    guess = "guess-that-must-not-be-logged-51c"
    with caplog.at_level("INFO", logger="georedis"):
        assert _words(Raw(proxy.port).call("AUTH", "app", guess)).startswith("WRONGPASS")
        assert Raw(proxy.port).call("AUTH", "app", APP_PW) == b"OK"
    assert proxy.app.stats.auth_failures == before + 1
    assert "auth_failed" in caplog.text
    for secret in (guess, APP_PW, OPS_PW):
        assert secret not in caplog.text


def test_failed_logins_from_one_address_are_rate_limited(topology_module: RedisTopology) -> None:
    """Past auth_max_failures, AUTH from that address is refused unchecked (even the
    right password, with the same words), counted apart."""
    options = {"auth_max_failures": 3, "auth_failure_window_s": 60}
    text = topology_module.config_toml(free_port(), extra=FAST_HEALTH + USERS.replace(
        f'password_env = "{OPS_ENV}"', ""), proxy_options=options)  # fmt: skip
    with ProxyThread(config_from_toml(text)) as p:
        raw = Raw(p.port)
        for password in ("guess", "guess", "guess", APP_PW):
            assert _words(raw.call("AUTH", "app", password)) == (
                "WRONGPASS invalid username-password pair or user is disabled."
            )
        assert p.app is not None
        assert (p.app.stats.auth_failures, p.app.stats.auth_rate_limited) == (3, 1)


def test_a_users_options_apply_when_it_logs_in(proxy: ProxyThread) -> None:
    """region, max_lag_ms and read_your_writes as if sent with PROXY REGION/MAXLAG/
    CONSISTENCY; max_clients counts its connections (RESET and leaving give one back)."""
    first, second, third = Raw(proxy.port), Raw(proxy.port), Raw(proxy.port)
    assert first.call("AUTH", "eu", "eu-pw") == b"OK"
    where = dict(zip(*[iter(first.call("PROXY", "WHEREAMI"))] * 2, strict=True))  # type: ignore[call-overload]
    assert (where[b"region"], where[b"source"]) == (b"eu-west-1", b"override")
    assert (float(where[b"max_lag_ms"]), where[b"consistency"]) == (250.0, b"eventual")
    assert second.call("AUTH", "eu", "eu-pw") == b"OK"
    assert _words(third.call("AUTH", "eu", "eu-pw")) == (
        "ERR georedis: max number of clients reached for this user"
    )
    assert second.call("RESET") == b"RESET"
    assert third.call("AUTH", "eu", "eu-pw") == b"OK"
    first.close()
    assert wait_for_auth(second, "eu", "eu-pw")


def wait_for_auth(raw: Raw, user: str, password: str) -> bool:
    """The proxy counts a closed connection out when it notices the close."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if raw.call("AUTH", user, password) == b"OK":
            return True
        time.sleep(0.05)
    return False
