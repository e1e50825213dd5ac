"""Redis' request limits, checked on raw bytes: counts, bulk lengths and the size a
pending command may reach, plus the walk over complete multibulk commands. Sans-IO,
used by `proxy.resp.requests.RequestParser`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import hiredis

from proxy.resp.errors import ProtocolError
from proxy.resp.replies import scan

_STAR = 42  # b"*"
_DOLLAR = 36  # b"$"
# Bytes whose presence means a command may hold a type Redis refuses in a request
# (int needles: `43 in buf` is a memchr several times cheaper than `b"+" in buf`).
_PLUS, _PAREN, _EQUALS = 43, 40, 61


class Limits:
    """Request limits, each one given by the caller.

    Their defaults live in config.model (ProxyConfig), which this bottom layer does not
    import; the proxy builds its Limits from the config it loaded.
    """

    __slots__ = ("max_bulk_len", "max_inline_len", "max_multibulk_len", "max_query")

    def __init__(self, max_bulk_len: int, max_multibulk_len: int, max_inline_len: int,
                 max_query: int = 1 << 30) -> None:  # fmt: skip
        self.max_bulk_len = max_bulk_len
        # Redis' client-query-buffer-limit: bytes of one pending command (and what
        # came with it) held before it completes.
        self.max_query = min(max_query, max_bulk_len + (1 << 20))
        self.max_multibulk_len = max_multibulk_len
        self.max_inline_len = max_inline_len

    def update(self, other: Limits) -> None:
        """Take `other`'s values in place: every parser holds this very object."""
        for name in Limits.__slots__:
            setattr(self, name, getattr(other, name))


def check_header(head: bytes, limits: Limits) -> bool:
    """Validate the counts and lengths present in a partial multibulk command.

    Returns True when every bulk header inside `head` was seen and valid (no need to look
    again), False when more bytes must arrive before the check is complete.
    """
    nl = head.find(b"\r\n")
    if nl < 0:
        if len(head) > 32:
            raise ProtocolError("invalid multibulk length")
        return False
    try:
        count = int(head[1:nl])
    except ValueError:
        raise ProtocolError("invalid multibulk length") from None
    if count > limits.max_multibulk_len:
        raise ProtocolError("invalid multibulk length")
    pos = nl + 2
    for _ in range(count):
        nl = head.find(b"\r\n", pos)
        if nl < 0:
            if len(head) - pos > 32:
                raise ProtocolError("invalid bulk length")
            return False
        if head[pos] != _DOLLAR:
            raise ProtocolError(f"expected '$', got '{chr(head[pos])}'")
        try:
            size = int(head[pos + 1 : nl])
        except ValueError:
            raise ProtocolError("invalid bulk length") from None
        if size < 0 or size > limits.max_bulk_len:
            raise ProtocolError("invalid bulk length")
        pos = nl + 2 + size + 2
        if pos > len(head):
            # The rest of this bulk (and any later headers) is not in `head`: a big value.
            # Its own length passed; later headers of a huge command go unchecked, which
            # costs nothing but memory bounded by the request-size cap.
            return True
    return True


def check_complete(buf: bytes, limits: Limits) -> None:
    """Apply Redis' rules to the complete multibulk commands hiredis accepted in `buf`.

    hiredis also takes `+`, `(` and `=` elements (as bytes) where Redis demands `$`: such
    a command forwarded raw makes Redis drop the shared backend connection, so it is
    refused here, as Redis would. A complete command breaks a limit only when `buf` is
    bigger than the limit allows, so the walk (Python speed) runs only when cheap C
    scans say it could find something; with the default limits it never runs for clean
    input.
    """
    n = len(buf)
    # memchr for the type byte first: a CRLF-anchored search costs more (CRLF is common).
    if (
        n <= limits.max_bulk_len
        and n <= 6 * limits.max_multibulk_len  # `$0\r\n\r\n`: 6 bytes an element
        and (_PLUS not in buf or b"\r\n+" not in buf)
        and (_PAREN not in buf or b"\r\n(" not in buf)
        and (_EQUALS not in buf or b"\r\n=" not in buf)
    ):
        return
    pos = 0
    while pos < n:
        nl = buf.find(b"\r\n", pos)
        count = int(buf[pos + 1 : nl])
        if count > limits.max_multibulk_len:
            raise ProtocolError("invalid multibulk length")
        pos = nl + 2
        for _ in range(count):
            if buf[pos] != _DOLLAR:
                raise ProtocolError(f"expected '$', got '{chr(buf[pos])}'")
            nl = buf.find(b"\r\n", pos)
            size = int(buf[pos + 1 : nl])
            if size > limits.max_bulk_len:
                raise ProtocolError("invalid bulk length")
            pos = nl + 4 + size


def declared_count(buf: bytes, pos: int) -> int:
    """The element count of the `*N` line at `pos`; 0 while the line is incomplete."""
    nl = buf.find(b"\r\n", pos, pos + 32)
    if nl < 0 or buf[pos] != _STAR:
        return 0
    try:
        return int(buf[pos + 1 : nl])
    except ValueError:
        return 0


def skip_multibulk(buf: bytes, pos: int) -> int:
    """The end of the complete multibulk command starting at `pos` (hiredis accepted it)."""
    nl = buf.find(b"\r\n", pos)
    count = int(buf[pos + 1 : nl])
    pos = nl + 2
    for _ in range(max(count, 0)):
        nl = buf.find(b"\r\n", pos)
        size = int(buf[pos + 1 : nl])
        pos = nl + 2 + (size + 2 if size >= 0 else 0)
    return pos


def skip_requests(buf: bytes, n: int) -> int:
    """The end of the first `n` requests in `buf`, complete (hiredis returned them),
    walked in C (the reply scanner: RESP's framing, whatever the types)."""
    end, pending = scan(buf, 0, n, len(buf))
    if pending:  # hiredis read them otherwise
        raise ProtocolError("invalid multibulk length")
    return end


def command_end(args: list[bytes], data: bytes, earlier: int) -> int:
    """Where in `data` the request hiredis read as `args` ends, `earlier` of its bytes
    having come before `data`; -1 when that does not fit. From its size: hiredis reads
    lengths strictly, so its bytes are `pack(args)`'s, unless an element was not a bulk
    string (`+x`), which its last value, then not where it should be, would show."""
    size = len(str(len(args))) + 3 + sum(len(str(len(a))) + len(a) + 5 for a in args)
    end, last = size - earlier, args[-1]
    if not 2 <= end <= len(data) or not last.endswith(data[max(end - 2 - len(last), 0) : end - 2]):
        return -1
    return end


def framed_py(buf: bytes) -> int:
    """The Python twin of `_speedups.framed`: 0 when `buf` is complete multibulk requests
    as Redis reads them (`*N`, then N `$len` bulk strings); else the offending type byte
    (+256 for an element), -1 for a bad length, -2 when the bytes end inside a request."""
    pos, end, find = 0, len(buf), buf.find
    while pos < end:
        if buf[pos] != _STAR:
            return buf[pos]
        nl = find(b"\r\n", pos)
        if nl < 0:
            return -2
        n = _length_or_none(buf[pos + 1 : nl])
        if n is None:
            return -1
        pos = nl + 2
        for _ in range(n):
            if pos >= end:
                return -2
            if buf[pos] != _DOLLAR:
                return 256 + buf[pos]
            nl = find(b"\r\n", pos)
            if nl < 0:
                return -2
            size = _length_or_none(buf[pos + 1 : nl])
            if size is None or size < 0:
                return -1
            pos = nl + 4 + size
    return 0 if pos == end else -2


def _length_or_none(text: bytes) -> int | None:
    """`[-]digits` as `parse_len` in _speedups.c reads them (leading zeros, at most 2^50)."""
    neg = text[:1] == b"-"
    digits = text[1:] if neg else text
    value = digits.lstrip(b"0") or b"0"
    if not digits.isdigit() or len(value) > 16 or int(value) > 1 << 50:
        return None
    return -int(value) if neg else int(value)


def framing_error(code: int) -> ProtocolError:
    if code >= 256:
        return ProtocolError(f"expected '$', got '{chr(code - 256)}'")
    if code > 0:
        # Redis would read it as an inline command: the parser reads such bytes again as
        # Redis does, and says this only where it cannot (past 1 MB of one request).
        return ProtocolError(f"expected '*', got '{chr(code)}'")
    return ProtocolError("invalid bulk length")


framed: Callable[[bytes], int] = framed_py
if not os.environ.get("GEOREDIS_PURE_PYTHON"):
    with contextlib.suppress(ImportError):  # pragma: no cover - depends on the build
        from proxy.resp._speedups import framed as _framed_c

        framed = _framed_c
# The C one is ~50x faster: a test holds that it is the one in use where it is built.
FRAMED_IN_C = framed is not framed_py


def split_py(buf: bytes, max_count: int, max_bulk: int) -> list[list[bytes]] | None:
    """The pure-Python stand-in for `_speedups.split`: None, "read it the long way".

    The contract is "the commands, or None", and None is always true to it: in Python,
    hiredis and `framed` (the long way) are faster than a second parser would be."""
    return None


split: Callable[[bytes, int, int], list[list[bytes]] | None] = split_py
if FRAMED_IN_C:
    with contextlib.suppress(ImportError):  # pragma: no cover - an older build lacks it
        from proxy.resp._speedups import split as _split_c

        split = _split_c


def same_first_py(cmds: list[list[bytes]]) -> bool:
    """Every command of a batch has the first one's name, byte for byte (the twin of
    `_speedups.same_first`): then one table lookup stands for all of them."""
    name = cmds[0][0]
    return all(c and c[0] == name for c in cmds)


# A key test: a matcher, or the prefixes one of which a key must start with (`~app:*`).
KeyTest = Callable[[bytes], bool] | tuple[bytes, ...]


def keys_match_py(cmds: list[list[bytes]], pos: int, match: KeyTest) -> bool:
    """Every command has an argument at `pos` that `match` accepts, or that starts with
    one of the prefixes `match` holds (`_speedups.keys_match`)."""
    if isinstance(match, tuple):
        return all(len(c) > pos and c[pos].startswith(match) for c in cmds)
    return all(len(c) > pos and match(c[pos]) for c in cmds)


same_first: Callable[[list[list[bytes]]], bool] = same_first_py
keys_match: Callable[[list[list[bytes]], int, KeyTest], bool] = keys_match_py
if FRAMED_IN_C:
    with contextlib.suppress(ImportError):  # pragma: no cover - an older build lacks them
        from proxy.resp._speedups import keys_match as _keys_match_c
        from proxy.resp._speedups import same_first as _same_first_c

        same_first, keys_match = _same_first_c, _keys_match_c


def pack_at_py(cmds: list[list[bytes]], idx: list[int]) -> bytes:
    """The commands `cmds[i]` for i in `idx`, each a RESP multibulk, one after another
    (the twin of `_speedups.pack_at`, which does it in one call: a cluster batch's run
    for one node, instead of one hiredis call per command)."""
    return b"".join([hiredis.pack_command(tuple(cmds[i])) for i in idx])  # type: ignore[arg-type]


pack_at: Callable[[list[list[bytes]], list[int]], bytes] = pack_at_py
if FRAMED_IN_C:
    with contextlib.suppress(ImportError):  # pragma: no cover - an older build lacks it
        from proxy.resp._speedups import pack_at as _pack_at_c

        pack_at = _pack_at_c
