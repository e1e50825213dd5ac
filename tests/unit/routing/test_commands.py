"""Unit tests for routing.commands: the command table built from a real COMMAND reply.

`data/command_reply.json` is redis-server 7.0's `COMMAND` reply as the proxy's probe
reads it (RESP2 through hiredis: lists of bytes and ints), stored with bytes as strings.
It was dumped once from a throwaway redis-server; these tests open no sockets.
"""

from __future__ import annotations

import pytest

from routing.commands import (
    REFUSED_COMMANDS,
    CommandInfo,
    CommandTable,
    Kind,
    classify,
    is_blocking_call,
    refusal,
)
from tests.helpers.commands import command_reply


@pytest.fixture(scope="module")
def reply() -> list[object]:
    return command_reply()


@pytest.fixture(scope="module")
def table(reply: list[object]) -> CommandTable:
    return CommandTable.from_command_reply(reply)


def kind(table: CommandTable, *args: bytes) -> Kind:
    return table.lookup(list(args)).kind


def test_fixture_is_a_full_command_reply(reply: list[object], table: CommandTable) -> None:
    assert len(reply) > 200
    assert len(table) >= len(reply)
    assert table.has("get") and table.has("xreadgroup") and table.has("proxy")


@pytest.mark.parametrize("name", [b"get", b"mget", b"exists", b"ttl", b"xrange", b"sort_ro"])
def test_reads(table: CommandTable, name: bytes) -> None:
    assert kind(table, name, b"k") == Kind.READ


@pytest.mark.parametrize("name", [b"set", b"incr", b"del", b"sort", b"georadius"])
def test_writes(table: CommandTable, name: bytes) -> None:
    assert kind(table, name, b"k") == Kind.WRITE


def test_pubsub_and_config_set_have_kinds_of_their_own(table: CommandTable) -> None:
    """PUBLISH's count, PUBSUB's merge and CONFIG SET's broadcast need their own path;
    the container PUBSUB hands each subcommand to it, CONFIG GET stays masked."""
    assert kind(table, b"PUBLISH", b"ch", b"m") == Kind.PUBSUB
    assert kind(table, b"spublish", b"ch", b"m") == Kind.PUBSUB
    assert kind(table, b"PUBSUB", b"NUMSUB", b"ch") == Kind.PUBSUB
    assert kind(table, b"config", b"SET", b"a", b"b") == Kind.CONFIG_SET
    assert kind(table, b"config", b"GET", b"a") == Kind.MASKED


@pytest.mark.parametrize(
    ("name", "readonly"),
    [(b"eval", False), (b"evalsha", False), (b"fcall", False),
     (b"eval_ro", True), (b"evalsha_ro", True), (b"fcall_ro", True)],
)  # fmt: skip
def test_scripts_have_a_kind_of_their_own(table: CommandTable, name: bytes, readonly: bool) -> None:
    """Scripts run under their own deadline; the read or write path still follows the
    backend's flags (EVAL_RO on a replica)."""
    info = table.lookup([name, b"x", b"0"])
    assert info.kind == Kind.RUN_SCRIPT
    assert ("readonly" in info.flags) is readonly


SCANS = [(b"scan", (b"0",)), (b"SSCAN", (b"s", b"0")), (b"hscan", (b"h", b"0")),
         (b"ZScan", (b"z", b"0"))]  # fmt: skip


@pytest.mark.parametrize(("name", "args"), SCANS)
def test_scans_have_a_kind_of_their_own(
    table: CommandTable, name: bytes, args: tuple[bytes, ...]
) -> None:
    """Their cursors continue on the node that issued them (routing.cursors): not the
    plain read path, which must not pay a test for them. Still readonly by Redis' flags."""
    info = table.lookup([name, *args])
    assert info.kind == Kind.SCAN and "readonly" in info.flags


def test_the_policy_and_the_boot_table_still_hold_for_scans(reply: list[object]) -> None:
    refused = CommandTable.from_command_reply(reply, frozenset({"scan"}))
    assert kind(refused, b"SCAN", b"0") == Kind.REFUSED
    assert kind(refused, b"SSCAN", b"s", b"0") == Kind.SCAN
    # Before the COMMAND reply everything goes to the primary; its raw cursors then
    # continue there (routing.cursors.PRIMARY).
    assert kind(CommandTable(), b"scan", b"0") == Kind.WRITE


@pytest.mark.parametrize("name", [b"multi", b"exec", b"discard", b"watch", b"unwatch"])
def test_transactions(table: CommandTable, name: bytes) -> None:
    assert kind(table, name) == Kind.TX


@pytest.mark.parametrize(
    "name", [b"blpop", b"brpop", b"blmove", b"bzpopmin", b"bzmpop", b"brpoplpush", b"wait"]
)
def test_blocking(table: CommandTable, name: bytes) -> None:
    info = table.lookup([name, b"k", b"0"])
    assert info.kind == Kind.BLOCKING
    assert not is_blocking_call(info, [name, b"k", b"0"])  # always blocking: by kind alone


def test_xread_is_blocking_kind_and_blocks_only_with_block(table: CommandTable) -> None:
    # How XREAD/XREADGROUP are classified: Kind.BLOCKING, whatever their flags say (XREAD
    # is `readonly`, XREADGROUP `write`); the session then pins only a call that carries
    # BLOCK (`is_blocking_call`) and sends any other by its flags, read or write.
    xread = [b"XREAD", b"COUNT", b"1", b"STREAMS", b"s", b"0"]
    xread_block = [b"XREAD", b"BLOCK", b"0", b"STREAMS", b"s", b"$"]
    info = table.lookup(xread)
    assert info.kind == Kind.BLOCKING and info.name == "xread"
    assert "readonly" in info.flags
    assert not is_blocking_call(info, xread)
    assert is_blocking_call(info, xread_block)
    assert is_blocking_call(table.lookup(xread_block), [b"xread", b"block", b"0", b"streams"])
    group = [b"XREADGROUP", b"GROUP", b"g", b"c", b"BLOCK", b"100", b"STREAMS", b"s", b">"]
    ginfo = table.lookup(group)
    assert ginfo.kind == Kind.BLOCKING and "write" in ginfo.flags
    assert is_blocking_call(ginfo, group)
    assert not is_blocking_call(ginfo, [b"XREADGROUP", b"GROUP", b"g", b"c", b"STREAMS"])


@pytest.mark.parametrize(
    "name",
    [b"subscribe", b"psubscribe", b"ssubscribe", b"unsubscribe", b"punsubscribe", b"sunsubscribe"],
)
def test_subscribe_family(table: CommandTable, name: bytes) -> None:
    assert kind(table, name, b"ch") == Kind.SUBSCRIBE


@pytest.mark.parametrize(
    "args",
    [[b"ping"], [b"echo", b"x"], [b"client", b"list"], [b"client", b"setname", b"n"],
     [b"hello", b"3"], [b"select", b"1"], [b"auth", b"pw"], [b"quit"], [b"reset"]],
)  # fmt: skip
def test_local(table: CommandTable, args: list[bytes]) -> None:
    info = table.lookup(args)
    assert info.kind == Kind.LOCAL
    assert info.name == args[0].decode()  # CLIENT's subcommands stay with CLIENT


@pytest.mark.parametrize(
    "args",
    [[b"shutdown"], [b"replicaof", b"h", b"1"], [b"slaveof", b"no", b"one"],
     [b"sync"], [b"psync", b"?", b"-1"], [b"failover"]],
)  # fmt: skip
def test_refused(table: CommandTable, args: list[bytes]) -> None:
    info = table.lookup(args)
    assert info.kind == Kind.REFUSED
    assert info.name in REFUSED_COMMANDS  # the session words its error from this


def test_script_subcommands(table: CommandTable) -> None:
    assert kind(table, b"script", b"load", b"return 1") == Kind.SCRIPT
    assert kind(table, b"SCRIPT", b"FLUSH") == Kind.SCRIPT
    assert kind(table, b"script", b"exists", b"abc") == Kind.WRITE
    assert kind(table, b"script", b"kill") == Kind.KILL
    assert kind(table, b"FUNCTION", b"KILL") == Kind.KILL
    assert table.lookup([b"script", b"LOAD", b"x"]).name == "script|load"


def test_container_subcommands(table: CommandTable) -> None:
    assert kind(table, b"config", b"get", b"maxmemory") == Kind.MASKED  # secrets hidden
    assert kind(table, b"config", b"set", b"x", b"y") == Kind.CONFIG_SET
    assert kind(table, b"object", b"encoding", b"k") == Kind.READ
    assert kind(table, b"OBJECT", b"FREQ", b"k") == Kind.READ
    info = table.lookup([b"object", b"encoding", b"k"])
    assert info.name == "object|encoding"
    assert (info.first_key, info.last_key, info.key_step) == (2, 2, 1)
    # An unknown subcommand and a bare container: the container's own entry.
    assert table.lookup([b"object", b"nosuch"]).name == "object"
    assert table.lookup([b"config"]).kind == Kind.WRITE


def test_admin(table: CommandTable) -> None:
    assert kind(table, b"PROXY", b"STATUS") == Kind.ADMIN


def test_unknown_command_goes_to_the_primary(table: CommandTable) -> None:
    info = table.lookup([b"NOSUCHCOMMAND", b"x"])
    assert info.kind == Kind.WRITE


def test_case_insensitive(table: CommandTable) -> None:
    for spelling in (b"GeT", b"GET", b"get", b"gEt"):
        info = table.lookup([spelling, b"k"])
        assert info.kind == Kind.READ and info.name == "get"
        assert info is table.lookup([b"get", b"k"])
    assert kind(table, b"Config", b"GeT", b"x") == Kind.MASKED
    assert table.lookup([b"Config", b"GeT", b"x"]).name == "config|get"


def test_key_positions_and_arity(table: CommandTable) -> None:
    get = table.lookup([b"get", b"k"])
    assert (get.arity, get.first_key, get.last_key, get.key_step) == (2, 1, 1, 1)
    assert {"readonly", "fast"} <= get.flags
    mset = table.lookup([b"mset", b"a", b"1"])
    assert (mset.arity, mset.first_key, mset.last_key, mset.key_step) == (-3, 1, -1, 2)
    assert repr(get) == "CommandInfo('get', READ)"


def test_resp3_shaped_reply_reads_the_same(reply: list[object]) -> None:
    # Through RESP3, flags come as sets (hiredis: lists or sets) and names may be text.
    def to_resp3(entry: object) -> object:
        assert isinstance(entry, list)
        out = list(entry)
        out[0] = out[0].decode() if isinstance(out[0], bytes) else out[0]
        out[2] = set(out[2]) if isinstance(out[2], list) else out[2]
        if len(out) > 9 and isinstance(out[9], list):
            out[9] = [to_resp3(s) for s in out[9]]
        return out

    t3 = CommandTable.from_command_reply([to_resp3(e) for e in reply])
    t2 = CommandTable.from_command_reply(reply)
    for args in ([b"get"], [b"set"], [b"object", b"encoding"], [b"script", b"load"], [b"xread"]):
        assert t3.lookup(args).kind == t2.lookup(args).kind
        assert t3.lookup(args).flags == t2.lookup(args).flags


def test_table_before_command_reply() -> None:
    # No COMMAND reply yet: everything goes to the primary, except the fixed rules.
    boot = CommandTable()
    assert kind(boot, b"get", b"k") == Kind.WRITE
    assert kind(boot, b"GET", b"k") == Kind.WRITE
    assert kind(boot, b"ping") == Kind.LOCAL
    assert kind(boot, b"MULTI") == Kind.TX
    assert kind(boot, b"subscribe", b"c") == Kind.SUBSCRIBE
    assert kind(boot, b"monitor") == Kind.MONITOR
    assert kind(boot, b"proxy", b"status") == Kind.ADMIN


def test_classify_rules() -> None:
    ro = frozenset({"readonly"})
    assert classify("anything", ro) == Kind.READ
    assert classify("anything", frozenset({"readonly", "write"})) == Kind.WRITE
    assert classify("anything", frozenset()) == Kind.WRITE
    assert classify("ping", ro) == Kind.LOCAL  # names beat flags
    assert classify("xread", ro) == Kind.BLOCKING
    assert classify("script|load", frozenset()) == Kind.SCRIPT
    assert classify("script|exists", frozenset()) == Kind.WRITE


def test_base_entries_win_over_defaults() -> None:
    custom = CommandInfo("get", Kind.READ, flags=frozenset({"readonly"}))
    t = CommandTable({"get": custom})
    assert t.lookup([b"GET"]) is custom
    assert not is_blocking_call(custom, [b"GET", b"BLOCK"])  # only XREAD/XREADGROUP


def test_policy_refuses_commands_and_subcommands(reply: list[object]) -> None:
    refuse = frozenset({"flushall", "config|set", "keys"})
    t = CommandTable.from_command_reply(reply, refuse)
    assert t.lookup([b"FLUSHALL"]).kind == Kind.REFUSED
    assert t.lookup([b"config", b"SET", b"x", b"y"]).kind == Kind.REFUSED
    assert t.lookup([b"KEYS", b"*"]).kind == Kind.REFUSED
    assert t.lookup([b"CONFIG", b"GET", b"x"]).kind == Kind.MASKED
    assert t.lookup([b"CONFIG", b"HELP"]).kind == Kind.WRITE  # the rest as before
    assert t.lookup([b"FLUSHDB"]).kind == Kind.WRITE  # not in this policy
    # Without a policy nothing of these is refused, but CONFIG GET is still masked.
    free = CommandTable.from_command_reply(reply)
    assert free.lookup([b"FLUSHALL"]).kind == Kind.WRITE
    assert free.lookup([b"CONFIG", b"GET", b"x"]).kind == Kind.MASKED


def test_acl_is_never_forwarded(table: CommandTable) -> None:
    for sub in (b"WHOAMI", b"LIST", b"USERS", b"GETUSER", b"CAT", b"LOG", b"GENPASS",
                b"DELUSER"):  # fmt: skip
        assert table.lookup([b"ACL", sub]).kind == Kind.LOCAL
    for sub in (b"SETUSER", b"SAVE", b"LOAD", b"DRYRUN"):
        assert table.lookup([b"ACL", sub]).kind == Kind.REFUSED


def test_policy_holds_before_the_first_command_reply() -> None:
    boot = CommandTable(refuse=frozenset({"flushall", "config|set"}))
    assert boot.lookup([b"FLUSHALL"]).kind == Kind.REFUSED
    assert boot.lookup([b"CONFIG", b"SET", b"a", b"b"]).kind == Kind.REFUSED
    assert boot.lookup([b"CONFIG", b"GET", b"a"]).kind == Kind.MASKED
    assert boot.lookup([b"ACL", b"SETUSER", b"x"]).kind == Kind.REFUSED
    assert boot.lookup([b"GET", b"k"]).kind == Kind.WRITE  # unknown yet: the primary


def test_refusal_says_why() -> None:
    refuse = frozenset({"flushall", "config|set"})
    assert refusal("flushall", refuse) == (
        "FLUSHALL is refused by the command policy ([policy] refuse)"
    )
    assert refusal("config|set", refuse).startswith("CONFIG SET is refused")
    assert "not managed through georedis" in refusal("acl|setuser", frozenset())
    assert refusal("shutdown", refuse) == REFUSED_COMMANDS["shutdown"]


def test_a_batch_repeats_one_command_only_when_one_entry_stands_for_all() -> None:
    from tests.helpers.commands import command_table

    table = command_table()

    def repeats(*cmds: list[bytes]) -> bool:
        return table.repeats(list(cmds), table.lookup(cmds[0]))

    assert repeats([b"GET", b"a"], [b"GET", b"b"], [b"GET", b"c"])
    assert not repeats([b"GET", b"a"])  # a lone command is not a run
    assert not repeats([b"GET", b"a"], [b"get", b"b"])  # byte for byte, not by entry
    assert not repeats([b"GET", b"a"], [b"SET", b"b", b"v"])
    # A container's subcommands may differ under one name.
    assert not repeats([b"CONFIG", b"GET", b"x"], [b"CONFIG", b"SET", b"x", b"1"])
    assert not repeats([b"CONFIG", b"GET", b"x"], [b"CONFIG", b"GET", b"y"])
