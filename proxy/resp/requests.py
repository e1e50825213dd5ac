"""Client request parsing: RESP multibulk (via hiredis' C reader) and inline commands.

Strategy. A read that is nothing but whole requests in their plainest form (`*N`,
`$len`, plain digits, CRLF everywhere) with nothing pending before it, the usual read,
is split in one C call (`limits.split`, `_speedups.split`); its bytes are the batch's
raw bytes. Every other read takes the long way below, which knows every case.

The long way. hiredis turns `*N $len ...` requests into argument lists at C speed but cannot
say how many bytes each command took, so we track *sync points*: moments when hiredis
holds no partial command. The raw bytes fed since the *anchor* (where the first command
not returned yet starts) are exactly the commands parsed since, so when all of them go
to one backend connection the session forwards those bytes untouched (`Batch.raw`), and
only re-encodes (hiredis.pack_command) when a batch has to be split. A read that ends
inside a command moves the anchor to that command's start (`_anchor`, walked in C), so
what is kept stays one command and a read, and its complete commands are checked then.

Redis tells each command's kind by its first byte, wherever it starts: `*` multibulk,
anything else an inline line (`PING\\r\\n` from telnet, redis-benchmark's PING_INLINE,
a `redis-cli --pipe` file). Inline lines at an anchor are read by `inline.read_as_redis`
up to the next multibulk command. When hiredis stops (an inline command after a
multibulk one in the same read, `*-5`) or reads a type Redis does not read in a request,
the bytes since the anchor are read again the way Redis reads them (`_reread`, at Python
speed); an incomplete multibulk command left at the end goes back to hiredis. Commands
read before a protocol error come with it (`ProtocolError.commands`): Redis runs and
answers them first, and reads nothing more (neither does the parser).

Limits follow Redis: proto-max-bulk-len, the multibulk element count and the inline
line length; a violation is a `ProtocolError` and costs the client its connection.
"""

from __future__ import annotations

import hiredis

from proxy.resp.errors import ProtocolError
from proxy.resp.inline import read_as_redis, refused_element
from proxy.resp.limits import Limits as Limits
from proxy.resp.limits import (
    check_complete,
    check_header,
    command_end,
    declared_count,
    framed,
    framing_error,
    skip_requests,
    split,
)

_STAR = 42  # b"*"
# Raw bytes are kept (for pass-through, and to read them again as Redis would) while
# the pending command stays small; a huge value is re-encoded instead of being held
# twice (once here, once inside hiredis).
_RAW_KEEP_MAX = 1 << 20
# A partial command's header is validated (counts and lengths) from this many bytes.
_HEADER_CHECK_BYTES = 64 * 1024
# hiredis allocates a command's argument list (8 bytes an element) as soon as it reads
# `*N`: 11 bytes (`*1048576\r\n`) would reserve 8 MB. Such a command is held back here
# until its bytes could hold N elements (`$0\r\n\r\n`, 6 bytes each), so what it costs
# stays proportional to what the client sent. Smaller counts are not worth the care.
_HOLD_ABOVE = 4096
_MIN_ELEMENT_BYTES = 6
# `_held` after a protocol error: every later read is dropped, as Redis drops what a
# client sends once it has answered an error and is closing it.
_DONE: list[bytes] = []
_NOT_BULK = "expected '$', got something else"


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
        "_held",
        "_held_need",
        "_inline",
        "_limits",
        "_partial",
        "_raw",
        "_reader",
        "_slow",
        "_walk_above",
    )

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._reader = hiredis.Reader()
        # Bytes fed to hiredis since the anchor: where the first command hiredis has not
        # returned yet starts (a sync point, or where `_anchor` moved it). None while
        # that command alone is over _RAW_KEEP_MAX.
        self._raw: list[bytes] | None = []
        self._partial = 0  # how many of those bytes
        self._checked = False  # the pending partial command's header passed the limits
        self._inline = b""  # an incomplete inline line
        self._slow = False  # ... or a multibulk command hiredis refuses before Redis does
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
        if not self._partial and self._held is None and not self._inline:
            # Nothing pending: a read of whole plain requests, the usual one, is split
            # in one C call (None: anything else, read the long way below).
            limits = self._limits
            plain = split(data, limits.max_multibulk_len, limits.max_bulk_len)
            if plain is not None:
                return Batch(plain, data)
        commands: list[list[bytes]] = []
        if self._held is not None:
            data = self._hold_more(data)
            if not data:
                return Batch(commands, None)
        if not self._partial and (self._inline or data[:1] != b"*"):
            data = self._read_inline(data, commands)
            if not data:
                return Batch(commands, None)
        before = len(commands)
        self._feed_reader(data)
        buf = b""
        try:
            exact, synced, ignored = self._drain(commands)
            raw = self._raw
            if synced and raw is not None:
                buf = raw[0] if len(raw) == 1 else b"".join(raw)
                # The bytes may go to a shared backend connection as they came: they
                # must mean there what they meant here (hiredis also reads RESP3 types
                # and `+x` elements, which Redis reads otherwise: replies for other
                # clients' commands would be off). Such bytes are read again, as Redis
                # reads them (`_reread`).
                bad = framed(buf)
                if bad:
                    raise framing_error(bad)
                if len(buf) > self._walk_above:
                    check_complete(buf, self._limits)
        except ProtocolError as e:
            return self._reread(data, commands, before, e)
        completed = len(commands) - before + ignored
        if not synced:
            return self._unsynced(data, commands, before, completed)
        if raw is None:
            if completed > 1:
                # Behind a request too big to keep: what followed it is checked so.
                return self._reread(data, commands, before, None)
            self._restart()
            return Batch(commands, None)
        # Inline, not `_restart()`: this is every synced feed's path.
        self._raw, self._partial, self._checked = [], 0, False
        # Not exact when commands read inline, or a `*0` or `*-1`, share these bytes.
        return Batch(commands, buf if exact and not before else None)

    def _restart(self) -> None:
        """At a sync point (nothing pending) or after `_hold`."""
        self._raw, self._partial, self._checked = [], 0, False

    def _feed_reader(self, data: bytes) -> None:
        self._reader.feed(data)
        self._partial += len(data)
        raw = self._raw
        if raw is not None:
            raw.append(data)

    def _unsynced(self, data: bytes, commands: list[list[bytes]], before: int,
                  completed: int) -> Batch:  # fmt: skip
        """A read that ends inside a command: the complete ones are checked as at a
        sync point, and the anchor moves to the pending one, whose limits apply."""
        try:
            if completed and self._raw is None:
                # The anchor's command, too big to keep, is `commands[before]`.
                if not self._reanchor(data, commands, before):
                    raise ProtocolError(_NOT_BULK)
                before, completed = before + 1, completed - 1
            if completed:
                self._anchor(completed)
                before = len(commands)  # all before the anchor now, checked
            self._check_pending()
            if self._partial > _RAW_KEEP_MAX:
                self._raw = None  # one command: its values would be held twice
            if self._partial > self._limits.max_query:
                raise ProtocolError("request too large (client_query_buffer_limit)")
        except ProtocolError as e:
            return self._reread(data, commands, before, e)
        return Batch(commands, None)

    def _anchor(self, completed: int) -> None:
        """Step over the `completed` commands (walked in C, once `framed` found them as
        Redis reads them): what is kept is then the pending command's bytes, however long
        a pipeline runs without a sync point, and a command Redis reads otherwise (`$`
        or another type where one starts) is found in the read that brings it."""
        raw = self._raw
        assert raw is not None
        buf = raw[0] if len(raw) == 1 else b"".join(raw)
        code = framed(buf)
        if code != 0 and code != -2:  # -2: the read ends inside a request
            raise framing_error(code)
        pos = skip_requests(buf, completed)
        if pos > self._walk_above:
            check_complete(buf[:pos], self._limits)
        self._raw, self._partial, self._checked = [buf[pos:]], len(buf) - pos, False

    def _reanchor(self, data: bytes, commands: list[list[bytes]], first: int) -> bool:
        """The anchor's command (its bytes not kept: too big) is `commands[first]`,
        completed in `data`: anchor right after it. False when it was not bulk strings
        throughout (`+x`), which Redis refuses."""
        end = -1
        if len(commands) > first:
            end = command_end(commands[first], data, self._partial - len(data))
        if end < 0:
            return False
        self._raw, self._partial, self._checked = [data[end:]], len(data) - end, False
        return True

    def _reread(self, data: bytes, commands: list[list[bytes]], keep: int,
                error: ProtocolError | None) -> Batch:  # fmt: skip
        """hiredis stopped (`error`), or read a command Redis reads otherwise: read the
        bytes since the anchor again as Redis does (`keep` commands came before it)."""
        if self._raw is None:
            if not self._reanchor(data, commands, keep):
                # Where this read's commands start is not known: refused as hiredis read it.
                raise self._refuse(_NOT_BULK if error is None else str(error), [])
            keep += 1
        raw = self._raw
        assert raw is not None
        buf = raw[0] if len(raw) == 1 else b"".join(raw)
        del commands[keep:]
        self._reader = hiredis.Reader()  # the old one holds what it made of the bytes
        self._restart()
        read, pos, err = read_as_redis(buf, 0, self._limits)
        commands += read
        if err is not None:
            raise self._refuse(err, commands)
        return self._carry(buf[pos:], commands)

    def _carry(self, rest: bytes, commands: list[list[bytes]]) -> Batch:
        """What a reread left: nothing (a sync point), an incomplete inline line, or an
        incomplete multibulk command, which hiredis takes again from its start."""
        if rest[:1] != b"*":
            self._inline = rest  # `read_as_redis` checked its length
            return Batch(commands, None)
        self._feed_reader(rest)
        try:
            got: list[list[bytes]] = []
            if self._drain(got)[2] or got:
                raise ProtocolError("invalid multibulk length")
        except ProtocolError:
            doomed = refused_element(rest, self._limits)
            if doomed < 0:  # hiredis reads it otherwise (a line Redis ends at `\r` alone)
                raise self._refuse("invalid multibulk length", commands) from None
            # hiredis refuses the element's type byte at once, Redis once its line ends:
            # that line waits, as an inline one does, under a header of its own (read
            # again with each read, it is kept small).
            self._reader = hiredis.Reader()
            self._restart()
            self._inline, self._slow = b"*1\r\n" + rest[doomed:], True
            return Batch(commands, None)
        try:
            self._check_pending()
            if self._partial > self._limits.max_query:
                raise ProtocolError("request too large (client_query_buffer_limit)")
        except ProtocolError as e:
            raise self._refuse(str(e), commands) from None
        return Batch(commands, None)

    def _refuse(self, message: str, commands: list[list[bytes]]) -> ProtocolError:
        """The error, with the commands read before it (and their bytes, so that the
        session can forward them as a batch): Redis runs them, then answers the error,
        and reads nothing more. Neither does the parser from here on (`_DONE`)."""
        self._held = _DONE
        return ProtocolError(message, commands, b"".join(map(pack, commands)) if commands else None)

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

    def _check_pending(self) -> None:
        """Apply Redis' request limits to the command hiredis is still waiting on (the
        bytes since the anchor): the counts and lengths in its header, until they have
        all been seen (or a value started), and a big count held back.

        A line ended by a lone CR is looked for on every read of its first 64 KB, even
        once the limits passed: they pass when a value starts, and a header after that
        value can still come with one (`$4\r-abcd` cut before it: Redis runs the
        command, hiredis waits for a CRLF that may never come)."""
        raw = self._raw
        if raw is None or (self._checked and self._partial > _HEADER_CHECK_BYTES):
            return
        pending = raw[0] if len(raw) == 1 else b"".join(raw)
        if pending.count(b"\r") > pending.count(b"\r\n") and read_as_redis(
            pending, 0, self._limits
        ) != ([], 0, None):
            # Redis ends a line at a `\r` alone, hiredis waits for `\r\n`: read so.
            raise ProtocolError("a line ended by a lone CR")
        if self._checked:
            return
        self._checked = check_header(pending[:_HEADER_CHECK_BYTES], self._limits)
        count = declared_count(pending, 0)
        if count > _HOLD_ABOVE and len(pending) < count * _MIN_ELEMENT_BYTES:
            self._hold(pending, count * _MIN_ELEMENT_BYTES)

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
        if held is _DONE:
            return b""
        held.append(data)
        self._held_need -= len(data)
        if self._held_need > 0:
            return b""
        self._held = None
        return b"".join(held)

    def _read_inline(self, data: bytes, commands: list[list[bytes]]) -> bytes:
        """At a sync point: inline lines up to the first multibulk command, which is
        returned with what follows it, for hiredis (b"" when nothing is left)."""
        if self._inline:
            data = self._inline + data
            self._inline = b""
        read, pos, error = read_as_redis(data, 0, self._limits, stop_at_star=not self._slow)
        self._slow = False
        commands += read
        if error is not None:
            raise self._refuse(error, commands)
        if pos < len(data) and data[pos] != _STAR:
            self._inline = data[pos:]  # incomplete
            return b""
        return data[pos:] if pos else data


def _redis_words(hiredis_message: str) -> str:
    """Say what Redis itself says for the same bad input."""
    m = hiredis_message.lower()
    if "multi-bulk" in m or "multibulk" in m:
        return "invalid multibulk length"
    if "bulk" in m:
        return "invalid bulk length"
    return hiredis_message or "invalid request"


def pack(args: list[bytes]) -> bytes:
    """Encode one command as a RESP multibulk (hiredis, in C)."""
    packed: bytes = hiredis.pack_command(tuple(args))  # type: ignore[arg-type]
    return packed
