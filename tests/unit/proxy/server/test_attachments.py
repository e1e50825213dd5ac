"""The client's attachments (forwarding, transaction, blocking, subscription, scripts)
against a fake host: each one's rules, with no sockets and no event loop."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest

from proxy.errors import BackendUnavailable
from proxy.resp.requests import pack
from proxy.server import blocking, scripts, subscription, transaction
from proxy.server.forwarding import BATCH_READS_MAX, Forwarding
from proxy.server.slot import NO_DEADLINE, READ, REROUTED, RETRIED, UNPIN, WRITE, Slot
from proxy.stats import CLASS_WRITE
from routing.commands import CommandInfo
from routing.topology import NodeState, Reason, Role
from tests.unit.proxy.server.fakes import EU, PRIMARY, US, FakeClient, FakeHost, snapshot


def _client(
    primary: NodeState | None = PRIMARY, error: str = "", ryw: bool = False
) -> tuple[FakeHost, FakeClient, Forwarding]:
    host = FakeHost(snapshot(US, EU, primary=primary, error=error))
    client = FakeClient(host, ryw=ryw)
    fwd = Forwarding(client)  # type: ignore[arg-type]
    client.router = fwd
    return host, client, fwd


def _info(host: FakeHost, *args: bytes) -> CommandInfo:
    return host.table.lookup(list(args))


# ---------------------------------------------------------------- forwarding


def test_read_goes_to_the_nearest_replica_and_write_to_the_primary() -> None:
    host, client, fwd = _client()
    fwd.read([b"GET", b"k"], 0.0, 0)
    fwd.write([b"SET", b"k", b"v"], 0.0, CLASS_WRITE)
    ((read_data, read_slot),) = host.pool(US).shared_conn.sent
    ((write_data, write_slot),) = host.pool(PRIMARY).shared_conn.sent
    assert read_data == pack([b"GET", b"k"]) and read_slot.flags & READ
    assert write_data == pack([b"SET", b"k", b"v"]) and write_slot.flags & WRITE
    assert client.state.writes_inflight == 1
    assert list(client.queue) == [read_slot, write_slot]  # in the client's order


def test_read_your_writes_reads_the_primary_while_a_write_is_in_flight() -> None:
    host, _, fwd = _client(ryw=True)
    fwd.write([b"SET", b"k", b"v"], 0.0, CLASS_WRITE)
    fwd.read([b"GET", b"k"], 0.0, 0)
    assert len(host.pool(PRIMARY).shared_conn.sent) == 2
    assert host.pool(US).shared_conn.sent == []
    assert host.stats.ryw_redirects == 1


def test_write_without_a_primary_is_refused_in_one_wording() -> None:
    _, client, fwd = _client(primary=None, error="two masters")
    fwd.write([b"SET", b"k", b"v"], 0.0, CLASS_WRITE)
    assert client.out == [b"-ERR georedis: no primary (two masters); writes refused\r\n"]
    assert client.state.writes_inflight == 0


def test_batch_of_mixed_kinds_is_not_forwarded_whole() -> None:
    host, _, fwd = _client()
    assert not fwd.batch([[b"GET", b"a"], [b"SET", b"b", b"1"]], b"raw", 0.0)
    assert fwd.batch([[b"GET", b"a"], [b"GET", b"b"]], b"raw", 0.0)
    ((data, slot),) = host.pool(US).shared_conn.sent
    assert data == b"raw" and slot.pending == 2


def test_a_batch_of_reads_is_forwarded_whole_only_within_the_reply_window() -> None:
    """Redis builds every reply to what it read before writing any: 2,000 GETs of a
    1 MB value sent as one batch are 2 GB before the first byte comes back."""
    host, _, fwd = _client()
    conn = host.pool(US).shared_conn
    assert not fwd.batch([[b"GET", b"a"]] * (BATCH_READS_MAX + 1), b"raw", 0.0)
    conn.window = 8  # the connection has been getting megabyte replies
    assert not fwd.batch([[b"GET", b"a"]] * 9, b"raw", 0.0)
    assert fwd.batch([[b"GET", b"a"]] * 8, b"raw", 0.0)
    assert fwd.batch([[b"SET", b"a", b"1"]] * 10_000, b"raw", 0.0)  # writes: small replies
    assert len(conn.sent) == 1


def test_failed_read_is_retried_once_elsewhere_and_a_write_never() -> None:
    host, client, fwd = _client()
    fwd.read([b"GET", b"k"], 0.0, 0)
    ((_, slot),) = host.pool(US).shared_conn.sent
    slot.fail(BackendUnavailable(US.addr, "connection lost"))
    ((_, again),) = host.pool(PRIMARY).shared_conn.sent + host.pool(EU).shared_conn.sent
    assert again is slot and slot.flags & RETRIED and host.stats.retries == 1
    # A second failure is answered, not retried again.
    slot.fail(BackendUnavailable(EU.addr, "connection lost"))
    assert client.out == [b"-ERR georedis: backend 10.2.0.1:6379 unavailable\r\n"]
    fwd.write([b"SET", b"k", b"v"], 0.0, CLASS_WRITE)
    ((_, wslot),) = host.pool(PRIMARY).shared_conn.sent[-1:]
    wslot.fail(BackendUnavailable(PRIMARY.addr, "connection lost"))
    assert client.out[-1] == b"-ERR georedis: backend 10.0.0.1:6379 unavailable\r\n"


def test_loading_reply_of_a_single_read_is_sent_elsewhere() -> None:
    host, client, fwd = _client()
    fwd.read([b"GET", b"k"], 0.0, 0)
    ((_, slot),) = host.pool(US).shared_conn.sent
    assert slot.deliver(b"-LOADING Redis is loading the dataset in memory\r\n")
    ((_, again),) = host.pool(EU).shared_conn.sent + host.pool(PRIMARY).shared_conn.sent
    assert again is slot and slot.pending == 1 and client.out == []
    # Once retried, a second LOADING is the client's answer.
    assert slot.deliver(b"-LOADING Redis is loading the dataset in memory\r\n")
    assert client.out == [b"-LOADING Redis is loading the dataset in memory\r\n"]


def test_loading_replies_of_a_batch_pass_through() -> None:
    host, client, fwd = _client()
    assert fwd.batch([[b"GET", b"a"], [b"GET", b"b"]], b"raw", 0.0)
    ((_, slot),) = host.pool(US).shared_conn.sent
    slot.deliver(b"-LOADING x\r\n")
    slot.deliver(b"-LOADING x\r\n")
    assert client.out == [b"-LOADING x\r\n", b"-LOADING x\r\n"]
    assert host.pool(EU).shared_conn.sent == []


# ---------------------------------------------------------------- -READONLY: rerouting

_READONLY = b"-READONLY You can't write against a read only replica.\r\n"
_SETS = [[b"SET", b"k%d" % i, b"v%d" % i] for i in range(3)]
# US promoted: the snapshot after the old primary was demoted.
_US_PRIMARY = dataclasses.replace(US, role=Role.PRIMARY, reason=Reason.PRIMARY, eligible=False)


@pytest.fixture
def held() -> Iterator[tuple[FakeHost, FakeClient, Forwarding]]:
    """A client whose host has a real write hold (a loop that is never run: no timer
    fires)."""
    loop = asyncio.new_event_loop()
    host = FakeHost(snapshot(US, EU), loop=loop)
    client = FakeClient(host)
    fwd = Forwarding(client)  # type: ignore[arg-type]
    client.router = fwd
    try:
        yield host, client, fwd
    finally:
        loop.close()


def _write_batch(host: FakeHost, fwd: Forwarding) -> Slot:
    raw = b"".join(pack(c) for c in _SETS)
    assert fwd.batch([list(c) for c in _SETS], raw, 0.0)
    ((data, slot),) = host.pool(PRIMARY).shared_conn.sent
    assert data == raw and isinstance(slot, Slot) and slot.flags & WRITE
    return slot


def _promote_us(host: FakeHost) -> None:
    host.topo = snapshot(EU, primary=_US_PRIMARY, version=2)


def test_readonly_tail_of_a_write_batch_waits_and_goes_to_the_new_primary(
    held: tuple[FakeHost, FakeClient, Forwarding],
) -> None:
    host, client, fwd = held
    slot = _write_batch(host, fwd)
    assert not slot.deliver(b"+OK\r\n")
    assert not slot.deliver(_READONLY)
    assert slot.deliver(_READONLY)  # the old connection is done with it
    # Handed to the hold: nothing for the client yet, a probe round asked for.
    assert client.out == [] and list(client.queue) == [slot]
    assert host.hold.active and host.hold.waiting == 1 and host.refreshes == 1
    assert slot.flags & REROUTED and slot.pending == 2
    assert client.state.writes_inflight == 1
    assert host.pool(US).shared_conn.sent == []
    _promote_us(host)
    host.hold.release()
    ((data, again),) = host.pool(US).shared_conn.sent
    assert again is slot and data == pack(_SETS[1]) + pack(_SETS[2])
    assert slot.node == str(US.addr)
    assert len(host.pool(PRIMARY).shared_conn.sent) == 1  # nothing more to the old one
    assert not slot.deliver(b"+OK\r\n")
    assert client.out == []
    assert slot.deliver(b"-ERR wrong\r\n")
    assert client.out == [b"+OK\r\n", b"+OK\r\n", b"-ERR wrong\r\n"]
    assert client.state.writes_inflight == 0 and not client.queue


def test_writes_arriving_during_the_wait_go_after_the_rerouted_ones(
    held: tuple[FakeHost, FakeClient, Forwarding],
) -> None:
    host, client, fwd = held
    slot = _write_batch(host, fwd)
    slot.deliver(_READONLY)
    slot.deliver(_READONLY)
    slot.deliver(_READONLY)
    assert host.hold.active
    # While the hold is on: a batch of writes is not forwarded whole, one write waits.
    assert not fwd.batch([[b"SET", b"x", b"1"]], pack([b"SET", b"x", b"1"]), 0.0)
    fwd.write([b"SET", b"x", b"1"], 0.0, CLASS_WRITE)
    assert client.held == [[b"SET", b"x", b"1"]] and client.out == []
    _promote_us(host)
    host.hold.release()
    sent = host.pool(US).shared_conn.sent
    assert [d for d, _ in sent] == [b"".join(pack(c) for c in _SETS), pack([b"SET", b"x", b"1"])]
    assert sent[0][1] is slot and list(client.queue) == [slot, sent[1][1]]


def test_a_readonly_then_an_executed_write_stays_a_plain_error_in_order(
    held: tuple[FakeHost, FakeClient, Forwarding],
) -> None:
    """The node was master again for the 2nd write: sending the 1st later would put it
    after the 2nd; the -READONLY is the client's answer."""
    host, client, fwd = held
    slot = _write_batch(host, fwd)
    assert not slot.deliver(_READONLY)
    assert not slot.deliver(b"+OK\r\n")
    assert slot.deliver(b"+OK\r\n")
    assert client.out == [_READONLY, b"+OK\r\n", b"+OK\r\n"]
    assert not host.hold.active and host.refreshes == 0
    assert all(host.pool(n).shared_conn.sent == [] for n in (US, EU))
    assert len(host.pool(PRIMARY).shared_conn.sent) == 1
    assert not slot.flags & REROUTED
    assert slot.errors == 1  # counted as one error reply


def test_only_the_readonly_tail_after_the_last_executed_write_is_resent(
    held: tuple[FakeHost, FakeClient, Forwarding],
) -> None:
    host, client, fwd = held
    slot = _write_batch(host, fwd)
    slot.deliver(_READONLY)
    slot.deliver(b"+OK\r\n")  # the node was master again: the first stays refused
    assert slot.deliver(_READONLY)
    assert host.hold.active and client.out == []
    _promote_us(host)
    host.hold.release()
    ((data, _),) = host.pool(US).shared_conn.sent
    assert data == pack(_SETS[2])
    slot.deliver(b"+OK\r\n")
    assert client.out == [_READONLY, b"+OK\r\n", b"+OK\r\n"]


def test_a_second_readonly_after_the_resend_is_passed_to_the_client(
    held: tuple[FakeHost, FakeClient, Forwarding],
) -> None:
    host, client, fwd = held
    slot = _write_batch(host, fwd)
    slot.deliver(b"+OK\r\n")
    slot.deliver(_READONLY)
    slot.deliver(_READONLY)
    _promote_us(host)
    host.hold.release()
    assert len(host.pool(US).shared_conn.sent) == 1
    # The new primary refuses too (it was demoted in turn): no second wait.
    assert not slot.deliver(_READONLY)
    assert slot.deliver(_READONLY)
    assert client.out == [b"+OK\r\n", _READONLY, _READONLY]
    assert not host.hold.active and host.refreshes == 1
    assert len(host.pool(US).shared_conn.sent) == 1
    assert client.state.writes_inflight == 0


def test_a_readonly_single_write_waits_too(
    held: tuple[FakeHost, FakeClient, Forwarding],
) -> None:
    host, client, fwd = held
    fwd.write([b"SET", b"k", b"v"], 0.0, CLASS_WRITE)
    ((_, waiter),) = host.pool(PRIMARY).shared_conn.sent
    (slot,) = client.queue
    assert waiter is slot and slot.deliver(_READONLY)
    assert client.out == [] and host.hold.active
    _promote_us(host)
    host.hold.release()
    ((data, again),) = host.pool(US).shared_conn.sent
    assert again is slot and data == pack([b"SET", b"k", b"v"])
    slot.deliver(b"+OK\r\n")
    assert client.out == [b"+OK\r\n"]


def test_rerouted_writes_get_the_no_primary_error_when_none_is_known_at_release(
    held: tuple[FakeHost, FakeClient, Forwarding],
) -> None:
    host, client, fwd = held
    slot = _write_batch(host, fwd)
    for _ in range(3):
        slot.deliver(_READONLY)
    host.topo = snapshot(US, EU, primary=None, error="no primary reachable", version=2)
    host.hold.release()
    refused = b"-ERR georedis: no primary (no primary reachable); writes refused\r\n"
    assert client.out == [refused] * 3
    assert all(host.pool(n).shared_conn.sent == [] for n in (US, EU))


# ---------------------------------------------------------------- transaction


def test_multi_pins_a_primary_connection_until_exec() -> None:
    host, client, _ = _client()
    tx = transaction.begin(client, [b"MULTI"], _info(host, b"MULTI"), 0.0)  # type: ignore[arg-type]
    assert tx is not None and tx.in_multi
    conn = host.pool(PRIMARY).dedicated_conns[0]
    assert tx.takes(_info(host, b"SET", b"k", b"v"))
    assert tx.forward([b"SET", b"k", b"v"], _info(host, b"SET", b"k", b"v"), 0.0)
    assert not tx.forward([b"EXEC"], _info(host, b"EXEC"), 0.0)  # given back
    assert [d for d, _ in conn.sent] == [pack([b"MULTI"]), pack([b"SET", b"k", b"v"]),
                                         pack([b"EXEC"])]  # fmt: skip
    assert host.pool(PRIMARY).released == [(conn, True)]
    assert client.state.writes_inflight == 1  # EXEC counts as a write


def test_refused_command_dooms_the_transaction() -> None:
    host, client, _ = _client()
    tx = transaction.begin(client, [b"MULTI"], _info(host, b"MULTI"), 0.0)  # type: ignore[arg-type]
    assert tx is not None
    assert not tx.takes(_info(host, b"SUBSCRIBE", b"c"))
    tx.refuse(_info(host, b"SUBSCRIBE", b"c"), 0.0)
    assert not tx.forward([b"EXEC"], _info(host, b"EXEC"), 0.0)
    conn = host.pool(PRIMARY).dedicated_conns[0]
    assert conn.sent[-1][0] == pack([b"DISCARD"])
    replies = [b"".join(s.parts) for s in client.queue]
    assert replies[-2:] == [
        b"-ERR georedis: SUBSCRIBE inside MULTI is not supported\r\n",
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    ]


def test_exec_without_multi_and_no_primary() -> None:
    host, client, _ = _client()
    assert transaction.begin(client, [b"EXEC"], _info(host, b"EXEC"), 0.0) is None  # type: ignore[arg-type]
    assert client.out == [b"-ERR EXEC without MULTI\r\n"]
    host, client, _ = _client(primary=None, error="no primary reachable")
    assert transaction.begin(client, [b"MULTI"], _info(host, b"MULTI"), 0.0) is None  # type: ignore[arg-type]
    assert client.out == [b"-ERR georedis: no primary (no primary reachable); writes refused\r\n"]


# ---------------------------------------------------------------- blocking


def test_blocking_command_takes_a_connection_without_deadline() -> None:
    host, client, fwd = _client()
    args = [b"BLPOP", b"q", b"0"]
    b = blocking.start(client, fwd, args, _info(host, *args), 0.0)  # type: ignore[arg-type]
    assert b is not None and b.conn.blocking and b.conn.dedicated
    # CLIENT ID first, in the same write (CLIENT UNBLOCK needs the connection's id).
    (client_id, id_waiter), (_, slot) = b.conn.sent
    assert client_id == pack([b"CLIENT", b"ID"])
    assert id_waiter.deliver(b":42\r\n") and b.backend_id == 42
    assert isinstance(slot, Slot) and slot.flags & (UNPIN | NO_DEADLINE | WRITE) == (
        UNPIN | NO_DEADLINE | WRITE
    )
    b.release()
    assert host.pool(PRIMARY).released == [(b.conn, True)]


def test_non_blocking_use_of_a_blocking_command_is_plain_forwarding() -> None:
    host, client, fwd = _client()
    args = [b"XREAD", b"STREAMS", b"s", b"0"]
    assert blocking.start(client, fwd, args, _info(host, *args), 0.0) is None  # type: ignore[arg-type]
    assert len(host.pool(US).shared_conn.sent) == 1


def test_wait_is_sent_only_after_the_replies_before_it() -> None:
    host, client, fwd = _client()
    fwd.write([b"SET", b"k", b"v"], 0.0, CLASS_WRITE)
    args = [b"WAIT", b"1", b"0"]
    b = blocking.start(client, fwd, args, _info(host, *args), 0.0)  # type: ignore[arg-type]
    assert b is not None
    bump = pack([b"SET", host.wait_key, b"1", b"PX", b"10000"])
    assert [d for d, _ in b.conn.sent] == [bump]  # a write of its own first
    b.send_deferred()  # the SET is still owed: nothing yet
    assert len(b.conn.sent) == 1
    ((_, set_slot),) = host.pool(PRIMARY).shared_conn.sent
    set_slot.deliver(b"+OK\r\n")
    b.send_deferred()
    assert b.conn.sent[-1][0] == pack(args)


# ---------------------------------------------------------------- subscription, scripts


def test_unsubscribe_before_any_subscription_is_answered_here() -> None:
    host, client, fwd = _client()
    assert subscription.start(client, fwd, [b"UNSUBSCRIBE"], 0.0) is None  # type: ignore[arg-type]
    assert client.out and host.pool(US).dedicated_conns == []


def test_subscribe_takes_a_connection_of_its_own_near_the_client() -> None:
    host, client, fwd = _client()
    sub = subscription.start(client, fwd, [b"SUBSCRIBE", b"c"], 0.0)  # type: ignore[arg-type]
    assert sub is not None
    (conn,) = host.pool(US).dedicated_conns
    assert conn.raw == [pack([b"SUBSCRIBE", b"c"])]
    sub.on_push(b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n")
    assert client.out[-1].startswith(b">3")


def test_script_load_is_copied_to_every_replica() -> None:
    host, client, fwd = _client()
    args = [b"SCRIPT", b"LOAD", b"return 1"]
    scripts.copy_to_replicas(client, fwd, args, 0.0)  # type: ignore[arg-type]
    for node in (PRIMARY, US, EU):
        assert [d for d, _ in host.pool(node).shared_conn.sent] == [pack(args)]
    assert host.scripts == [b"return 1"]


def test_kill_goes_to_every_configured_node_and_the_best_answer_wins() -> None:
    host, client, _ = _client()
    scripts.kill_everywhere(client, [b"SCRIPT", b"KILL"], 0.0)  # type: ignore[arg-type]
    waiters = [w for n in (PRIMARY, US, EU) for _, w in host.pool(n).dedicated_conns[0].sent]
    waiters[0].deliver(b"-NOTBUSY No scripts in execution right now.\r\n")
    waiters[1].deliver(b"+OK\r\n")
    waiters[2].fail(BackendUnavailable(EU.addr, "connection lost"))
    assert client.out == [b"+OK\r\n"]


def test_a_write_for_a_new_primary_waits_for_those_in_flight_on_the_old_one(
    held: tuple[FakeHost, FakeClient, Forwarding],
) -> None:
    """Another proxy moved the primary while this client's SET a was in flight on the old
    one (it may come back -READONLY and be sent again): its next write must not overtake
    it, so it waits; once the first is answered it goes, to the new primary."""
    host, client, fwd = held
    fwd.write([b"SET", b"a", b"1"], 0.0, CLASS_WRITE)
    assert client.state.writes_inflight == 1
    _promote_us(host)  # no hold here: the switch was someone else's
    fwd.write([b"SET", b"a", b"2"], 0.0, CLASS_WRITE)
    assert client.held == [[b"SET", b"a", b"2"]]
    assert host.pool(US).shared_conn.sent == []
    # Once it is answered, writes go to the new primary without waiting (and one that
    # follows another to the same primary does not wait for it).
    client.held.clear()
    ((_, first),) = host.pool(PRIMARY).shared_conn.sent
    first.deliver(b"+OK\r\n")
    assert client.state.writes_inflight == 0
    fwd.write([b"SET", b"a", b"2"], 0.0, CLASS_WRITE)
    fwd.write([b"SET", b"b", b"3"], 0.0, CLASS_WRITE)
    assert client.held == [] and len(host.pool(US).shared_conn.sent) == 2


def test_config_set_reply_names_a_replica_that_refused() -> None:
    from config.model import Address
    from proxy.server.configset import _combine

    p, r1, r2 = Address("p", 1), Address("r", 2), Address("s", 3)
    assert _combine([(p, b"+OK\r\n"), (r1, b"+OK\r\n")]) == b"+OK\r\n"
    assert _combine([(p, b"-ERR bad\r\n"), (r1, b"-ERR bad\r\n")]) == b"-ERR bad\r\n"
    partly = _combine([(p, b"+OK\r\n"), (r1, b"+OK\r\n"), (r2, b"-ERR unknown command\r\n")])
    assert partly.startswith(b"-ERR georedis: CONFIG SET done on the primary, not on s:3: ")
    assert partly.endswith(b"ERR unknown command\r\n")
