"""A subscribed client's channels, as Redis counts them, and where each one is served.

Plain channels and patterns are served by the subscription's connection to a replica
(Redis replicates PUBLISH); keyspace notification channels by one to the primary, where
expiries and evictions happen (`proxy/server/subscription.py`). Sans-IO: the sets, the
split of a command between the two connections, and the confirmation counts rewritten
while there are two.
"""

from __future__ import annotations

from collections.abc import Iterator

_KEYSPACE = (b"__keyspace@", b"__keyevent@")
# Bytes 4-5 of a subscribe/unsubscribe confirmation (`*3\r\n$9\r\nsubscribe...`, `$10`,
# `$11`, `$12`); a message (`$7`, `$8` for pmessage's `*4`) is told apart without parsing.
CONFIRMATION_HEADS = frozenset({b"$9", b"$1"})
_COUNTED = frozenset({b"subscribe", b"unsubscribe", b"psubscribe", b"punsubscribe"})


def on_primary(channel: bytes) -> bool:
    """A keyspace or keyevent channel (or a pattern for them)."""
    return channel.startswith(_KEYSPACE)


def keyspace_only(args: list[bytes]) -> bool:
    """A (P)SUBSCRIBE naming only keyspace channels: the whole subscription can live on
    the primary."""
    name = args[0].lower()
    return name in (b"subscribe", b"psubscribe") and all(on_primary(c) for c in args[1:])


class Channels:
    """What a client is subscribed to, kept from the commands it sent (Redis answers
    every one of them, so the sets follow the backend's)."""

    __slots__ = ("channels", "patterns", "shards")

    def __init__(self) -> None:
        self.channels: set[bytes] = set()
        self.patterns: set[bytes] = set()
        self.shards: set[bytes] = set()

    def _set(self, name: bytes) -> set[bytes] | None:
        base = name[2:] if name.startswith(b"un") else name
        if base.startswith(b"pun"):
            base = b"p" + base[3:]
        elif base.startswith(b"sun"):
            base = b"s" + base[3:]
        if base == b"subscribe":
            return self.channels
        if base == b"psubscribe":
            return self.patterns
        if base == b"ssubscribe":
            return self.shards
        return None

    def apply(self, args: list[bytes]) -> None:
        name = args[0].lower()
        names = self._set(name)
        if names is None:
            return
        if name.startswith((b"un", b"pun", b"sun")):
            if len(args) == 1:
                names.clear()
            else:
                names.difference_update(args[1:])
        else:
            names.update(args[1:])

    def wants_primary(self, args: list[bytes]) -> bool:
        """Whether this command names a keyspace channel to subscribe to."""
        name = args[0].lower()
        return name in (b"subscribe", b"psubscribe") and any(on_primary(c) for c in args[1:])

    def on_both(self, name: bytes) -> tuple[bool, bool]:
        """For an UNSUBSCRIBE or PUNSUBSCRIBE of everything: whether the replica's and the
        primary's connections hold any of that kind (the replica answers when neither
        does: Redis' one confirmation with a null channel)."""
        names = self._set(name) or set()
        extra = any(on_primary(c) for c in names)
        plain = any(not on_primary(c) for c in names)
        return plain or not extra, extra


def split(args: list[bytes], channels: Channels, two: bool) -> Iterator[tuple[bool, list[bytes]]]:
    """(to the primary's connection, command) for each part of `args`."""
    name = args[0].lower()
    if not two or name not in _COUNTED:
        yield False, args
        return
    if len(args) == 1:
        plain, extra = channels.on_both(name)
        if plain:
            yield False, args
        if extra:
            yield True, args
        return
    ks = [c for c in args[1:] if on_primary(c)]
    rest = [c for c in args[1:] if not on_primary(c)]
    if rest:
        yield False, [args[0], *rest]
    if ks:
        yield True, [args[0], *ks]


def recount(reply: bytes, counts: list[int], source: int, rewrite: bool) -> bytes:
    """A confirmation from connection `source` (0: the replica's, 1: the primary's):
    its count remembered, and, with two connections, replaced by their sum."""
    word_at = reply.find(b"\r\n", 4) + 2
    end = reply.find(b"\r\n", word_at)
    if word_at < 2 or end < 0 or reply[word_at:end] not in _COUNTED:
        return reply
    at = reply.rfind(b"\r\n:", 0, len(reply) - 2) + 3
    if at < 3:
        return reply
    try:
        counts[source] = int(reply[at:-2])
    except ValueError:
        return reply
    if not rewrite:
        return reply
    return b"%b%d\r\n" % (reply[:at], counts[0] + counts[1])
