"""routing.cursors: the node a SCAN cursor carries, encoded and read back (no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.model import Address
from routing.cursors import (
    FRESH,
    MAX_NODE,
    NODE_SHIFT,
    NOWHERE,
    PRIMARY,
    SHARD_SHIFT,
    address_of,
    continued,
    number_of,
    tag,
)

NODES = (Address("10.0.0.1", 6379), Address("10.0.0.2", 6379), Address("10.1.0.1", 6379))


def handed_out(cursor: int, number: int) -> bytes:
    tagged = tag(cursor, number)
    assert tagged is not None
    return b"%d" % tagged


@given(st.integers(1, (1 << SHARD_SHIFT) - 1), st.integers(1, MAX_NODE))
def test_a_tagged_cursor_reads_back_as_its_node_and_its_own_cursor(cursor: int, n: int) -> None:
    assert continued(handed_out(cursor, n)) == (n, b"%d" % cursor)


@given(st.integers(1, (1 << SHARD_SHIFT) - 1), st.integers(1, MAX_NODE))
def test_cursors_handed_out_stay_below_2_53(cursor: int, n: int) -> None:
    # Clients that read cursors as doubles (node-redis 4) or signed 64-bit integers
    # (phpredis, Spring Data) read every one of them exactly.
    assert int(handed_out(cursor, n)) < 2**53


def test_cursor_0_stays_0_and_starts_a_fresh_scan() -> None:
    assert tag(0, 3) == 0
    assert continued(b"0") == (FRESH, b"0")
    assert continued(b"000") == (FRESH, b"000")


@pytest.mark.parametrize("raw", [b"abc", b"-1", b"+5", b" 5", b"5 ", b"", b"1e3", b"\xd9\xa3"])
def test_what_is_not_a_plain_decimal_goes_as_it_came(raw: bytes) -> None:
    # Redis answers these in its own words (ERR invalid cursor), or reads them its way
    # (strtoul: "-1" is 2**64-1, "" is 0): sent unchanged, as a fresh read.
    assert continued(raw) == (FRESH, raw)


@pytest.mark.parametrize("raw", [b"17", b"%d" % ((1 << SHARD_SHIFT) - 1), b"%d" % 2**64,
                                 b"9" * 30, b"1" * 5000])  # fmt: skip
def test_a_cursor_without_a_node_is_the_primarys(raw: bytes) -> None:
    # Redis' own cursors: from a scan inside MULTI/WATCH (the pinned primary), or ones
    # georedis never wrote (past 2**53, too long for a number: Redis says invalid).
    assert continued(raw) == (PRIMARY, raw)


def test_shard_bits_are_reserved() -> None:
    raw = b"%d" % (1 << NODE_SHIFT | 1 << SHARD_SHIFT | 5)
    assert continued(raw) == (NOWHERE, raw)


def test_a_cursor_that_cannot_carry_a_node_is_refused() -> None:
    assert tag(1 << SHARD_SHIFT, 1) is None  # Redis' cursor past 40 bits
    assert tag(5, 0) is None
    assert tag(5, MAX_NODE + 1) is None


def test_node_numbers_follow_the_configured_order() -> None:
    assert [number_of(a, NODES) for a in NODES] == [1, 2, 3]
    assert number_of(Address("10.9.9.9", 1), NODES) is None
    # Equal addresses, not the same objects (workers unpickle each snapshot anew).
    assert number_of(Address("10.1.0.1", 6379), NODES) == 3
    assert [address_of(n, NODES) for n in (1, 2, 3)] == list(NODES)
    assert address_of(0, NODES) is None and address_of(4, NODES) is None


def test_nodes_past_the_last_number_get_none() -> None:
    many = tuple(Address("10.0.0.1", p) for p in range(1, MAX_NODE + 3))
    assert number_of(many[MAX_NODE - 1], many) == MAX_NODE
    assert number_of(many[MAX_NODE], many) is None
    assert address_of(MAX_NODE + 1, many) is None
