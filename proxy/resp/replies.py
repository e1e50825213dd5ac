"""Reply boundaries and proxy-made replies. Pure: no asyncio, no sockets.

Backend replies are forwarded as the bytes Redis sent (docs/architecture.md, "Invariants"): the
`ReplySplitter` only finds where each reply ends, for RESP2 and RESP3 alike. It is
resumable: a reply cut across TCP reads is not rescanned from its start, so a reply of a
million elements costs one pass however it arrives.

The `encode_*` helpers build the few replies the proxy answers itself (PING, HELLO,
CLIENT ..., errors), in the protocol the client negotiated.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

from proxy.resp.errors import ProtocolError

# Types whose value is the rest of the line: + - : _ , # (
_LINE_TYPES = frozenset(b"+-:_,#(")
# Types with a length and a payload: $ (bulk) = (verbatim) ! (bulk error)
_BULK_TYPES = frozenset(b"$=!")
# Aggregates of N elements: * (array) ~ (set) > (push)
_ARRAY_TYPES = frozenset(b"*~>")
_MAP = ord("%")
_ATTRIBUTE = ord("|")
_MINUS = ord("-")


class ReplySplitter:
    """Splits a stream of replies into whole replies (bytes), keeping partial state."""

    __slots__ = ("_buf", "_pending", "_pos")

    def __init__(self) -> None:
        # An incomplete reply, as a bytearray grown in place (see `_keep`): a 100 MB value
        # or a long aggregate arriving in many reads is copied once, not once per read.
        self._buf: bytes | bytearray = b""
        self._pos = 0  # scan position inside the current (incomplete) reply
        self._pending = 1  # elements still to read for the current reply

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Yield every reply completed by `data`, in order (see `split`)."""
        yield from self.split(data)

    def split(self, data: bytes) -> list[bytes]:
        """Every reply completed by `data`, in order.

        Where the C accelerator is built, one call cuts the whole read (`_speedups.cut`,
        the scan's state machine). Else simple replies (+ - : $), most of the traffic,
        are cut inline, and anything else goes through the general `scan`. Raises
        ProtocolError on bytes that are not RESP; the connection is then unusable.
        """
        out: list[bytes] = []
        if self._buf:  # finish the reply left incomplete last time
            acc = self._buf
            acc += data  # in place for a bytearray
            pos, pending = scan(acc, self._pos, self._pending, len(acc))
            if pending:
                self._keep(acc, pos, pending)
                return out
            out.append(bytes(acc[:pos]))
            # What follows came with `data` (so it is short): go on with plain bytes.
            data = bytes(acc[pos:])
        if _cut is not None:
            return self._cut(data, out)
        buf = data
        end = len(buf)
        start = 0
        find = buf.find
        while start < end:
            t = buf[start]
            if t == 43 or t == 45 or t == 58:  # + - :
                nl = find(b"\r\n", start)
                if nl < 0:
                    break
                out.append(buf[start : nl + 2])
                start = nl + 2
            elif t == 36:  # $
                nl = find(b"\r\n", start)
                if nl < 0:
                    break
                n = _length(buf, start, nl)
                stop = nl + 2 if n < 0 else nl + 4 + n
                if stop > end:
                    self._keep(buf[start:], 0, 1)
                    return out
                out.append(buf[start:stop])
                start = stop
            else:
                pos, pending = scan(buf, start, 1, end)
                if pending:
                    self._keep(buf[start:], pos - start, pending)
                    return out
                out.append(buf[start:pos])
                start = pos
        self._buf = buf[start:] if start < end else b""
        self._pos, self._pending = 0, 1
        return out

    def _cut(self, data: bytes, out: list[bytes]) -> list[bytes]:
        """The loop of `split` in one C call (`_speedups.cut`), the same cuts."""
        assert _cut is not None
        try:
            replies, start, pos, pending = _cut(data)
        except ValueError as e:
            raise _scan_error(e) from None
        if out:
            out += replies
        else:
            out = replies
        if pending:
            self._keep(data[start:], pos - start, pending)
        else:
            self._buf, self._pos, self._pending = b"", 0, 1
        return out

    def _keep(self, buf: bytes | bytearray, pos: int, pending: int) -> None:
        """Remember an incomplete reply; `pos` is where scanning resumes inside `buf`."""
        if buf.__class__ is not bytearray:
            buf = bytearray(buf)
        self._buf, self._pos, self._pending = buf, pos, pending

    @property
    def buffered(self) -> int:
        return len(self._buf)


def scan(buf: bytes | bytearray, pos: int, pending: int, end: int) -> tuple[int, int]:
    """Advance over complete elements; return (position, elements still pending).

    `pending` counts elements not yet read: 1 for a fresh reply, more inside aggregates.
    The scan stops at the first incomplete element (returning its start) or when the
    reply is complete (pending == 0).
    """
    try:
        return _scan_impl(buf, pos, pending, end)
    except ValueError as e:  # a length that is not a number, or a bad type byte (C)
        raise _scan_error(e) from None


def _scan_error(e: ValueError) -> ProtocolError:
    msg = str(e)
    return ProtocolError(msg if msg.startswith("unexpected") else "invalid length in reply")


def _scan(buf: bytes | bytearray, pos: int, pending: int, end: int) -> tuple[int, int]:
    # The loop is the cost of every aggregate reply (LRANGE, HGETALL...) where the C
    # accelerator is not built: bulk elements are tested first and parsed inline.
    find = buf.find
    while pending:
        if pos >= end:
            return pos, pending
        t = buf[pos]
        nl = find(b"\r\n", pos)
        if nl < 0:
            return pos, pending
        if t in _BULK_TYPES:  # $ = !
            n = _strict_int(buf[pos + 1 : nl])
            nxt = nl + 2 if n < 0 else nl + 4 + n
            if nxt > end:
                return pos, pending
            pos = nxt
            pending -= 1
        elif t in _LINE_TYPES:
            pos = nl + 2
            pending -= 1
        elif t in _ARRAY_TYPES:
            n = _strict_int(buf[pos + 1 : nl])
            pos = nl + 2
            pending += n - 1 if n > 0 else -1
        elif t == _MAP:
            n = _strict_int(buf[pos + 1 : nl])
            pos = nl + 2
            pending += 2 * n - 1 if n > 0 else -1
        elif t == _ATTRIBUTE:
            # An attribute map comes before the value it describes: it adds its own
            # 2n elements without using up the element it precedes.
            n = _strict_int(buf[pos + 1 : nl])
            if n < 0:  # as the C scanner: `pending` would go negative and never end
                raise ProtocolError("invalid length in reply")
            pending += 2 * n
            pos = nl + 2
        else:
            raise ProtocolError(f"unexpected reply type byte {t!r}")
    return pos, 0


# The C accelerator (proxy/resp/_speedups.c) walks the same state machine ~30x faster;
# it is optional, so a machine without a compiler runs this module's `_scan`.
# GEOREDIS_PURE_PYTHON=1 forces the Python loop (tests run both).
_scan_impl: Callable[[bytes | bytearray, int, int, int], tuple[int, int]] = _scan
if not os.environ.get("GEOREDIS_PURE_PYTHON"):
    with contextlib.suppress(ImportError):  # pragma: no cover - depends on the build
        from proxy.resp._speedups import scan as _scan_impl
SPEEDUPS = _scan_impl is not _scan
# The splitter's whole loop over a read, in C where built (None: the loop in Python).
_cut: Callable[[bytes], tuple[list[bytes], int, int, int]] | None = None
if SPEEDUPS:
    with contextlib.suppress(ImportError):  # pragma: no cover - an older build lacks it
        from proxy.resp._speedups import cut as _cut


def _length(buf: bytes | bytearray, pos: int, nl: int) -> int:
    text = buf[pos + 1 : nl]
    # Every bulk reply's path: plain digits (or a nil) first, with no call.
    if text.isdigit() and len(text) < 16:
        return int(text)
    return -1 if text == b"-1" else _strict_int(text)


def _strict_int(text: bytes | bytearray) -> int:
    """A RESP length as the C scanner reads it: `[-]digits` and nothing else. `int()`
    alone also takes spaces, `+`, `_` and `\\x0c`, so the verdict on the same bytes
    would depend on where TCP cut them (the fuzzer found it)."""
    neg = text[:1] == b"-"
    digits = text[1:] if neg else text
    # Leading zeros as C takes them (any number); the value bounded as there.
    value = digits.lstrip(b"0")
    if not digits.isdigit() or len(value) > 16 or int(value or b"0") > _LENGTH_MAX:
        raise ProtocolError("invalid length in reply")
    n = int(value or b"0")
    return -n if neg else n


_LENGTH_MAX = 1 << 50  # as parse_len in _speedups.c


def is_error(reply: bytes) -> bool:
    return reply[0] == _MINUS


def errors_py(replies: list[bytes], start: int, stop: int) -> int:
    """How many of `replies[start:stop]` are error replies (`_speedups.errors`' twin)."""
    return sum(1 for r in replies[start:stop] if r[0] == _MINUS)


errors: Callable[[list[bytes], int, int], int] = errors_py
if SPEEDUPS:
    with contextlib.suppress(ImportError):  # pragma: no cover - an older build lacks it
        from proxy.resp._speedups import errors as _errors_c

        errors = _errors_c


# ---------------------------------------------------------------- replies the proxy makes

OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
QUEUED = b"+QUEUED\r\n"


def encode_error(message: str) -> bytes:
    """`message` must start with an error code (ERR, WRONGTYPE, ...); newlines are removed."""
    return b"-" + message.replace("\r", " ").replace("\n", " ").encode() + b"\r\n"


def encode_simple(text: str) -> bytes:
    return b"+" + text.encode() + b"\r\n"


def encode_bulk(value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return b"$%d\r\n%b\r\n" % (len(data), data)


def encode_int(value: int) -> bytes:
    return b":%d\r\n" % value


def encode_null(proto: int) -> bytes:
    return b"_\r\n" if proto == 3 else b"$-1\r\n"


def encode_verbatim(text: str, proto: int) -> bytes:
    """A text blob (CLIENT INFO, INFO-like output): verbatim string in RESP3, bulk in RESP2."""
    if proto != 3:
        return encode_bulk(text)
    data = b"txt:" + text.encode()
    return b"=%d\r\n%b\r\n" % (len(data), data)


Value = bytes | str | int | float | None | list["Value"] | dict[str, "Value"]


def encode(value: Value, proto: int) -> bytes:
    """Encode a Python value: str/bytes -> bulk, int -> integer, None -> null,
    list -> array, dict -> map (RESP3) or flat array (RESP2)."""
    out: list[bytes] = []
    _encode_into(value, proto, out)
    return b"".join(out)


def _encode_into(value: Value, proto: int, out: list[bytes]) -> None:
    if isinstance(value, bytes | str):
        out.append(encode_bulk(value))
    elif isinstance(value, bool):
        if proto == 3:
            out.append(b"#t\r\n" if value else b"#f\r\n")
        else:
            out.append(encode_int(int(value)))
    elif isinstance(value, int):
        out.append(encode_int(value))
    elif isinstance(value, float):
        out.append(b",%r\r\n" % value if proto == 3 else encode_bulk(repr(value)))
    elif value is None:
        out.append(encode_null(proto))
    elif isinstance(value, list):
        out.append(b"*%d\r\n" % len(value))
        for item in value:
            _encode_into(item, proto, out)
    else:
        out.append(b"%%%d\r\n" % len(value) if proto == 3 else b"*%d\r\n" % (2 * len(value)))
        for k, v in value.items():
            out.append(encode_bulk(k))
            _encode_into(v, proto, out)
