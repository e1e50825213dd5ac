"""Unit tests for routing.slots: Redis Cluster's key -> hash slot, hash tags included.

The expected values are Redis' own (CLUSTER KEYSLOT on a redis-server 7.0.15 cluster
node, and the cluster spec's examples); tests/integration/test_cluster_slots.py compares
2,000 random keys with a live server. No sockets.
"""

from __future__ import annotations

import os

import pytest

from routing.slots import SLOTS, hash_tag, key_slot


@pytest.mark.parametrize(
    "key, slot",
    [
        (b"foo", 12182),
        (b"bar", 5061),
        (b"", 0),
        (b"123456789", 0x31C3),  # the CRC16/XMODEM check value, below 16384 already
        (b"user:1000", 1649),
        (b"\x00\xff\x80", 4727),
        (b"foo{}{bar}", 8363),
        (b"foo{{bar}}zap", 4015),
        (b"foo{bar}{zap}", 5061),
        (b"{user1000}.following", 3443),
    ],
)
def test_known_slots(key: bytes, slot: int) -> None:
    assert key_slot(key) == slot


def test_keys_with_one_tag_share_a_slot() -> None:
    assert key_slot(b"{user1000}.following") == key_slot(b"{user1000}.followers")
    assert key_slot(b"{user1000}.following") == key_slot(b"user1000")


@pytest.mark.parametrize(
    "key, hashed",
    [
        (b"foo{}{bar}", b"foo{}{bar}"),  # empty first tag: the whole key
        (b"foo{{bar}}zap", b"{bar"),  # from the first { to the first } after it
        (b"foo{bar}{zap}", b"bar"),  # only the first tag counts
        (b"{}", b"{}"),
        (b"}{", b"}{"),  # a } before the { is no tag
        (b"{a", b"{a"),  # no closing brace
        (b"a{b}", b"b"),
        (b"{\x00}", b"\x00"),
    ],
)
def test_hash_tag_rule(key: bytes, hashed: bytes) -> None:
    assert hash_tag(key) == hashed
    assert key_slot(key) == key_slot(hashed)


def test_tagged_keys_hash_their_tag() -> None:
    assert key_slot(b"foo{bar}{zap}") == key_slot(b"bar") == 5061
    assert key_slot(b"foo{{bar}}zap") == key_slot(b"{bar")
    assert key_slot(b"foo{}{bar}") != key_slot(b"bar")


def test_every_slot_is_in_range() -> None:
    assert all(0 <= key_slot(b"k%d" % i) < SLOTS for i in range(5000))
    # 5000 keys spread over most of the slot space, as CRC16 should.
    assert len({key_slot(b"k%d" % i) for i in range(5000)}) > 4000


# Hash tags at every edge: empty, unclosed, doubled, at the ends, several.
TAG_KEYS = [b"", b"{", b"}", b"{}", b"{}x", b"x{}", b"{a", b"a}", b"{a}", b"x{a}y", b"{{a}}",
            b"a{b}{c}", b"foo{}{bar}", b"foo{{bar}}zap", b"{user1000}.following", b"\x00{\xff}",
            b"k" * 1000, b"{" + b"t" * 300 + b"}"]  # fmt: skip


def test_a_pipelines_slots_in_c_and_in_python_are_each_keys() -> None:
    import random

    from proxy.resp import _speedups
    from routing.slots import key_slots_py

    rng = random.Random(7)
    keys = TAG_KEYS + [bytes(rng.choice(b"{}ab\x00\xff") for _ in range(rng.randint(0, 12)))
                       for _ in range(500)]  # fmt: skip
    cmds = [[b"GET", k] for k in keys]
    want = [key_slot(k) for k in keys]
    assert _speedups.key_slots(cmds, 1) == want
    assert key_slots_py(cmds, 1) == want
    for bad in ([[b"GET"]], [[b"GET", b"a"], [b"GET"]]):  # no key there: None, not a guess
        assert _speedups.key_slots(bad, 1) is None
        assert key_slots_py(bad, 1) is None
    assert _speedups.key_slots([[b"GET", "k"]], 1) is None  # not bytes
    assert _speedups.key_slots([], 1) == [] == key_slots_py([], 1)


@pytest.mark.skipif(bool(os.environ.get("GEOREDIS_PURE_PYTHON")), reason="Python forced")
def test_the_pipeline_slots_run_in_c() -> None:
    from proxy.resp import _speedups
    from routing import slots

    assert slots.key_slots is _speedups.key_slots
