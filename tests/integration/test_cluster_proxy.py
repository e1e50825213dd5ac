"""georedis in cluster mode in front of a real Redis Cluster: issue 14's "Done when".

A cluster of 3 masters x 2 replicas made by `redis-cli --cluster create`
(tests/helpers/cluster.py): masters in ap-southeast-1, each master's replicas in
us-east-1 and eu-west-1. The real proxy (in a thread) runs in cluster mode in front of it
(`[cluster] seeds`, regions by address), as `RedisCluster.georedis_toml` writes it.
Clients are plain standalone clients (redis-py `Redis`, `redis-benchmark` without
`--cluster`); they must never see MOVED, ASK or CROSSSLOT for what a single Redis serves.

What is checked, all against the nodes themselves:
1. redis-benchmark's whole default suite completes through georedis without an error;
2. MGET/MSET/DEL/EXISTS/UNLINK/TOUCH across slots reply exactly what a lone standalone
   redis-server fed the same commands replies (missing keys, duplicates, counts);
3. reads land on each shard's replica in the client's region (`cmdstat_get` per node);
4. keyless commands fan out: DBSIZE, KEYS, FLUSHALL, RANDOMKEY, PING;
5. a slot moved with CLUSTER SETSLOT + MIGRATE under a reading and writing client;
6. (slow) load during `redis-cli --cluster reshard` of 1,000 slots and `CLUSTER FAILOVER`;
7. (slow) a master SIGKILLed: reads keep being answered, writes resume after promotion.

Tests 1-5 share one cluster and one proxy (module fixtures) and leave the cluster healthy
(test 5 leaves one slot on another master, which the others do not mind); 6 and 7 break
their own cluster. Clients that check their own writes read with `PROXY CONSISTENCY
session` (read-your-writes): reads go to replicas, which may be a few ms behind.

Note for 5 and 6: during a migration only the source master knows the slot is
MIGRATING (Redis 7.0 does not tell its replicas), so a replica of the source answers nil
for a key that has already moved where its master would answer ASK. georedis has to keep
reads of such keys correct (checked here as "every acknowledged write reads back").
"""

from __future__ import annotations

import random
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster

from config.model import Config
from routing.slots import key_slot
from tests.helpers.cluster import RedisCluster, redis_cli_binary
from tests.helpers.clusterproxy import client, move_slot, slot_owners, start_default, wait_synced
from tests.helpers.proxyrun import FAST_HEALTH, ProxyThread, wait_for
from tests.helpers.topology import RedisNode, free_port

# Written before cluster discovery landed (issue 14: the data path is wired, the `[cluster]`
# config and the health side that fills `Snapshot.shards` are not yet). The module runs by
# itself once `Config` has a `cluster` section.
pytestmark = pytest.mark.skipif(
    "cluster" not in Config.__dataclass_fields__,
    reason="cluster mode's [cluster] config and discovery are not built yet (issue 14)",
)

SG, US, EU = "ap-southeast-1", "us-east-1", "eu-west-1"
RESERVED = b"georedis:"  # georedis' own keys (heartbeats), present on every shard

# Fast probes (faults seen quickly), replicas eligible from the first round that measures
# their lag, and FLUSHALL/KEYS allowed (refused by the default [policy]).
EXTRA = (
    FAST_HEALTH
    + "[backend]\ntimeout_ms = 1000\n"
    + "[routing]\nlag_recovery_ms = 0\n"
    + "[policy]\nrefuse = []\n"
)


# --- the cluster as its nodes see it -------------------------------------------------------


def keys_by_master(
    cluster: RedisCluster, prefix: str, per_master: int
) -> dict[RedisNode, list[str]]:
    """`per_master` keys `prefix:<n>` served by each master."""
    owners = slot_owners(cluster)
    out: dict[RedisNode, list[str]] = {m: [] for m in set(owners.values())}
    n = 0
    while any(len(v) < per_master for v in out.values()):
        key = f"{prefix}:{n}"
        bucket = out[owners[key_slot(key.encode())]]
        if len(bucket) < per_master:
            bucket.append(key)
        n += 1
    return out


def tag_of(cluster: RedisCluster, master: RedisNode, prefix: str) -> str:
    """A hash tag `{prefix<n>}` whose slot `master` serves."""
    owners = slot_owners(cluster)
    n = 0
    while owners[key_slot(f"{{{prefix}{n}}}".encode())] is not master:
        n += 1
    return f"{{{prefix}{n}}}"


def live_masters(cluster: RedisCluster) -> list[RedisNode]:
    return [n for n in cluster.nodes if n.running and n.role() == "master"]


def user_keys(node: RedisNode) -> set[bytes]:
    """The keys on `node` that are not georedis' own."""
    c = node.client()
    return {k for k in c.scan_iter(count=1000) if not k.startswith(RESERVED)}


def cmdstat_get(node: RedisNode) -> int:
    entry = node.admin.info("commandstats").get("cmdstat_get")
    return int(entry["calls"]) if entry else 0


# --- the proxy -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with RedisCluster.start(3, 2, tmp=tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def proxy(cluster: RedisCluster) -> Iterator[ProxyThread]:
    p = start_default(cluster, EXTRA)
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def lone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisNode]:
    """A standalone redis-server: what "a single Redis" replies."""
    node = RedisNode(SG, free_port(), tmp_path_factory.mktemp("lone"))
    try:
        node.wait_ready()
        yield node
    finally:
        node.stop()


# --- 1. redis-benchmark's default suite ------------------------------------------------------

BANNED = re.compile(r"ERR|MOVED|\bASK\b|CROSSSLOT|CLUSTERDOWN|TRYAGAIN|error", re.IGNORECASE)


def redis_benchmark(port: int, *args: str, timeout: float = 100.0) -> tuple[int, str]:
    done = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-q", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def bench_tests(output: str) -> list[str]:
    """The tests a `redis-benchmark -q` run completed ("SET: 45351.47 requests per second")."""
    lines = re.split(r"[\r\n]+", output)
    return [ln.partition(": ")[0] for ln in lines if "requests per second" in ln]


# -n 20000 of the default suite took ~11 s through a standalone georedis on the 2-core
# machine, so the issue's own figure is used. Without -r every test uses one key (its
# name has a literal `__rand_int__`), i.e. one shard; the second run spreads the keys
# (and MSET's 10 keys) over every shard.
@pytest.mark.parametrize(
    "args", [("-n", "20000"), ("-n", "2000", "-r", "100000")], ids=["issue", "random-keys"]
)
def test_redis_benchmark_default_suite(
    proxy: ProxyThread, lone: RedisNode, args: tuple[str, ...]
) -> None:
    rc, reference = redis_benchmark(lone.port, "-n", "200")
    assert rc == 0, reference
    expected = bench_tests(reference)
    assert len(expected) >= 15, reference  # the default suite, as this redis-benchmark has it
    rc, output = redis_benchmark(proxy.port, *args)
    assert rc == 0, output[-3000:]
    assert bench_tests(output) == expected, output[-3000:]
    assert BANNED.findall(output) == [], output[-3000:]


# --- 2. multi-key commands across slots, against one Redis ------------------------------------


def multi_key_ops(rng: random.Random, n: int) -> list[tuple[Any, ...]]:
    """MSET/MGET/DEL/UNLINK/EXISTS/TOUCH with keys spread over slots, keys never written,
    duplicates (within one command), a list (MGET's nil, WRONGTYPE for RPUSH after MSET)."""
    written = [f"mk:{i}" for i in range(24)] + ["{mt}a", "{mt}b", "{mt}c", "mk:list"]
    pool = written + [f"mk:never:{i}" for i in range(4)]
    ops: list[tuple[Any, ...]] = [("RPUSH", "mk:list", "a", "b")]
    for _ in range(n):
        kind = rng.choice(["MSET", "MSET", "MGET", "MGET", "DEL", "UNLINK", "EXISTS", "TOUCH",
                           "RPUSH"])  # fmt: skip
        if kind == "RPUSH":
            ops.append(("RPUSH", "mk:list", rng.randbytes(3)))
            continue
        keys = [rng.choice(written if kind == "MSET" else pool) for _ in range(rng.randint(1, 9))]
        if rng.random() < 0.3:
            keys.insert(rng.randrange(len(keys) + 1), keys[0])  # a duplicate
        if kind == "MSET":
            ops.append(("MSET", *(x for k in keys for x in (k, rng.randbytes(rng.randint(0, 6))))))
        else:
            ops.append((kind, *keys))
    return ops


def replies(c: redis.Redis, ops: list[tuple[Any, ...]]) -> list[Any]:
    out: list[Any] = []
    for op in ops:
        try:
            out.append(c.execute_command(*op))
        except redis.ResponseError as e:
            out.append(("error", str(e)))
    return out


def test_multi_key_commands_reply_as_one_redis(
    cluster: RedisCluster, proxy: ProxyThread, lone: RedisNode
) -> None:
    owners = slot_owners(cluster)
    ops = multi_key_ops(random.Random(14), 400)
    keyed = [op[1::2] if op[0] == "MSET" else op[1:] for op in ops if op[0] != "RPUSH"]
    spanning = [ks for ks in keyed if len({owners[key_slot(str(k).encode())] for k in ks}) > 1]
    assert len(spanning) > 100  # most commands do span shards
    c, ref = client(proxy, ryw=True), lone.client()
    ref.flushall()
    got, want = replies(c, ops), replies(ref, ops)
    diff = [(i, ops[i], g, w) for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    assert diff[:5] == []
    everything = sorted({str(k) for ks in keyed for k in ks})
    assert c.mget(everything) == ref.mget(everything)
    assert c.exists(*everything) == ref.exists(*everything)
    c.close()


def test_msetnx_across_slots_is_crossslot(proxy: ProxyThread) -> None:
    """Atomic across keys, so refused across slots with Redis' own error; in one slot it
    is plain MSETNX."""
    c = client(proxy, ryw=True)
    assert key_slot(b"nx:a") != key_slot(b"nx:b")
    # redis-py turns "-CROSSSLOT ..." into this class and strips the code off the text.
    with pytest.raises(redis.exceptions.ClusterCrossSlotError, match="same slot"):
        c.msetnx({"nx:a": 1, "nx:b": 2})
    assert c.mget("nx:a", "nx:b") == [None, None]
    assert c.msetnx({"{nx}a": 1, "{nx}b": 2}) is True
    assert c.msetnx({"{nx}a": 3, "{nx}c": 4}) is False
    assert c.mget("{nx}a", "{nx}b", "{nx}c") == [b"1", b"2", None]
    c.close()


# --- 3. reads on each shard's replica in the client's region -----------------------------------

READS = 300  # per shard and region; probes add a GET per node per 100 ms round, far fewer


def _gets_per_node(cluster: RedisCluster, c: redis.Redis, keys: list[str]) -> dict[int, int]:
    """`READS` GETs of each key through `c`; how many GETs each node served meanwhile."""
    for node in cluster.nodes:
        node.admin.config_resetstat()
    # One by one on `c`'s own connection: redis-py sends a pipeline on a connection of
    # its pool, which has not had this client's PROXY REGION.
    assert {c.get(key) for key in keys for _ in range(READS)} == {b"v"}
    return {n.port: cmdstat_get(n) for n in cluster.nodes}


# The proxy's own region (ap-southeast-1) holds only the masters: its clients read from the
# nearest replica region, eu-west-1 (Dublin is nearer Singapore than Virginia is).
@pytest.mark.parametrize("region", [US, EU, None], ids=[US, EU, "proxy-region"])
def test_reads_land_on_each_shards_replica_in_the_clients_region(
    cluster: RedisCluster, proxy: ProxyThread, region: str | None
) -> None:
    keys = {m: ks[0] for m, ks in keys_by_master(cluster, "geo", 1).items()}
    c = client(proxy)
    if region is not None:
        assert c.execute_command("PROXY", "REGION", region) in (b"OK", True)
    for key in keys.values():
        c.set(key, "v")
    wait_synced(cluster)
    served = _gets_per_node(cluster, c, list(keys.values()))
    want = region or EU
    for master in keys:
        shard = [master, *cluster.replicas_of(master)]
        near = [n for n in shard if n.region == want]
        assert len(near) == 1, shard
        assert served[near[0].port] >= READS, (master, served)
        assert all(served[n.port] < READS // 3 for n in shard if n is not near[0]), served


# --- 4. keyless commands fan out ----------------------------------------------------------------


def _dbsize_matches(cluster: RedisCluster, c: redis.Redis) -> bool:
    before = sum(int(m.admin.dbsize()) for m in live_masters(cluster))
    got = c.dbsize()
    after = sum(int(m.admin.dbsize()) for m in live_masters(cluster))
    return before == got == after


def test_keyless_commands_fan_out(cluster: RedisCluster, proxy: ProxyThread) -> None:
    c = client(proxy)
    ours = {f"fan:{i}".encode() for i in range(300)}
    assert c.mset({k: b"1" for k in ours}) is True
    wait_synced(cluster)
    masters = live_masters(cluster)
    assert all(user_keys(m) & ours for m in masters)  # every shard holds some
    stored = set().union(*(user_keys(m) for m in masters))

    wait_for(partial(_dbsize_matches, cluster, c), 5, "DBSIZE = the masters' sum")
    assert c.dbsize() >= len(stored)
    listed = [k for k in c.keys("*") if not k.startswith(RESERVED)]
    assert sorted(listed) == sorted(stored)  # each key once
    assert ours <= set(listed)
    every = stored | set().union(*(set(m.client().keys("georedis:*")) for m in masters))
    for _ in range(30):
        assert c.randomkey() in every
    assert c.ping() is True
    # redis-py's PING callback turns any reply into a bool: ECHO shows the bytes.
    assert c.echo("hello") == b"hello"

    assert c.flushall() is True
    assert {m.port: user_keys(m) for m in masters} == {m.port: set() for m in masters}
    wait_synced(cluster)
    assert [k for k in c.keys("*") if not k.startswith(RESERVED)] == []


# --- client loads: numbered keys, acknowledged ones recorded in the main thread -------------------


class Load:
    """Writes of numbered keys, each read back at once (read-your-writes), and reads of
    an older acknowledged key; called step by step from the test's own thread."""

    def __init__(self, c: redis.Redis, prefix: str, seed: int = 14) -> None:
        self.c = c
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.acked: list[str] = []
        self.errors: list[str] = []  # anything the client saw raised
        self.wrong: list[tuple[str, bytes | None]] = []  # reads that missed an acked write
        self.n = 0

    def step(self) -> None:
        self.n += 1
        key = f"{self.prefix}:{self.n}"
        try:
            self.c.set(key, self.n)
            self.acked.append(key)
        except redis.RedisError as e:
            self.errors.append(f"SET {key}: {e!r}")
        if self.acked:
            self._check(self.acked[-1])
            self._check(self.rng.choice(self.acked))

    def _check(self, key: str) -> None:
        try:
            got = self.c.get(key)
        except redis.RedisError as e:
            self.errors.append(f"GET {key}: {e!r}")
            return
        if got != key.rsplit(":", 1)[1].encode():
            self.wrong.append((key, got))

    def run_while(self, busy: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while busy():
            assert time.monotonic() < deadline, f"still busy after {timeout:.0f}s"
            self.step()

    def run_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        self.run_while(lambda: time.monotonic() < end, seconds + 1)


class Every:
    """`fn()` at most every `interval` s, its last answer in between (cheap to poll)."""

    def __init__(self, fn: Callable[[], bool], interval: float = 0.1) -> None:
        self.fn, self.interval = fn, interval
        self.at, self.last = 0.0, False

    def __call__(self) -> bool:
        if time.monotonic() - self.at >= self.interval:
            self.at, self.last = time.monotonic(), self.fn()
        return self.last


def missing_through(p: ProxyThread, keys: list[str]) -> list[str]:
    """Acknowledged keys a fresh client does not read back (with its number) via georedis."""
    c = client(p)
    out: list[str] = []
    for i in range(0, len(keys), 500):
        pipe = c.pipeline(transaction=False)
        chunk = keys[i : i + 500]
        for key in chunk:
            pipe.get(key)
        out += [k for k, v in zip(chunk, pipe.execute(), strict=True)
                if v != k.rsplit(":", 1)[1].encode()]  # fmt: skip
    return out


def missing_in_cluster(cluster: RedisCluster, keys: list[str]) -> list[str]:
    """The same, asked of the cluster's masters by redis-py's own cluster client."""
    seed = live_masters(cluster)[0]
    rc = redis.cluster.RedisCluster(host=seed.host, port=seed.port)
    try:
        values = rc.mget_nonatomic(keys)
    finally:
        rc.close()
    return [k for k, v in zip(keys, values, strict=True) if v != k.rsplit(":", 1)[1].encode()]


# --- 5. a slot moved by hand (SETSLOT + MIGRATE), MOVED and ASK hidden --------------------------


def test_slot_moved_under_a_client_never_shows_moved_or_ask(
    cluster: RedisCluster, proxy: ProxyThread
) -> None:
    ids = cluster.node_ids()
    source = cluster.masters()[0]
    target = next(m for m in cluster.masters() if m is not source)
    tag = tag_of(cluster, source, "mv")
    slot = key_slot(tag.encode())
    load = Load(client(proxy, ryw=True), f"{tag}:k")
    for _ in range(40):  # keys on the source before the move
        load.step()

    target.admin.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
    source.admin.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
    # Only the source master knows; georedis reads it from its CLUSTER NODES each round
    # and sends the slot's reads to that master, which answers ASK for moved keys.
    wait_for(lambda: slot in proxy.app.topo.pinned, 5, "the migrating slot pinned")
    for _ in range(10):  # new keys now go to the target (ASK), old ones still here
        load.step()
    plain = client(proxy)  # no read-your-writes: its reads would go to a replica
    moved: list[str] = []
    while keys := source.admin.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 5):
        source.admin.execute_command(
            "MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys
        )
        moved += [k.decode() if isinstance(k, bytes) else str(k) for k in keys]
        # The source's replicas have the MIGRATE's deletes and would answer nil.
        assert [k for k in moved if plain.get(k) != k.rsplit(":", 1)[1].encode()] == []
        for _ in range(3):  # between batches: some keys here, some there
            load.step()
    plain.close()
    # As redis-cli does: the target first, then the source, then every other master.
    for node in [target, source, *(m for m in cluster.masters() if m not in (source, target))]:
        node.admin.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
    for _ in range(60):  # georedis' map still says source: MOVED
        load.step()

    assert slot_owners(cluster)[slot] is target
    assert load.errors == []
    assert load.wrong == []
    assert len(load.acked) == load.n
    assert missing_through(proxy, load.acked) == []
    assert missing_in_cluster(cluster, load.acked) == []
    assert user_keys(source) & {k.encode() for k in load.acked} == set()


# --- 6. load during a reshard of 1,000 slots and a CLUSTER FAILOVER -------------------------------


@pytest.fixture
def own_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RedisCluster]:
    """A cluster of the test's own (it breaks it); extra redis-server arguments by
    indirect parametrization."""
    extra: list[str] = list(getattr(request, "param", ()))
    with RedisCluster.start(3, 2, tmp=tmp_path / "cluster", extra_args=extra) as c:
        yield c


@pytest.fixture
def own_proxy(own_cluster: RedisCluster) -> Iterator[ProxyThread]:
    p = start_default(own_cluster, EXTRA)
    try:
        yield p
    finally:
        p.stop()


def _start_background_benchmark(port: int, log: Path) -> subprocess.Popen[bytes]:
    """`redis-benchmark -t set,get` on random keys (every slot) until stopped; it exits at
    the first error reply (Redis 7.0's redis-benchmark does)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-q", "-l",
             "-t", "set,get", "-r", "100000", "-c", "4"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _reshard(cluster: RedisCluster, source: RedisNode, target: RedisNode, log: Path,
             slots: int = 1000) -> subprocess.Popen[bytes]:  # fmt: skip
    ids = cluster.node_ids()
    with log.open("wb") as out:
        return subprocess.Popen(
            [redis_cli_binary(), "--cluster", "reshard", source.address,
             "--cluster-from", ids[source], "--cluster-to", ids[target],
             "--cluster-slots", str(slots), "--cluster-yes"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


@pytest.mark.slow
def test_load_through_reshard_and_manual_failover(
    own_cluster: RedisCluster, own_proxy: ProxyThread, tmp_path: Path
) -> None:
    cluster = own_cluster
    source, target, third = cluster.masters()
    bench = _start_background_benchmark(own_proxy.port, tmp_path / "bench.log")
    load = Load(client(own_proxy, ryw=True), "ld")
    try:
        load.run_for(1.0)
        reshard = _reshard(cluster, source, target, tmp_path / "reshard.log")
        load.run_while(lambda: reshard.poll() is None, timeout=90)
        assert reshard.returncode == 0, (tmp_path / "reshard.log").read_text()[-2000:]
        owners = slot_owners(cluster)
        assert sum(o is target for o in owners.values()) > sum(o is third for o in owners.values())
        load.run_for(1.0)

        # A manual failover: the replica takes over once it has every write of its master.
        replica = cluster.replicas_of(third)[0]
        assert replica.admin.execute_command("CLUSTER", "FAILOVER") == "OK"
        load.run_while(Every(lambda: replica.role() != "master"), timeout=30)
        load.run_while(Every(lambda: third.role() != "slave"), timeout=30)
        load.run_for(1.0)
    finally:
        still_running = bench.poll() is None
        bench.terminate()
        bench.wait(10)
    bench_out = (tmp_path / "bench.log").read_text(errors="replace")
    assert still_running, bench_out[-2000:]  # it exits at its first error reply
    assert BANNED.findall(bench_out) == [], bench_out[-2000:]
    assert load.errors[:5] == []
    assert load.wrong[:5] == []
    assert len(load.acked) > 200
    wait_synced(cluster)
    assert missing_through(own_proxy, load.acked) == []
    assert missing_in_cluster(cluster, load.acked) == []


# --- 7. a master SIGKILLed: reads go on, writes resume after the promotion ------------------------


class Writer(threading.Thread):
    """SETs of numbered keys of one hash tag until stopped; records, never asserts."""

    def __init__(self, c: redis.Redis, tag: str) -> None:
        super().__init__(daemon=True)
        self.c, self.tag = c, tag
        self.stop_flag = threading.Event()
        self.acked: list[tuple[float, str]] = []  # (monotonic time of the reply, key)
        self.errors: list[tuple[float, str]] = []  # (monotonic time it was sent, error)

    def run(self) -> None:
        n = 0
        while not self.stop_flag.is_set():
            n += 1
            key = f"{self.tag}:w:{n}"
            sent = time.monotonic()
            try:
                self.c.set(key, n)
                self.acked.append((time.monotonic(), key))
            except redis.RedisError as e:
                self.errors.append((sent, repr(e)))
                time.sleep(0.05)
            time.sleep(0.005)


NODE_TIMEOUT_S = 2.0  # RedisCluster.start's default cluster-node-timeout


@pytest.mark.slow
@pytest.mark.parametrize(
    "own_cluster",
    [("--cluster-allow-reads-when-down", "yes")],
    indirect=True,
    ids=["reads-when-down"],
)
def test_killed_master_reads_go_on_writes_resume(
    own_cluster: RedisCluster, own_proxy: ProxyThread
) -> None:
    cluster = own_cluster
    victim = cluster.masters()[0]
    replicas = cluster.replicas_of(victim)
    keys = [k for ks in keys_by_master(cluster, "kill", 20).values() for k in ks]
    c = client(own_proxy)
    for key in keys:
        c.set(key, key.rsplit(":", 1)[1])
    wait_synced(cluster)
    writer = Writer(client(own_proxy, socket_timeout=5), tag_of(cluster, victim, "kw"))

    killed_at = time.monotonic()
    victim.kill()
    writer.start()
    promoted_at: float | None = None
    read_errors: list[str] = []
    wrong: list[tuple[str, bytes | None]] = []
    slowest, reads = 0.0, 0
    deadline = killed_at + NODE_TIMEOUT_S + 20
    while time.monotonic() < deadline and not (
        promoted_at is not None and writer.acked and time.monotonic() > writer.acked[0][0] + 1
    ):
        key = keys[reads % len(keys)]
        t0 = time.monotonic()
        try:
            got = c.get(key)
            if got != key.rsplit(":", 1)[1].encode():
                wrong.append((key, got))
        except redis.RedisError as e:
            at = time.monotonic() - killed_at
            read_errors.append(f"{at:.2f}s GET {key}: {type(e).__name__} {e}")
        slowest, reads = max(slowest, time.monotonic() - t0), reads + 1
        if promoted_at is None and any(r.role() == "master" for r in replicas):
            promoted_at = time.monotonic()
    writer.stop_flag.set()
    writer.join(10)

    assert read_errors[:5] == []
    assert wrong[:5] == []
    assert reads > 100 and slowest < 2.0, (reads, slowest)
    assert promoted_at is not None, "the cluster promoted no replica"
    assert writer.acked, writer.errors[-5:]
    first_write = writer.acked[0][0]
    # Redis itself takes cluster-node-timeout + 0.5-2.5 s to promote (2.9-4.7 s measured
    # here with 2 s), so the issue's "+ 2 s" is asked of georedis' part: from the promotion.
    timing = (f"promoted {promoted_at - killed_at:.2f}s after the kill, first write "
              f"{first_write - killed_at:.2f}s")  # fmt: skip
    assert first_write - promoted_at <= 2.0, timing
    late = [e for t, e in writer.errors if t > promoted_at + 2.0]
    assert late[:5] == [], timing
    wait_synced(cluster)
    acked = [k for _, k in writer.acked] + keys
    assert missing_through(own_proxy, acked) == []
    assert missing_in_cluster(cluster, acked) == []


# --- transactions, read scripts and sharded publish in every shard ----------------------------


def test_transactions_and_read_scripts_run_on_their_slots_master(
    cluster: RedisCluster, proxy: ProxyThread
) -> None:
    """MULTI/EXEC and WATCH pin to the master of their keys' slot, whichever shard it is
    (before this, only shard 0's keys worked: the others' got MOVED); keys of two slots
    in one transaction get CROSSSLOT and EXECABORT; EVAL_RO/EVALSHA_RO read the key's shard;
    SPUBLISH answers a count (it closed the connection)."""
    c = client(proxy)
    for master in live_masters(cluster):
        tag = tag_of(cluster, master, "tx")
        pipe = c.pipeline(transaction=True)
        pipe.set(f"{tag}a", 1).incr(f"{tag}a").get(f"{tag}a")
        assert pipe.execute() == [True, 2, b"2"]
        assert master.client().get(f"{tag}a") == b"2"  # ran on that shard's master
        assert c.execute_command("WATCH", f"{tag}w") in (b"OK", True)
        assert c.execute_command("MULTI") in (b"OK", True)
        c.execute_command("SET", f"{tag}w", "v")
        assert c.execute_command("EXEC") == [b"OK"]
        script = "return redis.call('get', KEYS[1])"
        assert c.execute_command("EVAL_RO", script, 1, f"{tag}a") == b"2"
        sha = c.script_load(script)
        assert c.execute_command("EVALSHA_RO", sha, 1, f"{tag}a") == b"2"
        assert isinstance(c.execute_command("SPUBLISH", f"{tag}ch", "x"), int)
    tags = [tag_of(cluster, m, "x") for m in live_masters(cluster)[:2]]
    assert c.execute_command("MULTI") in (b"OK", True)
    c.execute_command("SET", f"{tags[0]}k", 1)
    with pytest.raises(redis.exceptions.ResponseError, match="same slot"):
        c.execute_command("SET", f"{tags[1]}k", 1)
    with pytest.raises(redis.exceptions.ExecAbortError):
        c.execute_command("EXEC")
    assert all(
        m.client().get(f"{t}k") is None for m, t in zip(live_masters(cluster), tags, strict=False)
    )
    assert c.execute_command("MULTI") in (b"OK", True)
    assert c.execute_command("ECHO", "hi") == b"QUEUED"
    assert c.execute_command("EXEC") == [b"hi"]  # keyless only: shard 0's master
    assert c.ping()


@pytest.mark.parametrize("proto", [2, 3])
def test_sharded_pubsub_reaches_each_shards_subscribers(
    cluster: RedisCluster, proxy: ProxyThread, proto: int
) -> None:
    """SSUBSCRIBE through georedis subscribes on a node of the channel's shard and
    SPUBLISH (to that shard's master) reaches it, for every shard, two channels of one
    slot in one command; a later SSUBSCRIBE of a channel another shard serves gets Redis'
    CROSSSLOT and the subscription goes on; SUNSUBSCRIBE answers as Redis does."""
    masters = live_masters(cluster)
    pub = client(proxy)
    for master in masters:
        tag = tag_of(cluster, master, "sp")
        sub = client(proxy, protocol=proto, socket_timeout=5)
        ps = sub.pubsub()
        ps.ssubscribe(f"{tag}a", f"{tag}b")
        confirms = [ps.get_sharded_message(timeout=3) for _ in range(2)]
        assert [(m["type"], m["data"]) for m in confirms if m] == [
            ("ssubscribe", 1),
            ("ssubscribe", 2),
        ]
        assert pub.execute_command("SPUBLISH", f"{tag}b", "hello") == 1
        msg = ps.get_sharded_message(timeout=3)
        assert msg is not None and (msg["channel"], msg["data"]) == (f"{tag}b".encode(), b"hello")
        other = tag_of(cluster, next(m for m in masters if m is not master), "sp")
        ps.execute_command("SSUBSCRIBE", f"{other}z")
        with pytest.raises(redis.exceptions.ResponseError, match="same slot"):  # CROSSSLOT
            ps.parse_response(block=True, timeout=3)
        assert pub.execute_command("SPUBLISH", f"{tag}a", "again") == 1
        msg = ps.get_sharded_message(timeout=3)
        assert msg is not None and msg["data"] == b"again"
        ps.sunsubscribe(f"{tag}a", f"{tag}b")
        gone = [ps.get_sharded_message(timeout=3) for _ in range(2)]
        assert sorted(m["data"] for m in gone if m) == [0, 1]
        assert pub.execute_command("SPUBLISH", f"{tag}a", "nobody") == 0
        ps.close()


def test_a_slot_moved_during_a_transaction_aborts_it_with_a_clear_error(
    cluster: RedisCluster, proxy: ProxyThread
) -> None:
    """The pinned master answers MOVED to the rest of the transaction and to EXEC once
    its slot moved: the client gets georedis' "not executed" error (never MOVED), nothing
    of it ran anywhere, and its next transaction runs on the slot's new master."""
    source, target = live_masters(cluster)[:2]
    tag = tag_of(cluster, source, "txmv")
    c = client(proxy)
    assert c.execute_command("MULTI") in (b"OK", True)
    conn = c.connection  # raw replies: redis-py reads SET's +QUEUED as False
    assert conn is not None
    conn.send_command("SET", f"{tag}a", 1)
    assert conn.read_response() == b"QUEUED"
    move_slot(cluster, key_slot(tag.encode()), source, target)
    conn.send_command("SET", f"{tag}b", 2)  # the source answers MOVED
    with pytest.raises(redis.exceptions.ResponseError, match="moved to another master during"):
        conn.read_response()
    with pytest.raises(redis.exceptions.ResponseError, match="not executed: slot"):
        c.execute_command("EXEC")
    slot = key_slot(tag.encode())
    assert target.client().mget(f"{tag}a", f"{tag}b") == [None, None]  # its owner now
    assert source.admin.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    pipe = c.pipeline(transaction=True)
    assert pipe.set(f"{tag}a", 3).get(f"{tag}a").execute() == [True, b"3"]
    assert target.client().get(f"{tag}a") == b"3"
    assert c.ping()
