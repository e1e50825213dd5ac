"""A subscribed client's channels, as Redis counts them, and where each one is served.

Plain channels and patterns are served by the subscription's connection to a replica
(Redis replicates PUBLISH); keyspace notification channels by one to the primary, where
expiries and evictions happen (`proxy/server/subscription.py`). Sans-IO: the sets, the
split of a command between the two connections, and the confirmation counts rewritten
while there are two.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

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

    def apply(self, args: list[bytes]) -> tuple[set[bytes] | None, set[bytes], set[bytes]]:
        """Follow one command: (the set it changed, names added, names removed)."""
        name = args[0].lower()
        names = self._set(name)
        if names is None:
            return None, set(), set()
        if name.startswith((b"un", b"pun", b"sun")):
            gone = set(names) if len(args) == 1 else names.intersection(args[1:])
            names.difference_update(gone)
            return names, set(), gone
        new = set(args[1:]).difference(names)
        names.update(new)
        return names, new, set()

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


def glob_match(pattern: bytes, subject: bytes) -> bool:
    """Redis' glob (stringmatchlen): `*`, `?`, `[...]` with `^` and ranges, `\\` escapes."""
    rx = _GLOBS.get(pattern)
    if rx is None:
        if len(_GLOBS) > 4096:  # bounded: clients choose the patterns
            _GLOBS.clear()
        rx = _GLOBS[pattern] = re.compile(_glob_regex(pattern), re.DOTALL)
    return rx.fullmatch(subject) is not None


_GLOBS: dict[bytes, re.Pattern[bytes]] = {}


def _glob_regex(p: bytes) -> bytes:
    out, i, n = [], 0, len(p)
    while i < n:
        c = p[i : i + 1]
        if c == b"*":
            out.append(b".*")
        elif c == b"?":
            out.append(b".")
        elif c == b"\\" and i + 1 < n:
            i += 1
            out.append(re.escape(p[i : i + 1]))
        elif c == b"[":
            j = p.find(b"]", i + 2 if p[i + 1 : i + 2] in (b"^", b"]") else i + 1)
            if j < 0:
                out.append(re.escape(p[i:]))  # Redis: an unclosed class matches to the end
                break
            body = p[i + 1 : j]
            neg = body.startswith(b"^")
            body = body[1:] if neg else body
            out.append(b"[" + (b"^" if neg else b"") + _class_body(body) + b"]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return b"".join(out)


def _class_body(body: bytes) -> bytes:
    """A `[...]` body for `re`: ranges kept (either order, as Redis), the rest escaped."""
    out, i = [], 0
    while i < len(body):
        if body[i : i + 1] == b"\\" and i + 1 < len(body):
            out.append(re.escape(body[i + 1 : i + 2]))
            i += 2
        elif i + 2 < len(body) and body[i + 1 : i + 2] == b"-":
            lo, hi = sorted((body[i], body[i + 2]))
            out.append(re.escape(bytes([lo])) + b"-" + re.escape(bytes([hi])))
            i += 3
        else:
            out.append(re.escape(body[i : i + 1]))
            i += 1
    return b"".join(out) or b"^\\s\\S"


class Listeners:
    """This process' clients subscribed through a replica, by channel and pattern: what
    a PUBLISH on the primary reaches beyond the primary's own subscribers (pubsubcount.py).
    A name counts from its confirmation on (the replica then delivers what the primary
    publishes), and stops counting when its UNSUBSCRIBE is sent. Keyspace channels are
    left out: they are served by the primary, which counts them."""

    __slots__ = ("channels", "others", "patterns", "shards")

    def __init__(self) -> None:
        self.channels: Counter[bytes] = Counter()
        self.patterns: Counter[bytes] = Counter()
        self.shards: Counter[bytes] = Counter()
        # The other worker processes' `own()`, from the supervisor about once a second
        # (proxy/workers.py): PUBLISH counts their subscribers too, that much behind.
        self.others: list[Own] = []

    def own(self) -> Own:
        """This process' counts, for the other workers."""
        return dict(self.channels), dict(self.patterns), dict(self.shards)

    def counter(self, word: bytes) -> Counter[bytes] | None:
        """The counts a confirmation word (`subscribe`, `psubscribe`, `ssubscribe`)
        adds to."""
        if word == b"subscribe":
            return self.channels
        if word == b"psubscribe":
            return self.patterns
        return self.shards if word == b"ssubscribe" else None

    def add(self, word: bytes, name: bytes) -> None:
        which = self.counter(word)
        if which is not None:
            self._change(which, (name,), 1)

    def remove(self, word: bytes, names: Iterable[bytes]) -> None:
        which = self.counter(word)
        if which is not None:
            self._change(which, names, -1)

    @staticmethod
    def _change(which: Counter[bytes], names: Iterable[bytes], by: int) -> None:
        for name in names:
            if on_primary(name):
                continue
            which[name] += by
            if which[name] <= 0:
                del which[name]

    def count(self, channel: bytes) -> int:
        n = _count(self.channels, self.patterns, channel)
        for chans, pats, _ in self.others:
            n += _count(chans, pats, channel)
        return n

    def count_shard(self, channel: bytes) -> int:
        return self.shards.get(channel, 0) + sum(s.get(channel, 0) for _, _, s in self.others)


Own = tuple[dict[bytes, int], dict[bytes, int], dict[bytes, int]]


def _count(channels: Mapping[bytes, int], patterns: Mapping[bytes, int], channel: bytes) -> int:
    n = channels.get(channel, 0)
    for pattern, k in patterns.items():
        if glob_match(pattern, channel):
            n += k
    return n


def confirmed(reply: bytes) -> tuple[bytes, bytes] | None:
    """(`subscribe` | `psubscribe` | `ssubscribe`, the name) of a subscribe
    confirmation (`*3 $9 subscribe $n name :count`, `>3` in RESP3); None otherwise."""
    word_at = reply.find(b"\r\n", 4) + 2
    end = reply.find(b"\r\n", word_at)
    word = reply[word_at:end]
    if word_at < 2 or end < 0 or word not in (b"subscribe", b"psubscribe", b"ssubscribe"):
        return None
    len_end = reply.find(b"\r\n", end + 2)
    try:
        n = int(reply[end + 3 : len_end])
    except ValueError:
        return None
    return word, reply[len_end + 2 : len_end + 2 + n]
