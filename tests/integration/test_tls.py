"""TLS both ways, with real certificates made in the test (tests/helpers/certs.py):
clients (redis-py, redis-cli --tls, redis-benchmark --tls) to georedis, a client
certificate when required, georedis to a TLS-only redis-server, and new certificates
taken on SIGHUP without dropping connections."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.helpers.certs import Certs, make_certs
from tests.helpers.proxyrun import ProxyThread, config_from_toml, single_node_toml
from tests.helpers.topology import free_port, redis_server_binary, wait_until


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@contextlib.contextmanager
def _redis(directory: Path, *args: str) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [redis_server_binary(), "--bind", "127.0.0.1", "--save", "", "--dir", str(directory),
         *args, *(("--port", str(port)) if "--tls-port" not in args else ())],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield port
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def plain_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with _redis(tmp_path_factory.mktemp("node")) as port:
        wait_until(lambda: bool(redis.Redis(port=port).ping()), 10.0, "redis-server")
        yield port


def _tls_toml(node: int, certs: Certs, client_auth: str = "no", backend: str = "") -> str:
    tls = (
        f'[tls]\ncert_file = "{certs.server.cert}"\nkey_file = "{certs.server.key}"\n'
        f'ca_file = "{certs.ca}"\nclient_auth = "{client_auth}"\n'
    )
    return single_node_toml(node, backend=backend, extra=tls)


def _client(p: ProxyThread, certs: Certs, **kw: object) -> redis.Redis:
    return p.client(ssl=True, ssl_ca_certs=str(certs.ca), **kw)


def test_redis_py_over_tls(plain_node: int, certs: Certs) -> None:
    with ProxyThread(config_from_toml(_tls_toml(plain_node, certs))) as p:
        for proto in (2, 3):
            c = _client(p, certs, protocol=proto)
            assert c.set("tls:k", "v") is True and c.get("tls:k") == b"v"
            sock = c.connection_pool.get_connection()._sock  # type: ignore[attr-defined]
            assert sock.version() in ("TLSv1.3", "TLSv1.2")
        # Plaintext on a TLS port is not served.
        with pytest.raises(redis.ConnectionError):
            p.client(socket_timeout=2).ping()


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-tools")
def test_redis_cli_and_redis_benchmark_over_tls(plain_node: int, certs: Certs) -> None:
    with ProxyThread(config_from_toml(_tls_toml(plain_node, certs))) as p:
        tls = ["--tls", "--cacert", str(certs.ca), "-h", "127.0.0.1", "-p", str(p.port)]
        out = subprocess.run(["redis-cli", *tls, "PING"], capture_output=True, text=True,
                             timeout=20)  # fmt: skip
        assert out.stdout.strip() == "PONG", out
        bench = subprocess.run(
            ["redis-benchmark", *tls, "-n", "2000", "-c", "4", "-t", "set,get", "-q"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert bench.returncode == 0 and "SET:" in bench.stdout and "GET:" in bench.stdout, bench


def test_a_client_certificate_when_required(plain_node: int, certs: Certs) -> None:
    with ProxyThread(config_from_toml(_tls_toml(plain_node, certs, "required"))) as p:
        with pytest.raises(redis.ConnectionError):
            _client(p, certs, socket_timeout=3).ping()
        ok = _client(p, certs, ssl_certfile=str(certs.client.cert),
                     ssl_keyfile=str(certs.client.key))  # fmt: skip
        assert ok.ping() is True


def test_a_client_certificate_logs_in_its_user(plain_node: int, certs: Certs) -> None:
    """[tls] user_from_cn: the certificate's CN ("app") names the user; no AUTH."""
    text = _tls_toml(plain_node, certs, "optional") + (
        'user_from_cn = true\n[[users]]\nname = "app"\nrules = "on ~app:* +@all"\n'
    )
    with ProxyThread(config_from_toml(text)) as p:
        c = _client(p, certs, ssl_certfile=str(certs.client.cert),
                    ssl_keyfile=str(certs.client.key))  # fmt: skip
        assert c.execute_command("ACL", "WHOAMI") in (b"app", "app")
        assert c.set("app:cn", "1") is True
        with pytest.raises(redis.exceptions.NoPermissionError):
            c.get("other:cn")
        with pytest.raises(redis.AuthenticationError):  # no certificate: not logged in
            _client(p, certs).get("app:cn")


def test_backends_behind_tls(tmp_path: Path, certs: Certs) -> None:
    tls_args = ("--tls-port", str(port := free_port()), "--port", "0",
                "--tls-cert-file", str(certs.server.cert), "--tls-key-file", str(certs.server.key),
                "--tls-ca-cert-file", str(certs.ca), "--tls-auth-clients", "no")  # fmt: skip
    with _redis(tmp_path, *tls_args):
        direct = redis.Redis(port=port, ssl=True, ssl_ca_certs=str(certs.ca))
        wait_until(lambda: bool(direct.ping()), 10.0, "the TLS redis-server")
        backend = f'tls = true\ntls_ca_file = "{certs.ca}"\n'
        with ProxyThread(config_from_toml(single_node_toml(port, backend=backend))) as p:
            c = p.client()
            assert c.set("tls:b", "1") is True and c.get("tls:b") == b"1"
            assert direct.get("tls:b") == b"1"
            assert c.execute_command("PROXY", "BACKENDS")
        # Verification on: a node whose certificate the CA did not sign is not used.
        wrong = f'tls = true\ntls_ca_file = "{certs.other_ca}"\ntimeout_ms = 500\n'
        with (
            ProxyThread(config_from_toml(single_node_toml(port, backend=wrong))) as p,
            pytest.raises(redis.ResponseError, match=r"unavailable|no primary"),
        ):
            p.client().set("tls:c", "1")


def test_certificates_reload_on_sighup_without_dropping_connections(
    plain_node: int, certs: Certs, tmp_path: Path
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    for name, src in (("cert", certs.server.cert), ("key", certs.server.key)):
        shutil.copy(src, live / f"{name}.pem")
    cfg = tmp_path / "georedis.toml"
    port = free_port()
    tls = f'[tls]\ncert_file = "{live}/cert.pem"\nkey_file = "{live}/key.pem"\n'
    toml = single_node_toml(plain_node, extra=tls)
    cfg.write_text(toml.replace('listen = "127.0.0.1:', f'listen = "127.0.0.1:{port}" #', 1))
    proc = subprocess.Popen([sys.executable, "-m", "proxy.cli", "run", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        old = redis.Redis(port=port, ssl=True, ssl_ca_certs=str(certs.ca), socket_timeout=5)
        wait_until(lambda: bool(old.ping()), 20.0, "georedis over TLS")
        fresh = make_certs(tmp_path / "fresh")  # another CA altogether
        for name, src in (("cert", fresh.server.cert), ("key", fresh.server.key)):
            shutil.copy(src, live / f"{name}.pem")
        os.kill(proc.pid, signal.SIGHUP)
        new = redis.Redis(port=port, ssl=True, ssl_ca_certs=str(fresh.ca), socket_timeout=5)
        wait_until(lambda: bool(new.ping()), 10.0, "the new certificate")
        assert old.ping() is True  # the connection made before the reload still serves
        with pytest.raises(redis.ConnectionError, match=r"certificate|SSL"):
            redis.Redis(port=port, ssl=True, ssl_ca_certs=str(certs.ca), socket_timeout=5).ping()
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
    _ = ssl  # the stdlib module the contexts come from
