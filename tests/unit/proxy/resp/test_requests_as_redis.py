"""RequestParser reads what Redis reads (issue 17 item 1): each command's kind by its own
first byte, empty lines and counts <= 0 skipped, and the commands before a protocol
error handed out with it (`ProtocolError.commands`), to run before the error's reply.

No sockets. The same inputs go to redis-server 7.0 and through a proxy, compared byte
for byte, in tests/integration/test_parser_transparency.py.
"""

from __future__ import annotations

import itertools
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.model import ProxyConfig
from proxy.resp.errors import ProtocolError
from proxy.resp.requests import Batch, Limits, RequestParser, pack
from tests.fuzz import targets

_P = ProxyConfig()
LIMITS = Limits(_P.max_bulk_len, _P.max_multibulk_len, _P.max_inline_len)
PING = [b"PING"]
MB_PING = pack(PING)


def outcome(chunks: list[bytes], limits: Limits = LIMITS) -> tuple[list[list[bytes]], str | None]:
    """Every command the parser hands out, those that come with its error included, and
    the error. Raw bytes, where given, must be exactly their batch's commands."""
    parser, got = RequestParser(limits), []
    try:
        for chunk in chunks:
            batch = parser.feed(chunk)
            check_raw(batch)
            got += batch.commands
    except ProtocolError as e:
        return got + e.commands, str(e)
    return got, None


def check_raw(batch: Batch) -> None:
    """What a backend reads from the raw bytes is the batch's commands, all of them."""
    if batch.raw is not None:
        redis = targets.redis_read(batch.raw, LIMITS)
        assert (redis.commands, redis.error, redis.rest) == (batch.commands, None, 0)


def cuts(data: bytes) -> list[list[bytes]]:
    """`data` in one read, in two at every offset, and a byte at a time."""
    two = [[c for c in (data[:i], data[i:]) if c] for i in range(1, len(data))]
    return [[data], *two, [data[i : i + 1] for i in range(len(data))]]


# The reproducers and their neighbours: what Redis 7.0 runs, and its error.
AS_REDIS: dict[str, tuple[bytes, list[list[bytes]], str | None]] = {
    "multibulk then inline": (MB_PING + b"PING\r\n", [PING, PING], None),
    "a bare LF after a multibulk": (MB_PING + b"\n", [PING], None),
    "CRLF lines between multibulk": (MB_PING + b"\r\n\n\r\n" + MB_PING, [PING, PING], None),
    "inline, multibulk, inline": (
        b"SET a 1\r\n" + pack([b"GET", b"a"]) + b"ECHO 'x y'\n",
        [[b"SET", b"a", b"1"], [b"GET", b"a"], [b"ECHO", b"x y"]],
        None,
    ),
    "commands before a bad element": (
        b"SET pk v\r\n*1\r\nfoo\r\n",
        [[b"SET", b"pk", b"v"]],
        "expected '$', got 'f'",
    ),
    "a multibulk before a bad element": (
        MB_PING + b"*1\r\nfoo\r\n",
        [PING],
        "expected '$', got 'f'",
    ),
    "*-10 then inline": (b"*-10\r\nPING\r\n", [PING], None),
    "*0 then inline": (b"*0\r\nPING\r\n", [PING], None),
    "*-1 then inline": (b"*-1\r\nPING\r\n", [PING], None),
    "*-10 between multibulk": (MB_PING + b"*-10\r\n" + MB_PING, [PING, PING], None),
    "counts Redis refuses": (MB_PING + b"*-0\r\n", [PING], "invalid multibulk length"),
    "a leading zero": (MB_PING + b"*01\r\n" + MB_PING, [PING], "invalid multibulk length"),
    "a bad bulk length after commands": (
        b"PING\r\n" + MB_PING + b"*1\r\n$x\r\n",
        [PING, PING],
        "invalid bulk length",
    ),
    "unbalanced quotes after commands": (
        b"PING\r\n" + MB_PING + b'SET "a\r\nPING\r\n',
        [PING, PING],
        "unbalanced quotes in request",
    ),
    "RESP types where a command starts are inline commands": (
        MB_PING + b"$-1\r\n_\r\n+x\r\n:1\r\n" + MB_PING,
        [PING, [b"$-1"], [b"_"], [b"+x"], [b":1"], PING],
        None,
    ),
    "the two bytes after a value are not read": (
        b"*1\r\n$4\r\nPINGxxPING\r\n",
        [PING, PING],
        None,
    ),
    "a NUL before the line's end: Redis' strchr stops there, the line waits": (
        MB_PING + b"PI\x00NG\r\n",
        [PING],
        None,
    ),
    # Fuzzer: cut inside a value, the limits had passed, and the lone CR of the header
    # after it went unseen (the parser waited, Redis ran the SET).
    "a lone CR in a header after a value cut short": (
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r-abcdXY",
        [[b"SET", b"k", b"abcd"]],
        None,
    ),
}


@pytest.mark.parametrize(("data", "commands", "error"), AS_REDIS.values(), ids=AS_REDIS.keys())
def test_read_as_redis_reads_it_however_it_arrives(
    data: bytes, commands: list[list[bytes]], error: str | None
) -> None:
    for chunks in cuts(data):
        assert outcome(chunks) == (commands, error), chunks


def test_the_commands_before_an_error_come_with_it() -> None:
    # In one read, the commands before the error are the error's own (the session runs
    # them first); none were returned without it.
    with pytest.raises(ProtocolError, match=r"^expected '\$', got 'f'$") as e:
        RequestParser(LIMITS).feed(b"SET pk v\r\n" + MB_PING + b"*1\r\nfoo\r\n")
    assert e.value.commands == [[b"SET", b"pk", b"v"], PING]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (pack([b"SET", b"k", b"x" * 17]), "invalid bulk length"),
        (pack([b"MGET", b"a", b"b", b"c", b"d"]), "invalid multibulk length"),
        (b"GET " + b"x" * 40 + b"\r\n", "too big inline request"),
        (b"GET " + b"x" * 40, "too big inline request"),
        (b"*1\r\n:1\r\n", "expected '$', got ':'"),
        (b"GET 'a\r\n", "unbalanced quotes in request"),
    ],
)
def test_every_limit_keeps_the_commands_before_it(bad: bytes, error: str) -> None:
    limits = Limits(16, 3, 32)
    before = [b"SET", b"a", b"1"]
    for lead in (pack(before), b"SET a 1\r\n"):
        for chunks in cuts(lead + bad)[:: max(1, len(bad) // 7)]:
            assert outcome(chunks, limits) == ([before], error), chunks


@pytest.mark.parametrize("bad", [b"*1\r\nfoo\r\n", b'GET "a\r\n', b"*1\r\n$x\r\n", b"x" * 70_000])
def test_nothing_is_read_after_an_error(bad: bytes) -> None:
    """Redis reads nothing more from a client it answered a protocol error; the session
    may wait for commands before the error (behind a blocking one), still reading."""
    parser = RequestParser(LIMITS)
    with pytest.raises(ProtocolError) as e:
        parser.feed(b"PING\r\n" + MB_PING[:5])
        parser.feed(MB_PING[5:] + bad)
    assert e.value.commands == [PING] and e.value.raw == MB_PING
    for more in (MB_PING, b"PING\r\n", b"*1\r\n", b"\n" * 100_000):
        assert parser.feed(more).commands == []
    assert parser.pending_bytes == 0


def test_a_quit_like_command_before_an_error_is_still_handed_out() -> None:
    # The session, not the parser, knows that nothing after QUIT runs.
    assert outcome([b"QUIT\r\n*1\r\nx\r\n"]) == ([[b"QUIT"]], "expected '$', got 'x'")


def test_a_bad_element_is_refused_when_its_line_ends_as_in_redis() -> None:
    """hiredis refuses `f` at once; Redis only once the line has its `\\r` and a byte
    after it. A client still sending the line is not closed on mid-write."""
    parser = RequestParser(LIMITS)
    assert parser.feed(b"SET pk v\r\n*1\r\nf").commands == [[b"SET", b"pk", b"v"]]
    assert parser.feed(b"oo").commands == []
    assert parser.feed(b"\r").commands == []
    with pytest.raises(ProtocolError, match=r"^expected '\$', got 'f'$") as e:
        parser.feed(b"\n")
    assert e.value.commands == []
    parser = RequestParser(Limits(1 << 20, 1 << 10, 64))
    parser.feed(pack([b"GET", b"a"]) + b"*2\r\n$3\r\nGET\r\nx")
    with pytest.raises(ProtocolError, match=r"^too big bulk count string$"):
        for _ in range(65):
            parser.feed(b"x")


def test_an_inline_line_with_a_nul_waits_until_it_is_too_big() -> None:
    parser = RequestParser(Limits(1 << 20, 1 << 10, 64))
    assert parser.feed(b"PI\x00NG\r\n").commands == []
    assert parser.feed(b"PING\r\n").commands == []  # still the same line to Redis
    with pytest.raises(ProtocolError, match=r"^too big inline request$"):
        parser.feed(b"x" * 64)


# ------------------------------------------------------------------ the hot path's bytes


def test_pure_multibulk_keeps_its_raw_bytes() -> None:
    data = b"".join(pack([b"SET", b"k%d" % i, b"v"]) for i in range(16))
    batch = RequestParser(LIMITS).feed(data)
    assert batch.raw == data and len(batch.commands) == 16


def test_a_multibulk_left_by_a_reread_is_fast_and_exact_again() -> None:
    """After an inline command, the incomplete multibulk one goes back to hiredis: the
    next read that ends on a command boundary forwards its bytes as they came."""
    parser = RequestParser(LIMITS)
    tail = pack([b"GET", b"a"])
    assert parser.feed(MB_PING + b"PING\r\n" + tail[:7]).commands == [PING, PING]
    batch = parser.feed(tail[7:])
    assert batch.commands == [[b"GET", b"a"]] and batch.raw == tail
    assert parser.feed(MB_PING).raw == MB_PING


# ------------------------------------------------------------------ long reads


def feed_in(data: bytes, step: int, limits: Limits = LIMITS) -> list[list[bytes]]:
    got, _ = outcome([data[i : i + step] for i in range(0, len(data), step)], limits)
    return got


def test_inline_after_megabytes_of_multibulk_without_a_sync_point() -> None:
    # 65521 (a prime) never ends a read on a command boundary: the parser moves its
    # anchor (`_trim`) instead of losing where commands start past 1 MB.
    sets = [[b"SET", b"key:%d" % i, b"v"] for i in range(100_000)]
    data = b"".join(map(pack, sets)) + b"PING\r\n" + pack([b"GET", b"a"]) + b"ECHO x\n"
    assert len(data) > 3 << 20
    assert feed_in(data, 65521) == [*sets, PING, [b"GET", b"a"], [b"ECHO", b"x"]]


@pytest.mark.parametrize("step", [7777, 65536, 100_000])
def test_inline_after_a_request_over_a_megabyte(step: int) -> None:
    """Its bytes are not kept (they would be held twice): where it ends is found from
    its size (`command_end`), and what follows is read as Redis reads it."""
    big = [b"SET", b"k", bytes(range(256)) * 12_000]
    after = [
        PING,
        [b"GET", b"k"],
        [b"ECHO", b"hi"],
        *[[b"SET", b"a%d" % i, b"1"] for i in range(9)],
    ]
    data = pack(big) + b"PING\r\n" + pack(after[1]) + b"ECHO hi\r\n"
    data += b"".join(map(pack, after[3:11])) + b"SET a8 1\r\n"
    assert feed_in(data, step) == [big, *after]


@pytest.mark.parametrize(
    ("tail", "after"),
    [(b"$-1\r\n", [[b"$-1"]]), (b"*0\r\n_\r\n", [[b"_"]]),
     (b"~1\r\n" + MB_PING, [[b"~1"], PING]), (b"~1\r\n$4\r\nPING\r\n", [[b"~1"], [b"$4"], PING])],
)  # fmt: skip
def test_what_hiredis_reads_otherwise_after_a_request_over_a_megabyte(
    tail: bytes, after: list[list[bytes]]
) -> None:
    # The last read ends on a command boundary: what followed the big one is read again.
    big = [b"SET", b"k", b"x" * 2_000_000]
    assert feed_in(pack(big) + tail, 65536) == [big, *after]


def test_a_long_pipeline_is_not_taken_for_one_big_request() -> None:
    # client_query_buffer_limit bounds a pending command, not a pipeline that never
    # ends a read on a command boundary.
    limits = Limits(512 << 20, 1 << 20, 64 << 10, max_query=100_000)
    sets = [[b"SET", b"key:%d" % i, b"v"] for i in range(60_000)]
    assert feed_in(b"".join(map(pack, sets)), 65521, limits) == sets


def test_what_a_long_unsynced_pipeline_holds_stays_small() -> None:
    """The bytes kept since the anchor stay under 1 MB and a read, however long the
    pipeline (before, they were dropped past 1 MB, and where commands start with them)."""
    data = b"".join(pack([b"SET", b"key:%d" % i, b"v" * 20]) for i in range(200_000))
    parser = RequestParser(LIMITS)
    tracemalloc.start()
    try:
        for i in range(0, len(data), 65521):
            parser.feed(data[i : i + 65521])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data) > 9 << 20
    assert peak < 4 << 20, peak


# ------------------------------------------------------------------ properties

WORD = st.binary(min_size=1, max_size=6).filter(
    lambda w: not any(c in b" \t\r\n\x0b\x0c\"'\x00" for c in w) and w[:1] != b"*"
)
ITEM = st.one_of(
    st.lists(WORD, min_size=1, max_size=4).map(lambda ws: (b" ".join(ws) + b"\r\n", ws)),
    st.lists(WORD, min_size=1, max_size=4).map(lambda ws: (b" ".join(ws) + b"\n", ws)),
    st.lists(st.binary(max_size=12), min_size=1, max_size=4).map(lambda a: (pack(a), a)),
    st.sampled_from([b"\r\n", b"\n", b"*0\r\n", b"*-1\r\n", b"*-7\r\n"]).map(lambda b: (b, None)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ITEM, min_size=1, max_size=16), st.lists(st.integers(0, 4000), max_size=12))
def test_property_mixed_input_any_chunking(
    items: list[tuple[bytes, list[bytes] | None]], points: list[int]
) -> None:
    data = b"".join(raw for raw, _ in items)
    want = [args for _, args in items if args is not None]
    edges = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    chunks = [data[a:b] for a, b in itertools.pairwise(edges) if b > a]
    assert outcome(chunks) == (want, None)


TOKENS = [b"*1\r\n", b"*2\r\n", b"*0\r\n", b"*-1\r\n", b"*-3\r\n", b"$1\r\n", b"$3\r\n",
          b"$-1\r\n", b"a\r\n", b"GET\r\n", b"PING\r\n", b"\r\n", b"\n", b"+x\r\n", b":1\r\n",
          b"~1\r\n", b"_\r\n", b"'a' b\r\n", b'"c\r\n', b"x y\n", b"*01\r\n"]  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=14), st.integers(0, 15))
def test_property_against_the_model_of_redis(tokens: list[bytes], flags: int) -> None:
    """The fuzz target's properties (tests/fuzz/targets.py: what is accepted is what
    Redis reads, raw bytes exact, the same however cut), and the commands that come
    with an error are those Redis runs before it."""
    payload = b"".join(tokens)
    targets.fuzz_requests(targets.frame(payload, [len(payload) // 3, len(payload) // 2], flags))
    redis = targets.redis_read(payload, targets.LIMITS[flags & 3])
    got, error = outcome([payload], targets.LIMITS[flags & 3])
    if error is not None and redis.error is not None:  # the model abridges some texts
        assert got == redis.commands and error.startswith(redis.error), (got, error, redis)
