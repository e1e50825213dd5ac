"""The core proxy against real redis-server processes: routing, state, faults."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.helpers.proxyrun import ProxyThread, config_from_toml, wait_for
from tests.helpers.topology import RedisTopology, free_port

FAST_HEALTH = """
[health]
interval_ms = 100
probe_timeout_ms = 300
[backend]
timeout_ms = 1000
"""


@pytest.fixture
def proxy(topology: RedisTopology) -> Iterator[ProxyThread]:
    cfg = config_from_toml(topology.config_toml(free_port(), extra=FAST_HEALTH))
    with ProxyThread(cfg) as p:
        yield p


def _calls(node_client: redis.Redis, command: str) -> int:
    stats = node_client.info("commandstats")
    entry = stats.get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0


def _reset_stats(topology: RedisTopology) -> None:
    for n in topology.nodes:
        n.client().config_resetstat()


def test_reads_go_to_local_replica_writes_to_primary(
    topology: RedisTopology, proxy: ProxyThread
) -> None:
    # STRLEN and INCRBY: commands the health checker never sends (it GETs and SETs its
    # heartbeat key), so the counts below are exactly the client's.
    c = proxy.client()
    c.set("k", "v")
    topology.wait_synced()
    _reset_stats(topology)
    for _ in range(50):
        assert c.strlen("k") == 1
    for i in range(20):
        c.incrby(f"w{i}", i)
    local_replica = topology.node("ap-southeast-1", 1)
    assert _calls(local_replica.client(), "strlen") == 50
    assert _calls(topology.primary.client(), "strlen") == 0
    assert _calls(topology.primary.client(), "incrby") == 20
    for n in topology.replicas("us-east-1") + topology.replicas("eu-west-1"):
        assert _calls(n.client(), "strlen") == 0


def test_pipeline_across_backends_keeps_order(proxy: ProxyThread) -> None:
    c = proxy.client()
    pipe = c.pipeline(transaction=False)
    for i in range(200):
        pipe.set(f"p{i}", i)
        pipe.get("missing-key")
        pipe.incr("counter")
        pipe.echo(f"e{i}")
    out = pipe.execute()
    for i in range(200):
        assert out[4 * i] is True
        assert out[4 * i + 1] is None
        assert out[4 * i + 2] == i + 1
        assert out[4 * i + 3] == f"e{i}".encode()


def test_transaction_and_watch(proxy: ProxyThread) -> None:
    c = proxy.client()
    with c.pipeline() as pipe:
        pipe.set("tx1", 1).incr("tx1").get("tx1")
        assert pipe.execute() == [True, 2, b"2"]
    other = proxy.client()
    with c.pipeline() as pipe:
        pipe.watch("watched")
        assert pipe.get("watched") is None
        other.set("watched", "changed")  # another client changes it: EXEC must abort
        pipe.multi()
        pipe.set("watched", "mine")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert c.get("watched") == b"changed"


def test_blpop_woken_while_others_served(proxy: ProxyThread) -> None:
    blocker = proxy.client()
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(blocker.blpop(["queue"], timeout=10)))
    t.start()
    time.sleep(0.3)
    other = proxy.client()
    for i in range(20):  # the proxy keeps serving while one client blocks
        assert other.echo(f"x{i}") == f"x{i}".encode()
        other.set("free", i)
    other.lpush("queue", "job")
    t.join(5)
    assert result == [(b"queue", b"job")]
    assert blocker.ping() is True


def test_pubsub_through_proxy(proxy: ProxyThread) -> None:
    sub = proxy.client().pubsub()
    sub.subscribe("news")
    msg = sub.get_message(timeout=2)
    assert msg is not None and msg["type"] == "subscribe"
    publisher = proxy.client()

    def published() -> bool:
        publisher.publish("news", "hello")
        m = sub.get_message(timeout=0.5)
        return m is not None and m["type"] == "message" and m["data"] == b"hello"

    wait_for(published, 10, "a published message")
    sub.close()


def test_resp3_client(proxy: ProxyThread) -> None:
    c = proxy.client(protocol=3)
    c.set("r3", "v")
    assert c.get("r3") == b"v"
    c.hset("h3", mapping={"a": "1"})
    assert c.hgetall("h3") == {b"a": b"1"}
    assert c.ping() is True


def test_resp3_pubsub(proxy: ProxyThread) -> None:
    sub = proxy.client(protocol=3).pubsub()
    sub.subscribe("r3news")
    assert sub.get_message(timeout=2)["type"] == "subscribe"  # type: ignore[index]
    publisher = proxy.client()

    def published() -> bool:
        publisher.publish("r3news", "hi")
        m = sub.get_message(timeout=0.5)
        return m is not None and m["type"] == "message"

    wait_for(published, 10, "a RESP3 push message")
    sub.close()


def test_client_setname_setinfo(proxy: ProxyThread) -> None:
    c = proxy.client(client_name="app-1")
    assert c.client_getname() in ("app-1", b"app-1")
    c.client_setinfo("LIB-NAME", "mylib")
    info = c.client_info()
    assert info["name"] == "app-1"
    assert info["lib-name"] == "mylib"
    assert isinstance(c.client_id(), int)
    names = [cl["name"] for cl in c.client_list()]
    assert "app-1" in names


def test_select_is_per_client(proxy: ProxyThread) -> None:
    c0 = proxy.client(db=0)
    c1 = proxy.client(db=1)
    c0.set("same", "zero")
    c1.set("same", "one")
    assert c0.get("same") == b"zero"
    assert c1.get("same") == b"one"
    c1.delete("same")
    assert c0.get("same") == b"zero"


def test_eval_and_eval_ro(topology: RedisTopology, proxy: ProxyThread) -> None:
    c = proxy.client()
    assert c.eval("return redis.call('SET', KEYS[1], ARGV[1])", 1, "ev", "x") == b"OK"
    topology.wait_synced()
    assert c.eval_ro("return redis.call('GET', KEYS[1])", 1, "ev") == b"x"
    sha = c.script_load("return redis.call('GET', KEYS[1])")
    # SCRIPT LOAD reached the replicas too, so EVALSHA_RO works wherever it lands.
    wait_for(lambda: all(n.client().script_exists(sha)[0] for n in topology.replicas()), 5)
    assert c.evalsha_ro(sha, 1, "ev") == b"x"


def test_refused_commands(proxy: ProxyThread) -> None:
    c = proxy.client()
    for cmd in (["SHUTDOWN"], ["REPLICAOF", "NO", "ONE"], ["DEBUG", "SLEEP", "0"]):
        with pytest.raises(redis.ResponseError, match="georedis"):
            c.execute_command(*cmd)
    assert c.ping() is True


def _raw(port: int, data: bytes, wait: float = 0.3) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(data)
        time.sleep(wait)
        chunks = []
        s.settimeout(1)
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        except TimeoutError:
            pass
        return b"".join(chunks)


def test_inline_commands(proxy: ProxyThread) -> None:
    # Session consistency, so the GET right after the SET sees it (inside one pipeline).
    out = _raw(
        proxy.port,
        b'PROXY CONSISTENCY session\r\nPING\r\nECHO hello\r\nSET inl "a b"\r\nGET inl\r\n',
    )
    assert out == b"+OK\r\n+PONG\r\n$5\r\nhello\r\n+OK\r\n$3\r\na b\r\n"


def test_broken_resp_costs_only_that_client(proxy: ProxyThread) -> None:
    good = proxy.client()
    good.set("safe", "1")
    out = _raw(proxy.port, b"*2\r\n$3\r\nGET\r\n$-5\r\nxx\r\n")
    assert out.startswith(b"-ERR Protocol error")
    out = _raw(proxy.port, b"*1\r\n$9999999999999\r\n")
    assert out.startswith(b"-ERR Protocol error: invalid bulk length")
    out = _raw(proxy.port, b"*99999999999\r\n")
    assert out.startswith(b"-ERR Protocol error: invalid multibulk length")
    assert good.get("safe") == b"1"


def test_replica_killed_reads_keep_answering(topology: RedisTopology, proxy: ProxyThread) -> None:
    c = proxy.client()
    c.set("alive", "yes")
    topology.wait_synced()
    errors = 0
    stop = time.monotonic() + 3
    killed = False
    n = 0
    while time.monotonic() < stop:
        try:
            assert c.get("alive") == b"yes"
        except redis.RedisError:
            errors += 1
        n += 1
        if not killed and n == 200:
            topology.node("ap-southeast-1", 1).kill()
            killed = True
    assert killed
    assert errors == 0
    assert c.ping() is True


def test_benchmark_suite_through_proxy(proxy: ProxyThread) -> None:
    if shutil.which("redis-benchmark") is None:
        pytest.fail("redis-benchmark is not installed (apt-get install redis-tools)")
    out = subprocess.run(
        ["redis-benchmark", "-p", str(proxy.port), "-q", "-n", "3000", "-c", "20"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "error" not in text.lower(), text
    for test in ("PING_INLINE", "SET", "GET", "LRANGE_600", "MSET"):
        assert f"{test}" in text


def test_check_config_names_every_bad_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[proxy]\nlisen = "127.0.0.1:6380"\n'
        '[[regions]]\nname = "a"\nlatitude = 1.0\nlongitude = 2.0\nnodes = ["127.0.0.1:99999"]\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "check-config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "proxy.lisen" in out.stderr
    assert "regions[0].nodes[0]" in out.stderr
    assert str(bad) in out.stderr or "bad.toml" in out.stderr


def test_wait_counts_replicas_that_have_the_clients_writes(
    topology: RedisTopology, proxy: ProxyThread
) -> None:
    c = proxy.client()
    c.set("waited", "1")
    assert c.wait(3, 5000) == 3  # all three replicas acknowledged
    pipe = c.pipeline(transaction=False)
    pipe.set("waited", "2").execute_command("WAIT", 3, 5000).get("waited")
    assert pipe.execute()[1] == 3
    for n in topology.replicas():  # WAIT returned 3: every replica has the write
        assert n.client().get("waited") == b"2"
    topology.node("eu-west-1").freeze()
    try:
        c.set("waited", "3")
        assert c.wait(3, 300) == 2  # the frozen replica cannot acknowledge
    finally:
        topology.node("eu-west-1").thaw()


def test_xread_block_does_not_hold_others(topology: RedisTopology, proxy: ProxyThread) -> None:
    blocker = proxy.client()
    got: list[object] = []
    t = threading.Thread(
        target=lambda: got.append(blocker.xread({"stream": "$"}, block=5000, count=1))
    )
    t.start()
    time.sleep(0.3)
    # Reads of other clients go to the same replica: over every shared connection.
    others = [proxy.client() for _ in range(4)]
    start = time.monotonic()
    for other in others:
        for _ in range(5):  # served at once, not after the XREAD's 5 s block
            assert other.get("nothing-here") is None
    assert time.monotonic() - start < 2
    others[0].xadd("stream", {"f": "v"})
    t.join(6)
    assert got and got[0], got


def test_slow_reader_gets_every_reply(proxy: ProxyThread) -> None:
    """200 MB of replies to a client that reads slowly: reading from it pauses while
    its socket is full (backpressure), then every reply still arrives, in order."""
    c = proxy.client()
    c.set("big", b"x" * (1 << 20))
    c.set("small", b"s")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"PROXY CONSISTENCY session\r\n")
        assert s.recv(5) == b"+OK\r\n"
        cmds = b"".join(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" for _ in range(200))
        s.sendall(cmds + b"*2\r\n$3\r\nGET\r\n$5\r\nsmall\r\n")
        time.sleep(0.5)  # let the proxy's send buffer fill up
        expected = (b"$1048576\r\n" + b"x" * (1 << 20) + b"\r\n") * 200 + b"$1\r\ns\r\n"
        got = bytearray()
        while len(got) < len(expected):
            chunk = s.recv(1 << 20)
            assert chunk, "connection closed early"
            got += chunk
        assert bytes(got) == expected


def test_command_the_proxy_cannot_queue_aborts_the_transaction(proxy: ProxyThread) -> None:
    out = _raw(
        proxy.port,
        b"PROXY CONSISTENCY session\r\n"
        b"MULTI\r\nSET doomed 1\r\nCLIENT SETNAME x\r\nEXEC\r\nGET doomed\r\nMULTI\r\n"
        b"SET fine 1\r\nPING\r\nEXEC\r\n",
    )
    assert out == (
        b"+OK\r\n"
        b"+OK\r\n+QUEUED\r\n"
        b"-ERR georedis: CLIENT inside MULTI is not supported\r\n"
        b"-EXECABORT Transaction discarded because of previous errors.\r\n"
        b"$-1\r\n"  # nothing of the doomed transaction ran
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n+PONG\r\n"
    )


def test_scripts_reloaded_on_a_restarted_replica(
    topology: RedisTopology, proxy: ProxyThread
) -> None:
    c = proxy.client()
    c.set("sk", "v")
    sha = c.script_load("return redis.call('GET', KEYS[1])")
    replica = topology.node("ap-southeast-1", 1)
    replica.kill()
    wait_for(lambda: not _node_up(proxy, replica.address), 10, "the replica marked down")
    replica.restart()  # an empty script cache
    topology.replicate_direct(replica)
    wait_for(lambda: bool(replica.client().script_exists(sha)[0]), 10, "the script reloaded")
    topology.wait_synced()
    assert c.evalsha_ro(sha, 1, "sk") == b"v"


def _node_up(proxy: ProxyThread, address: str) -> bool:
    assert proxy.app is not None
    app = proxy.app
    return any(str(n.addr) == address and n.up for n in proxy.call(lambda: app.topo.nodes))


def test_subscriber_that_does_not_read_is_disconnected(proxy: ProxyThread) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"SUBSCRIBE firehose\r\n")
        time.sleep(0.3)
        publisher = proxy.client()
        payload = b"x" * (1 << 20)
        for _ in range(120):  # 120 MB for a subscriber that never reads
            publisher.publish("firehose", payload)
        assert proxy.app is not None
        app = proxy.app
        wait_for(
            lambda: proxy.call(lambda: all(not x.sub for x in app.sessions.values())),
            10,
            "the slow subscriber disconnected",
        )
        assert publisher.ping() is True


def test_idle_client_is_closed_after_timeout_s(topology: RedisTopology) -> None:
    """[proxy] timeout_s, as Redis' `timeout`: an idle client is closed, a subscriber is
    not."""
    cfg = topology.config_toml(free_port(), extra=FAST_HEALTH, proxy_options={"timeout_s": 1})
    with ProxyThread(config_from_toml(cfg)) as p:
        idle = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        sub = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        idle.sendall(b"PING\r\n")
        assert idle.recv(7) == b"+PONG\r\n"
        sub.sendall(b"SUBSCRIBE ch\r\n")
        assert sub.recv(100).startswith(b"*3")
        assert idle.recv(10) == b""  # closed within ~2 s (idle > 1 s, checked each second)
        sub.sendall(b"PING\r\n")
        assert b"pong" in sub.recv(100)  # the subscriber is still served
        assert p.app is not None and p.app.stats.idle_closed == 1
        idle.close()
        sub.close()
