"""Multi-key commands in a cluster: one slot per command, or split per slot and merged.

Redis Cluster runs a multi-key command only when all its keys hash to one slot: keys in
two slots of the same node get -CROSSSLOT too. Applications written for one Redis send
MGET and DEL across any keys, so georedis splits the six commands whose meaning survives
a split into one sub-command per slot, sends each to its slot's shard (the sub-commands
for one shard pipelined on one connection) and merges the replies into the one reply a
single Redis would give:

- MGET: the values, each put back at its key's place;
- MSET: +OK when every part said OK (not atomic across slots, as in every cluster
  proxy: a part may fail after others were applied; the error is the first one);
- DEL, UNLINK, EXISTS, TOUCH: the sum of the parts' counts.

A part that answers an error makes the whole reply that error (the first, in part
order). Every other command must have its keys in one slot (`slot_of_command`), else
the client gets Redis' own CROSSSLOT error: MSETNX above all, whose "all or none" cannot
hold across nodes, but also RENAME, SUNIONSTORE, EVAL with keys, MULTI..EXEC.

Merging works on the parts' reply bytes (the bytes Redis sent: an MGET value is copied,
never decoded and re-encoded), so the merged reply is in whatever protocol the parts
were asked in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from proxy.resp.errors import ProtocolError
from proxy.resp.replies import ReplySplitter, encode_error, encode_int
from routing.commands import CommandInfo
from routing.keyspecs import keys_of
from routing.redirect import CROSSSLOT_MESSAGE
from routing.slots import key_slot


class NoSlot(Enum):
    """Why a command with keys has no one slot."""

    CROSSSLOT = "crossslot"  # its keys hash to different slots
    UNKNOWN = "unknown"  # its keys cannot be told from its arguments (routing.keyspecs)


CROSSSLOT = NoSlot.CROSSSLOT
UNKNOWN_KEYS = NoSlot.UNKNOWN
CROSSSLOT_ERROR = encode_error(CROSSSLOT_MESSAGE)

# The raw replies of the parts, in the order of `Split.parts` -> the client's reply.
Merge = Callable[[Sequence[bytes]], bytes]


@dataclass(frozen=True, slots=True)
class Part:
    """One sub-command: its slot, its arguments (name first), and for each of its keys
    the key's index in the command's list of keys (MSET: the index of the pair)."""

    slot: int
    args: list[bytes]
    positions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Split:
    """The parts, in the order their slots first appear among the keys, and the merge.
    A single part is the command itself, and its merge returns the reply unchanged."""

    parts: tuple[Part, ...]
    merge: Merge


def same_slot(keys: Iterable[bytes]) -> int | NoSlot | None:
    """The one slot of all `keys`; None when there are none; CROSSSLOT when they differ."""
    slot: int | None = None
    for key in keys:
        s = key_slot(key)
        if slot is None:
            slot = s
        elif s != slot:
            return CROSSSLOT
    return slot


def slot_of_command(info: CommandInfo, args: list[bytes]) -> int | NoSlot | None:
    """Where a command must run: its keys' one slot; None for a command without keys
    (any node will do); CROSSSLOT; or UNKNOWN_KEYS when its key specs cannot say (an
    unknown spec, a bad numkeys): the caller refuses it rather than guess a node.
    Shard channels (SPUBLISH, SSUBSCRIBE: `not_key` specs) count, as in Redis."""
    if not info.has_keys:
        return None
    found = keys_of(info.key_specs, args, include_not_keys=True)
    if found is None:
        return UNKNOWN_KEYS
    return same_slot(key for key, _ in found)


def crossslot_error() -> bytes:
    """Redis' own reply for keys in different slots, byte for byte."""
    return CROSSSLOT_ERROR


def split_command(args: list[bytes], slot_of: Callable[[bytes], int] = key_slot) -> Split | None:
    """The split of MGET, MSET, DEL, UNLINK, EXISTS or TOUCH; None for any other command
    (MSETNX included: see `slot_of_command`) and for one without keys or with an odd
    MSET, which go to Redis whole, for its own arity error."""
    rule = _RULES.get(args[0].lower())
    if rule is None:
        return None
    step, merge = rule
    keys = args[1::step]
    if not keys or (len(args) - 1) % step:
        return None
    groups: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(slot_of(key), []).append(index)
    if len(groups) == 1:
        slot = next(iter(groups))
        return Split((Part(slot, args, tuple(range(len(keys)))),), _first)
    parts = tuple(
        Part(slot, [args[0], *_args_at(args, positions, step)], tuple(positions))
        for slot, positions in groups.items()
    )
    return Split(parts, lambda replies: merge(parts, len(keys), replies))


def _args_at(args: list[bytes], positions: list[int], step: int) -> list[bytes]:
    """The arguments of the keys at `positions` (with its value, for MSET)."""
    out: list[bytes] = []
    for p in positions:
        at = 1 + p * step
        out.extend(args[at : at + step])
    return out


# -- merges: (parts, number of keys, the parts' replies) -> the client's reply -----------------


def _first(replies: Sequence[bytes]) -> bytes:
    return replies[0]


def _first_error(replies: Sequence[bytes]) -> bytes | None:
    for reply in replies:
        if reply[:1] == b"-":
            return reply
    return None


def _merge_values(parts: Sequence[Part], count: int, replies: Sequence[bytes]) -> bytes:
    """MGET: each part's array of values, every value back at its key's place."""
    error = _first_error(replies)
    if error is not None:
        return error
    out: list[bytes] = [b""] * count
    for part, reply in zip(parts, replies, strict=True):
        values = elements(reply)
        if values is None or len(values) != len(part.positions):
            return unexpected_reply("MGET", reply)
        for position, value in zip(part.positions, values, strict=True):
            out[position] = value
    return b"*%d\r\n%b" % (count, b"".join(out))


def _merge_ok(parts: Sequence[Part], count: int, replies: Sequence[bytes]) -> bytes:
    """MSET: the first error, else the first part's +OK."""
    return _first_error(replies) or replies[0]


def _merge_sum(parts: Sequence[Part], count: int, replies: Sequence[bytes]) -> bytes:
    """DEL, UNLINK, EXISTS, TOUCH: the sum of the parts' integers."""
    return sum_ints("a counting command", replies)


def sum_ints(command: str, replies: Sequence[bytes]) -> bytes:
    """The sum of integer replies (":N\\r\\n"), for `command` (named in the error when a
    reply is not an integer); the first error, in reply order, when any is one.
    Shared by the split counting commands and the cluster-wide DBSIZE (routing.fanout)."""
    error = _first_error(replies)
    if error is not None:
        return error
    total = 0
    for reply in replies:
        if reply[:1] != b":" or not reply.endswith(b"\r\n"):
            return unexpected_reply(command, reply)
        total += int(reply[1:-2])
    return encode_int(total)


def elements(reply: bytes) -> list[bytes] | None:
    """The elements of an array reply, each as its own bytes; None if not an array."""
    if reply[:1] != b"*":
        return None
    head = reply.find(b"\r\n")
    count = reply[1:head]
    if head < 0 or not count.isdigit():
        return None
    try:
        values = ReplySplitter().split(reply[head + 2 :])
    except ProtocolError:
        return None
    return values if len(values) == int(count) else None


def unexpected_reply(command: str, reply: bytes) -> bytes:
    # Redis never answers so; if a node did, the client learns it, and no part is lost
    # silently (a shorter array would shift every value after it).
    kind = reply[:1].decode("ascii", "replace")
    return encode_error(f"ERR a cluster node answered {command} with an unexpected {kind!r} reply")


_MergeRule = Callable[[Sequence[Part], int, Sequence[bytes]], bytes]
# Per command: how many arguments one key takes (MSET: key and value), and the merge.
_RULES: dict[bytes, tuple[int, _MergeRule]] = {
    b"mget": (1, _merge_values),
    b"mset": (2, _merge_ok),
    b"del": (1, _merge_sum),
    b"unlink": (1, _merge_sum),
    b"exists": (1, _merge_sum),
    b"touch": (1, _merge_sum),
}
