"""Behaving as Redis does (issue 17): the same commands sent to one redis-server directly
and through a georedis in front of it get the same replies, and leave the same data.

One node, so that a read through the proxy lands where the direct one does: what is
compared is the proxy's handling, not replication timing.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.helpers.proxyrun import ProxyThread, config_from_toml, single_node_toml, wait_for
from tests.helpers.raw import Raw
from tests.helpers.topology import RedisNode, RedisTopology


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisNode]:
    regions = {"ap-southeast-1": 1}
    with RedisTopology.start(regions, tmp=tmp_path_factory.mktemp("one")) as topo:
        yield topo.primary


@pytest.fixture(scope="module")
def through(single: RedisNode) -> Iterator[ProxyThread]:
    toml = single_node_toml(single.port, extra="[policy]\nrefuse = []\n")
    with ProxyThread(config_from_toml(toml)) as p:
        yield p


@pytest.fixture(autouse=True)
def _flushed(single: RedisNode) -> None:
    single.client().flushall()


Script = list[list[str]]


def _run(port: int, script: Script) -> list[object]:
    """Each command sent alone, in order, on one connection: the replies."""
    c = Raw(port)
    try:
        return [c.call(*cmd) for cmd in script]
    finally:
        c.close()


def _pipelined(port: int, script: Script) -> list[object]:
    """The whole script in one write: the replies."""
    c = Raw(port)
    try:
        c.send(*[list[bytes | str](cmd) for cmd in script])
        return c.read(len(script))
    finally:
        c.close()


def _dump(node: RedisNode) -> dict[int, dict[bytes, bytes | None]]:
    """Every string key of every non-empty database (not georedis' own heartbeats)."""
    out: dict[int, dict[bytes, bytes | None]] = {}
    for db in range(16):
        c = node.client(db=db)
        keys = [k for k in c.keys("*") if not k.startswith(b"georedis:")]
        if keys:
            out[db] = {k: c.get(k) for k in keys}
    return out


def _same(single: RedisNode, through: ProxyThread, script: Script, how: object = _run) -> None:
    """`script` gives the same replies and leaves the same data directly and through."""
    assert callable(how)
    direct = how(single.port, script)
    direct_data = _dump(single)
    single.client().flushall()
    proxied = how(through.port, script)
    assert [repr(r) for r in proxied] == [repr(r) for r in direct]
    assert _dump(single) == direct_data


SELECT_SCRIPTS: dict[str, Script] = {
    "while watching": [
        ["WATCH", "w"],
        ["SELECT", "1"],
        ["SET", "where", "watching"],
        ["UNWATCH"],
        ["SET", "after", "1"],
    ],
    "queued in multi": [
        ["MULTI"],
        ["SELECT", "2"],
        ["SET", "where", "queued"],
        ["EXEC"],
        ["SET", "after", "2"],
        ["GET", "where"],
    ],
    "out of range in multi": [
        ["MULTI"],
        ["SELECT", "99"],
        ["SET", "where", "x"],
        ["EXEC"],
        ["SET", "after", "0"],
    ],
    "not integers": [
        ["SELECT", " 2"],
        ["SELECT", "+3"],
        ["SELECT", "01"],
        ["SELECT", "1_0"],
        ["SELECT", "-1"],
        ["SET", "after", "0"],
    ],
    "discarded": [
        ["MULTI"],
        ["SELECT", "3"],
        ["DISCARD"],
        ["SET", "after", "0"],
    ],
    "bad arity while watching": [
        ["WATCH", "w"],
        ["SELECT"],
        ["SELECT", "x"],
        ["SELECT", " 2"],
        ["SELECT", "+3"],
        ["SELECT", "01"],
        ["SELECT", "-1"],
        ["EXEC"],
        ["SET", "after", "0"],
    ],
}


@pytest.mark.parametrize("name", SELECT_SCRIPTS)
def test_select_inside_a_transaction(single: RedisNode, through: ProxyThread, name: str) -> None:
    _same(single, through, SELECT_SCRIPTS[name])
    _same(single, through, SELECT_SCRIPTS[name], _pipelined)


def test_select_in_a_transaction_whose_watch_failed(
    single: RedisNode, through: ProxyThread
) -> None:
    """EXEC answers null and the SELECT queued before it never ran: the client stays in
    its database."""
    for port in (single.port, through.port):
        single.client().flushall()
        c = Raw(port)
        assert c.call("WATCH", "w") == b"OK"
        single.client().set("w", "changed")  # the WATCH fails
        c.send(["MULTI"], ["SELECT", "4"], ["EXEC"])
        assert c.read(3) == [b"OK", b"QUEUED", None]
        assert c.call("SET", "after", "0") == b"OK"
        assert single.client(db=0).get("after") == b"0", port
        assert single.client(db=4).get("after") is None
        c.close()


def test_a_selected_connection_is_not_pooled_under_its_old_database(
    single: RedisNode, through: ProxyThread
) -> None:
    """After a SELECT on a pinned connection, other clients of db 0 still write db 0."""
    _run(through.port, [["MULTI"], ["SELECT", "5"], ["EXEC"]])
    for _ in range(5):
        _run(through.port, [["WATCH", "x"], ["SET", "other", "db0"], ["UNWATCH"]])
        _run(through.port, [["SET", "plain", "db0"]])
    assert single.client(db=0).get("other") == b"db0"
    assert single.client(db=0).get("plain") == b"db0"
    assert single.client(db=5).keys("*") == []


def _fields(line: bytes) -> list[tuple[str, str]]:
    return [tuple(f.split("=", 1)) for f in line.decode().split()]  # type: ignore[misc]


def test_client_info_has_redis_fields_in_redis_order(
    single: RedisNode, through: ProxyThread
) -> None:
    """Redis 7.0's fields, in its order, with the values a client can check (the fd is
    a real one, cmd is this command, qbuf holds it, the db as selected, the count of
    commands queued in a MULTI as another client lists it); georedis' own fields come
    after Redis' last one."""
    infos, listed = [], []
    for port in (single.port, through.port):
        c, watcher = Raw(port), Raw(port)
        c.call("SELECT", "3")
        infos.append(_fields(c.call("CLIENT", "INFO")))  # type: ignore[arg-type]
        c.send(["MULTI"], ["SET", "a", "1"], ["GET", "a"])
        c.read(3)
        text = watcher.call("CLIENT", "LIST")
        assert isinstance(text, bytes)
        rows = [dict(_fields(line)) for line in text.splitlines()]
        listed.append(next(r for r in rows if r["flags"] == "x"))
        c.call("DISCARD")
        c.close()
        watcher.close()
    d, p = infos
    names = [k for k, _ in d]
    assert [k for k, _ in p][: len(names)] == names
    assert [k for k, _ in p][len(names) :] == ["region", "served-by", "lib-name", "lib-ver"]
    same = ("db", "multi", "qbuf", "argv-mem", "flags", "cmd", "user", "resp", "sub", "psub")
    dv, pv = dict(d), dict(p)
    assert {k: pv[k] for k in same} == {k: dv[k] for k in same}
    assert int(pv["fd"]) > 2
    assert pv["region"] == "ap-southeast-1" and pv["served-by"] == f"127.0.0.1:{single.port}"
    assert listed[1]["multi"] == listed[0]["multi"] == "2"


def test_client_list_shows_each_clients_last_command(through: ProxyThread) -> None:
    other = Raw(through.port)
    other.call("GET", "x")
    me = Raw(through.port)
    listed = me.call("CLIENT", "LIST")
    assert isinstance(listed, bytes)
    lines = {dict(_fields(line))["id"]: dict(_fields(line)) for line in listed.splitlines()}
    other_id = str(other.call("CLIENT", "ID"))
    assert lines[other_id]["cmd"] == "get"
    assert lines[other_id]["qbuf"] == "0"
    mine = [v for v in lines.values() if v["cmd"] == "client|list"]
    assert len(mine) == 1
    other.close()
    me.close()


CLIENT_ERRORS: Script = [
    ["CLIENT", "KILL"],
    ["CLIENT", "KILL", "ID"],
    ["CLIENT", "KILL", "ID", "x"],
    ["CLIENT", "KILL", "SKIPME", "maybe"],
    ["CLIENT", "KILL", "TYPE", "bogus"],
    ["CLIENT", "KILL", "1.2.3.4:5"],
    ["CLIENT", "LIST", "bogus"],
    # Integers as Redis' string2ll reads them: no sign `+`, spaces or underscores.
    ["CLIENT", "KILL", "ID", "+1"],
    ["CLIENT", "KILL", "ID", "0"],
    ["CLIENT", "LIST", "ID", "+1"],
    ["CLIENT", "LIST", "ID", "1_0"],
    ["CLIENT", "PAUSE", " 2"],
    ["CLIENT", "PAUSE", "1_0"],
    ["CLIENT", "UNBLOCK", "+1"],
    ["CLIENT", "NOSUCH"],
    ["CLIENT"],
]


def test_client_errors_in_redis_words(single: RedisNode, through: ProxyThread) -> None:
    _same(single, through, CLIENT_ERRORS)


REPLY_MODES: Script = [
    ["CLIENT", "REPLY", "OFF"],
    ["SET", "a", "1"],
    ["GET", "a"],
    ["GET", "nosuch"],
    ["CLIENT", "REPLY", "SKIP"],  # ignored while OFF
    ["INCR", "a"],
    ["CLIENT", "REPLY", "ON"],
    ["GET", "a"],
    ["CLIENT", "REPLY", "SKIP"],
    ["GET", "a"],
    ["SET", "b", "2"],
    ["CLIENT", "REPLY", "SKIP"],
    ["CLIENT", "REPLY", "OFF"],
    ["PING", "still-off"],
    ["CLIENT", "REPLY", "bogus"],
    ["CLIENT", "REPLY", "ON"],
    ["CLIENT", "REPLY", "bogus"],
    ["CLIENT", "REPLY", "OFF"],
    ["RESET"],  # replies on again, its own +RESET too
    ["PING", "end"],
]


def _until_end(port: int, script: Script, pipelined: bool) -> list[object]:
    """Send `script` (in one write, or command by command), then read every reply up to
    the final PING's."""
    c = Raw(port)
    try:
        if pipelined:
            c.send(*[list[bytes | str](cmd) for cmd in script])
        else:
            for cmd in script:
                c.send(list[bytes | str](cmd))
        replies: list[object] = []
        while not replies or replies[-1] != b"end":
            replies += c.read(1)
        return replies
    finally:
        c.close()


@pytest.mark.parametrize("pipelined", [True, False])
def test_client_reply_off_on_skip(single: RedisNode, through: ProxyThread, pipelined: bool) -> None:
    _same(single, through, REPLY_MODES, lambda port, script: _until_end(port, script, pipelined))


def test_monitor_shows_each_clients_commands(single: RedisNode, through: ProxyThread) -> None:
    """MONITOR through georedis: every client's commands in Redis' format, with its own
    address and database (not the shared connection's) and the node each went to; the
    monitor's own commands, admin commands and AUTH's password are not shown, as Redis."""
    mon = Raw(through.port)
    assert mon.call("MONITOR") == b"OK"
    app = Raw(through.port)
    app_addr = next(
        dict(_fields(line))["addr"]
        for line in app.call("CLIENT", "LIST").splitlines()  # type: ignore[union-attr]
        if b"cmd=client|list" in line
    )
    app.call("SELECT", "2")
    app.call("SET", "k", 'say "hi"\n')
    app.call("CONFIG", "GET", "maxmemory")  # admin: not shown
    app.send(["GET", "k"], ["PING"])
    app.read(2)
    lines = [mon.read(1)[0] for _ in range(4)]
    node = f"127.0.0.1:{single.port}"
    assert [bytes(x).split(b" ", 1)[1] for x in lines] == [  # type: ignore[arg-type]
        f'[2 {app_addr}] "SELECT" "2" node=georedis'.encode(),  # (after it ran, as Redis)
        f'[2 {app_addr}] "SET" "k" "say \\"hi\\"\\n" node={node}'.encode(),
        f'[2 {app_addr}] "GET" "k" node={node}'.encode(),
        f'[2 {app_addr}] "PING" node=georedis'.encode(),
    ]
    assert all(float(bytes(x).split(b" ")[0]) > 1.7e9 for x in lines)  # type: ignore[arg-type]
    # Once RESET, the monitor is a plain client again, and the others' path is plain.
    assert mon.call("RESET") == b"RESET"
    app.call("SET", "after", "1")
    assert mon.call("PING") == b"PONG"
    assert through.app is not None and not through.app.monitors.watchers
    mon.close()
    app.close()


def test_monitor_redacts_auth(through: ProxyThread) -> None:
    mon = Raw(through.port)
    mon.call("MONITOR")
    other = Raw(through.port)
    other.call("AUTH", "someone", "secret-password")
    other.call("HELLO", "2", "AUTH", "someone", "secret-password")
    got = b" ".join(bytes(mon.read(1)[0]) for _ in range(2))  # type: ignore[arg-type]
    assert b"secret-password" not in got and got.count(b"(redacted)") == 4, got


def test_a_monitor_that_does_not_read_is_disconnected(single: RedisNode) -> None:
    """A monitor's output is bounded (the pub/sub hard limit): one that stops reading is
    closed, and the clients it watched are served on."""
    limit = '[proxy]\nclient_output_buffer_limit_pubsub = "1mb 1mb 0"\n'
    toml = single_node_toml(single.port).replace("[proxy]\n", limit, 1)
    with ProxyThread(config_from_toml(toml)) as p:
        mon = Raw(p.port)
        mon.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        assert mon.call("MONITOR") == b"OK"
        app = Raw(p.port)
        value = "v" * 65536
        for i in range(200):  # ~13 MB of lines for the monitor
            assert app.call("SET", f"k{i}", value) == b"OK"
        assert p.app is not None
        wait_for(lambda: not p.app.monitors.watchers, 5, "the monitor dropped")  # type: ignore[union-attr]
        assert app.call("PING") == b"PONG"
