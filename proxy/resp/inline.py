"""Inline commands (`SET k v` typed into telnet) split as Redis' sdssplitargs does:
quotes, escapes and the whitespace rules, kept apart from the multibulk parser."""

from __future__ import annotations

import re

from proxy.resp.errors import ProtocolError


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
