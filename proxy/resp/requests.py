"""Client request parsing: RESP multibulk (via hiredis' C reader) and inline commands.

Strategy. hiredis turns `*N $len ...` requests into argument lists at C speed but cannot
say how many bytes each command took, so we track *sync points*: moments when hiredis
holds no partial command. The raw bytes fed between two sync points are exactly the
commands parsed in between, so when all of them go to one backend connection the session
forwards those bytes untouched (`Batch.raw`), and only re-encodes (hiredis.pack_command)
when a batch has to be split. Inline commands (`PING\\r\\n`, as telnet and
redis-benchmark's PING_INLINE send) are recognised at sync points by a first byte other
than `*`.

Limits follow Redis: proto-max-bulk-len, the multibulk element count and the inline
line length; a violation is a `ProtocolError` and costs the client its connection.
"""

from __future__ import annotations

import re

import hiredis

from proxy.resp.errors import ProtocolError
from proxy.resp.inline import split_inline
from proxy.resp.limits import Limits as Limits
from proxy.resp.limits import (
    check_complete,
    check_header,
    declared_count,
    framed,
    framing_error,
    skip_multibulk,
)

_STAR = 42  # b"*"
# Raw bytes are kept for pass-through only while a partial command stays small; a huge
# value is re-encoded instead of being held twice (once here, once inside hiredis).
_RAW_KEEP_MAX = 1 << 20
# A partial command's header is validated (counts and lengths) from this many bytes.
_HEADER_CHECK_BYTES = 64 * 1024
# hiredis allocates a command's argument list (8 bytes an element) as soon as it reads
# `*N`: 11 bytes (`*1048576\r\n`) would reserve 8 MB. Such a command is held back here
# until its bytes could hold N elements (`$0\r\n\r\n`, 6 bytes each), so what it costs
# stays proportional to what the client sent. Smaller counts are not worth the care.
_HOLD_ABOVE = 4096
_MIN_ELEMENT_BYTES = 6


class Batch:
    """The commands completed by one `feed`, and their raw bytes when those are exact."""

    __slots__ = ("commands", "raw")

    def __init__(self, commands: list[list[bytes]], raw: bytes | None) -> None:
        self.commands = commands
        # The exact bytes of `commands` (multibulk only), or None when they are not known.
        self.raw = raw


class RequestParser:
    __slots__ = (
        "_checked",
        "_done",
        "_held",
        "_held_need",
        "_inline",
        "_limits",
        "_partial",
        "_raw",
        "_reader",
        "_scan_pos",
        "_tail",
        "_unwalked",
        "_walk_above",
    )

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._reader = hiredis.Reader()
        self._raw: list[bytes] | None = []  # bytes fed to hiredis since the last sync point
        self._partial = 0  # how many of those bytes
        self._checked = False  # the pending partial command's header passed the limits
        self._done = 0  # complete commands hiredis returned since the last sync point
        # Where in `_raw` a command starts, with `_unwalked` complete commands between
        # it and the pending one (see `_check_pending`). Followed while `_raw` is kept.
        self._scan_pos = 0
        self._unwalked = 0
        self._tail = b""  # the end of the last feed: a `*N` line split between two
        self._inline = b""  # an incomplete inline line
        # A big-count command held back from hiredis (see `_HOLD_ABOVE`), and the size
        # it must reach before hiredis sees it.
        self._held: list[bytes] | None = None
        self._held_need = 0
        # Complete commands in fewer bytes than this cannot break a length limit.
        self._walk_above = min(self._limits.max_bulk_len, 6 * self._limits.max_multibulk_len)

    @property
    def pending_bytes(self) -> int:
        """Bytes received and not yet part of a complete command (CLIENT LIST's qbuf)."""
        return self._partial + sum(map(len, self._held or ())) + len(self._inline)

    def feed(self, data: bytes) -> Batch:
        commands: list[list[bytes]] = []
        if self._held is not None:
            data = self._hold_more(data)
            if not data:
                return Batch(commands, None)
        inline_seen = False
        if not self._partial and (self._inline or data[:1] != b"*"):
            data = self._parse_inline(data, commands)
            if not data:
                return Batch(commands, None)
            inline_seen = bool(commands)
        self._feed_reader(data)
        before = len(commands)
        exact, synced, ignored = self._drain(commands)
        exact = exact and not inline_seen
        if not synced:
            self._done += len(commands) - before
            self._check_pending(len(commands) - before + ignored, data, ignored)
            return Batch(commands, None)
        raw = self._raw
        # Commands returned by an earlier feed share these raw bytes: not exact then.
        exact = exact and not self._done
        # Inline, not `_restart()`: this is every synced feed's path.
        self._raw, self._partial, self._checked, self._done = [], 0, False, 0
        self._scan_pos = self._unwalked = 0
        if raw is None:
            return Batch(commands, None)
        buf = raw[0] if len(raw) == 1 else b"".join(raw)
        # The bytes may go to a shared backend connection as they came: they must mean
        # there what they meant here (hiredis also reads RESP3 types and `+x` elements,
        # which Redis reads otherwise: replies for other clients' commands would be off).
        bad = framed(buf)
        if bad:
            raise framing_error(bad)
        if len(buf) > self._walk_above:
            check_complete(buf, self._limits)
        return Batch(commands, buf if exact else None)

    def _restart(self) -> None:
        """At a sync point (nothing pending) or after `_hold`."""
        self._raw, self._partial, self._checked, self._done = [], 0, False, 0
        self._scan_pos = self._unwalked = 0

    def _feed_reader(self, data: bytes) -> None:
        self._reader.feed(data)
        self._partial += len(data)
        raw = self._raw
        if raw is not None:
            if self._partial > _RAW_KEEP_MAX:
                self._raw = None
            else:
                raw.append(data)

    def _drain(self, commands: list[list[bytes]]) -> tuple[bool, bool, int]:
        """Move complete commands out of hiredis.

        Returns (all were plain and non-empty, at a sync point, how many `*-1` and `*0`
        were consumed and ignored). A sync point is "no
        byte left right after the last complete command": `has_data()` alone cannot tell,
        because once hiredis has consumed a partial command's `*N` or `$len` lines its
        buffer is empty too, with that command still pending.
        """
        reader = self._reader
        gets = reader.gets
        exact = True
        synced = False  # data was just fed: until a command completes, one is pending
        ignored = 0
        try:
            while (cmd := gets()) is not False:
                synced = not reader.has_data()
                if cmd.__class__ is not list:
                    if cmd is None:  # `*-1`: Redis ignores it
                        exact = False
                        ignored += 1
                        continue
                    raise ProtocolError("expected '*', got a non-array request")
                if not cmd:  # `*0`: ignored as well
                    exact = False
                    ignored += 1
                    continue
                for arg in cmd:
                    if arg.__class__ is not bytes:
                        raise ProtocolError("expected '$', got something else")
                commands.append(cmd)
        except hiredis.ProtocolError as e:
            raise ProtocolError(_redis_words(str(e))) from None
        except (TypeError, ValueError):
            # hiredis building a RESP3 value no request has (a map keyed by an array:
            # "unhashable type"): not a request either way.
            raise ProtocolError("expected '*', got a non-array request") from None
        return exact, synced, ignored

    def _check_pending(self, completed: int, data: bytes, ignored: int = 0) -> None:
        """Apply Redis' request limits to the command hiredis is still waiting on.

        `completed`: commands that completed in this feed (ignored ones too): the
        pending command is then another one. The first pending command after a sync
        point is checked whole (counts and lengths). A later one is looked for only when
        the new bytes hold a `*N` line with N above _HOLD_ABOVE (a regex, at C speed):
        only then are the complete commands before it stepped over, in Python. So a
        pipeline split across reads costs no walk, and `PING` split in two, then
        `*1048576`, is still held (checking only the first pending command let it
        reserve 8 MB for 20 bytes). Lengths in later commands are checked once they
        are complete (`check_complete`), and by the size guard here meanwhile."""
        if self._partial > self._limits.max_query:
            raise ProtocolError("request too large (client_query_buffer_limit)")
        tail, self._tail = self._tail, data[-_COUNT_LINE_MAX:]
        raw = self._raw
        if raw is None:
            # Past _RAW_KEEP_MAX without a sync point, where commands start is no longer
            # followed: a client must have sent over 1 MB to have a big count go unheld
            # (a cost in proportion).
            return
        if ignored or (completed and _OTHER_TYPE_LINE(tail + data) is not None):
            # A type Redis does not read in a request may have made a command hiredis
            # returned (a RESP3 set read as an array), or a null hiredis dropped (`$-1`
            # where a request starts, an inline command to Redis): walk it as Redis
            # would (in C).
            code = framed(raw[0] if len(raw) == 1 else b"".join(raw))
            if code != 0 and code != -2:  # -2: the read ends inside a request
                raise framing_error(code)
        if completed:
            self._unwalked += completed
            self._checked = False
        if self._checked or (self._unwalked and not _has_big_count(tail + data)):
            return
        buf = raw[0] if len(raw) == 1 else b"".join(raw)
        if self._unwalked:
            self._walk(buf)
        pending = buf[self._scan_pos :]
        self._checked = check_header(pending[:_HEADER_CHECK_BYTES], self._limits)
        count = declared_count(pending, 0)
        if count > _HOLD_ABOVE and len(pending) < count * _MIN_ELEMENT_BYTES:
            self._hold(pending, count * _MIN_ELEMENT_BYTES)

    def _walk(self, buf: bytes) -> None:
        """Step over the unwalked complete commands: `_scan_pos` is then where the
        pending one starts."""
        pos = self._scan_pos
        try:
            for _ in range(self._unwalked):
                pos = skip_multibulk(buf, pos)
        except (ValueError, IndexError):
            # Not `*N` then `$len` lines throughout: hiredis took other types inside a
            # command (`+x`, `:1`), which Redis refuses.
            raise ProtocolError("expected '$', got something else") from None
        self._scan_pos, self._unwalked = pos, 0

    def _hold(self, pending: bytes, need: int) -> None:
        """Take the pending command back from hiredis (a new reader frees the list it
        allocated) until `need` bytes of it have arrived."""
        self._reader = hiredis.Reader()
        self._restart()
        self._held, self._held_need = [pending], need - len(pending)

    def _hold_more(self, data: bytes) -> bytes:
        """Bytes of a held command; all of them once it is big enough, else b"".

        What is held stays below `6 * max_multibulk_len` (the count passed the limit),
        so it needs no size check of its own; hiredis applies the rest once fed."""
        held = self._held
        assert held is not None
        held.append(data)
        self._held_need -= len(data)
        if self._held_need > 0:
            return b""
        self._held = None
        return b"".join(held)

    def _parse_inline(self, data: bytes, commands: list[list[bytes]]) -> bytes:
        """Parse inline lines at a sync point; return what is left for hiredis."""
        if self._inline:
            data = self._inline + data
            self._inline = b""
        pos, end = 0, len(data)
        while pos < end and data[pos] != _STAR:
            nl = data.find(b"\n", pos)
            if nl < 0:
                if end - pos > self._limits.max_inline_len:
                    raise ProtocolError("too big inline request")
                self._inline = data[pos:]
                return b""
            if nl - pos > self._limits.max_inline_len:
                raise ProtocolError("too big inline request")
            args = split_inline(data[pos:nl])
            if args:
                commands.append(args)
            pos = nl + 1
        return data[pos:] if pos else data


def _redis_words(hiredis_message: str) -> str:
    """Say what Redis itself says for the same bad input."""
    m = hiredis_message.lower()
    if "multi-bulk" in m or "multibulk" in m:
        return "invalid multibulk length"
    if "bulk" in m:
        return "invalid bulk length"
    return hiredis_message or "invalid request"


# A line that starts with a RESP type other than `*` and `$` (in a value too: then the
# walk it starts finds nothing).
_OTHER_TYPE_LINE = re.compile(rb"\r\n[~%>_+|#,(!=:\-]").search
_COUNT_LINE_MAX = 24  # `*` and a count of up to 21 digits, CRLF
# A `*N` line with N of 4 digits or more; `_has_big_count` compares N to _HOLD_ABOVE.
_BIG_COUNT_LINE = re.compile(rb"\*([0-9]{4,21})\r\n")


def _has_big_count(data: bytes) -> bool:
    """`*N` with N above _HOLD_ABOVE somewhere in `data` (in a header, or in a value:
    then the caller's walk finds nothing to hold, at a cost the client's bytes paid)."""
    return any(int(m) > _HOLD_ABOVE for m in _BIG_COUNT_LINE.findall(data))


def pack(args: list[bytes]) -> bytes:
    """Encode one command as a RESP multibulk (hiredis, in C)."""
    packed: bytes = hiredis.pack_command(tuple(args))  # type: ignore[arg-type]
    return packed
