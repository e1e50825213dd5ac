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
    in_shard,
    number_of,
    of_shard,
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


# -- cluster mode: the shard in the cursor (in_shard, of_shard) ----------------------------

SHARDS = 1 << (NODE_SHIFT - SHARD_SHIFT)  # 32: the most shards a cursor can name
OWN_MAX = (1 << SHARD_SHIFT) - 1


def shard_cursor(shard: int, cursor: int, shards: int = SHARDS) -> bytes:
    handed = in_shard(shard, cursor, shards)
    assert handed is not None
    return b"%d" % handed


@given(st.integers(0, SHARDS - 1), st.integers(1, OWN_MAX))
def test_a_shard_cursor_reads_back_as_its_shard_and_its_own_cursor(shard: int, cursor: int) -> None:
    raw = shard_cursor(shard, cursor)
    assert of_shard(raw) == (shard, b"%d" % cursor)
    assert int(raw) < 2**53 and int(raw) >> NODE_SHIFT == 0  # no node number in it


@pytest.mark.parametrize("shard", [0, 1, 30, SHARDS - 1])
@pytest.mark.parametrize("cursor", [1, 2, 1 << 20, OWN_MAX])
def test_shard_cursors_at_the_edges_read_back(shard: int, cursor: int) -> None:
    assert of_shard(shard_cursor(shard, cursor)) == (shard, b"%d" % cursor)


@given(st.integers(1, OWN_MAX), st.integers(1, SHARDS))
def test_shard_0s_cursor_is_the_plain_cursor(cursor: int, shards: int) -> None:
    # A cluster of one shard hands out Redis' own cursors; a plain cursor reads as shard 0's.
    assert in_shard(0, cursor, shards) == cursor
    assert of_shard(b"%d" % cursor) == (0, b"%d" % cursor)


def test_a_shards_end_continues_at_the_next_shards_start() -> None:
    assert in_shard(0, 0, 3) == 1 << SHARD_SHIFT
    assert of_shard(shard_cursor(0, 0, 3)) == (1, b"0")
    assert of_shard(shard_cursor(1, 0, 3)) == (2, b"0")
    assert in_shard(2, 0, 3) == 0  # the last shard's end is the scan's end
    assert in_shard(0, 0, 1) == 0
    assert in_shard(SHARDS - 2, 0, SHARDS) == (SHARDS - 1) << SHARD_SHIFT
    assert in_shard(SHARDS - 1, 0, SHARDS) == 0


def test_a_fresh_scan_starts_on_shard_0() -> None:
    assert of_shard(b"0") == (0, b"0")


def test_what_a_shard_cursor_cannot_carry_is_refused() -> None:
    assert in_shard(0, OWN_MAX + 1, 3) is None  # Redis' cursor past 40 bits
    assert in_shard(SHARDS - 1, OWN_MAX + 1, SHARDS) is None
    assert in_shard(SHARDS, 5, SHARDS + 1) is None  # a 33rd shard
    assert in_shard(SHARDS - 1, 0, SHARDS + 1) is None  # its end would name the 33rd
    assert in_shard(-1, 5, 3) is None


@pytest.mark.parametrize(
    "value", [1 << NODE_SHIFT, 1 << NODE_SHIFT | 5, MAX_NODE << NODE_SHIFT | OWN_MAX, 2**53, 2**64]
)
def test_a_cursor_with_a_node_number_names_no_shard(value: int) -> None:
    # A standalone-mode cursor (or one past what georedis hands out): not this cluster's.
    assert of_shard(b"%d" % value) is None


def test_a_standalone_cursor_names_no_shard() -> None:
    assert of_shard(handed_out(5, 1)) is None
    assert of_shard(handed_out(OWN_MAX, MAX_NODE)) is None


def test_a_huge_decimal_names_no_shard() -> None:
    assert of_shard(b"1" * 5000) is None


@pytest.mark.parametrize("raw", [b"abc", b"-1", b"+5", b" 5", b"", b"1e3", b"\xd9\xa3"])
def test_what_is_not_a_plain_decimal_goes_to_shard_0_as_it_came(raw: bytes) -> None:
    assert of_shard(raw) == (0, raw)


def test_the_shard_count_does_not_change_a_cursor_inside_a_shard() -> None:
    # Only a shard's end looks at the count; the client's cursor does not depend on it.
    assert in_shard(3, 77, 4) == in_shard(3, 77, SHARDS) == 3 << SHARD_SHIFT | 77
