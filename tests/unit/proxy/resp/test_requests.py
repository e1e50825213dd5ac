"""Unit tests for proxy.resp.requests: client bytes in, commands (and exact raw bytes) out.

No sockets. Expected inline splits were checked against redis-server 7.0 (sdssplitargs):
each line was sent as `RPUSH k <line>` and read back with LRANGE.
"""

from __future__ import annotations

import itertools

import hiredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.model import ProxyConfig
from proxy.resp.errors import ProtocolError
from proxy.resp.inline import split_inline
from proxy.resp.limits import check_complete, check_header, skip_multibulk
from proxy.resp.requests import Batch, Limits, RequestParser, pack

GET = [b"GET", b"key"]
SET = [b"SET", b"key", b"value\r\nwith CRLF and \x00 bytes"]
MGET = [b"MGET", b"a", b"b", b"c"]
EMPTY_ARG = [b"SET", b"k", b""]
PIPELINE = [GET, SET, MGET, EMPTY_ARG, [b"PING"]]


def make_limits(**overrides: int) -> Limits:
    """Limits with the config model's defaults (ProxyConfig), but for `overrides`."""
    p = ProxyConfig()
    values = {
        "max_bulk_len": p.max_bulk_len,
        "max_multibulk_len": p.max_multibulk_len,
        "max_inline_len": p.max_inline_len,
    }
    assert overrides.keys() <= values.keys(), overrides
    return Limits(**{**values, **overrides})


def run(parser: RequestParser, chunks: list[bytes]) -> list[Batch]:
    return [parser.feed(c) for c in chunks]


def commands_of(batches: list[Batch]) -> list[list[bytes]]:
    return [cmd for b in batches for cmd in b.commands]


def check_raw(pieces: list[bytes], chunks: list[bytes], batches: list[Batch]) -> None:
    """`raw` is exactly the bytes of its batch's commands, and present whenever it can be.

    `pieces` are the encoded commands (their concatenation is the stream); a feed that
    ends on a command boundary is a sync point, and its batch carries the raw bytes of
    the commands it completed (the parser anchors where the pending command starts, so
    those of earlier feeds are not among them).
    """
    ends = set()
    pos = 0
    for p in pieces:
        pos += len(p)
        ends.add(pos)
    fed = returned = 0
    for chunk, batch in zip(chunks, batches, strict=True):
        fed += len(chunk)
        n = len(batch.commands)
        if fed in ends:
            assert batch.raw == b"".join(pieces[returned : returned + n])
        elif n:
            assert batch.raw is None
        returned += n


# ------------------------------------------------------------------ multibulk


def test_single_command_with_exact_raw() -> None:
    data = pack(GET)
    batch = RequestParser(make_limits()).feed(data)
    assert batch.commands == [GET]
    assert batch.raw == data


def test_pipeline_in_one_read() -> None:
    data = b"".join(pack(c) for c in PIPELINE)
    batch = RequestParser(make_limits()).feed(data)
    assert batch.commands == PIPELINE
    assert batch.raw == data


def test_pack_matches_the_resp_encoding() -> None:
    assert pack([b"SET", b"k", b"v"]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
    assert pack([b"X", b""]) == b"*2\r\n$1\r\nX\r\n$0\r\n\r\n"


def test_pipeline_split_at_every_offset() -> None:
    pieces = [pack(c) for c in PIPELINE]
    data = b"".join(pieces)
    for i in range(len(data) + 1):
        chunks = [c for c in (data[:i], data[i:]) if c]
        batches = run(RequestParser(make_limits()), chunks)
        assert commands_of(batches) == PIPELINE, i
        check_raw(pieces, chunks, batches)


def test_pipeline_one_byte_at_a_time() -> None:
    pieces = [pack(c) for c in PIPELINE]
    data = b"".join(pieces)
    chunks = [data[i : i + 1] for i in range(len(data))]
    batches = run(RequestParser(make_limits()), chunks)
    assert commands_of(batches) == PIPELINE
    check_raw(pieces, chunks, batches)
    # Each command completes on its last byte, a sync point: its own bytes, exactly.
    assert [b.raw for b in batches if b.commands] == pieces


def test_split_right_after_header_lines_is_not_taken_for_inline() -> None:
    # hiredis has consumed `*3\r\n$3\r\n` and holds no bytes: still mid-command.
    data = pack(SET)
    for i in (4, 8, 13, 17, 22):
        parser = RequestParser(make_limits())
        assert parser.feed(data[:i]).commands == []
        batch = parser.feed(data[i:])
        assert batch.commands == [SET]
        assert batch.raw == data


def test_sync_point_then_next_command_has_its_own_raw() -> None:
    parser = RequestParser(make_limits())
    a, b = pack(GET), pack(MGET)
    first = parser.feed(a + b[:5])
    assert first.commands == [GET] and first.raw is None
    second = parser.feed(b[5:])
    # GET was returned already; the parser kept the bytes from MGET's start on.
    assert second.commands == [MGET] and second.raw == b
    third = parser.feed(a)
    assert third.commands == [GET] and third.raw == a


def test_star_zero_and_star_minus_one_are_ignored() -> None:
    parser = RequestParser(make_limits())
    assert parser.feed(b"*0\r\n").commands == []
    assert parser.feed(b"*-1\r\n").commands == []
    batch = parser.feed(b"*0\r\n" + pack(GET) + b"*-1\r\n")
    assert batch.commands == [GET]
    assert batch.raw is None  # the bytes include the ignored requests: not exact
    after = parser.feed(pack(GET))
    assert after.commands == [GET] and after.raw == pack(GET)


def test_big_value_in_64k_chunks() -> None:
    value = bytes(range(256)) * (8 * 1024)  # 2 MB
    data = pack([b"SET", b"big", value]) + pack(GET)
    parser = RequestParser(make_limits())
    batches = run(parser, [data[i : i + 65536] for i in range(0, len(data), 65536)])
    assert commands_of(batches) == [[b"SET", b"big", value], GET]
    # More than 1 MB since the last sync point: the raw bytes were not kept.
    assert all(b.raw is None for b in batches)
    # The parser is back at a sync point and fast again.
    assert parser.feed(pack(GET)).raw == pack(GET)


# ------------------------------------------------------------------ inline


def test_inline_commands() -> None:
    batch = RequestParser(make_limits()).feed(b"PING\r\nSET a 'b c'\r\nECHO \"x\\ty\"\n")
    assert batch.commands == [[b"PING"], [b"SET", b"a", b"b c"], [b"ECHO", b"x\ty"]]
    assert batch.raw is None  # inline commands are always re-encoded


def test_inline_empty_and_blank_lines_are_skipped() -> None:
    batch = RequestParser(make_limits()).feed(b"\r\n\n   \r\n\t\r\nPING\r\n\r\n")
    assert batch.commands == [[b"PING"]]


def test_inline_split_at_every_offset() -> None:
    data = b"PING\r\nSET \"a b\" 'c'\r\n\r\nGET a\n"
    expected = [[b"PING"], [b"SET", b"a b", b"c"], [b"GET", b"a"]]
    for i in range(len(data) + 1):
        batches = run(RequestParser(make_limits()), [data[:i], data[i:]])
        assert commands_of(batches) == expected, i


def test_inline_then_multibulk_at_a_sync_point() -> None:
    mb = pack(SET)
    data = b"PING\r\nGET a\r\n" + mb
    expected = [[b"PING"], [b"GET", b"a"], SET]
    batch = RequestParser(make_limits()).feed(data)
    assert batch.commands == expected
    assert batch.raw is None
    for i in range(len(data) + 1):
        batches = run(RequestParser(make_limits()), [data[:i], data[i:]])
        assert commands_of(batches) == expected, i
        # The multibulk command alone in the second read is at a sync point: exact.
        if i == len(data) - len(mb):
            assert batches[1].raw == mb


def test_blank_lines_before_a_multibulk_keep_raw_exact() -> None:
    batch = RequestParser(make_limits()).feed(b"\r\n" + pack(GET))
    assert batch.commands == [GET]
    assert batch.raw == pack(GET)


def test_multibulk_then_inline_across_reads() -> None:
    parser = RequestParser(make_limits())
    assert parser.feed(pack(GET)).commands == [GET]
    assert parser.feed(b"PING\r\n").commands == [[b"PING"]]


def test_multibulk_then_inline_in_one_read() -> None:
    # Redis decides per command (test_requests_as_redis.py has more).
    assert RequestParser(make_limits()).feed(pack(GET) + b"PING\r\n").commands == [GET, [b"PING"]]


def test_negative_multibulk_count_is_ignored() -> None:
    # Redis skips any `*N` with N <= 0; hiredis accepts only -1 and 0.
    assert RequestParser(make_limits()).feed(b"*-5\r\n" + pack(GET)).commands == [GET]


# The expected values come from redis-server 7.0 itself (see the module docstring).
REDIS_SPLITS: list[tuple[bytes, list[bytes] | None]] = [
    (b"  a   b  ", [b"a", b"b"]),
    (b"a\tb", [b"a", b"b"]),
    (b'"a b" c', [b"a b", b"c"]),
    (b"'a\\'b' c", [b"a'b", b"c"]),
    (b"'\\n'", [b"\\n"]),
    (b'"a\\"b"', [b'a"b']),
    (b'"\\n\\r\\t\\b\\a\\z"', [b"\n\r\t\x08\x07z"]),
    (b'"\\xAB"', [b"\xab"]),
    (b'"\\x41\\x4g"', [b"Ax4g"]),
    (b'"\\x4 "', [b"x4 "]),
    (b'"\\x+f"', [b"x+f"]),
    (b'"\\x f"', [b"x f"]),
    (b'"\\x-1"', [b"x-1"]),
    (b'"\\x1"', [b"x1"]),
    (b'a"b"', [b"ab"]),
    (b'"x" "" \'\'', [b"x", b"", b""]),
    (b"a\x0bb c", [b"a\x0bb", b"c"]),
    (b"a\x0cb", [b"a\x0cb"]),
    (b"\x0ba", [b"a"]),
    (b'"a"\x0b b', [b"a", b"b"]),
    (b"'a'\x0cb", [b"a", b"b"]),
    (b'a\x0c"b"', [b"a\x0cb"]),
    (b"GET a\r", [b"GET", b"a"]),
    (b'"a"b', None),
    (b"'a'b", None),
    (b'"a\\', None),
    (b'"abc', None),
    (b"'abc", None),
]


@pytest.mark.parametrize(("line", "expected"), REDIS_SPLITS)
def test_split_inline_like_redis(line: bytes, expected: list[bytes] | None) -> None:
    if expected is None:
        with pytest.raises(ProtocolError, match="unbalanced quotes in request"):
            split_inline(line)
    else:
        assert split_inline(line) == expected


def test_unbalanced_quotes_through_the_parser() -> None:
    with pytest.raises(ProtocolError, match="unbalanced quotes"):
        RequestParser(make_limits()).feed(b'SET "a\r\n')


# ------------------------------------------------------------------ bad input


NON_BULK_ELEMENTS = [
    b"*1\r\n+PING\r\n",
    b"*2\r\n$3\r\nGET\r\n(123\r\n",
    b"*2\r\n$3\r\nGET\r\n=5\r\ntxt:a\r\n",
    b"*2\r\n$3\r\nGET\r\n:1\r\n",
    b"*2\r\n$3\r\nGET\r\n-ERR x\r\n",
    b"*2\r\n$3\r\nGET\r\n_\r\n",
    b"*2\r\n$3\r\nGET\r\n#t\r\n",
    b"*2\r\n$3\r\nGET\r\n,1.5\r\n",
    b"*2\r\n$3\r\nGET\r\n*1\r\n$1\r\na\r\n",
    b"*2\r\n$3\r\nGET\r\n~1\r\n$1\r\na\r\n",
    b"*2\r\n$3\r\nGET\r\n%1\r\n$1\r\na\r\n$1\r\nb\r\n",
    b"*1\r\n$-1\r\n",
    b"*1\r\nX\r\n",
]


def feed_all(parser: RequestParser, chunks: list[bytes]) -> list[list[bytes]]:
    return commands_of(run(parser, chunks))


@pytest.mark.parametrize("bad", NON_BULK_ELEMENTS)
def test_nested_or_non_bulk_elements_are_refused_at_every_offset(bad: bytes) -> None:
    # Redis answers "expected '$', got ..." and closes; forwarding such bytes raw would
    # make Redis close the (shared) backend connection instead.
    data = pack(GET) + bad
    for i in range(len(data) + 1):
        with pytest.raises(ProtocolError):
            feed_all(RequestParser(make_limits()), [data[:i], data[i:]])


def test_plus_element_wording() -> None:
    with pytest.raises(ProtocolError, match=r"^expected '\$', got '\+'$"):
        RequestParser(make_limits()).feed(b"*1\r\n+PING\r\n")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"*abc\r\n", "invalid multibulk length"),
        (b"*1\r\n$abc\r\n", "invalid bulk length"),
        (b"*1\r\n$-5\r\n", "invalid bulk length"),
        (b"*1\r\n$02\r\nab\r\n", "invalid bulk length"),
        (b"*1048577\r\n", "invalid multibulk length"),
        (b"*1\r\n$536870913\r\n", "invalid bulk length"),
        (b"*1\r\n$" + b"9" * 40, "invalid bulk length"),
        (b"*" + b"9" * 40, "invalid multibulk length"),
    ],
)
def test_length_errors_use_redis_wording(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=f"^{message}$"):
        RequestParser(make_limits()).feed(data)


def test_bulk_length_limit_at_every_offset() -> None:
    limits = make_limits(max_bulk_len=16)
    ok = pack([b"SET", b"k", b"x" * 16])
    assert RequestParser(limits).feed(ok).commands == [[b"SET", b"k", b"x" * 16]]
    data = pack(GET) + pack([b"SET", b"k", b"x" * 17])
    for i in range(len(data) + 1):
        with pytest.raises(ProtocolError, match=r"^invalid bulk length$"):
            feed_all(RequestParser(limits), [data[:i], data[i:]])


def test_multibulk_count_limit_at_every_offset() -> None:
    limits = make_limits(max_multibulk_len=3)
    assert RequestParser(limits).feed(pack(MGET[:3])).commands == [MGET[:3]]
    data = pack(GET) + pack(MGET)  # 4 arguments
    for i in range(len(data) + 1):
        with pytest.raises(ProtocolError, match=r"^invalid multibulk length$"):
            feed_all(RequestParser(limits), [data[:i], data[i:]])


def test_inline_length_limit() -> None:
    limits = make_limits(max_inline_len=64 * 1024)
    parser = RequestParser(limits)
    assert parser.feed(b"x" * (64 * 1024)).commands == []  # at the limit: waits
    with pytest.raises(ProtocolError, match=r"^too big inline request$"):
        parser.feed(b"x")
    with pytest.raises(ProtocolError, match=r"^too big inline request$"):
        RequestParser(limits).feed(b"SET k " + b"x" * (64 * 1024) + b"\r\n")
    small = make_limits(max_inline_len=8)  # the line's bytes before "\n", its "\r" included
    assert RequestParser(small).feed(b"GET abc\r\n").commands == [[b"GET", b"abc"]]
    with pytest.raises(ProtocolError, match=r"^too big inline request$"):
        RequestParser(small).feed(b"GET abcd\r\n")


def test_request_size_cap() -> None:
    # Many small arguments, none over the bulk limit, but far more bytes than it allows.
    limits = make_limits(max_bulk_len=16)
    data = pack([b"RPUSH", b"k", *([b"v" * 16] * 50_000)])
    parser = RequestParser(limits)
    with pytest.raises(ProtocolError, match=r"^request too large \(client_query_buffer_limit\)$"):
        for i in range(0, len(data), 65536):
            parser.feed(data[i : i + 65536])


def test_query_buffer_limit() -> None:
    """client_query_buffer_limit below the bulk limit: a pending command past it is
    refused, and `pending_bytes` (PROXY CLIENTS' qbuf) counts what it held."""
    limits = Limits(512 << 20, 1 << 20, 64 << 10, max_query=100_000)
    parser = RequestParser(limits)
    head = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$200000\r\n"
    parser.feed(head + b"x" * 50_000)
    assert parser.pending_bytes == len(head) + 50_000
    with pytest.raises(ProtocolError, match="client_query_buffer_limit"):
        parser.feed(b"x" * 60_000)


# ------------------------------------------------------------------ helpers


def test_check_header() -> None:
    limits = make_limits(max_bulk_len=100, max_multibulk_len=3)
    data = pack([b"SET", b"k", b"v" * 10])
    assert check_header(data, limits) is True
    assert check_header(data[:2], limits) is False  # count line incomplete
    assert check_header(data[:6], limits) is False  # first bulk header incomplete
    # A payload cut short ends the check (meant for a big value): later headers are left
    # to `check_complete` at the next sync point.
    assert check_header(data[:11], limits) is True
    with pytest.raises(ProtocolError, match="invalid multibulk length"):
        check_header(b"*4\r\n", limits)
    with pytest.raises(ProtocolError, match="invalid bulk length"):
        check_header(b"*1\r\n$101\r\n", limits)
    with pytest.raises(ProtocolError, match="invalid bulk length"):
        check_header(b"*1\r\n$-2\r\n", limits)
    with pytest.raises(ProtocolError, match=r"expected '\$', got ':'"):
        check_header(b"*1\r\n:1\r\n", limits)


def test_check_complete() -> None:
    limits = make_limits(max_bulk_len=10, max_multibulk_len=3)
    check_complete(pack(MGET[:3]) + pack([b"SET", b"k", b"v" * 10]) + b"*0\r\n", limits)
    with pytest.raises(ProtocolError, match=r"^invalid bulk length$"):
        check_complete(pack(GET) + pack([b"SET", b"k", b"v" * 11]), limits)
    with pytest.raises(ProtocolError, match=r"^invalid multibulk length$"):
        check_complete(pack(GET) + pack(MGET), limits)
    with pytest.raises(ProtocolError, match=r"^expected '\$', got '='$"):
        check_complete(b"*1\r\n=5\r\ntxt:a\r\n", make_limits())
    # A payload that merely contains "\r\n+" is walked and found clean.
    check_complete(pack([b"SET", b"k", b"a\r\n+b\r\n(c\r\n=d"]), make_limits())


def test_skip_multibulk() -> None:
    a, b = pack(SET), pack(GET)
    buf = a + b + b"*0\r\n"
    assert skip_multibulk(buf, 0) == len(a)
    assert skip_multibulk(buf, len(a)) == len(a) + len(b)
    assert skip_multibulk(buf, len(a) + len(b)) == len(buf)


# ------------------------------------------------------------------ properties

ARGS = st.lists(st.binary(max_size=40), min_size=1, max_size=6)
COMMANDS = st.lists(ARGS, min_size=1, max_size=12)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(COMMANDS, st.lists(st.integers(min_value=0, max_value=10_000), max_size=20))
def test_property_any_chunking_gives_the_same_commands(
    commands: list[list[bytes]], cuts: list[int]
) -> None:
    pieces = [pack(c) for c in commands]
    data = b"".join(pieces)
    chunks = chunked(data, cuts)
    batches = run(RequestParser(make_limits()), chunks)
    assert commands_of(batches) == commands
    check_raw(pieces, chunks, batches)


# No NUL either: Redis looks for a line's end with strchr, which stops there (the line
# waits, test_requests_as_redis.py).
WORD = st.binary(min_size=1, max_size=10).filter(
    lambda w: not any(c in b" \t\r\n\x0b\x0c\"'*\x00" for c in w)
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(WORD, min_size=1, max_size=5), min_size=1, max_size=8),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=10),
)
def test_property_inline_any_chunking(commands: list[list[bytes]], cuts: list[int]) -> None:
    data = b"".join(b" ".join(c) + b"\r\n" for c in commands)
    batches = run(RequestParser(make_limits()), chunked(data, cuts))
    assert commands_of(batches) == commands
    assert all(b.raw is None for b in batches)


def test_hiredis_agrees_on_the_encoding() -> None:
    # The parser's fixtures use `pack`; hiredis' own reader must read them back.
    reader = hiredis.Reader()
    reader.feed(pack(SET))
    assert reader.gets() == SET


# --- memory proportional to bytes received -----------------------------------------------


# Ways to arrive at a pending `*1048576`: alone; behind a command split in two; behind
# complete ones, some of them `*0` and `*-1` (consumed, ignored, still bytes), the count
# itself split.
_HUGE_COUNT_AFTER = {
    "alone": [b"*1048576\r\n"],
    "after a split command": [b"*1\r\n$4\r\nPI", b"NG\r\n*1048576\r\n"],
    "after ignored ones": [b"*0\r\n*1\r\n$4\r\nPI", b"NG\r\n*-1\r\n*0\r\n*10", b"48576\r\n"],
}


@pytest.mark.parametrize("chunks", _HUGE_COUNT_AFTER.values(), ids=_HUGE_COUNT_AFTER.keys())
def test_a_huge_declared_count_reserves_nothing(chunks: list[bytes]) -> None:
    """`*1048576\\r\\n` is 11 bytes; hiredis would allocate the 8 MB argument list at
    once. 100 such connections must cost kilobytes, not 800 MB, however it came."""
    import tracemalloc

    tracemalloc.start()
    try:
        parsers = []
        for _ in range(100):
            p = RequestParser(make_limits())
            got = [c for chunk in chunks for c in p.feed(chunk).commands]
            assert got == ([[b"PING"]] if len(chunks) > 1 else [])
            parsers.append(p)
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current < 2 << 20, current


@pytest.mark.parametrize("chunk", [1, 7, 1000, 1 << 20])
def test_a_held_big_command_still_parses_exactly(chunk: int) -> None:
    """A real command with many arguments, split anywhere, followed by others: the
    same commands come out, and the raw bytes of a later batch are still exact."""
    cmd = [b"MSET", *(b"k%d" % i for i in range(6000))]
    data = pack(cmd) + pack([b"GET", b"a"])
    p = RequestParser(make_limits())
    got: list[list[bytes]] = []
    for i in range(0, len(data), chunk):
        got += p.feed(data[i : i + chunk]).commands
    assert got == [cmd, [b"GET", b"a"]]
    batch = p.feed(pack([b"PING"]))
    assert batch.commands == [[b"PING"]] and batch.raw == pack([b"PING"])


def test_a_held_command_after_complete_ones() -> None:
    p = RequestParser(make_limits())
    first = p.feed(pack([b"SET", b"a", b"1"]) + b"*500000\r\n$3\r\nSET\r\n")
    assert first.commands == [[b"SET", b"a", b"1"]]
    rest = b"".join(b"$1\r\nx\r\n" for _ in range(499_999))
    assert len(p.feed(rest).commands[0]) == 500_000


# --- what the fuzzer found (tests/fuzz/README.md, "Findings"), fixed -----------------

# Bytes hiredis reads as requests although Redis reads them otherwise: forwarded as they
# came, a shared backend connection would answer more (or fewer) commands than the proxy
# counts. They are read as Redis reads them (checked against redis-server 7.0 in
# tests/integration/test_parser_transparency.py): a RESP type where a command starts is
# an inline command to Redis, one inside a multibulk command a protocol error.
_NOT_AS_REDIS_READS: dict[str, tuple[bytes, list[list[bytes]], str | None]] = {
    "a RESP3 set after a command": (
        b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n~2\r\n$3\r\nGET\r\n$1\r\nb\r\n",
        [[b"GET", b"a"], [b"~2"], [b"$3"], [b"GET"], [b"$1"], [b"b"]],
        None,
    ),
    "a null line between two commands": (
        b"*1\r\n$4\r\nPING\r\n_\r\n*1\r\n$4\r\nPING\r\n",
        [[b"PING"], [b"_"], [b"PING"]],
        None,
    ),
    "a RESP3 map keyed by an array": (
        b"*1\r\n$4\r\nPING\r\n%1\r\n*0\r\n:1\r\n",
        [[b"PING"], [b"%1"], [b":1"]],
        None,
    ),
    "a + element inside a command": (b"*1\r\n+*5000\r\n*1\r\n", [], "expected '$', got '+'"),
    "a null bulk where a request starts": (
        b"*0\r\n$-1\r\n*1\r\n$4\r\nPING\r\n*5000\r\n$3\r\nD",
        [[b"$-1"], [b"PING"]],
        None,
    ),
    "a RESP3 set in a read that ends mid-command": (
        b"*1\r\n$4\r\nPING\r\n~3\r\n$4\r\nPING\r\n$4\r\nPING\r\n$4\r\nPING\r\n*1\r\n$4\r\nPI",
        [[b"PING"], [b"~3"], *[[b"$4"], [b"PING"]] * 3],
        None,
    ),
}


@pytest.mark.parametrize(
    ("data", "commands", "error"), _NOT_AS_REDIS_READS.values(), ids=_NOT_AS_REDIS_READS.keys()
)
def test_bytes_hiredis_reads_otherwise_are_read_as_redis_does(
    data: bytes, commands: list[list[bytes]], error: str | None
) -> None:
    for cut in range(len(data) + 1):
        parser, got, failed = RequestParser(make_limits()), [], None
        try:
            for chunk in (data[:cut], data[cut:]):
                batch = parser.feed(chunk)
                # Raw bytes only for what Redis reads as those very commands.
                assert batch.raw in (None, b"".join(map(pack, batch.commands)))
                got += batch.commands
        except ProtocolError as e:
            failed, got = str(e), got + e.commands
        assert (got, failed) == (commands, error), cut


def test_a_plus_element_after_an_unterminated_bulk_is_refused() -> None:
    """Redis refuses it, at every cut: a read that ends inside the next command still
    has what it completed checked as Redis reads it (`_anchor`), before it runs (the
    fuzzer's "requests-lenient" finding)."""
    data = b"*2\r\n$3\r\nGETXY+a\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n"
    for cut in range(len(data) + 1):
        parser, got = RequestParser(make_limits()), []
        with pytest.raises(ProtocolError, match=r"^expected '\$', got '\+'$") as e:
            for chunk in (data[:cut], data[cut:]):
                got += parser.feed(chunk).commands
        assert got + e.value.commands == [], cut
