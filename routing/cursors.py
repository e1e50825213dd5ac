"""SCAN cursors that name the node that issued them (SCAN, SSCAN, HSCAN, ZSCAN).

A Redis cursor means something only on the node that issued it: it is a position in that
process's hash table, whose hash function is seeded at random when the process starts,
so the same keys lie elsewhere on every other node (a scan continued on another node
misses and repeats keys). Reads of one client may go to different nodes (read-your-writes
sends them to the primary until a replica has the client's writes; a pooled client
continues a scan on another connection, even another georedis), so the node is carried
in the cursor itself rather than remembered per connection.

The layout of a cursor georedis hands out (a decimal string, as Redis writes its own):

    bits 52..45   node number: 1 + the node's place in the config's `[[regions]]` nodes
                  (0: no node, a cursor as Redis issued it)
    bits 44..40   shard: in cluster mode, the shard whose master's cursor this is
                  (`in_shard`: then no node number; standalone: 0)
    bits 39..0    the node's own cursor

Why below 2**53 and not in the top bits of the 64-bit value: clients that read the
cursor as a number would break on it. node-redis 4 reads it with JavaScript's Number
(exact only below 2**53: node-redis#2561), phpredis, Spring Data and some go-redis
versions as a signed 64-bit integer. A cursor under 2**53 reads the same in all of them.

Why Redis' own cursor fits in 40 bits: it is a bucket index of the table being
scanned, below that table's size (a power of two; during a rehash, the larger table's).
A table of 2**40 buckets holds 8 TiB of bucket pointers alone. Redis 7.4+'s per-slot
tables (cluster mode) put the slot in the cursor's low 14 bits, leaving 26 bits for
slots of up to 64M buckets each. A reply cursor that does not fit is refused
(`tag` says None), never handed out wrong.

Node numbers come from the config, not from runtime state, so every worker process
and every georedis with the same `[[regions]]` numbers the nodes alike. A config that
reorders, inserts or removes nodes renumbers them: scans in progress across such a
change may continue on another node.

Pure: no IO, no imports beyond the config's `Address`.
"""

from __future__ import annotations

from collections.abc import Sequence

from config.model import Address

NODE_SHIFT = 45
SHARD_SHIFT = 40
MAX_NODE = (1 << (53 - NODE_SHIFT)) - 1  # 255 numbered nodes
_OWN_MASK = (1 << SHARD_SHIFT) - 1  # the node's own cursor
_SHARD_MASK = (1 << (NODE_SHIFT - SHARD_SHIFT)) - 1
_LIMIT = 1 << 53  # georedis never hands out a cursor at or above this
_MAX_DIGITS = len(str(_LIMIT))

# Where a client's cursor continues (`continued`), besides a node number (1..MAX_NODE):
FRESH = 0  # a new scan (cursor 0), or not a plain number: a read like any other
PRIMARY = -1  # a nonzero cursor without a node: as Redis issued it, i.e. the primary's
NOWHERE = -2  # a cursor with bits no georedis sets (the shard): names no node


def continued(raw: bytes) -> tuple[int, bytes]:
    """Where the scan of a client's cursor `raw` continues, and the cursor to send.

    Only a plain decimal is looked into (Redis' own reply form); anything else (a sign,
    spaces, letters) is sent as it came, as a fresh read, so that Redis answers it in
    its own words (`ERR invalid cursor`, or a scan from where it reads it).
    An untagged nonzero cursor can come from a scan inside MULTI or WATCH, which runs on
    the client's pinned primary connection: it continues on the primary."""
    if not raw.isdigit():
        return FRESH, raw
    value = int(raw) if len(raw) <= _MAX_DIGITS else _LIMIT  # (no int() of huge input)
    if value == 0:
        return FRESH, raw
    if value >= _LIMIT or not value >> SHARD_SHIFT:
        return PRIMARY, raw
    if value >> SHARD_SHIFT & _SHARD_MASK:
        return NOWHERE, raw
    return value >> NODE_SHIFT, b"%d" % (value & _OWN_MASK)


def tag(cursor: int, number: int) -> int | None:
    """The cursor to hand out for node `number`'s reply cursor; None if it cannot carry
    the node. Cursor 0 (the scan is over) stays 0: it names no node."""
    if cursor == 0:
        return 0
    if cursor > _OWN_MASK or not 0 < number <= MAX_NODE:
        return None
    return number << NODE_SHIFT | cursor


def number_of(addr: Address, nodes: Sequence[Address]) -> int | None:
    """Node `addr`'s number among the configured `nodes` (in `[[regions]]` order), or
    None when it is not one of them or past the numbers the cursor can carry."""
    for i, node in enumerate(nodes):
        if node == addr:
            return i + 1 if i < MAX_NODE else None
    return None


def address_of(number: int, nodes: Sequence[Address]) -> Address | None:
    """The configured node numbered `number`, or None when no node has it."""
    return nodes[number - 1] if 0 < number <= min(len(nodes), MAX_NODE) else None


def in_shard(shard: int, cursor: int, shards: int) -> int | None:
    """Cluster mode: the cursor to hand out for shard `shard`'s reply cursor, where a SCAN
    walks the shards in order. The end of one shard's keys (0) continues at the next
    shard's start; 0 only after the last. None if the cursor cannot carry it."""
    if cursor == 0:
        shard, cursor = shard + 1, 0
        if shard >= shards:
            return 0
    if cursor > _OWN_MASK or not 0 <= shard <= _SHARD_MASK:
        return None
    return shard << SHARD_SHIFT | cursor


def of_shard(raw: bytes) -> tuple[int, bytes] | None:
    """Cluster mode: the shard a client's SCAN cursor continues on and that shard's own
    cursor; None for a cursor georedis did not hand out in cluster mode (a node number
    in it). Anything but a plain decimal goes to shard 0 as it came, for Redis' words."""
    if not raw.isdigit():
        return 0, raw
    value = int(raw) if len(raw) <= _MAX_DIGITS else _LIMIT
    if value >> NODE_SHIFT:
        return None
    return value >> SHARD_SHIFT, b"%d" % (value & _OWN_MASK)
