"""Fuzz targets for the three parsers that read bytes off a socket (tests/fuzz/README.md).

Each `fuzz_*` function takes one fuzzer input, returns a short label saying how the input
was read ("ok", "refused", ...) and raises when a property fails: AssertionError for a
broken property, or whatever the parser let escape. The module does not need atheris:
tests/unit/test_fuzz_targets.py runs the targets on seeds and random bytes, and run.py
runs them under atheris.

Input layout (`frame` builds one, `unframe` reads it back): byte 0 is
`(number of cuts << 4) | flags`, then 2 bytes (big endian) per cut, an offset into the
payload taken modulo its length + 1, then the payload. The cuts are where the payload is
split into reads; flag 8 splits it after every byte instead (payloads up to 512 bytes).
The framing is ours rather than atheris.FuzzedDataProvider's, so a saved reproducer
replays the same way with or without atheris.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import itertools
import os
import re
import struct
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import NamedTuple

from config.model import ProxyConfig
from proxy.resp import replies
from proxy.resp.errors import ProtocolError
from proxy.resp.inline import split_inline
from proxy.resp.requests import Batch, Limits, RequestParser
from proxy.server.proxyproto import (
    V1_MAX_LENGTH,
    V2_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    parse_header,
)

EVERY_BYTE = 8
_EVERY_BYTE_MAX = 512


def frame(payload: bytes, cuts: Sequence[int] = (), flags: int = 0) -> bytes:
    """A fuzzer input that `unframe` reads back as (flags, payload, cuts)."""
    assert len(cuts) < 16 and 0 <= flags < 16
    head = bytes([len(cuts) << 4 | flags])
    return head + b"".join(struct.pack("!H", c) for c in cuts) + payload


def unframe(data: bytes) -> tuple[int, bytes, list[bytes]]:
    """(flags, payload, the payload cut into reads) from one fuzzer input."""
    if not data:
        return 0, b"", []
    ncuts, flags = data[0] >> 4, data[0] & 15
    raw_cuts, payload = data[1 : 1 + 2 * ncuts], data[1 + 2 * ncuts :]
    if flags & EVERY_BYTE and len(payload) <= _EVERY_BYTE_MAX:
        return flags, payload, [payload[i : i + 1] for i in range(len(payload))]
    points = {0, len(payload)}
    for i in range(0, len(raw_cuts) - 1, 2):
        points.add(struct.unpack_from("!H", raw_cuts, i)[0] % (len(payload) + 1))
    chunks = [payload[a:b] for a, b in itertools.pairwise(sorted(points)) if b > a]
    return flags, payload, chunks


# ------------------------------------------------------------------ 1. requests

_DEFAULTS = ProxyConfig()
# flags & 3 picks one: Redis' defaults, then small limits so that every check is reached
# within a few KB, one of them above the parser's big-count hold threshold (4096).
LIMITS = (
    Limits(_DEFAULTS.max_bulk_len, _DEFAULTS.max_multibulk_len, _DEFAULTS.max_inline_len),
    Limits(32, 8, 32),
    Limits(1024, 5000, 256),
    Limits(8, 4200, 8),
)
_INT64 = re.compile(rb"-?[1-9][0-9]{0,18}|0")


def _redis_int(text: bytes) -> int | None:
    """Redis' string2ll: no sign but '-', no leading zero, no space, 64-bit."""
    if not _INT64.fullmatch(text):
        return None
    value = int(text)
    return value if -(1 << 63) <= value < 1 << 63 else None


def _redis_line(buf: bytes, pos: int) -> int:
    """Where Redis ends a header line: the first '\r' (it skips the next byte unchecked);
    -1 while it waits for more; -2 when a NUL comes first: Redis' strchr stops there,
    so it never reads the line (it waits until the line is too big, then refuses)."""
    cr, nul = buf.find(b"\r", pos), buf.find(b"\0", pos)
    if nul >= 0 and (cr < 0 or nul < cr):
        return -2
    return -1 if cr < 0 or cr + 2 > len(buf) else cr


class RedisRead(NamedTuple):
    commands: list[list[bytes]]  # complete commands, in order
    error: str | None  # the protocol error that stops Redis, if any
    rest: int  # bytes after the last complete command (an incomplete one)
    mixed: bool  # an inline line came after a multibulk command (the documented gap)
    loose: bool  # Redis ended a header line with CR and a byte other than LF
    viable: bool  # the incomplete rest can still become a valid command


_VIABLE = {42: re.compile(rb"\*-?[0-9]*\r?"), 36: re.compile(rb"(\$-?[0-9]*\r?)?")}


def redis_read(buf: bytes, limits: Limits) -> RedisRead:
    """What Redis reads from `buf` (processInputBuffer, networking.c): a command that
    starts with `*` is multibulk, any other is an inline line. Inline lines are split by
    the parser's own `split_inline` (checked against redis-server in test_requests.py).
    The parser may refuse more than Redis does; what it accepts must be what Redis reads.
    """
    cmds: list[list[bytes]] = []
    pos = done = 0
    end, mixed, multibulk, loose, viable = len(buf), False, False, False, True
    error: str | None = None
    while pos < end and error is None:
        if buf[pos] != 42:  # inline
            mixed = mixed or multibulk
            nl = buf.find(b"\n", pos)
            if nl < 0 or nl - pos > limits.max_inline_len:
                if nl >= 0 or end - pos > limits.max_inline_len:
                    error = "too big inline request"
                break
            try:
                args = split_inline(buf[pos:nl])
            except ProtocolError as e:
                error = str(e)
                break
            cmds += [args] if args else []
            pos = done = nl + 1
            continue
        multibulk = True
        args, count, kind = [], 1, 42
        while count > len(args):  # the `*N` line, then N times a `$len` line and a value
            cr = _redis_line(buf, pos)
            if cr == -1:
                viable = _VIABLE[kind].fullmatch(buf, pos) is not None
                break
            n = _redis_int(buf[pos + 1 : cr]) if cr >= 0 and buf[pos] == kind else None
            top = limits.max_bulk_len if kind == 36 else limits.max_multibulk_len
            if n is None or n > top or (kind == 36 and n < 0):
                error = "invalid multibulk length" if kind == 42 else "invalid bulk length"
                error = "expected '$'" if kind == 36 and buf[pos] != 36 else error
                break
            loose = loose or buf[cr + 1] != 10
            pos = cr + 2
            if kind == 42:
                count, kind = n, 36
            elif end - pos < n + 2:
                break
            else:
                args.append(buf[pos : pos + n])
                pos += n + 2
        else:
            cmds += [args] if args else []  # `*0` and `*-N` are skipped
            done = pos
            continue
        break
    return RedisRead(cmds, error, end - done, mixed, loose, viable)


def _feed(limits: Limits, chunks: list[bytes]) -> list[Batch] | ProtocolError:
    parser = RequestParser(limits)
    try:
        return [parser.feed(c) for c in chunks]
    except ProtocolError as e:
        return e


def _check_raw(limits: Limits, batch: Batch) -> None:
    """`Batch.raw` goes to Redis as it is: Redis must read exactly its commands."""
    raw = batch.raw
    if raw is None:
        return
    redis = redis_read(raw, limits)
    assert redis[:4] == (batch.commands, None, 0, False), (
        f"requests-raw: Redis reads a batch's raw bytes otherwise: {batch.commands!r}, "
        f"raw {raw!r}, Redis {redis!r}"
    )
    again = RequestParser(limits).feed(raw).commands
    assert again == batch.commands, f"requests-raw-reparse: {raw!r} -> {again!r}"


_SENTINEL = b"*1\r\n$4\r\nPING\r\n"


def _judge(limits: Limits, chunks: list[bytes], got: list[list[bytes]], redis: RedisRead) -> str:
    """Commands the parser accepted from `chunks`, against what Redis reads."""
    want, n = redis.commands, len(redis.commands)
    if got == want:
        return "ok"
    if got[:n] == want and (redis.error is not None or redis.rest):
        raise AssertionError(
            f"requests-lenient: Redis stops after {n} commands ({redis.error or 'waits'}),"
            f" the parser also returns {got[n:]!r}"
        )
    if len(got) < n and got == want[: len(got)]:
        # Behind Redis: waiting where Redis read on (an inline line mid-read, the
        # documented gap; a CR-only line end, which hiredis refuses), or did it drop
        # something? A command sent next must not come out as the next one.
        after = _feed(limits, [*chunks, _SENTINEL])
        later = [] if isinstance(after, ProtocolError) else [c for b in after for c in b.commands]
        if later == got or isinstance(after, ProtocolError):
            return "known-gap" if redis.mixed else "behind"
    raise AssertionError(f"requests-vs-redis: Redis reads {want!r}, the parser {got!r}")


def fuzz_requests(data: bytes) -> str:
    """RequestParser: ProtocolError or what Redis reads, however the bytes are cut;
    `Batch.raw` exactly the bytes of its commands as Redis reads them."""
    flags, payload, chunks = unframe(data)
    limits = LIMITS[flags & 3]
    redis = redis_read(payload, limits)
    split = _feed(limits, chunks)
    whole = _feed(limits, [payload])
    verdicts = []
    for result, cut in ((split, chunks), (whole, [payload])):
        if not isinstance(result, ProtocolError):
            for batch in result:
                _check_raw(limits, batch)
            got = [cmd for batch in result for cmd in batch.commands]
            verdicts.append(_judge(limits, cut, got, redis))
    if isinstance(split, ProtocolError):
        return "refused"
    if isinstance(whole, ProtocolError):
        # Refused in one read, not (yet) in split reads: fine if Redis refuses them
        # too, or in the documented gap (test_multibulk_then_inline_in_one_read).
        why = redis.error or redis.mixed or redis.loose or not redis.viable
        assert why, f"requests-whole-refused: {whole}; Redis {redis!r}"
        return "known-gap" if redis.mixed else "refused-later"
    return "known-gap" if "known-gap" in verdicts else "ok"


# ------------------------------------------------------------------ 2. replies

SplitterFactory = Callable[[], replies.ReplySplitter]
SplitResult = tuple[list[bytes], int] | ProtocolError


def _load_pure_replies() -> ModuleType:
    """proxy.resp.replies with its Python scan loop: the module itself when the C
    accelerator is not in use, else a second copy loaded with GEOREDIS_PURE_PYTHON=1."""
    if not replies.SPEEDUPS:
        return replies
    spec = importlib.util.spec_from_file_location("tests.fuzz.pure_replies", replies.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    old = os.environ.get("GEOREDIS_PURE_PYTHON")
    os.environ["GEOREDIS_PURE_PYTHON"] = "1"
    try:
        spec.loader.exec_module(module)
    finally:
        if old is None:
            del os.environ["GEOREDIS_PURE_PYTHON"]
        else:
            os.environ["GEOREDIS_PURE_PYTHON"] = old
    assert not module.SPEEDUPS
    return module


pure_replies = _load_pure_replies()


def _split(factory: SplitterFactory, chunks: list[bytes], payload: bytes) -> SplitResult:
    splitter = factory()
    out: list[bytes] = []
    try:
        for c in chunks:
            out += splitter.split(c)
    except ProtocolError as e:
        assert payload.startswith(b"".join(out)), "replies-prefix: replies before an error"
        return e
    return out, splitter.buffered


def _check_replies(
    factory: SplitterFactory, data: bytes, other: SplitterFactory | None = None
) -> str:
    _, payload, chunks = unframe(data)
    whole = _split(factory, [payload] if payload else [], payload)
    split = _split(factory, chunks, payload)
    if isinstance(whole, ProtocolError) or isinstance(split, ProtocolError):
        assert isinstance(whole, ProtocolError) and isinstance(split, ProtocolError), (
            f"replies-chunking-verdict: one read {whole!r}, split reads {split!r}"
        )
        verdict = "refused"
    else:
        assert whole == split, f"replies-chunking: one read {whole!r}, split reads {split!r}"
        found, buffered = whole
        assert b"".join(found) == payload[: len(payload) - buffered], "replies-concat"
        for reply in found:
            alone = _split(factory, [reply], reply)
            assert alone == ([reply], 0), f"replies-alone: {reply!r} split alone: {alone!r}"
        verdict = "ok"
    if other is not None:
        theirs = _split(other, [payload] if payload else [], payload)
        if isinstance(whole, ProtocolError) or isinstance(theirs, ProtocolError):
            assert isinstance(whole, ProtocolError) and isinstance(theirs, ProtocolError), (
                f"replies-c-vs-python-verdict: C {whole!r}, Python {theirs!r}"
            )
        else:
            assert whole == theirs, f"replies-c-vs-python: C {whole!r}, Python {theirs!r}"
    return verdict


def fuzz_replies(data: bytes) -> str:
    """ReplySplitter as the proxy runs it (the C scan when built): the same replies
    however the stream is cut, their bytes the consumed prefix; with the C scan, the
    same verdict as the Python loop."""
    other = pure_replies.ReplySplitter if replies.SPEEDUPS else None
    return _check_replies(replies.ReplySplitter, data, other)


def fuzz_replies_pure(data: bytes) -> str:
    """ReplySplitter with the Python scan loop (GEOREDIS_PURE_PYTHON=1)."""
    return _check_replies(pure_replies.ReplySplitter, data)


# ------------------------------------------------------------------ 3. PROXY headers

# flags & 3 picks the v2 length cap.
V2_LIMITS = (V2_MAX_LENGTH, 0, 12, 64)
_Parse = ProxyHeader | None | ProxyProtocolError


def _parse(buf: bytes, max_v2_length: int) -> _Parse:
    try:
        return parse_header(buf, max_v2_length=max_v2_length)
    except ProxyProtocolError as e:
        return e


def _check_header(h: ProxyHeader, buf: bytes, max_v2_length: int) -> None:
    head = buf[: h.consumed]
    fields = (h.src_ip, h.src_port, h.dst_ip, h.dst_port)
    assert 0 < h.consumed <= len(buf), f"proxy-consumed: {h!r}"
    if h.local:
        assert fields == (None, None, None, None), f"proxy-local-fields: {h!r}"
    else:
        assert None not in fields, f"proxy-fields: {h!r}"
    if h.version == 1:
        assert head.startswith(b"PROXY ") and head.endswith(b"\r\n"), f"proxy-v1: {h!r}"
        assert h.consumed <= V1_MAX_LENGTH, f"proxy-v1-length: {h!r}"
        family = {b"TCP4": 4, b"TCP6": 6}.get(head[6:10])
    else:
        assert h.version == 2 and head.startswith(V2_SIGNATURE), f"proxy-version: {h!r}"
        length = struct.unpack_from("!H", head, 14)[0]
        assert h.consumed == 16 + length <= 16 + max_v2_length, f"proxy-v2-length: {h!r}"
        family = {0x11: 4, 0x21: 6}.get(head[13]) if head[12] == 0x21 else None
    if h.local:
        return
    assert family is not None and h.src_port is not None and h.dst_port is not None
    assert h.src_ip is not None and h.dst_ip is not None
    src, dst = ipaddress.ip_address(h.src_ip), ipaddress.ip_address(h.dst_ip)
    assert src.version == dst.version == family, f"proxy-family: {h!r}"
    assert 0 <= h.src_port <= 65535 and 0 <= h.dst_port <= 65535, f"proxy-ports: {h!r}"
    if h.version == 1:
        proto = b"TCP4" if family == 4 else b"TCP6"
        addrs = str(src).encode(), str(dst).encode()
        again = b"PROXY %s %s %s %d %d\r\n" % (proto, *addrs, h.src_port, h.dst_port)
    else:
        again = head[:16] + src.packed + dst.packed + struct.pack("!HH", h.src_port, h.dst_port)
        again += head[len(again) :]  # the TLVs
    redo = _parse(again, max_v2_length)
    assert isinstance(redo, ProxyHeader), f"proxy-reencode: {again!r} -> {redo!r}"
    assert redo.consumed == len(again) and redo == ProxyHeader(
        h.version, False, h.src_ip, h.src_port, h.dst_ip, h.dst_port, redo.consumed
    ), f"proxy-reencode: {h!r} -> {redo!r}"


def fuzz_proxyproto(data: bytes) -> str:
    """parse_header: no exception but ProxyProtocolError, a header that is well formed
    and re-encodes to itself, and prefixes that agree: a prefix of a header is "send
    more" (None), a prefix that is refused or is a header decides the whole buffer."""
    flags, payload, chunks = unframe(data)
    cap = V2_LIMITS[flags & 3]
    result = _parse(payload, cap)
    prefixes = set(itertools.accumulate(len(c) for c in chunks))
    if isinstance(result, ProxyHeader):
        _check_header(result, payload, cap)
        prefixes.add(result.consumed)
    for k in sorted(prefixes):
        r = _parse(payload[:k], cap)
        if isinstance(result, ProxyHeader) and k < result.consumed:
            assert r is None, f"proxy-prefix: {payload[:k]!r} -> {r!r}, whole {result!r}"
        elif isinstance(r, ProxyHeader) or isinstance(result, ProxyHeader):
            assert r == result, f"proxy-prefix-header: {payload[:k]!r} -> {r!r} vs {result!r}"
        elif isinstance(r, ProxyProtocolError):
            assert isinstance(result, ProxyProtocolError), f"proxy-prefix-refused: {k}"
    if isinstance(result, ProxyHeader):
        return f"header-v{result.version}"
    return "refused" if isinstance(result, ProxyProtocolError) else "more"


TARGETS: dict[str, Callable[[bytes], str]] = {
    "requests": fuzz_requests,
    "replies": fuzz_replies,
    "replies-pure": fuzz_replies_pure,
    "proxyproto": fuzz_proxyproto,
}
