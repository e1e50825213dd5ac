"""Start and stop the processes a benchmark run measures: redis-server, georedis, nutcracker.

Each server runs in a session (process group) of its own, so that Ctrl-C in the terminal
reaches the harness (which then stops everything in order) rather than killing servers
half-way, and so that stopping a server also stops any worker processes it forked
(`georedis` with `workers > 1`). `Topology` owns every process it starts and stops them
all on exit, whatever the exit path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
# The repository root: `python -m proxy.cli` must be importable from here.
REPO_ROOT = Path(__file__).resolve().parent.parent


class StartError(RuntimeError):
    """A server did not start or did not become ready in time."""


@dataclass(frozen=True, slots=True)
class Target:
    """Something redis-benchmark can be pointed at."""

    name: str
    host: str
    port: int
    # (user, password) for redis-benchmark's --user/-a; None: no login.
    auth: tuple[str, str] | None = None


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# --- a tiny blocking RESP client, enough for PING and INFO -----------------------------


def _encode(args: tuple[str, ...]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def command(
    port: int, *args: str, timeout: float = 2.0, auth: tuple[str, str] | None = None
) -> bytes:
    """Send one command and return its reply payload (status/error line or bulk body).

    Only simple, error and bulk replies are understood; that is all PING, INFO and
    FLUSHALL return. With `auth`, AUTH user password goes first on the same connection
    (a failed login shows as the command's NOAUTH). Raises OSError on connection problems.
    """
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        f = s.makefile("rb")
        if auth is not None:
            s.sendall(_encode(("AUTH", *auth)))
            f.readline()
        s.sendall(_encode(args))
        line = f.readline()
        if not line.endswith(b"\r\n"):
            raise OSError(f"short reply from port {port}: {line!r}")
        if line[:1] == b"$":
            size = int(line[1:-2])
            return b"" if size < 0 else f.read(size + 2)[:-2]
        return line[:-2]


def wait_ready(port: int, deadline_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """PING the port until it answers +PONG (or NOAUTH: it serves, and wants a login);
    StartError after `deadline_s` seconds.

    Gives up early when `proc` has exited, so a crash is reported at once, not as a timeout.
    """
    end = time.monotonic() + deadline_s
    last = "no answer"
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise StartError(f"process on port {port} exited with code {proc.returncode}")
        try:
            reply = command(port, "PING", timeout=0.5)
            if reply == b"+PONG" or reply.startswith(b"-NOAUTH"):
                return
            last = reply.decode(errors="replace")
        except OSError as exc:
            last = str(exc)
        time.sleep(0.05)
    raise StartError(f"port {port} not ready after {deadline_s:.0f}s: {last}")


def wait_serving(port: int, deadline_s: float, auth: tuple[str, str] | None = None) -> None:
    """Wait until a SET and a GET through a proxy both succeed.

    A proxy may answer PING itself before it has probed its backends; the first
    benchmark must not be the one that finds out whether writes and reads get through.
    """
    end = time.monotonic() + deadline_s
    last = "no answer"
    while time.monotonic() < end:
        try:
            replies = [
                command(port, "SET", "benchmark:ready", "1", timeout=1.0, auth=auth),
                command(port, "GET", "benchmark:ready", timeout=1.0, auth=auth),
            ]
            errors = [r for r in replies if r.startswith(b"-")]
            if not errors:
                return
            last = errors[0].decode(errors="replace")
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise StartError(f"port {port} answers PING but not SET/GET after {deadline_s:.0f}s: {last}")


def info_field(info: bytes, name: str) -> str | None:
    """One `name:value` field of an INFO reply."""
    prefix = name.encode() + b":"
    for line in info.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].decode().strip()
    return None


def wait_replica_synced(port: int, deadline_s: float) -> None:
    """Wait until the replica on `port` has its link to the primary up (initial sync done)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        info = command(port, "INFO", "replication")
        if info_field(info, "master_link_status") == "up":
            return
        time.sleep(0.05)
    raise StartError(f"replica on port {port} did not sync within {deadline_s:.0f}s")


# --- processes -------------------------------------------------------------------------


@dataclass(slots=True)
class Server:
    """A started server process, its port and its log file."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the whole process group, then SIGKILL it if it outlives `grace_s`."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        # Workers forked by the leader may outlive it briefly; sweep the group once more.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def _spawn(
    name: str,
    argv: list[str],
    log: Path,
    cwd: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ) | dict(extra_env or {})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    with log.open("ab") as out:
        try:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,  # own process group: see the module docstring
            )
        except OSError as exc:
            raise StartError(f"cannot start {name}: {exc}") from exc


def georedis_config(
    port: int,
    nodes: list[int],
    workers: int,
    region: str = "ap-southeast-1",
    metrics: str = "",
    tables: str = "",
) -> str:
    """The georedis TOML for one region holding the primary (first) and its replicas.

    `metrics`: more lines of the [metrics] table; `tables`: more tables after it.
    """
    node_list = ", ".join(f'"{HOST}:{p}"' for p in nodes)
    return (
        "[proxy]\n"
        f'listen = "{HOST}:{port}"\n'
        f'region = "{region}"\n'
        f"workers = {workers}\n"
        "\n[[regions]]\n"
        f'name = "{region}"\n'
        "latitude = 1.29\n"
        "longitude = 103.85\n"
        f"nodes = [{node_list}]\n"
        "\n[metrics]\n"
        "enabled = false\n"
        f"{metrics}{tables}"
    )


def nutcracker_config(port: int, primary: int, server_connections: int) -> str:
    """A twemproxy pool with the primary as its only server, as close to georedis as it gets."""
    return (
        "bench:\n"
        f"  listen: {HOST}:{port}\n"
        "  redis: true\n"
        "  hash: fnv1a_64\n"
        "  distribution: ketama\n"
        f"  server_connections: {server_connections}\n"
        "  preconnect: true\n"
        "  auto_eject_hosts: false\n"
        "  servers:\n"
        f"    - {HOST}:{primary}:1\n"
    )


def nutcracker_path() -> str | None:
    """The nutcracker binary (Debian installs it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("nutcracker")
    if found:
        return found
    fallback = Path("/usr/sbin/nutcracker")
    return str(fallback) if fallback.is_file() and os.access(fallback, os.X_OK) else None


def tool_version(argv: list[str]) -> str:
    """First line a `--version` style command prints, or "" when it cannot run."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else ""


class Topology:
    """Every process of one benchmark run; a context manager that stops them all on exit.

    Servers are stopped in reverse start order (proxies before the Redis they point at),
    so the proxies do not spend the shutdown logging reconnect errors.
    """

    def __init__(self, workdir: Path, logdir: Path, ready_timeout_s: float = 30.0) -> None:
        self.workdir = workdir
        self.logdir = logdir
        self.ready_timeout_s = ready_timeout_s
        self.servers: list[Server] = []

    def __enter__(self) -> Topology:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def exited(self, target: str | None = None) -> list[Server]:
        """Servers that have died since they started.

        With `target` ("direct", "georedis", "twemproxy"), only those that target needs:
        its own process and the Redis servers, so a crashed proxy does not stop the
        others from being measured.
        """
        return [
            srv
            for srv in self.servers
            if srv.proc.poll() is not None
            and (target is None or srv.name == target or srv.name.startswith("redis-"))
        ]

    def stop_all(self) -> None:
        # Ctrl-C pressed again during cleanup must not leave servers behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            while self.servers:
                self.servers.pop().stop()
        finally:
            signal.signal(signal.SIGINT, previous)

    def _start(
        self,
        name: str,
        argv: list[str],
        port: int,
        cwd: Path | None = None,
        proxy: bool = False,
        env: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Server:
        log = self.logdir / f"{name}.log"
        server = Server(name, port, _spawn(name, argv, log, cwd, env), log)
        self.servers.append(server)  # registered before waiting, so a failure still stops it
        try:
            wait_ready(port, self.ready_timeout_s, server.proc)
            if proxy:
                wait_serving(port, self.ready_timeout_s, auth)
        except StartError as exc:
            raise StartError(f"{name}: {exc}\n--- {log} ---\n{server.log_tail()}") from exc
        return server

    def start_redis(self, name: str, replica_of: int | None = None) -> Server:
        """A redis-server without persistence on a free port; a replica if `replica_of`."""
        port = free_port()
        data = self.workdir / name
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            "redis-server",
            "--port", str(port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(data),
            "--daemonize", "no",
        ]  # fmt: skip
        if replica_of is not None:
            argv += ["--replicaof", HOST, str(replica_of)]
        server = self._start(name, argv, port)
        if replica_of is not None:
            wait_replica_synced(port, self.ready_timeout_s)
        return server

    def start_georedis(
        self,
        nodes: list[int],
        workers: int,
        name: str = "georedis",
        config: Callable[[int], str] | None = None,
        env: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Server:
        """`python -m proxy.cli run --config FILE`, the same entry as the `georedis` script.

        `config(port)`: the TOML (default: georedis_config); `env`: added to its
        environment (a password_env's secret); `auth`: the login the readiness check uses.
        """
        port = free_port()
        cfg = self.workdir / f"{name}.toml"
        cfg.write_text(config(port) if config else georedis_config(port, nodes, workers))
        argv = [sys.executable, "-m", "proxy.cli", "run", "--config", str(cfg)]
        return self._start(name, argv, port, cwd=REPO_ROOT, proxy=True, env=env, auth=auth)

    def start_twemproxy(self, binary: str, primary: int, server_connections: int) -> Server:
        """nutcracker after `-t` validated its config; stats on a free port of its own."""
        port, stats = free_port(), free_port()
        cfg = self.workdir / "nutcracker.yml"
        cfg.write_text(nutcracker_config(port, primary, server_connections))
        check = subprocess.run(
            [binary, "-c", str(cfg), "-t"], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise StartError(f"nutcracker rejected {cfg}: {check.stderr or check.stdout}")
        # No -o: nutcracker logs to stderr, which _spawn sends to logs/twemproxy.log.
        argv = [binary, "-c", str(cfg), "-s", str(stats), "-a", HOST]
        return self._start("twemproxy", argv, port, proxy=True)
