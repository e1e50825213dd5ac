"""Backend credentials: `[backend] username` + `password_env`, against a real ACL user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.helpers.proxyrun import ProxyThread, config_from_toml, single_node_toml
from tests.helpers.topology import password_server

PASSWORD = "s3cret-for-tests"


@pytest.fixture
def secured_redis(tmp_path: Path) -> Iterator[int]:
    with password_server(tmp_path, "unused-default-password") as port:
        admin = redis.Redis(port=port, password="unused-default-password")
        admin.acl_setuser(
            "georedis", enabled=True, passwords=[f"+{PASSWORD}"], keys=["*"], channels=["*"],
            commands=["+@all"],
        )  # fmt: skip
        yield port


def _config(port: int, env: str) -> str:
    return single_node_toml(port, backend=f'username = "georedis"\npassword_env = "{env}"')


def test_proxy_authenticates_to_backends(
    secured_redis: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEOREDIS_TEST_PW", PASSWORD)
    with ProxyThread(config_from_toml(_config(secured_redis, "GEOREDIS_TEST_PW"))) as p:
        c = p.client()
        c.set("authed", "yes")
        assert c.get("authed") == b"yes"
        assert p.client(protocol=3).get("authed") == b"yes"  # HELLO 3 AUTH on RESP3 pools
        assert c.client_list()  # the proxy's own clients; the backend knows the user
        names = redis.Redis(port=secured_redis, username="georedis", password=PASSWORD)
        ours = [cl for cl in names.client_list() if cl["name"].startswith("georedis")]
        assert len(ours) >= 3  # pooled RESP2 and RESP3 connections and the health probe
        assert {cl["user"] for cl in ours} == {"georedis"}


def test_wrong_password_is_a_clear_error(
    secured_redis: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEOREDIS_TEST_PW", "wrong")
    with ProxyThread(config_from_toml(_config(secured_redis, "GEOREDIS_TEST_PW"))) as p:
        c = p.client()
        with pytest.raises(redis.ResponseError, match="georedis"):
            c.set("authed", "no")
        assert c.ping() is True  # the client's connection is still fine
