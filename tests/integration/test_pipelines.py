"""Pipelines through the proxy, on real servers: replies come back in the order the
commands were sent and every command is answered, when a blocking command holds the
ones behind it, when a connection dies under a deferred WAIT, when a read is retried
before QUIT."""

from __future__ import annotations

import threading
import time

from tests.helpers.proxyrun import ProxyThread
from tests.helpers.raw import Raw
from tests.helpers.topology import RedisTopology


def test_held_commands_keep_order_after_unblock(
    topology: RedisTopology, proxy: ProxyThread
) -> None:
    """Commands that arrive between a blocking reply and the resume of the commands
    held behind it must wait for the held ones."""
    c = Raw(proxy.port)
    c.send(["BLPOP", "bq", "0"], ["ECHO", "held"])
    time.sleep(0.3)  # BLPOP is blocked on its dedicated connection, ECHO held
    frozen = threading.Thread(target=lambda: proxy.call(lambda: time.sleep(0.6)))
    frozen.start()
    time.sleep(0.1)  # the proxy loop is asleep now
    topology.primary.client().lpush("bq", "job")  # BLPOP's reply waits in the socket
    time.sleep(0.1)
    c.send(["ECHO", "later"])  # arrives in the same loop turn as BLPOP's reply
    frozen.join()
    assert c.read(3) == [[b"bq", b"job"], b"held", b"later"]


def test_wait_after_pipeline_when_its_connection_died(
    topology: RedisTopology, proxy: ProxyThread
) -> None:
    """A WAIT deferred behind earlier replies, whose dedicated connection dies meanwhile,
    must still get an answer (it used to be sent into the dead connection: a hang)."""
    c = proxy.client()
    c.set("k", "v")
    topology.wait_synced()
    replica = topology.node("ap-southeast-1", 1)
    sleeper = threading.Thread(
        target=lambda: replica.client().execute_command("DEBUG", "SLEEP", "0.7")
    )
    sleeper.start()
    time.sleep(0.1)
    raw = Raw(proxy.port)
    raw.send(["GET", "k"], ["WAIT", "0", "100"])  # GET waits on the sleeping replica
    time.sleep(0.15)
    topology.primary.client().client_kill_filter(_type="normal", skipme=True)
    sleeper.join()
    replies = raw.read(2)
    assert replies[0] == b"v"


def test_quit_after_a_read_whose_backend_fails(topology: RedisTopology, proxy: ProxyThread) -> None:
    c = proxy.client()
    c.set("qk", "v")
    topology.wait_synced()
    replica = topology.node("ap-southeast-1", 1)
    raw = Raw(proxy.port, timeout=5)
    replica.freeze()
    try:
        raw.send(["GET", "qk"], ["QUIT"])
        assert raw.read(2) == [b"v", b"OK"]  # retried elsewhere, then QUIT's reply
    finally:
        replica.thaw()
