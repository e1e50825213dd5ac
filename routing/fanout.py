"""Keyless commands that a Redis Cluster answers per shard, and how georedis answers them whole.

A client of one Redis expects DBSIZE to count every key, KEYS to list them all and
FLUSHALL to empty the dataset; on a cluster each node knows only its own slots. In
cluster mode georedis sends these to every shard's master and merges the replies into
the reply one Redis would give (`proxy.server.shards`). Masters, not replicas: a count
or a listing read from a lagging replica would be short, and a flush must reach the
nodes that own the data. Any other keyless command goes to one node (shard 0's), which
is what a single Redis would answer too (PING, INFO, TIME, CONFIG GET, ...).

The merges work on the raw reply bytes, so the result is in whatever protocol the parts
were asked in; an error from any node is the reply (the first, in shard order).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from routing.split import elements, sum_ints, unexpected_reply

Merge = Callable[[Sequence[bytes]], bytes]


def first_error(replies: Sequence[bytes]) -> bytes | None:
    return next((r for r in replies if r[:1] == b"-"), None)


def merge_sum(replies: Sequence[bytes]) -> bytes:
    """DBSIZE: the sum of the masters' counts."""
    return sum_ints("DBSIZE", replies)


def merge_concat(replies: Sequence[bytes]) -> bytes:
    """KEYS: every master's keys in one array (Redis gives them in no order either)."""
    error = first_error(replies)
    if error is not None:
        return error
    out: list[bytes] = []
    for reply in replies:
        values = elements(reply)
        if values is None:
            return unexpected_reply("KEYS", reply)
        out.extend(values)
    return b"*%d\r\n%b" % (len(out), b"".join(out))


def merge_ok(replies: Sequence[bytes]) -> bytes:
    """FLUSHALL, FLUSHDB: OK when every master flushed."""
    return first_error(replies) or (replies[0] if replies else b"+OK\r\n")


def merge_any(replies: Sequence[bytes]) -> bytes:
    """RANDOMKEY: a key of a master chosen at random among those that have one (a nil
    only when every master is empty)."""
    error = first_error(replies)
    if error is not None:
        return error
    found = [r for r in replies if r[:1] == b"$" and r != b"$-1\r\n"]
    return random.choice(found) if found else (replies[0] if replies else b"$-1\r\n")


# Command name (lower case, as CommandInfo.name) -> the merge of the masters' replies.
FANOUT: dict[str, Merge] = {
    "dbsize": merge_sum,
    "keys": merge_concat,
    "flushall": merge_ok,
    "flushdb": merge_ok,
    "randomkey": merge_any,
}
