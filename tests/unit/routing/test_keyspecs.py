"""Unit tests for routing.keyspecs: key positions and usage from Redis 7.0's key specs.

The specs are redis-server 7.0's own (`data/command_reply.json`, as hiredis gives them:
bytes and ints). No sockets.
"""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.keyspecs import (
    KEYS_UNKNOWN,
    READ,
    WRITE,
    KeySpec,
    keys_of,
    parse_key_specs,
)
from tests.helpers.commands import command_reply

RW = READ | WRITE


def _walk(entries: list[object]) -> list[list[object]]:
    """Every command and subcommand entry of the reply."""
    out: list[list[object]] = []
    for entry in entries:
        assert isinstance(entry, list)
        out.append(entry)
        if len(entry) > 9 and isinstance(entry[9], list):
            out.extend(_walk(entry[9]))
    return out


@functools.cache
def _entries() -> dict[str, list[object]]:
    out = {}
    for e in _walk(command_reply()):
        assert isinstance(e[0], bytes)
        out[e[0].decode()] = e
    return out


@functools.cache
def _specs() -> dict[str, tuple[KeySpec, ...]]:
    return {name: parse_key_specs(e[8]) for name, e in _entries().items()}


def keys(name: str, *args: str | bytes) -> list[tuple[bytes, int]] | None:
    """keys_of for `name` (a subcommand as "object|encoding") over these arguments."""
    raw = [a.encode() if isinstance(a, str) else a for a in args]
    return keys_of(_specs()[name], raw)


def test_every_command_parses() -> None:
    assert len(_specs()) > 300
    unknown = sorted(n for n, s in _specs().items() if any(not k.known for k in s))
    # 7.0 marks MIGRATE's KEYS spec incomplete and SORT's BY/GET/STORE unknown.
    assert unknown == ["migrate", "sort", "sort_ro"]


def test_plain_commands() -> None:
    assert keys("set", "SET", "k", "v") == [(b"k", RW)]  # variable_flags: the worst case
    assert keys("get", "GET", "k") == [(b"k", READ)]
    assert keys("del", "DEL", "a", "b") == [(b"a", WRITE), (b"b", WRITE)]  # RM delete
    assert keys("exists", "EXISTS", "a") == [(b"a", READ)]  # RO alone
    assert keys("lpush", "LPUSH", "l", "x") == [(b"l", RW)]  # RW insert
    assert keys("ping", "PING") == []
    assert keys("ping", "PING", "hello") == []


def test_step_and_ranges_from_the_end() -> None:
    assert keys("mset", "MSET", "a", "1", "b", "2") == [(b"a", WRITE), (b"b", WRITE)]
    assert keys("blpop", "BLPOP", "a", "b", "0") == [(b"a", RW), (b"b", RW)]
    assert keys("bitop", "BITOP", "AND", "d", "a", "b") == [
        (b"d", WRITE),
        (b"a", READ),
        (b"b", READ),
    ]
    assert keys("rename", "RENAME", "a", "b") == [(b"a", RW), (b"b", WRITE)]
    # PFMERGE's sources are optional: an empty range is no keys, not "unknown".
    assert keys("pfmerge", "PFMERGE", "d") == [(b"d", RW)]


def test_too_few_arguments_never_raise() -> None:
    assert keys("get", "GET") == []
    assert keys("rename", "RENAME") == []
    assert keys("rename", "RENAME", "a") == [(b"a", RW)]
    assert keys("mset", "MSET") == []
    assert keys("eval", "EVAL") is None
    assert keys("eval", "EVAL", "s") is None
    assert keys("xread", "XREAD") == []
    assert keys_of(_specs()["get"], []) == []


def test_subcommand_indices_count_from_the_container() -> None:
    assert keys("object|encoding", "OBJECT", "ENCODING", "k") == [(b"k", READ)]
    assert keys("xinfo|stream", "XINFO", "STREAM", "s") == [(b"s", READ)]


@pytest.mark.parametrize("name", ["eval", "evalsha", "fcall"])
def test_scripts_keys_by_numkeys(name: str) -> None:
    assert keys(name, name, "s", "0") == []
    assert keys(name, name, "s", "0", "arg") == []
    assert keys(name, name, "s", "2", "a", "b", "arg") == [(b"a", RW), (b"b", RW)]
    assert keys(name + "_ro", name, "s", "1", "a") == [(b"a", READ)]


@pytest.mark.parametrize(
    "numkeys", ["-1", "3", "x", "", " 1", "+1", "1 ", "0_1", "1.0", "9" * 19, "٣"]
)
def test_bad_numkeys_is_unknown(numkeys: str) -> None:
    """Not a count Redis reads the same way (or more keys than arguments): unknown."""
    assert keys("eval", "EVAL", "s", numkeys, "a", "b") is None
    assert keys("zunionstore", "ZUNIONSTORE", "d", numkeys, "a", "b") is None


def test_numkeys_commands() -> None:
    assert keys("zunionstore", "ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2") == [
        (b"d", WRITE),
        (b"a", READ),
        (b"b", READ),
    ]
    assert keys("lmpop", "LMPOP", "2", "a", "b", "LEFT") == [(b"a", RW), (b"b", RW)]
    assert keys("zdiffstore", "ZDIFFSTORE", "d", "1", "a") == [(b"d", WRITE), (b"a", READ)]


def test_xread_streams() -> None:
    args = ("XREAD", "COUNT", "1", "STREAMS", "s1", "s2", "0", "0")
    assert keys("xread", *args) == [(b"s1", READ), (b"s2", READ)]
    assert keys("xread", "xread", "block", "0", "streams", "s", "$") == [(b"s", READ)]
    assert keys("xread", "XREAD", "COUNT", "1") == []  # no STREAMS: no keys
    assert keys("xread", "XREAD", "STREAMS", "s") == []  # unbalanced: Redis refuses it


def test_xreadgroup() -> None:
    args: tuple[str, ...] = (
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "COUNT",
        "1",
        "STREAMS",
        "s1",
        "s2",
        ">",
        ">",
    )
    # 7.0 flags XREADGROUP's streams RO (though it moves the group's cursor).
    assert keys("xreadgroup", *args) == [(b"s1", READ), (b"s2", READ)]
    # GROUP need not come first; a group named STREAMS then sits where the spec's
    # search starts. Redis's spec walk stops there (keys c, STREAMS); the stream the
    # command reads is "secret", so every STREAMS is followed.
    args = ("XREADGROUP", "COUNT", "1", "GROUP", "STREAMS", "c", "STREAMS", "secret", "0")
    found = keys("xreadgroup", *args)
    assert found is not None and (b"secret", READ) in found


def test_georadius_store() -> None:
    assert keys("georadius", "GEORADIUS", "k", "0", "0", "1", "km") == [(b"k", READ)]
    args: tuple[str, ...] = ("GEORADIUS", "k", "0", "0", "1", "km", "COUNT", "5", "STORE", "d")
    assert keys("georadius", *args) == [(b"k", READ), (b"d", WRITE)]
    args = ("GEORADIUS", "k", "0", "0", "1", "km", "STOREDIST", "d")
    assert keys("georadius", *args) == [(b"k", READ), (b"d", WRITE)]
    # Its parser takes the last STORE; the spec walk alone would stop at the first.
    args = ("GEORADIUS", "k", "0", "0", "1", "km", "STORE", "a", "store", "b")
    assert keys("georadius", *args) == [(b"k", READ), (b"a", WRITE), (b"b", WRITE)]
    args = ("GEORADIUSBYMEMBER", "k", "m", "1", "km", "STORE", "d")
    assert keys("georadiusbymember", *args) == [(b"k", READ), (b"d", WRITE)]
    # A trailing keyword has no key after it (Redis does not look at the last argument).
    assert keys("georadius", "GEORADIUS", "k", "0", "0", "1", "km", "STORE") == [(b"k", READ)]


def test_migrate_and_sort_are_unknown_in_7_0() -> None:
    assert keys("migrate", "MIGRATE", "h", "6379", "", "0", "5000", "KEYS", "a", "b") is None
    assert keys("migrate", "MIGRATE", "h", "6379", "k", "0", "5000") is None
    assert keys("sort", "SORT", "k") is None
    assert keys("sort", "SORT", "k", "STORE", "d") is None
    assert keys("sort_ro", "SORT_RO", "k") is None


def test_migrate_without_incomplete_searches_backwards() -> None:
    """The same specs minus `incomplete`: KEYS is found from the end (startfrom -2)."""
    raw = _entries()["migrate"][8]
    assert isinstance(raw, list)
    fixed = [[b"flags", [f for f in s[1] if f != b"incomplete"], *s[2:]] for s in raw]
    specs = parse_key_specs(fixed)
    args = [b"MIGRATE", b"h", b"6379", b"", b"0", b"5000", b"KEYS", b"a", b"b"]
    assert keys_of(specs, args) == [(b"", RW), (b"a", RW), (b"b", RW)]
    assert keys_of(specs, [b"MIGRATE", b"h", b"6379", b"k", b"0", b"5000"]) == [(b"k", RW)]


def test_not_key_specs() -> None:
    assert keys("spublish", "SPUBLISH", "ch", "msg") == []
    specs = _specs()["ssubscribe"]
    assert keys_of(specs, [b"SSUBSCRIBE", b"a", b"b"], include_not_keys=True) == [
        (b"a", 0),
        (b"b", 0),
    ]


def test_str_input_and_resp3_maps() -> None:
    spec = {
        "flags": {"RO", "access"},
        "begin_search": {"type": "index", "spec": {"index": 1}},
        "find_keys": {"type": "range", "spec": {"lastkey": 0, "keystep": 1, "limit": 0}},
    }
    assert keys_of(parse_key_specs([spec]), [b"GET", b"k"]) == [(b"k", READ)]
    flat = [
        "flags", ["OW"],
        "begin_search", ["type", "keyword", "spec", ["keyword", "TO", "startfrom", 1]],
        "find_keys", ["type", "range", "spec", ["lastkey", 0, "keystep", 1, "limit", 0]],
    ]  # fmt: skip
    assert keys_of(parse_key_specs([flat]), [b"X", b"a", b"to", b"k"]) == [(b"k", WRITE)]


def test_flags_to_access() -> None:
    def access(*flags: str) -> int:
        spec = [
            b"flags", [f.encode() for f in flags],
            b"begin_search", [b"type", b"index", b"spec", [b"index", 1]],
            b"find_keys", [b"type", b"range", b"spec", [b"lastkey", 0, b"keystep", 1, b"limit", 0]],
        ]  # fmt: skip
        (found,) = parse_key_specs([spec])
        return found.access

    assert access("RO") == READ
    assert access("RO", "access") == READ
    assert access("RW", "access", "update") == RW
    assert access("OW", "update") == WRITE
    assert access("RM", "delete") == WRITE
    assert access("access") == READ
    assert access("insert") == WRITE
    assert access() == RW
    assert access("RO", "variable_flags") == RW


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"junk",
        [b"junk"],
        [[b"flags"]],
        [[b"flags", b"RO"]],
        [[b"flags", [b"RO"], b"begin_search", [b"type", b"index", b"spec", [b"index", b"1"]]]],
        [[b"flags", [b"RO"], b"begin_search", [b"type", b"index", b"spec", [b"index", 1]],
          b"find_keys", [b"type", b"range", b"spec", [b"lastkey", 0, b"keystep", 0, b"limit", 0]]]],
        [[b"flags", [b"RO"], b"begin_search", [b"type", b"index", b"spec", [b"index", 1]],
          b"find_keys", [b"type", b"range", b"spec", [b"lastkey", -2, b"keystep", 1,
                                                      b"limit", 2]]]],
        [[b"flags", [b"RO"], b"begin_search", [b"type", b"index", b"spec", [b"index", True]],
          b"find_keys", [b"type", b"range", b"spec", [b"lastkey", 0, b"keystep", 1, b"limit", 0]]]],
        [[b"flags", [b"RO"], b"begin_search", [b"type", b"newtype", b"spec", []],
          b"find_keys", [b"type", b"range", b"spec", [b"lastkey", 0, b"keystep", 1, b"limit", 0]]]],
        [[b"flags", [b"RO"], b"begin_search", [b"type", b"index", b"spec", [b"index", 1]],
          b"find_keys", [b"type", b"keynum", b"spec", [b"keynumidx", 0]]]],
    ],
)  # fmt: skip
def test_malformed_specs_mean_keys_unknown(raw: object) -> None:
    assert keys_of(parse_key_specs(raw), [b"CMD", b"a", b"b", b"c"]) is None


def test_keys_unknown_constant() -> None:
    assert keys_of(KEYS_UNKNOWN, [b"MODCMD", b"a"]) is None


def test_keynum_keystep_counts_keys() -> None:
    """keystep > 1 (none in 7.0, possible for a module): numkeys keys, keystep apart."""
    spec = [
        b"flags", [b"RW"],
        b"begin_search", [b"type", b"index", b"spec", [b"index", 1]],
        b"find_keys", [b"type", b"keynum", b"spec", [b"keynumidx", 0, b"firstkey", 1,
                                                     b"keystep", 2]],
    ]  # fmt: skip
    specs = parse_key_specs([spec])
    assert keys_of(specs, [b"C", b"2", b"k1", b"v1", b"k2", b"v2"]) == [(b"k1", RW), (b"k2", RW)]
    assert keys_of(specs, [b"C", b"2", b"k1", b"v1"]) is None


@pytest.mark.parametrize("name", sorted(_entries()))
def test_agrees_with_the_legacy_range(name: str) -> None:
    """For commands without movable keys the legacy (first, last, step) of the same
    reply must name the same argument positions as the specs."""
    entry = _entries()[name]
    arity, flags, first, last, step = entry[1], entry[2], entry[3], entry[4], entry[5]
    assert isinstance(arity, int) and isinstance(flags, list)
    assert isinstance(first, int) and isinstance(last, int) and isinstance(step, int)
    if b"movablekeys" in flags or first == 0:
        return
    argc = arity if arity > 0 else -arity + 4
    args = [name.split("|")[0].encode(), *(b"a%d" % i for i in range(1, argc))]
    if "|" in name:
        args[1] = name.split("|")[1].encode()
    found = keys_of(_specs()[name], args, include_not_keys=True)
    assert found is not None
    end = last if last >= 0 else argc + last
    assert sorted({args.index(k) for k, _ in found}) == list(range(first, end + 1, step))


_WORDS = [
    b"STREAMS", b"streams", b"STORE", b"STOREDIST", b"KEYS", b"GROUP", b"BY", b"GET",
    b"0", b"1", b"2", b"3", b"-1", b"-2", b"10", b"99999999999999999999", b"", b"k", b"$",
]  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(
    name=st.sampled_from(sorted(_entries())),
    rest=st.lists(st.one_of(st.sampled_from(_WORDS), st.binary(max_size=4)), max_size=14),
)
def test_any_arguments_never_raise(name: str, rest: list[bytes]) -> None:
    args = [name.encode(), *rest]
    if "|" in name:
        args = [*name.encode().split(b"|"), *rest]
    found = keys_of(_specs()[name], args)
    if found is None:
        return
    for key, access in found:
        assert any(key is a for a in args[1:])
        assert access in (READ, WRITE, READ | WRITE)


def test_one_key_index_is_the_single_fixed_key_of_a_command() -> None:
    """The one argument that is a command's whole key check (ACL) and slot (cluster)."""
    from routing.keyspecs import one_key_index
    from tests.helpers.commands import command_table

    table = command_table()

    def index(*args: bytes) -> int | None:
        return one_key_index(table.lookup(list(args)).key_specs)

    assert index(b"GET", b"k") == 1
    assert index(b"SET", b"k", b"v") == 1
    assert index(b"LPUSH", b"k", b"v") == 1
    assert index(b"MGET", b"a", b"b") is None  # a range of keys
    assert index(b"RENAME", b"a", b"b") is None  # two specs
    assert index(b"EVAL", b"s", b"1", b"k") is None  # numkeys
    assert index(b"PING") is None  # no key
    assert index(b"SPUBLISH", b"c", b"m") is None  # a shard channel, not a key
