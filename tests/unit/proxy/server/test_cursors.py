"""SCAN-family calls (proxy.server.cursors) and read scripts (dispatch.read_script)
against a fake host: which node each call goes to and what the client reads back.

The fake config numbers the nodes PRIMARY 1, US 2, EU 3 (`fakes.config`); the client
is in "us", so a fresh read goes to US.
"""

from __future__ import annotations

import dataclasses

import pytest

from proxy.resp.requests import pack
from proxy.server import cursors, dispatch
from proxy.server.forwarding import Forwarding
from proxy.server.slot import LONG
from routing.cursors import NODE_SHIFT
from routing.topology import NodeState
from tests.unit.proxy.server.fakes import EU, PRIMARY, US, FakeClient, FakeHost, snapshot

NUMBER = {PRIMARY.addr: 1, US.addr: 2, EU.addr: 3}


def _client(*nodes: NodeState, ryw: bool = False) -> tuple[FakeHost, FakeClient]:
    host = FakeHost(snapshot(*(nodes or (US, EU))))
    client = FakeClient(host, ryw=ryw)
    client.router = Forwarding(client)  # type: ignore[arg-type]
    return host, client


def _scan(client: FakeClient, *args: bytes) -> None:
    name = args[0].decode().lower()
    cursors.scan(client, client.router, list(args), name, 0.0)  # type: ignore[arg-type]


def _reply(cursor: int, *elements: bytes) -> bytes:
    text = b"%d" % cursor
    items = b"".join(b"$%d\r\n%s\r\n" % (len(e), e) for e in elements)
    return b"*2\r\n$%d\r\n%s\r\n*%d\r\n%s" % (len(text), text, len(elements), items)


def _tagged(node: NodeState, cursor: int) -> int:
    return NUMBER[node.addr] << NODE_SHIFT | cursor


def _sent(host: FakeHost, node: NodeState) -> list[tuple[bytes, object]]:
    return host.pool(node).shared_conn.sent


def test_a_fresh_scan_reads_the_nearest_replica_and_its_cursor_names_it() -> None:
    host, client = _client()
    _scan(client, b"SCAN", b"0", b"COUNT", b"10")
    ((data, waiter),) = _sent(host, US)
    assert data == pack([b"SCAN", b"0", b"COUNT", b"10"])
    waiter.deliver(_reply(17, b"a", b"b"))  # type: ignore[attr-defined]
    assert client.out == [_reply(_tagged(US, 17), b"a", b"b")]
    assert host.stats.commands[0] == 1  # counted as a read


def test_a_continued_cursor_goes_to_its_node_with_the_number_taken_off() -> None:
    host, client = _client()
    _scan(client, b"SSCAN", b"set", b"%d" % _tagged(EU, 5), b"COUNT", b"10")
    ((data, waiter),) = _sent(host, EU)
    assert data == pack([b"SSCAN", b"set", b"5", b"COUNT", b"10"])
    assert _sent(host, US) == []
    waiter.deliver(_reply(0, b"m"))  # type: ignore[attr-defined]
    assert client.out == [_reply(0, b"m")]  # the end: cursor 0 stays 0


def test_read_your_writes_moves_fresh_scans_but_not_continued_ones() -> None:
    host, client = _client(ryw=True)
    client.state.writes_inflight = 1  # only the primary has this client's write
    _scan(client, b"SCAN", b"0")
    _scan(client, b"HSCAN", b"h", b"%d" % _tagged(US, 9))
    assert [d for d, _ in _sent(host, PRIMARY)] == [pack([b"SCAN", b"0"])]
    assert [d for d, _ in _sent(host, US)] == [pack([b"HSCAN", b"h", b"9"])]


def test_a_cursor_whose_node_is_down_says_to_start_again() -> None:
    down = dataclasses.replace(EU, up=False, eligible=False)
    host, client = _client(US, down)
    _scan(client, b"ZSCAN", b"z", b"%d" % _tagged(EU, 5))
    assert _sent(host, EU) == [] and _sent(host, PRIMARY) == []
    (err,) = client.out
    assert err.startswith(b"-ERR georedis: the node of this SCAN cursor (10.2.0.1:6379) is down")
    assert err.endswith(b"start the scan again from cursor 0\r\n")


def test_a_cursor_numbering_no_configured_node_says_to_start_again() -> None:
    _, client = _client()
    _scan(client, b"SCAN", b"%d" % (9 << NODE_SHIFT | 5))
    (err,) = client.out
    assert err.startswith(b"-ERR georedis: this SCAN cursor names no node georedis knows")


def test_a_cursor_without_a_number_continues_on_the_primary() -> None:
    # As a scan inside MULTI hands it out (the pinned primary connection).
    host, client = _client()
    _scan(client, b"SCAN", b"12")
    ((data, waiter),) = _sent(host, PRIMARY)
    assert data == pack([b"SCAN", b"12"])
    waiter.deliver(_reply(3))  # type: ignore[attr-defined]
    assert client.out == [_reply(_tagged(PRIMARY, 3))]


def test_a_cursor_without_a_number_and_no_primary_says_to_start_again() -> None:
    host = FakeHost(snapshot(US, EU, primary=None, error="two masters"))
    client = FakeClient(host)
    client.router = Forwarding(client)  # type: ignore[arg-type]
    _scan(client, b"SCAN", b"12")
    assert _sent(host, US) == [] and _sent(host, EU) == []
    (err,) = client.out
    assert err.startswith(b"-ERR georedis: no primary for this SCAN cursor")


@pytest.mark.parametrize("cursor", [b"abc", b"-1", b""])
def test_a_cursor_that_is_no_plain_number_goes_as_it_came(cursor: bytes) -> None:
    host, client = _client()
    _scan(client, b"SCAN", cursor)
    ((data, waiter),) = _sent(host, US)
    assert data == pack([b"SCAN", cursor])
    waiter.deliver(b"-ERR invalid cursor\r\n")  # type: ignore[attr-defined]
    assert client.out == [b"-ERR invalid cursor\r\n"]  # Redis' words, unchanged


def test_without_a_cursor_redis_answers_the_arity_error() -> None:
    host, client = _client()
    _scan(client, b"SSCAN", b"set")
    ((data, _),) = _sent(host, US)
    assert data == pack([b"SSCAN", b"set"])


def test_a_fresh_scan_whose_node_fails_goes_to_another_once() -> None:
    host, client = _client()
    host.pool(US).failing = True
    _scan(client, b"SCAN", b"0")
    ((_, waiter),) = _sent(host, EU)
    waiter.deliver(_reply(4))  # type: ignore[attr-defined]
    assert client.out == [_reply(_tagged(EU, 4))]  # numbered for the node that answered
    assert host.stats.retries == 1


def test_a_fresh_scan_of_a_loading_node_goes_to_another() -> None:
    host, client = _client()
    _scan(client, b"SCAN", b"0")
    ((_, first),) = _sent(host, US)
    assert first.deliver(b"-LOADING Redis is loading the dataset in memory\r\n")  # type: ignore[attr-defined]
    ((_, second),) = _sent(host, EU)
    second.deliver(_reply(4))  # type: ignore[attr-defined]
    assert client.out == [_reply(_tagged(EU, 4))]


def test_a_continued_scan_is_not_retried_elsewhere() -> None:
    host, client = _client()
    host.pool(EU).failing = True
    _scan(client, b"SCAN", b"%d" % _tagged(EU, 5))
    assert _sent(host, US) == [] and _sent(host, PRIMARY) == []
    (err,) = client.out
    assert err == b"-ERR georedis: backend 10.2.0.1:6379 unavailable\r\n"


def test_retag_rewrites_only_the_cursor() -> None:
    big = b"x" * 100_000
    reply = _reply(123, big, b"")
    assert cursors.retag(reply, 2) == _reply(2 << NODE_SHIFT | 123, big, b"")
    for same in (b"-WRONGTYPE Operation against a key\r\n", _reply(0, b"a"), b"*0\r\n"):
        assert cursors.retag(same, 2) == same
    assert cursors.retag(_reply(1 << 40), 2) is None  # cannot carry a node
    assert cursors.retag(_reply(1), None) is None


def test_a_cursor_too_big_to_carry_its_node_is_an_error_not_a_wrong_cursor() -> None:
    host, client = _client()
    _scan(client, b"SCAN", b"0")
    ((_, waiter),) = _sent(host, US)
    waiter.deliver(_reply(1 << 40))  # type: ignore[attr-defined]
    (err,) = client.out
    assert err.startswith(b"-ERR georedis: a SCAN cursor of 2**40 or more")


# ---------------------------------------------------------------- read scripts


def _read_script(client: FakeClient, *args: bytes) -> None:
    dispatch.read_script(client, client.router, list(args), 0.0)  # type: ignore[arg-type]


def test_a_read_script_refused_by_a_replica_goes_to_the_primary() -> None:
    host, client = _client()
    _read_script(client, b"FCALL_RO", b"w", b"1", b"k")
    ((data, waiter),) = _sent(host, US)
    assert waiter.flags & LONG  # type: ignore[attr-defined]  # the script deadline
    waiter.deliver(b"-READONLY You can't write against a read only replica.\r\n")  # type: ignore[attr-defined]
    ((again, slot),) = _sent(host, PRIMARY)
    assert again == data == pack([b"FCALL_RO", b"w", b"1", b"k"])
    words = b"-ERR Can not execute a script with write flag using *_ro command.\r\n"
    slot.deliver(words)  # type: ignore[attr-defined]
    assert client.out == [words]


def test_a_read_script_answered_by_a_replica_is_passed_on() -> None:
    host, client = _client()
    _read_script(client, b"EVAL_RO", b"return 1", b"0")
    ((_, waiter),) = _sent(host, US)
    waiter.deliver(b":1\r\n")  # type: ignore[attr-defined]
    assert client.out == [b":1\r\n"] and _sent(host, PRIMARY) == []


def test_a_read_script_on_the_primary_is_a_plain_read() -> None:
    host, client = _client(ryw=True)
    client.state.writes_inflight = 1
    _read_script(client, b"EVAL_RO", b"return 1", b"0")
    ((_, slot),) = _sent(host, PRIMARY)
    assert type(slot).__name__ == "Slot"  # no waiter of its own: nothing to send again
