"""CLUSTER, READONLY, READWRITE as `local.handle` answers them: refused by default, a
cluster of georedis itself at the client's own socket address with `present_as = "cluster"`."""

from __future__ import annotations

import dataclasses

import pytest

from config.model import Address
from proxy.server import local
from routing import presentcluster
from routing.commands import Kind
from routing.slots import key_slot
from tests.unit.proxy.server.fakes import FakeClient, FakeHost, snapshot

LISTEN = Address("0.0.0.0", 6390)


def client(present_as: str, laddr: str = "10.9.8.7:6390", proto: int = 2) -> FakeClient:
    host = FakeHost(snapshot())
    cfg = host.config
    host.config = dataclasses.replace(
        cfg,
        proxy=dataclasses.replace(cfg.proxy, listen=LISTEN),
        cluster=dataclasses.replace(cfg.cluster, present_as=present_as),
    )
    c = FakeClient(host)
    c.state.local_addr, c.state.proto = laddr, proto
    return c


def run(c: FakeClient, *args: bytes) -> bytes:
    argv = list(args)
    info = c.host.table.lookup(argv)
    assert info.kind == Kind.LOCAL  # whatever present_as says: the handler decides
    return local.handle(c, argv, info.name)  # type: ignore[arg-type]


@pytest.mark.parametrize("args", [(b"CLUSTER", b"SLOTS"), (b"cluster", b"info"),
                                  (b"CLUSTER",), (b"READONLY",), (b"readwrite",)])  # fmt: skip
def test_standalone_refuses_them_as_before(args: tuple[bytes, ...]) -> None:
    reply = run(client("standalone"), *args)
    assert reply.startswith(b"-ERR georedis: ")
    assert args[0].upper() in reply


def test_cluster_answers_with_the_address_the_client_reached() -> None:
    c = client("cluster")
    ids = presentcluster.node_ids(str(LISTEN))
    assert run(c, b"cluster", b"slots") == presentcluster.slots_reply("10.9.8.7", 6390, ids, 2)
    assert run(c, b"CLUSTER", b"SHARDS") == presentcluster.shards_reply("10.9.8.7", 6390, ids, 2)
    assert run(c, b"CLUSTER", b"NODES") == presentcluster.nodes_reply("10.9.8.7", 6390, ids, 2)
    assert run(c, b"CLUSTER", b"INFO") == presentcluster.info_reply("", 0, ids, 2)
    assert run(c, b"CLUSTER", b"MYID") == b"$40\r\n" + ids[0].encode() + b"\r\n"
    assert run(c, b"CLUSTER", b"KEYSLOT", b"{user1}.x") == b":%d\r\n" % key_slot(b"user1")
    assert run(c, b"READONLY") == b"+OK\r\n" and run(c, b"READWRITE") == b"+OK\r\n"


def test_another_listener_another_address_same_ids() -> None:
    v6 = client("cluster", "[::1]:6391", proto=3)
    ids = presentcluster.node_ids(str(LISTEN))
    assert run(v6, b"CLUSTER", b"SLOTS") == presentcluster.slots_reply("::1", 6391, ids, 3)


def test_announce_replaces_the_address_the_client_reached() -> None:
    c = client("cluster")
    cfg = c.host.config
    c.host.config = dataclasses.replace(
        cfg, cluster=dataclasses.replace(cfg.cluster, announce=Address("lb.example", 7000))
    )
    ids = presentcluster.node_ids(str(LISTEN))  # (still from listen: stable over restarts)
    assert run(c, b"CLUSTER", b"SLOTS") == presentcluster.slots_reply("lb.example", 7000, ids, 2)
    assert run(c, b"CLUSTER", b"NODES") == presentcluster.nodes_reply("lb.example", 7000, ids, 2)


def test_wrong_arity_and_other_subcommands_in_redis_words_or_refused() -> None:
    c = client("cluster")
    assert run(c, b"CLUSTER") == b"-ERR wrong number of arguments for 'cluster' command\r\n"
    assert run(c, b"CLUSTER", b"SLOTS", b"x") == (
        b"-ERR wrong number of arguments for 'cluster|slots' command\r\n"
    )
    assert run(c, b"CLUSTER", b"KEYSLOT") == (
        b"-ERR wrong number of arguments for 'cluster|keyslot' command\r\n"
    )
    assert run(c, b"READONLY", b"x") == (
        b"-ERR wrong number of arguments for 'readonly' command\r\n"
    )
    for sub in (b"COUNTKEYSINSLOT", b"FAILOVER", b"ADDSLOTS", b"bogus"):
        reply = run(c, b"CLUSTER", sub, b"1")
        assert reply.startswith(b"-ERR georedis: CLUSTER " + sub.upper() + b" is not supported")


def test_hello_says_cluster_mode_only_when_presented_so() -> None:
    assert b"cluster" in run(client("cluster", proto=3), b"HELLO", b"3")
    assert b"standalone" in run(client("standalone", proto=3), b"HELLO", b"3")
