"""routing.fanout: the masters' replies to a keyless command, merged into one Redis' reply.

Replies are raw RESP bytes, in shard order, as the masters send them; every expectation
is byte for byte. No sockets.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from routing.fanout import FANOUT

UNEXPECTED = b"-ERR a cluster node answered %b with an unexpected '%b' reply\r\n"


def merge(command: str, replies: Sequence[bytes]) -> bytes:
    return FANOUT[command](replies)


def test_every_fanout_command_has_its_merge() -> None:
    assert sorted(FANOUT) == ["dbsize", "flushall", "flushdb", "keys", "randomkey"]


# -- DBSIZE: the sum -------------------------------------------------------------------


@pytest.mark.parametrize(
    "replies, want",
    [
        ([b":3\r\n", b":0\r\n", b":39\r\n"], b":42\r\n"),
        ([b":7\r\n"], b":7\r\n"),
        ([b":0\r\n", b":0\r\n"], b":0\r\n"),
        ([b":%d\r\n" % 2**62, b":%d\r\n" % 2**62], b":%d\r\n" % 2**63),  # no 64-bit wrap
        ([], b":0\r\n"),
    ],
)
def test_dbsize_is_the_sum_of_the_masters_counts(replies: list[bytes], want: bytes) -> None:
    assert merge("dbsize", replies) == want


@pytest.mark.parametrize(
    "bad, kind",
    [(b"+OK\r\n", b"+"), (b"$1\r\n5\r\n", b"$"), (b"*0\r\n", b"*"), (b":5", b":"), (b"", b"")],
)
def test_dbsize_with_a_reply_that_is_no_integer_is_an_error(bad: bytes, kind: bytes) -> None:
    assert merge("dbsize", [b":1\r\n", bad, b":2\r\n"]) == UNEXPECTED % (b"DBSIZE", kind)


# -- KEYS: the concatenation -------------------------------------------------------------


def test_keys_are_every_masters_keys_in_shard_order() -> None:
    replies = [b"*2\r\n$1\r\na\r\n$2\r\nbc\r\n", b"*1\r\n$4\r\nE\r\nE\r\n"]
    # Values copied as sent (one holding CRLF included).
    assert merge("keys", replies) == b"*3\r\n$1\r\na\r\n$2\r\nbc\r\n$4\r\nE\r\nE\r\n"


def test_keys_with_empty_masters() -> None:
    assert merge("keys", [b"*0\r\n", b"*1\r\n$1\r\nk\r\n", b"*0\r\n"]) == b"*1\r\n$1\r\nk\r\n"
    assert merge("keys", [b"*0\r\n", b"*0\r\n"]) == b"*0\r\n"
    assert merge("keys", []) == b"*0\r\n"


def test_keys_in_resp3_keep_their_element_types() -> None:
    # RESP3 KEYS is still an array; a verbatim or blob element is copied, not re-encoded.
    replies = [b"*1\r\n$1\r\na\r\n", b"*2\r\n=7\r\ntxt:bcd\r\n$0\r\n\r\n"]
    assert merge("keys", replies) == b"*3\r\n$1\r\na\r\n=7\r\ntxt:bcd\r\n$0\r\n\r\n"


@pytest.mark.parametrize(
    "bad, kind",
    [
        (b":1\r\n", b":"),
        (b"~1\r\n$1\r\na\r\n", b"~"),  # a RESP3 set is not what KEYS answers
        (b"*2\r\n$1\r\na\r\n", b"*"),  # fewer elements than announced
        (b"*1\r\n$5\r\na\r\n", b"*"),  # a truncated element
        (b"*x\r\n", b"*"),
    ],
)
def test_keys_with_a_reply_that_is_no_array_is_an_error(bad: bytes, kind: bytes) -> None:
    # A part dropped silently would make the listing short without a word.
    assert merge("keys", [b"*1\r\n$1\r\na\r\n", bad]) == UNEXPECTED % (b"KEYS", kind)


# -- FLUSHALL, FLUSHDB: OK ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["flushall", "flushdb"])
def test_flush_is_ok_when_every_master_flushed(command: str) -> None:
    assert merge(command, [b"+OK\r\n", b"+OK\r\n", b"+OK\r\n"]) == b"+OK\r\n"
    assert merge(command, []) == b"+OK\r\n"


@pytest.mark.parametrize("command", ["flushall", "flushdb"])
def test_flush_is_the_first_error_when_a_master_failed(command: str) -> None:
    replies = [b"+OK\r\n", b"-READONLY replica\r\n", b"-ERR other\r\n"]
    assert merge(command, replies) == b"-READONLY replica\r\n"


# -- RANDOMKEY: any master's key ---------------------------------------------------------


def test_randomkey_is_the_key_of_the_one_master_that_has_one() -> None:
    assert merge("randomkey", [b"$-1\r\n", b"$3\r\nkey\r\n", b"$-1\r\n"]) == b"$3\r\nkey\r\n"
    assert merge("randomkey", [b"_\r\n", b"$1\r\nk\r\n"]) == b"$1\r\nk\r\n"  # RESP3 nil


def test_randomkey_chooses_among_the_masters_with_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    offered: list[list[bytes]] = []

    def choose(found: list[bytes]) -> bytes:
        offered.append(list(found))
        return found[-1]

    monkeypatch.setattr("routing.fanout.random.choice", choose)
    replies = [b"$1\r\na\r\n", b"$-1\r\n", b"$1\r\nb\r\n"]
    assert merge("randomkey", replies) == b"$1\r\nb\r\n"
    assert offered == [[b"$1\r\na\r\n", b"$1\r\nb\r\n"]]  # the empty master is no candidate


@pytest.mark.parametrize(
    "replies, want",
    [
        ([b"$-1\r\n", b"$-1\r\n"], b"$-1\r\n"),
        ([b"_\r\n", b"_\r\n"], b"_\r\n"),  # RESP3: the nil in the client's protocol
        ([], b"$-1\r\n"),
    ],
)
def test_randomkey_is_nil_only_when_every_master_is_empty(
    replies: list[bytes], want: bytes
) -> None:
    assert merge("randomkey", replies) == want


# -- errors: the first one, in shard order, whatever else came ------------------------------


@pytest.mark.parametrize(
    "command, replies",
    [
        ("dbsize", [b":1\r\n", b"-LOADING first\r\n", b":2\r\n", b"-ERR second\r\n"]),
        ("keys", [b"*0\r\n", b"-LOADING first\r\n", b"-ERR second\r\n"]),
        ("flushall", [b"+OK\r\n", b"-LOADING first\r\n", b"-ERR second\r\n"]),
        ("flushdb", [b"-LOADING first\r\n", b"+OK\r\n", b"-ERR second\r\n"]),
        ("randomkey", [b"$1\r\nk\r\n", b"-LOADING first\r\n", b"-ERR second\r\n"]),
        # An error wins over an unexpected reply before it, too.
        ("dbsize", [b"+OK\r\n", b"-LOADING first\r\n"]),
        ("keys", [b":1\r\n", b"-LOADING first\r\n"]),
    ],
)
def test_the_first_error_in_shard_order_is_the_reply(command: str, replies: list[bytes]) -> None:
    assert merge(command, replies) == b"-LOADING first\r\n"
