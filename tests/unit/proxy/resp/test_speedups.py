"""The C reply scanner against the Python one: same contract, byte for byte."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.resp import limits, replies
from proxy.resp.errors import ProtocolError
from proxy.resp.replies import _scan, encode

speedups = pytest.importorskip("proxy.resp._speedups", reason="C accelerator not built")

values = st.recursive(
    st.one_of(st.binary(max_size=40), st.integers(-(10**12), 10**12), st.none()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(st.text(max_size=5), inner, max_size=4),
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=1, max_size=5), st.sampled_from([2, 3]), st.data())
def test_c_and_python_agree_at_every_cut(
    vals: list[object], proto: int, data: st.DataObject
) -> None:
    buf = b"".join(encode(v, proto) for v in vals)  # type: ignore[arg-type]
    cut = data.draw(st.integers(0, len(buf)))
    head = buf[:cut]
    assert speedups.scan(head, 0, 1, len(head)) == _scan(head, 0, 1, len(head))
    assert speedups.scan(buf, 0, len(vals), len(buf)) == (len(buf), 0)


@pytest.mark.parametrize(
    "raw",
    [b"+OK\r\n", b"$-1\r\n", b"*-1\r\n", b"_\r\n", b",1.5\r\n", b"#t\r\n", b"(123\r\n",
     b"=7\r\ntxt:abc\r\n", b"!3\r\nERR\r\n", b"%1\r\n+a\r\n:1\r\n", b"~2\r\n+a\r\n+b\r\n",
     b">2\r\n+a\r\n+b\r\n", b"|1\r\n+k\r\n+v\r\n:5\r\n", b"*0\r\n", b"%0\r\n"],
)  # fmt: skip
def test_every_type(raw: bytes) -> None:
    assert speedups.scan(raw, 0, 1, len(raw)) == (len(raw), 0) == _scan(raw, 0, 1, len(raw))


@pytest.mark.parametrize("raw", [b"?x\r\n", b"$x\r\nab\r\n", b"*1a\r\n", b"$\r\n", b"|-1\r\n"])
def test_garbage_is_a_protocol_error(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replies, "_scan_impl", speedups.scan)
    with pytest.raises(ProtocolError):
        replies.scan(raw, 0, 1, len(raw))


@pytest.mark.skipif(bool(os.environ.get("GEOREDIS_PURE_PYTHON")), reason="Python forced")
def test_the_proxy_uses_it() -> None:
    assert replies.SPEEDUPS


@pytest.mark.skipif(bool(os.environ.get("GEOREDIS_PURE_PYTHON")), reason="Python forced")
def test_the_parser_frames_requests_in_c() -> None:
    """The framing check runs on every request read; the Python twin is ~50x slower (an
    autofix once replaced the import with `pass`, and every read paid it)."""
    assert limits.FRAMED_IN_C


@pytest.mark.parametrize(
    "raw",
    [b"*1\r\n$4\r\nPING\r\n", b"*1\r\n+PING\r\n", b"~2\r\n", b"*2\r\n$3\r\nGETXY+a\r\n",
     b"*0\r\n*-1\r\n", b"*1\r\n$4\r\nPI", b"*1\r\n$x\r\n", b"*1\r\n$-1\r\n",
     b"*1\r\n$0003\r\nabc\r\n"],
)  # fmt: skip
def test_framed_in_c_and_in_python_agree(raw: bytes) -> None:
    assert speedups.framed(raw) == limits.framed_py(raw)


def splits(chunks: list[bytes], cut: object) -> list[bytes] | str:
    """What a fresh splitter makes of `chunks`, with `replies._cut` set to `cut` (None:
    the loop in Python): the replies, or the error."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(replies, "_cut", cut)
        splitter, got = replies.ReplySplitter(), []
        try:
            for chunk in chunks:
                got += splitter.split(chunk)
        except ProtocolError as e:
            return f"error: {e}"
        return got


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=1, max_size=8), st.sampled_from([2, 3]), st.data())
def test_the_c_cut_splits_as_the_python_loop_wherever_reads_end(
    vals: list[object], proto: int, data: st.DataObject
) -> None:
    buf = b"".join(encode(v, proto) for v in vals)  # type: ignore[arg-type]
    ends = sorted(data.draw(st.lists(st.integers(0, len(buf)), max_size=4)))
    chunks = [buf[a:b] for a, b in zip([0, *ends], [*ends, len(buf)], strict=True)]
    got = splits(chunks, speedups.cut)
    assert got == splits(chunks, None)
    assert got == [encode(v, proto) for v in vals]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "chunks",
    [[b"+OK\r\n?x\r\n"], [b"$3\r\nab"], [b"$x\r\nab\r\n"], [b"*2\r\n:1\r\n", b"|-1\r\n"],
     [b"+OK\r", b"\n$-1\r\n"], [b"$0003\r\nabc\r\n"], [b"*1\r\n$-5\r\n+x\r\n"]],
)  # fmt: skip
def test_the_c_cut_errs_and_waits_as_the_python_loop(chunks: list[bytes]) -> None:
    assert splits(chunks, speedups.cut) == splits(chunks, None)


@pytest.mark.skipif(bool(os.environ.get("GEOREDIS_PURE_PYTHON")), reason="Python forced")
def test_the_splitter_cuts_in_c() -> None:
    assert replies._cut is speedups.cut


@pytest.mark.skipif(bool(os.environ.get("GEOREDIS_PURE_PYTHON")), reason="Python forced")
def test_error_replies_are_counted_in_c() -> None:
    assert replies.errors is speedups.errors
