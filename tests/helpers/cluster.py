"""A real Redis Cluster for integration tests: N masters x R replicas on free ports.

`RedisCluster.start()` launches every node with `--cluster-enabled yes`, joins them with
`redis-cli --cluster create ... --cluster-replicas R --cluster-yes` (the way a user builds
one, so the tests see the slot layout and replica assignment Redis' own tool makes), then
waits until every node says `cluster_state:ok`, knows every other node and has all 16384
slots assigned, and every replica's link to its master is up. Only then do CLUSTER SLOTS
and CLUSTER SHARDS give the same answer on every node, which is what a test compares with.

Nodes are `topology.RedisNode`s, so freezing, killing and restarting work as for the
standalone topologies. Which master a replica follows is read back from CLUSTER NODES
(redis-cli chooses it), and regions are handed out afterwards: masters in the first
region, each master's replicas (by port) in the next ones, for tests that route by region.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tests.helpers.lifecycle import StopOnExit
from tests.helpers.topology import (
    HOST,
    REGION_COORDS,
    RedisNode,
    TopologyError,
    free_port,
    wait_until,
)

DEFAULT_REGIONS: tuple[str, ...] = ("ap-southeast-1", "us-east-1", "eu-west-1")


def cluster_args(node_timeout_ms: int = 2000) -> list[str]:
    """redis-server arguments of a cluster node, with a bus port of its own."""
    return [
        "--cluster-enabled",
        "yes",
        # Relative to the node's own --dir, so every node has its own file.
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        str(node_timeout_ms),
        # The bus port defaults to port + 10000, which a free port above 55535 cannot
        # have; a free port of its own (Redis 7.0's cluster-port) always can.
        "--cluster-port",
        str(free_port()),
        # A replica whose offset is still 0 is `health: loading` in CLUSTER SHARDS, and on
        # an empty cluster only the master's PING (every 10 s by default) moves it.
        "--repl-ping-replica-period",
        "1",
    ]


def lone_cluster_node(base_dir: Path, region: str = DEFAULT_REGIONS[0]) -> RedisNode:
    """One cluster-enabled redis-server in no cluster (it serves no slot, but answers
    CLUSTER KEYSLOT and friends); the caller stops it."""
    node = RedisNode(region, free_port(), base_dir, cluster_args())
    try:
        node.wait_ready()
    except BaseException:
        node.stop(timeout=1.0)
        raise
    return node


def redis_cli_binary() -> str:
    found = shutil.which("redis-cli")
    if found is None:
        raise TopologyError("redis-cli is not installed (apt-get install redis-tools)")
    return found


class RedisCluster(StopOnExit):
    """A running cluster; `nodes` in start order (the first `masters` were made masters)."""

    def __init__(
        self, nodes: list[RedisNode], masters: int, base_dir: Path, owns_dir: bool
    ) -> None:
        self.nodes = nodes
        self.master_count = masters  # how many masters a healthy cluster has
        self.base_dir = base_dir
        self._owns_dir = owns_dir

    @classmethod
    def start(
        cls,
        masters: int = 3,
        replicas: int = 1,
        tmp: Path | None = None,
        extra_args: Iterable[str] = (),
        node_timeout_ms: int = 2000,
        regions: Sequence[str] = DEFAULT_REGIONS,
        timeout: float = 30.0,
    ) -> RedisCluster:
        """Start and join the cluster; on any error every node is stopped first.

        `node_timeout_ms` is `cluster-node-timeout`: how long a master may be silent before
        its replicas fail it over (short, so failover tests stay short). `regions[0]` holds
        the masters, `regions[1 + i % (len - 1)]` the i-th replica of each master.
        """
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        owns_dir = tmp is None
        base_dir = Path(tempfile.mkdtemp(prefix="georedis-cluster-")) if tmp is None else tmp
        nodes: list[RedisNode] = []
        try:
            for _ in range(masters * (1 + replicas)):
                args = [*cluster_args(node_timeout_ms), *extra_args]
                nodes.append(RedisNode(regions[0], free_port(), base_dir, args))
            for node in nodes:
                node.wait_ready(timeout)
            cluster = cls(nodes, masters, base_dir, owns_dir)
            cluster._create(replicas, timeout)
            cluster.wait_ok(timeout)
            cluster._learn_roles(regions)
        except BaseException:
            for node in nodes:
                node.stop(timeout=1.0)
            if owns_dir:
                shutil.rmtree(base_dir, ignore_errors=True)
            raise
        return cluster

    def _create(self, replicas: int, timeout: float) -> None:
        cmd = [
            redis_cli_binary(),
            "--cluster",
            "create",
            *(n.address for n in self.nodes),
            "--cluster-replicas",
            str(replicas),
            "--cluster-yes",
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            raise TopologyError(f"redis-cli --cluster create took over {timeout:.0f}s") from e
        if done.returncode != 0:
            out = (done.stdout + done.stderr).decode(errors="replace")
            raise TopologyError(f"redis-cli --cluster create failed:\n{out[-2000:]}")

    # -- state --------------------------------------------------------------------------

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until the whole cluster is healthy as every live node sees it:
        cluster_state:ok, all slots assigned, every node known and connected with none
        failing, `masters` masters and the rest replicas (redis-cli's CLUSTER REPLICATE
        reaches the others by gossip, after `--cluster create` has returned), and each
        replica's link to its master up (before that CLUSTER SHARDS says `loading`)."""
        live = [n for n in self.nodes if n.running and not n.frozen]
        for node in live:
            wait_until(
                functools.partial(self._settled, node),
                timeout,
                f"{node.address} cluster_state:ok with every node and replica in place",
                interval=0.05,
            )

    def _settled(self, node: RedisNode) -> bool:
        info = self.cluster_info(node)
        if info.get("cluster_state") != "ok" or info.get("cluster_slots_assigned") != "16384":
            return False
        text = str(node.admin.execute_command("CLUSTER", "NODES"))  # type: ignore[no-untyped-call]
        lines = [line.split() for line in text.splitlines() if line.strip()]
        if len(lines) != len(self.nodes):
            return False
        masters = 0
        for fields in lines:
            flags = set(fields[2].split(","))
            if flags & {"fail", "fail?", "handshake", "noaddr"} or fields[7] != "connected":
                return False
            masters += "master" in flags
        if masters != self.master_count:
            return False
        if node.role() != "master" and not node.link_up():
            return False
        # redis-py parses the reply into dicts of str.
        shards = node.admin.execute_command("CLUSTER", "SHARDS")  # type: ignore[no-untyped-call]
        return all(n["health"] == "online" for shard in shards for n in shard["nodes"])

    @staticmethod
    def cluster_info(node: RedisNode) -> dict[str, str]:
        text = node.admin.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        out: dict[str, str] = {}
        for line in str(text).splitlines():
            name, _, value = line.partition(":")
            out[name.strip()] = value.strip()
        return out

    def _learn_roles(self, regions: Sequence[str]) -> None:
        """Who follows whom, from CLUSTER NODES (redis-cli chose it), and the regions."""
        by_id = self.node_ids()
        ids = {v: k for k, v in by_id.items()}
        text = str(self.nodes[0].admin.execute_command("CLUSTER", "NODES"))  # type: ignore[no-untyped-call]
        followers: dict[str, list[RedisNode]] = {}
        for line in text.splitlines():
            fields = line.split()
            if len(fields) > 3 and "slave" in fields[2].split(","):
                followers.setdefault(fields[3], []).append(ids[fields[0]])
        replica_regions = list(regions[1:]) or [regions[0]]
        for master_id, reps in followers.items():
            master = ids[master_id]
            for i, rep in enumerate(sorted(reps, key=lambda n: n.port)):
                rep.master = (master.host, master.port)
                rep.region = replica_regions[i % len(replica_regions)]

    # -- lookup ---------------------------------------------------------------------------

    def node_ids(self) -> dict[RedisNode, str]:
        """Each node's cluster node id (CLUSTER MYID)."""
        return {n: str(n.admin.execute_command("CLUSTER", "MYID")) for n in self.nodes}  # type: ignore[no-untyped-call]

    def masters(self) -> list[RedisNode]:
        return [n for n in self.nodes if n.master is None]

    def replicas_of(self, master: RedisNode) -> list[RedisNode]:
        return [n for n in self.nodes if n.master == (master.host, master.port)]

    def by_port(self, port: int) -> RedisNode:
        for n in self.nodes:
            if n.port == port:
                return n
        raise KeyError(port)

    @property
    def seeds(self) -> list[str]:
        """ "host:port" of every node, for a `[cluster] seeds` list."""
        return [n.address for n in self.nodes]

    def georedis_toml(
        self, proxy_port: int, region: str = DEFAULT_REGIONS[0], extra: str = "",
        refresh_ms: int = 1000,
    ) -> str:  # fmt: skip
        """A georedis config in cluster mode in front of this cluster: every node as a seed,
        one [[regions]] per region the nodes are in now (their `region`), metrics off.
        `extra` is appended verbatim (other sections: [health], [routing], [backend])."""
        seeds = ", ".join(f'"{a}"' for a in self.seeds)
        parts = [
            f'[proxy]\nlisten = "{HOST}:{proxy_port}"\nregion = "{region}"\n',
            f"[cluster]\nseeds = [{seeds}]\nrefresh_ms = {refresh_ms}\n",
        ]
        for name in dict.fromkeys(n.region for n in self.nodes):
            lat, lon = REGION_COORDS.get(name, (0.0, 0.0))
            addrs = ", ".join(f'"{n.address}"' for n in self.nodes if n.region == name)
            parts.append(
                f'[[regions]]\nname = "{name}"\nlatitude = {lat}\nlongitude = {lon}\n'
                f"nodes = [{addrs}]\n"
            )
        parts.append("[metrics]\nenabled = false\n")
        return "\n".join(parts) + extra

    def call(self, *args: Any, node: RedisNode | None = None) -> Any:
        """One command on `node` (default: the first live one), redis-py decoding."""
        target = node or next(n for n in self.nodes if n.running and not n.frozen)
        return target.admin.execute_command(*args)  # type: ignore[no-untyped-call]

    def keyslot(self, key: bytes | str) -> int:
        return int(self.call("CLUSTER", "KEYSLOT", key))

    def stop(self) -> None:
        for node in self.nodes:
            node.terminate()
        for node in self.nodes:
            node.reap()
        if self._owns_dir:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.base_dir, ignore_errors=True)
