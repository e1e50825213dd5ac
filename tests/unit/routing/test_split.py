"""Unit tests for routing.split: multi-key commands split per slot, replies merged in order.

Parts' replies are raw RESP bytes, as the backend sends them; slots are Redis' (`foo` and
`{foo}...` are in 12182, `bar` in 5061). Command key positions come from redis-server
7.0's own COMMAND reply (tests/helpers/commands.py). No sockets.
"""

from __future__ import annotations

import pytest

from routing.split import (
    CROSSSLOT,
    UNKNOWN_KEYS,
    Part,
    crossslot_error,
    same_slot,
    slot_of_command,
    split_command,
)
from tests.helpers.commands import command_table

FOO, BAR = 12182, 5061


def args(*words: str) -> list[bytes]:
    return [w.encode() for w in words]


def test_mget_across_slots_is_split_and_merged_in_key_order() -> None:
    split = split_command(args("MGET", "foo", "bar", "{foo}x", "{bar}y", "{bar}z"))
    assert split is not None
    assert split.parts == (
        Part(FOO, args("MGET", "foo", "{foo}x"), (0, 2)),
        Part(BAR, args("MGET", "bar", "{bar}y", "{bar}z"), (1, 3, 4)),
    )
    merged = split.merge(
        [b"*2\r\n$1\r\nA\r\n$-1\r\n", b"*3\r\n$1\r\nB\r\n$0\r\n\r\n$4\r\nE\r\nE\r\n"]
    )
    # Values back in key order, byte for byte (a value holding CRLF included).
    assert merged == b"*5\r\n$1\r\nA\r\n$1\r\nB\r\n$-1\r\n$0\r\n\r\n$4\r\nE\r\nE\r\n"


def test_mget_resp3_nulls_are_kept_as_sent() -> None:
    split = split_command(args("mget", "foo", "bar"))
    assert split is not None
    assert split.merge([b"*1\r\n_\r\n", b"*1\r\n$1\r\nb\r\n"]) == b"*2\r\n_\r\n$1\r\nb\r\n"


def test_one_slot_is_the_command_itself() -> None:
    command = args("MGET", "{u1}a", "{u1}b", "u1")
    split = split_command(command)
    assert split is not None and len(split.parts) == 1
    assert split.parts[0].args is command and split.parts[0].positions == (0, 1, 2)
    assert split.merge([b"-ERR as it came\r\n"]) == b"-ERR as it came\r\n"


def test_mset_keeps_each_value_with_its_key() -> None:
    split = split_command(args("MSET", "foo", "1", "bar", "2", "{foo}x", "3"))
    assert split is not None
    assert [p.args for p in split.parts] == [
        args("MSET", "foo", "1", "{foo}x", "3"),
        args("MSET", "bar", "2"),
    ]
    assert [p.positions for p in split.parts] == [(0, 2), (1,)]
    assert split.merge([b"+OK\r\n", b"+OK\r\n"]) == b"+OK\r\n"
    # Not atomic across slots: the first error is the reply.
    assert split.merge([b"+OK\r\n", b"-OOM no memory\r\n"]) == b"-OOM no memory\r\n"


@pytest.mark.parametrize("name", ["DEL", "UNLINK", "EXISTS", "TOUCH", "del"])
def test_counting_commands_sum(name: str) -> None:
    split = split_command(args(name, "foo", "bar", "{foo}x"))
    assert split is not None and len(split.parts) == 2
    assert split.merge([b":2\r\n", b":1\r\n"]) == b":3\r\n"
    assert split.merge([b":0\r\n", b":0\r\n"]) == b":0\r\n"


def test_the_first_error_in_part_order_wins() -> None:
    split = split_command(args("DEL", "foo", "bar"))
    assert split is not None
    replies = [b"-MOVED 12182 10.0.0.1:7000\r\n", b"-ERR second\r\n"]
    assert split.merge(replies) == replies[0]
    assert split.merge([b":1\r\n", b"-ERR second\r\n"]) == b"-ERR second\r\n"
    mget = split_command(args("MGET", "foo", "bar"))
    assert mget is not None
    assert mget.merge([b"*1\r\n$1\r\na\r\n", b"-LOADING x\r\n"]) == b"-LOADING x\r\n"


@pytest.mark.parametrize(
    "command, replies",
    [
        (("MGET", "foo", "bar"), [b"*1\r\n$1\r\na\r\n", b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"]),
        (("MGET", "foo", "bar"), [b"*1\r\n$1\r\na\r\n", b":1\r\n"]),
        (("MGET", "foo", "bar"), [b"*1\r\n$1\r\na\r\n", b"*1\r\n$5\r\na\r\n"]),
        (("DEL", "foo", "bar"), [b":1\r\n", b"+OK\r\n"]),
    ],
)
def test_unexpected_part_replies_become_an_error(
    command: tuple[str, ...], replies: list[bytes]
) -> None:
    """A part whose reply does not fit would shift every value after it; never silently."""
    split = split_command(args(*command))
    assert split is not None
    merged = split.merge(replies)
    assert merged.startswith(b"-ERR a cluster node answered") and merged.endswith(b"\r\n")


@pytest.mark.parametrize(
    "command",
    [("MSETNX", "foo", "1", "bar", "2"), ("GET", "foo"), ("MGET",), ("MSET", "a"),
     ("MSET", "a", "1", "b"), ("DEL",)],
)  # fmt: skip
def test_not_split(command: tuple[str, ...]) -> None:
    """MSETNX (all or none cannot hold across nodes), other commands, and arity errors
    (sent whole, so Redis answers its own error) are not split."""
    assert split_command(args(*command)) is None


def test_same_slot() -> None:
    assert same_slot([b"foo", b"{foo}bar", b"{foo}"]) == FOO
    assert same_slot([b"foo", b"bar"]) is CROSSSLOT
    assert same_slot([]) is None


def test_crossslot_error_is_redis_own() -> None:
    assert crossslot_error() == b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"


def info_of(command: list[bytes]):  # type: ignore[no-untyped-def]
    return command_table().lookup(command)


@pytest.mark.parametrize(
    "command, want",
    [
        (("GET", "foo"), FOO),
        (("SET", "{foo}a", "1"), FOO),
        (("MSETNX", "foo", "1", "{foo}b", "2"), FOO),
        (("MSETNX", "foo", "1", "bar", "2"), CROSSSLOT),  # refused: Redis' CROSSSLOT
        (("RENAME", "foo", "bar"), CROSSSLOT),
        (("RENAME", "{bar}a", "bar"), BAR),
        (("SUNIONSTORE", "{bar}d", "bar", "{bar}s"), BAR),
        (("EVAL", "return 1", "0"), None),  # no keys: any node
        (("EVAL", "return 1", "2", "foo", "{foo}x", "argv"), FOO),
        (("EVAL", "return 1", "2", "foo", "bar"), CROSSSLOT),
        (("EVAL", "return 1", "9", "foo"), UNKNOWN_KEYS),  # more keys than arguments
        (("PING",), None),
        (("SPUBLISH", "foo", "hello"), FOO),  # a shard channel hashes like a key
        (("XREAD", "STREAMS", "foo", "{foo}2", "0", "0"), FOO),
        (("XREAD", "STREAMS", "foo", "bar", "0", "0"), CROSSSLOT),
        (("OBJECT", "ENCODING", "bar"), BAR),
    ],
)
def test_slot_of_command(command: tuple[str, ...], want: object) -> None:
    raw = args(*command)
    assert slot_of_command(info_of(raw), raw) == want
