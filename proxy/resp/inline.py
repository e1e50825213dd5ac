"""Requests read as Redis reads them, for what hiredis cannot read so: inline commands
(`SET k v` typed into telnet, the lines of a `redis-cli --pipe` file) split as Redis'
sdssplitargs does (quotes, escapes, the whitespace rules), and `read_as_redis`, Redis'
own loop over a read that mixes them with multibulk ones.

`RequestParser` (requests.py) keeps hiredis for plain multibulk input, the hot path, and
turns to `read_as_redis` at a read's inline start, or when hiredis stops on a command
Redis reads otherwise (docs/architecture.md, "The way of one command")."""

from __future__ import annotations

import re

from proxy.resp.errors import ProtocolError
from proxy.resp.limits import Limits

_STAR, _DOLLAR = 42, 36


def read_as_redis(buf: bytes, pos: int, limits: Limits, stop_at_star: bool = False
                  ) -> tuple[list[list[bytes]], int, str | None]:  # fmt: skip
    """Read `buf` from `pos` as Redis 7.0's processInputBuffer does (networking.c).

    Each command's first byte says its kind: `*` is multibulk, anything else an inline
    line up to `\\n`. An empty line and a multibulk count <= 0 (`*0`, `*-1`, `*-10`) are
    skipped. Returns the complete commands, where the incomplete rest starts (or, with
    `stop_at_star`, the first multibulk command), and the protocol error that ends the
    read, in Redis' words, or None: Redis runs the commands before an error, answers
    them, then the error, then closes.

    Redis looks for an inline line's `\\n` with strchr, which stops at a NUL: a line
    with one waits until it is too big. The length limit holds for a complete line too
    (Redis reads 16 KB at a time: past it, whether a line passes depends on how it came).
    """
    cmds: list[list[bytes]] = []
    end, find, most = len(buf), buf.find, limits.max_inline_len
    nul = find(b"\0", pos)
    try:
        while pos < end:
            if buf[pos] == _STAR:
                if stop_at_star:
                    break
                nxt = _multibulk(buf, pos, limits, cmds)
                if nxt < 0:
                    break
                pos = nxt
                continue
            nl = find(b"\n", pos)
            if nul >= 0:  # rare: a NUL somewhere
                if nul < pos:
                    nul = find(b"\0", pos)  # that one was in a value
                if pos <= nul < nl:
                    nl = -1
            if nl < 0:
                if end - pos > most:
                    raise ProtocolError("too big inline request")
                break
            if nl - pos > most:
                raise ProtocolError("too big inline request")
            line = buf[pos:nl]
            # bytes.split() is sdssplitargs for a line without quotes, \v or \f (its `\r`
            # included): no call for the common case.
            args = line.split() if _NOT_PLAIN(line) is None else split_inline(line)
            if args:
                cmds.append(args)
            pos = nl + 1
    except ProtocolError as e:
        return cmds, pos, str(e)
    return cmds, pos, None


def _multibulk(buf: bytes, pos: int, limits: Limits, cmds: list[list[bytes]]) -> int:
    """One multibulk command; where the next starts, or -1 while it is incomplete.

    Redis ends a header line at its first `\\r` and skips the byte after it unread, and
    skips the two bytes after a value unread too; lengths are strict (string2ll)."""
    cr = _line_end(buf, pos, limits, "too big mbulk count string")
    if cr < 0:
        return -1
    count = _string2ll(buf[pos + 1 : cr])
    if count is None or count > limits.max_multibulk_len:
        raise ProtocolError("invalid multibulk length")
    pos = cr + 2
    args: list[bytes] = []
    for _ in range(count):
        cr = _line_end(buf, pos, limits, "too big bulk count string")
        if cr < 0:
            return -1
        if buf[pos] != _DOLLAR:
            raise ProtocolError(f"expected '$', got '{chr(buf[pos])}'")
        size = _string2ll(buf[pos + 1 : cr])
        if size is None or size < 0 or size > limits.max_bulk_len:
            raise ProtocolError("invalid bulk length")
        pos = cr + 2
        if len(buf) - pos < size + 2:
            return -1
        args.append(buf[pos : pos + size])
        pos += size + 2
    if args:  # a count <= 0 is skipped
        cmds.append(args)
    return pos


def refused_element(buf: bytes, limits: Limits) -> int:
    """In `buf`, an incomplete multibulk command, where the element starts that Redis
    is bound to refuse once its line ends (its first byte is not `$`), or -1."""
    try:
        cr = _line_end(buf, 0, limits, "")
        count = _string2ll(buf[1:cr]) if cr > 0 else None
        pos = cr + 2
        for _ in range(count or 0):
            if pos >= len(buf):
                return -1
            cr = _line_end(buf, pos, limits, "")
            if buf[pos] != _DOLLAR:
                return pos if cr < 0 else -1
            size = _string2ll(buf[pos + 1 : cr]) if cr > 0 else None
            if size is None or size < 0:
                return -1
            pos = cr + 2 + size + 2
    except ProtocolError:
        pass
    return -1


def _line_end(buf: bytes, pos: int, limits: Limits, too_big: str) -> int:
    """Where the header line at `pos` ends (its `\\r`, with a byte after it), or -1
    while it is incomplete; past the inline limit without one, Redis' error. Redis
    looks for the `\\r` with strchr, which stops at a NUL."""
    cr = buf.find(b"\r", pos)
    if cr < 0 or cr + 1 >= len(buf) or buf.find(b"\0", pos, cr) >= 0:
        if len(buf) - pos > limits.max_inline_len:
            raise ProtocolError(too_big)
        return -1
    return cr


_INT64 = re.compile(rb"-?[1-9][0-9]{0,18}|0").fullmatch


def _string2ll(text: bytes) -> int | None:
    """Redis' string2ll: no sign but `-`, no leading zero, no space, 64 bits."""
    if _INT64(text) is None:
        return None
    value = int(text)
    return value if -(1 << 63) <= value < 1 << 63 else None


def split_inline(line: bytes) -> list[bytes]:
    """Split an inline command line like Redis' sdssplitargs (quotes and escapes)."""
    if line.endswith(b"\r"):
        line = line[:-1]
    if _NOT_PLAIN(line) is None:
        return line.split()
    return _split_quoted(line)


# bytes.split() matches sdssplitargs only without quotes and without \v and \f: Redis
# skips those two before an argument (isspace) but keeps them inside one.
_NOT_PLAIN = re.compile(rb"[\"'\x0b\x0c]").search
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ISSPACE = b" \t\n\r\x0b\x0c"  # C isspace(): between arguments and after a closing quote
_ENDS_ARG = b" \t\n\r"  # what ends an unquoted argument in sdssplitargs


def _split_quoted(line: bytes) -> list[bytes]:
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _ISSPACE:
            i += 1
        if i >= n:
            return args
        cur = bytearray()
        quote = 0
        while i < n:
            c = line[i]
            if quote == ord('"'):
                if c == ord("\\") and i + 1 < n:
                    i += 1
                    nxt = line[i]
                    if (
                        nxt == ord("x")
                        and i + 2 < n
                        and line[i + 1] in _HEX
                        and line[i + 2] in _HEX
                    ):
                        cur.append(int(line[i + 1 : i + 3], 16))
                        i += 2
                    else:
                        cur.append(_ESCAPES.get(nxt, nxt))
                elif c == quote:
                    if i + 1 < n and line[i + 1] not in _ISSPACE:
                        raise ProtocolError("unbalanced quotes in request")
                    quote = 0
                    i += 1
                    break
                else:
                    cur.append(c)
            elif quote == ord("'"):
                if c == ord("\\") and i + 1 < n and line[i + 1] == ord("'"):
                    i += 1
                    cur.append(ord("'"))
                elif c == quote:
                    if i + 1 < n and line[i + 1] not in _ISSPACE:
                        raise ProtocolError("unbalanced quotes in request")
                    quote = 0
                    i += 1
                    break
                else:
                    cur.append(c)
            elif c in _ENDS_ARG:
                break
            elif c in b"\"'":
                quote = c
            else:
                cur.append(c)
            i += 1
        if quote:
            raise ProtocolError("unbalanced quotes in request")
        args.append(bytes(cur))
