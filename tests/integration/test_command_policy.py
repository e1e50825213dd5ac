"""The dangerous-command policy and the backends' secrets, against a password-protected
redis-server: CONFIG GET hides requirepass/masterauth, ACL is answered by georedis (no
backend user can be made through it), FLUSHALL/KEYS/CONFIG SET/... are refused by
default and allowed with `[policy] refuse = []`; no reply carries the password."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from proxy.server.masking import HIDDEN
from tests.helpers.proxyrun import ProxyThread, config_from_toml, single_node_toml
from tests.helpers.topology import free_port, password_server

PASSWORD = "pw-that-must-never-leak-7f3a"
ENV = "GEOREDIS_POLICY_TEST_PW"


@pytest.fixture
def secured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A redis-server whose default user has PASSWORD, also set as its masterauth."""
    monkeypatch.setenv(ENV, PASSWORD)
    with password_server(tmp_path, PASSWORD, "--masterauth", PASSWORD) as port:
        yield port


def _proxy(port: int, policy: str = "") -> ProxyThread:
    return ProxyThread(config_from_toml(_toml(port, policy)))


def _toml(port: int, policy: str = "", metrics: str = "enabled = false") -> str:
    return single_node_toml(port, f'password_env = "{ENV}"', metrics, policy)


def _flat(value: object) -> bytes:
    """Every byte of a decoded reply, to search for the password."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, dict):
        return b" ".join(_flat(k) + b" " + _flat(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return b" ".join(_flat(v) for v in value)
    return str(value).encode()


def test_config_get_hides_the_backend_passwords(secured: int) -> None:
    with _proxy(secured) as p:
        for proto in (2, 3):
            c = p.client(protocol=proto)
            hidden = HIDDEN.decode()  # redis-py decodes CONFIG GET replies
            assert c.config_get("requirepass") == {"requirepass": hidden}
            assert c.config_get("masterauth") == {"masterauth": hidden}
            everything = c.config_get("*")
            assert len(everything) > 100 and PASSWORD.encode() not in _flat(everything)
            assert everything["maxmemory-policy"] == "noeviction"  # the rest as Redis said
        # The backend really has it (the test would pass vacuously otherwise).
        direct = redis.Redis(port=secured, password=PASSWORD)
        assert direct.config_get("requirepass") == {"requirepass": PASSWORD}


def test_dangerous_commands_are_refused_by_default(secured: int) -> None:
    with _proxy(secured) as p:
        c = p.client()
        c.set("keep", "1")
        for args in (
            ["FLUSHALL"], ["FLUSHDB"], ["KEYS", "*"], ["CONFIG", "SET", "requirepass", "x"],
            ["CONFIG", "REWRITE"], ["SAVE"], ["BGSAVE"], ["BGREWRITEAOF"], ["SWAPDB", "0", "1"],
            ["MODULE", "LIST"], ["ACL", "SETUSER", "evil", "on", ">pw", "+@all", "~*"],
            ["ACL", "DELUSER", "default"], ["ACL", "SAVE"],
        ):  # fmt: skip
            with pytest.raises(redis.ResponseError, match="refused by the command policy"):
                c.execute_command(*args)
        with pytest.raises(redis.ResponseError, match="refused by the command policy"):
            c.execute_command("DEBUG", "SLEEP", "0")
        assert c.get("keep") == b"1"  # nothing was flushed
        direct = redis.Redis(port=secured, password=PASSWORD)
        assert direct.acl_users() == ["default"]  # no backend user was made
        assert direct.config_get("requirepass") == {"requirepass": PASSWORD}


def test_the_policy_and_the_masking_hold_inside_multi_and_watch(secured: int) -> None:
    """A transaction's pinned connection is no way around them: inside MULTI a refused
    or masked command is refused and EXEC aborts; while WATCHing, CONFIG GET is masked
    and FLUSHALL refused as anywhere else."""
    with _proxy(secured) as p:
        c = p.client(protocol=2)
        c.set("keep", "1")
        for args in (["FLUSHALL"], ["CONFIG", "GET", "requirepass"], ["ACL", "SETUSER", "x"]):
            pipe = c.pipeline(transaction=True)
            pipe.execute_command(*args)
            with pytest.raises(redis.ResponseError) as e:
                pipe.execute()
            assert PASSWORD not in str(e.value)
        with c.pipeline(transaction=True) as watching:
            watching.watch("keep")
            assert watching.execute_command("CONFIG", "GET", "requirepass") == [
                b"requirepass",
                HIDDEN,
            ]
            with pytest.raises(redis.ResponseError, match="refused by the command policy"):
                watching.execute_command("FLUSHALL")
            watching.multi()
            watching.set("keep", "2")
            assert watching.execute() == [True]
        assert c.get("keep") == b"2"  # nothing was flushed; the transaction itself ran


def test_acl_is_answered_by_georedis_without_secrets(secured: int) -> None:
    with _proxy(secured) as p:
        c = p.client()
        assert c.acl_whoami() == "default"
        assert c.acl_users() == ["default"]
        (line,) = c.acl_list()
        assert line.startswith("user default on nopass") and "-flushall" in line
        user = c.acl_getuser("default")
        assert user is not None and "-flushall" in str(user["commands"])
        assert c.acl_getuser("nobody") is None
        replies = [c.acl_list(), user, c.acl_log(), c.execute_command("PROXY", "INFO"),
                   c.execute_command("PROXY", "CONFIG", "GET", "*"), c.client_list()]  # fmt: skip
        assert PASSWORD.encode() not in _flat(replies)


def test_an_empty_policy_allows_them(secured: int) -> None:
    with _proxy(secured, "[policy]\nrefuse = []") as p:
        c = p.client()
        c.set("a", "1")
        assert b"a" in c.keys("*")
        assert c.flushall() is True
        assert c.get("a") is None
        # ACL stays georedis' own even then: no backend users through the proxy.
        with pytest.raises(redis.ResponseError, match="not managed through georedis"):
            c.execute_command("ACL", "SETUSER", "evil", "on", ">pw", "+@all")
        assert c.execute_command("ACL", "DELUSER", "nosuch") == 0  # as Redis: none deleted
        with pytest.raises(redis.ResponseError, match="not managed through georedis"):
            c.execute_command("ACL", "DELUSER", "default")
        # Nor the backends' credentials: a password set here would lock georedis out.
        for secret in ("requirepass", "masterauth", "masteruser"):
            with pytest.raises(redis.ResponseError, match="credentials are not managed"):
                c.config_set(secret, "x")
        direct = redis.Redis(port=secured, password=PASSWORD)
        assert direct.config_get("requirepass") == {"requirepass": PASSWORD}


def test_the_password_is_in_no_reply_log_metric_or_status_page(
    secured: int, caplog: pytest.LogCaptureFixture
) -> None:
    """After a run that used the password (pools, probes, a client sending it in AUTH), the
    secret appears nowhere a client or a scraper can look, nor in the logs."""
    caplog.set_level(logging.DEBUG)
    metrics_port = free_port()
    policy = "[policy]\nrefuse = []\n"
    cfg = config_from_toml(_toml(secured, policy, f'listen = "127.0.0.1:{metrics_port}"'))
    with ProxyThread(cfg) as p:
        c = p.client()
        c.set("k", "v")
        proxy_verbs = [c.execute_command("PROXY", *v.split()) for v in
                       ("INFO", "CONFIG GET *", "BACKENDS", "CLIENTS")]  # fmt: skip
        seen = [c.config_get("*"), c.acl_list(), c.client_list(), *proxy_verbs]
        with contextlib.suppress(redis.ResponseError):
            c.execute_command("AUTH", "default", PASSWORD)
        base = f"http://127.0.0.1:{metrics_port}"
        pages = [urllib.request.urlopen(base + path, timeout=5).read()
                 for path in ("/metrics", "/status.json", "/")]  # fmt: skip
    secret = PASSWORD.encode()
    assert secret not in _flat(seen)
    for page in pages:
        assert secret not in page
    assert PASSWORD not in caplog.text
    assert pages[0].startswith(b"#") and b"georedis_" in pages[0]  # the pages are real


def test_query_buffer_limit_and_client_buffers_in_proxy_clients(secured: int) -> None:
    """[proxy] client_query_buffer_limit (Redis' client-query-buffer-limit): a pending
    command past it gets an error and its connection is closed; PROXY CLIENTS shows a
    client's qbuf (bytes of a command not complete yet), omem and user meanwhile."""
    text = _toml(secured).replace("[proxy]\n", '[proxy]\nclient_query_buffer_limit = "64kb"\n')
    with ProxyThread(config_from_toml(text)) as p:
        with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
            s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$200000\r\n" + b"x" * 30_000)
            other = p.client()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                lines = other.execute_command("PROXY", "CLIENTS").decode().splitlines()
                mine = [ln for ln in lines if "qbuf=0 " not in ln]
                if mine:
                    break
                time.sleep(0.05)
            assert mine and "user=default" in mine[0] and "omem=0" in mine[0], lines
            s.sendall(b"x" * 60_000)
            reply = s.recv(200)
            assert reply.startswith(b"-ERR Protocol error: request too large"), reply
            assert s.recv(100) == b""  # closed
        assert other.get("k") is None
