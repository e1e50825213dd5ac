"""Unit tests for proxy.resp.replies: reply boundaries (RESP2 and RESP3) and encoders.

No sockets. The splitter must hand back each reply as the exact bytes Redis sent, however
the stream is cut into reads.
"""

from __future__ import annotations

import itertools
import math
import time

import hiredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.resp.errors import ProtocolError
from proxy.resp.replies import (
    OK,
    PONG,
    QUEUED,
    ReplySplitter,
    Value,
    encode,
    encode_bulk,
    encode_error,
    encode_int,
    encode_null,
    encode_simple,
    encode_verbatim,
    is_error,
)

REPLIES = [
    # RESP2
    b"+OK\r\n",
    b"-ERR unknown command 'FOO'\r\n",
    b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    b":0\r\n",
    b":-9223372036854775808\r\n",
    b"$5\r\nhello\r\n",
    b"$0\r\n\r\n",
    b"$-1\r\n",
    b"$6\r\n\r\n+a\r\n\r\n",  # a bulk whose payload looks like replies
    b"*3\r\n:1\r\n$1\r\nx\r\n+y\r\n",
    b"*0\r\n",
    b"*-1\r\n",
    b"*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n*0\r\n",
    b"*3\r\n$-1\r\n*-1\r\n-ERR inside\r\n",
    # RESP3
    b"_\r\n",
    b",3.14\r\n",
    b",-inf\r\n",
    b",nan\r\n",
    b"#t\r\n",
    b"#f\r\n",
    b"(3492890328409238509324850943850943825024385\r\n",
    b"=15\r\ntxt:Some string\r\n",
    b"!21\r\nSYNTAX invalid syntax\r\n",
    b"~3\r\n+a\r\n:1\r\n_\r\n",
    b"~0\r\n",
    b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
    b"%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n*2\r\n:2\r\n%0\r\n",
    b"%0\r\n",
    # An attribute before the reply it describes, at the top and inside an aggregate.
    b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n"
    b"*2\r\n:2039123\r\n:9543892\r\n",
    b"*2\r\n|1\r\n+ttl\r\n:3600\r\n$1\r\nv\r\n:7\r\n",
    b"|0\r\n+OK\r\n",
    # Deep nesting of every aggregate kind.
    b"*1\r\n%1\r\n~1\r\n>1\r\n*1\r\n|1\r\n+a\r\n+b\r\n=7\r\ntxt:abc\r\n*1\r\n!3\r\nERR\r\n",
]
STREAM = b"".join(REPLIES)


def split_all(chunks: list[bytes], splitter: ReplySplitter | None = None) -> list[bytes]:
    s = splitter or ReplySplitter()
    out: list[bytes] = []
    for c in chunks:
        out.extend(s.feed(c))
    return out


@pytest.mark.parametrize("reply", REPLIES)
def test_each_reply_alone(reply: bytes) -> None:
    assert split_all([reply]) == [reply]


def test_stream_in_one_read() -> None:
    out = split_all([STREAM])
    assert out == REPLIES
    assert all(type(r) is bytes for r in out)


def test_stream_split_at_every_offset() -> None:
    for i in range(len(STREAM) + 1):
        out = split_all([STREAM[:i], STREAM[i:]])
        assert out == REPLIES, i
        assert all(type(r) is bytes for r in out), i


def test_stream_split_at_every_pair_of_offsets_near_aggregates() -> None:
    # Three reads: every cut pair inside the nested/attribute part of the stream.
    tail = b"".join(REPLIES[-5:])
    for i in range(len(tail) + 1):
        for j in range(i, len(tail) + 1, 7):
            assert split_all([tail[:i], tail[i:j], tail[j:]]) == REPLIES[-5:], (i, j)


def test_stream_one_byte_at_a_time() -> None:
    splitter = ReplySplitter()
    out: list[bytes] = []
    for i in range(len(STREAM)):
        out.extend(splitter.feed(STREAM[i : i + 1]))
    assert out == REPLIES
    assert splitter.buffered == 0


def test_split_returns_the_same_as_feed() -> None:
    s = ReplySplitter()
    assert s.split(STREAM[:100]) + s.split(STREAM[100:]) == REPLIES


def test_buffered_counts_the_incomplete_reply() -> None:
    s = ReplySplitter()
    assert list(s.feed(b"+OK\r\n$10\r\nabc")) == [b"+OK\r\n"]
    assert s.buffered == len(b"$10\r\nabc")
    assert list(s.feed(b"defghij\r\n:1")) == [b"$10\r\nabcdefghij\r\n"]
    assert s.buffered == 2
    assert list(s.feed(b"\r\n")) == [b":1\r\n"]
    assert s.buffered == 0


def test_empty_read_changes_nothing() -> None:
    s = ReplySplitter()
    assert list(s.feed(b"")) == []
    assert list(s.feed(b"*2\r\n:1")) == []
    assert list(s.feed(b"")) == []
    assert list(s.feed(b"\r\n:2\r\n")) == [b"*2\r\n:1\r\n:2\r\n"]


def test_big_bulk_in_64k_chunks() -> None:
    value = bytes(range(256)) * (8 * 1024)  # 2 MB
    big = b"$%d\r\n%b\r\n" % (len(value), value)
    data = b"+OK\r\n" + big + b"*2\r\n" + big + b":1\r\n" + b":7\r\n"
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    out = split_all(chunks)
    assert out == [b"+OK\r\n", big, b"*2\r\n" + big + b":1\r\n", b":7\r\n"]
    assert all(type(r) is bytes for r in out)


def test_big_array_in_small_chunks_completes_in_linear_time() -> None:
    # 800k elements (5.5 MB) in 64-byte reads. Linear: well under a second. Re-copying
    # the buffered part at every read (quadratic) took over ten seconds here.
    n = 800_000
    reply = b"*%d\r\n" % n + b"$1\r\na\r\n" * n
    chunks = [reply[i : i + 64] for i in range(0, len(reply), 64)]
    start = time.perf_counter()
    out = split_all([*chunks, b"+OK\r\n"])
    elapsed = time.perf_counter() - start
    assert out == [reply, b"+OK\r\n"]
    assert elapsed < 5.0, f"{elapsed:.2f} s: quadratic?"


def test_resumes_where_it_stopped() -> None:
    # 100k elements fed in small pieces complete, one reply, nothing left behind.
    n = 100_000
    reply = b"*%d\r\n" % n + b":1\r\n" * n
    s = ReplySplitter()
    out: list[bytes] = []
    for i in range(0, len(reply), 1000):
        out.extend(s.feed(reply[i : i + 1000]))
        if i + 1000 < len(reply):
            assert out == []
    assert out == [reply]
    assert s.buffered == 0


@pytest.mark.parametrize(
    "bad",
    [
        b"?what\r\n",
        b"@\r\n",
        b"*2\r\n:1\r\nX\r\n",
        b"%1\r\n+a\r\n\x00\r\n",
        b"$abc\r\nxyz\r\n",
        b"*x\r\n",
        b"~1\r\n=z\r\n",
    ],
)
def test_garbage_is_a_protocol_error(bad: bytes) -> None:
    with pytest.raises(ProtocolError):
        split_all([bad])
    with pytest.raises(ProtocolError):
        split_all([b"+OK\r\n", bad[:3], bad[3:]])


def test_is_error() -> None:
    assert is_error(b"-ERR x\r\n")
    assert not is_error(b"+OK\r\n")
    assert not is_error(b"!3\r\nERR\r\n")  # RESP3 bulk errors are not simple errors


# ------------------------------------------------------------------ encoders


def test_constants() -> None:
    assert (OK, PONG, QUEUED) == (b"+OK\r\n", b"+PONG\r\n", b"+QUEUED\r\n")


def test_encode_error_strips_newlines() -> None:
    assert encode_error("ERR bad\r\nthing\n") == b"-ERR bad  thing \r\n"
    assert split_all([encode_error("ERR a\nb")]) == [b"-ERR a b\r\n"]


def test_simple_encoders() -> None:
    assert encode_simple("PONG") == b"+PONG\r\n"
    assert encode_bulk("héllo") == b"$6\r\nh\xc3\xa9llo\r\n"
    assert encode_bulk(b"") == b"$0\r\n\r\n"
    assert encode_int(-5) == b":-5\r\n"
    assert encode_null(2) == b"$-1\r\n"
    assert encode_null(3) == b"_\r\n"


def test_encode_verbatim() -> None:
    assert encode_verbatim("a\r\nb", 2) == b"$4\r\na\r\nb\r\n"
    assert encode_verbatim("a\r\nb", 3) == b"=8\r\ntxt:a\r\nb\r\n"
    reader = hiredis.Reader()
    reader.feed(encode_verbatim("id=1 addr=x", 3))
    assert reader.gets() == b"id=1 addr=x"


def test_encode_by_protocol() -> None:
    value: Value = {"a": [1, "x", None], "b": True, "c": 1.5}
    assert encode(value, 2) == (
        b"*6\r\n$1\r\na\r\n*3\r\n:1\r\n$1\r\nx\r\n$-1\r\n$1\r\nb\r\n:1\r\n$1\r\nc\r\n$3\r\n1.5\r\n"
    )
    assert encode(value, 3) == (
        b"%3\r\n$1\r\na\r\n*3\r\n:1\r\n$1\r\nx\r\n_\r\n$1\r\nb\r\n#t\r\n$1\r\nc\r\n,1.5\r\n"
    )
    assert encode(False, 3) == b"#f\r\n"
    assert encode(False, 2) == b":0\r\n"
    assert encode([], 2) == b"*0\r\n"
    assert encode({}, 3) == b"%0\r\n"


def test_encoded_values_read_back_with_hiredis() -> None:
    value: Value = {"k": [b"v", 7, None, ["x"]], "n": -3}
    r2 = hiredis.Reader()
    r2.feed(encode(value, 2))
    assert r2.gets() == [b"k", [b"v", 7, None, [b"x"]], b"n", -3]
    r3 = hiredis.Reader()
    r3.feed(encode(value, 3))
    assert r3.gets() == {b"k": [b"v", 7, None, [b"x"]], b"n": -3}
    r3.feed(encode(2.5, 3) + encode(True, 3))
    assert r3.gets() == 2.5
    assert r3.gets() is True


# ------------------------------------------------------------------ properties

TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20)
SCALARS = (
    st.binary(max_size=30)
    | TEXT
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.none()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=25,
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(VALUES, min_size=1, max_size=8),
    st.sampled_from([2, 3]),
    st.lists(st.integers(min_value=0, max_value=100_000), max_size=25),
)
def test_property_splitter_yields_exactly_the_encoded_pieces(
    values: list[Value], proto: int, cuts: list[int]
) -> None:
    pieces = [encode(v, proto) for v in values]
    out = split_all(chunked(b"".join(pieces), cuts))
    assert out == pieces
    assert all(type(r) is bytes for r in out)


@settings(max_examples=100, deadline=None)
@given(VALUES.filter(lambda v: not _has_nan(v)))
def test_property_resp3_encoding_is_what_hiredis_reads(value: Value) -> None:
    reader = hiredis.Reader()
    reader.feed(encode(value, 3))
    assert reader.gets() == _as_hiredis(value)


def _has_nan(v: Value) -> bool:
    if isinstance(v, float):
        return math.isnan(v)
    if isinstance(v, list):
        return any(_has_nan(x) for x in v)
    if isinstance(v, dict):
        return any(_has_nan(x) for x in v.values())
    return False


def _as_hiredis(v: Value) -> object:
    """What hiredis' reader returns for `encode(v, 3)`."""
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, list):
        return [_as_hiredis(x) for x in v]
    if isinstance(v, dict):
        return {k.encode(): _as_hiredis(x) for k, x in v.items()}
    return v


# --- what the fuzzer found (tests/fuzz/README.md, "Findings"), fixed -----------------


@pytest.mark.parametrize(
    "data",
    [
        b"$\x0c3\r\nabc\r\n",
        b"*+1\r\n:1\r\n",
        b"|-1\r\n+OK\r\n",
        b"$ 3\r\nabc\r\n",
        b"*_1\r\n:1\r\n",
    ],
)
def test_lengths_are_digits_whatever_the_chunking_and_the_scanner(data: bytes) -> None:
    """`int()` took spaces, `+`, `_`, `\\x0c`: the verdict on the same bytes depended on
    where TCP cut them, and on the C or the Python scanner; a negative attribute count
    made the Python one wait forever."""
    for cut in range(1, len(data) + 1):
        with pytest.raises(ProtocolError):
            split_all([data[:cut], data[cut:]])


def test_leading_zeros_in_a_length_are_taken_whatever_the_chunking() -> None:
    data = b"$000000000000000000003\r\nabc\r\n"
    for cut in range(len(data) + 1):
        assert split_all([data[:cut], data[cut:]]) == [data]
