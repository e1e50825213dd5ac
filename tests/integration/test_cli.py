"""The `georedis` command as an operator meets it: real processes, real ports.

Start-up mistakes (an address in use, a port that needs privileges, an unset password
variable, a database the router cannot use, no config file) are one line on stderr naming
what to change, exit status 1 and no traceback. `georedis demo` moves off a taken default
port and says so. `--version` names the parts a bug report needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pytest
import redis
from mmdb_writer import MMDBWriter

from tests.helpers.topology import HOST, RedisTopology, free_port

CLI = [sys.executable, "-m", "proxy.cli"]
REPO = Path(__file__).parents[2]


def georedis(
    *args: str,
    cwd: Path | None = None,
    prefix: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion (it must not start serving: bounded by a timeout);
    `prefix` runs it through another command (setpriv)."""
    return subprocess.run(
        [*prefix, *CLI, *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        env={**(os.environ if env is None else env), "PYTHONPATH": str(REPO)},
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a start-up error prints (log lines about limits may precede it)."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [x for x in result.stderr.splitlines() if " info " not in x and " warning " not in x]
    assert len(errors) == 1, result.stderr
    return errors[0]


@contextlib.contextmanager
def listening(port: int) -> Iterator[socket.socket]:
    """Something else listening on 127.0.0.1:port."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, port))
        s.listen()
        yield s


def config(tmp_path: Path, proxy: str = "", metrics: str = "", extra: str = "") -> Path:
    """A config whose node is never contacted: every check here fails before serving."""
    node = free_port()
    path = tmp_path / "g.toml"
    path.write_text(
        f'[proxy]\nlisten = "{HOST}:{free_port()}"\n{proxy}\n'
        f'[[regions]]\nname = "sg"\nlatitude = 1.29\nlongitude = 103.85\n'
        f'nodes = ["{HOST}:{node}"]\n'
        f'[metrics]\nlisten = "{HOST}:{free_port()}"\n{metrics}\n{extra}'
    )
    return path


def with_listen(path: Path, section: str, addr: str) -> Path:
    """`path` with `[section] listen` replaced by `addr`."""
    lines = path.read_text().splitlines()
    current = ""
    for i, line in enumerate(lines):
        if line.startswith("["):
            current = line
        elif current == f"[{section}]" and line.startswith("listen ="):
            lines[i] = f'listen = "{addr}"'
    path.write_text("\n".join(lines) + "\n")
    return path


# --- --version ---------------------------------------------------------------------


def test_version_names_every_part() -> None:
    from importlib.metadata import version

    result = georedis("--version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("georedis ") and lines[0] != "georedis (not installed)"
    assert lines[1].startswith(f"Python {sys.version.split()[0]} ")
    assert f"uvloop {version('uvloop')}" in lines
    assert f"hiredis {version('hiredis')}" in lines
    speedups = lines[4]
    assert speedups.startswith("C accelerator proxy.resp._speedups: ")
    built = any((REPO / "proxy" / "resp").glob("_speedups*.so"))
    assert ("not built" not in speedups) == built, speedups


# --- georedis run: start-up errors ---------------------------------------------------


def _without_caps(*caps: str) -> list[str] | None:
    """A prefix that runs a command without these capabilities (root has them all)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    dropped = ",".join(f"-{c}" for c in caps)
    return [setpriv, f"--inh-caps={dropped}", f"--bounding-set={dropped}"]


def test_run_listen_in_use_is_one_line_exit_1(tmp_path: Path) -> None:
    port = free_port()
    path = with_listen(config(tmp_path), "proxy", f"{HOST}:{port}")
    with listening(port):
        line = error_line(georedis("run", "--config", str(path)))
    assert line.startswith("georedis: ")
    assert f"{HOST}:{port} is already in use" in line
    assert f"[proxy] listen in {path}" in line


def test_run_metrics_listen_in_use_names_metrics_field(tmp_path: Path) -> None:
    port = free_port()
    path = with_listen(config(tmp_path), "metrics", f"{HOST}:{port}")
    with listening(port):
        line = error_line(georedis("run", "--config", str(path)))
    assert f"{HOST}:{port} is already in use" in line and "[metrics] listen" in line


def _privileged_port_command() -> list[str] | None:
    """A prefix that runs the CLI without the right to bind ports below 1024."""
    if int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text()) == 0:
        return None  # every port is unprivileged here
    return _without_caps("net_bind_service")


def test_run_privileged_port_is_permission_denied(tmp_path: Path) -> None:
    prefix = _privileged_port_command()
    if prefix is None:
        pytest.skip("cannot drop the right to bind privileged ports here")
    path = with_listen(config(tmp_path), "proxy", f"{HOST}:1000")
    line = error_line(georedis("run", "--config", str(path), prefix=prefix))
    assert f"permission denied to listen on {HOST}:1000" in line
    assert "CAP_NET_BIND_SERVICE" in line and "[proxy] listen" in line


def test_run_unset_password_variable(tmp_path: Path) -> None:
    name = "GEOREDIS_TEST_SURELY_UNSET"
    path = config(tmp_path, extra=f'[backend]\npassword_env = "{name}"\n')
    env = {k: v for k, v in os.environ.items() if k != name}
    line = error_line(georedis("run", "--config", str(path), env=env))
    assert f"backend.password_env: environment variable '{name}' is not set" in line


def test_run_geoip_database_of_the_wrong_kind(tmp_path: Path) -> None:
    # A valid MaxMind DB that holds no locations: it opens, but would place no client.
    MMDBWriter(database_type="GeoLite2-ASN").to_db_file(str(tmp_path / "asn.mmdb"))
    path = config(tmp_path, extra='[geoip]\ndatabase = "asn.mmdb"\n')
    line = error_line(georedis("run", "--config", str(path)))
    assert "geoip.database" in line and "not a City or Country database" in line


def test_run_geoip_database_unreadable(tmp_path: Path) -> None:
    prefix = _without_caps("dac_override", "dac_read_search")
    if prefix is None:
        pytest.skip("cannot drop root's right to read any file here")
    db = tmp_path / "city.mmdb"
    MMDBWriter(database_type="GeoLite2-City").to_db_file(str(db))
    db.chmod(0)
    path = config(tmp_path, extra='[geoip]\ndatabase = "city.mmdb"\n')
    line = error_line(georedis("run", "--config", str(path), prefix=prefix))
    assert "geoip.database: 'city.mmdb'" in line and "unreadable: Permission denied" in line


def test_run_geoip_database_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "junk.mmdb").write_bytes(b"not a database")
    path = config(tmp_path, extra='[geoip]\ndatabase = "junk.mmdb"\n')
    line = error_line(georedis("run", "--config", str(path)))
    assert "geoip.database" in line and "not a MaxMind DB" in line


# --- where the config is looked for ---------------------------------------------------


@pytest.mark.skipif(Path("/etc/georedis/georedis.toml").exists(), reason="a system config")
@pytest.mark.parametrize("command", [["run"], ["check-config"], ["generate-configs", "out"]])
def test_no_config_says_where_it_looked(tmp_path: Path, command: list[str]) -> None:
    line = error_line(georedis(*command, cwd=tmp_path))
    assert "looked for ./georedis.toml and /etc/georedis/georedis.toml" in line
    assert "--config FILE" in line


def test_config_in_the_working_directory_is_found(tmp_path: Path) -> None:
    config(tmp_path).rename(tmp_path / "georedis.toml")
    result = georedis("check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("./georedis.toml: OK (1 region, 1 node")


# --- the file-descriptor limit and max_clients -------------------------------------------


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (200, 300))


def _events(log: IO[str], until: str, deadline: float) -> dict[str, dict[str, Any]]:
    """JSON log events by name, read until `until` appears."""
    seen: dict[str, dict[str, Any]] = {}
    while until not in seen:
        assert time.monotonic() < deadline, f"no {until!r} event; saw {sorted(seen)}"
        line = log.readline()
        if not line:
            time.sleep(0.05)
            continue
        with contextlib.suppress(json.JSONDecodeError):
            obj = json.loads(line)
            seen[obj.get("event") or obj["msg"][:20]] = obj
    return seen


def test_max_clients_fits_the_fd_limit(topology: RedisTopology, tmp_path: Path) -> None:
    port = free_port()
    path = topology.write_config(tmp_path / "g.toml", port, proxy_options={"max_clients": 1000})
    out = tmp_path / "proxy.log"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [*CLI, "run", "--config", str(path), "--log-format", "json"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=_low_fd_limit,
        )
    clients: list[socket.socket] = []
    try:
        with out.open() as log:
            events = _events(log, "started", time.monotonic() + 20)
        # The soft limit was raised to the hard one, and max_clients lowered to fit it.
        assert events["limits"]["fd_limit"] == 300
        fitted = (300 - 64) // 2
        assert events["limits"]["max_clients"] == fitted
        warning = next(e for e in events.values() if e["level"] == "warning")
        assert warning["msg"].startswith(
            "You requested max_clients of 1000 requiring at least 2064 max file descriptors"
        )
        assert f"reduced to {fitted}" in warning["msg"]
        for _ in range(fitted):
            c = socket.create_connection((HOST, port), timeout=5)
            clients.append(c)
            c.sendall(b"PING\r\n")
            assert c.recv(16) == b"+PONG\r\n"
        extra = redis.Redis(port=port, socket_timeout=5)
        with pytest.raises(redis.RedisError, match="max number of clients"):
            extra.ping()
    finally:
        for c in clients:
            c.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    assert proc.returncode == 0, out.read_text()


# --- georedis demo ----------------------------------------------------------------------


class Demo:
    """`georedis demo` as a subprocess; its stdout read line by line up to the banner."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*CLI, "demo", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self.lines: list[str] = []

    def banner(self) -> int:
        """Read stdout up to the banner's Connect line; the proxy's port."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("Connect:"):
                return int(line.split()[-1])
        raise AssertionError("the demo printed no banner: " + self.stop()[1])

    def stop(self) -> tuple[int, str]:
        """Ctrl-C, as a user stops it; its exit status and stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.wait()

    def wait(self) -> tuple[int, str]:
        _, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, err


def _hold(port: int) -> socket.socket | None:
    """Listen on `port` unless something already does (it is taken either way)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((HOST, port))
    except OSError:
        s.close()
        return None
    s.listen()
    return s


def test_demo_moves_off_a_taken_port_and_says_so() -> None:
    held = [_hold(6380), _hold(9121)]
    demo = Demo()
    try:
        port = demo.banner()
        assert port != 6380
        said = f"georedis demo: 127.0.0.1:6380 is taken, so the proxy uses 127.0.0.1:{port}"
        assert any(line.startswith(said) for line in demo.lines), demo.lines
        assert any("9121 is taken" in line for line in demo.lines), demo.lines
        c = redis.Redis(port=port, socket_timeout=5)
        assert c.ping()
        c.set("demo:k", "v")
        assert c.get("demo:k") == b"v"
    finally:
        code, err = demo.stop()
        for s in held:
            if s is not None:
                s.close()
    assert code == 0, err
    assert "Traceback" not in err, err
    assert "stopped the proxy and all redis-server processes" in err


def test_demo_port_given_and_taken_is_one_line() -> None:
    port = free_port()
    with listening(port):
        code, err = Demo("--port", str(port)).wait()
    assert code == 1 and "Traceback" not in err, err
    line = next(x for x in err.splitlines() if x.startswith("georedis: "))
    assert f"127.0.0.1:{port} (--port) is already in use" in line
