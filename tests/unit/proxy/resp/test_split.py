"""`_speedups.split`, the one-call read of whole plain requests, against the long way
(hiredis, `framed`, Redis' rules) that every other read takes: wherever split answers,
the long way must read the same commands with the same raw bytes."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.resp import limits, requests
from proxy.resp.errors import ProtocolError
from proxy.resp.requests import Batch, Limits, RequestParser, pack

speedups = pytest.importorskip("proxy.resp._speedups", reason="C accelerator not built")

LIMITS = Limits(max_bulk_len=64, max_multibulk_len=8, max_inline_len=1024)
PLAIN = pack([b"GET", b"k"]) + pack([b"SET", b"k", b"v" * 10]) + pack([b"PING"])


def long_way(data: bytes, monkeypatch: pytest.MonkeyPatch) -> Batch | str:
    """What a fresh parser makes of `data` without split: a batch, or its error."""
    with monkeypatch.context() as m:
        m.setattr(requests, "split", limits.split_py)
        try:
            return RequestParser(LIMITS).feed(data)
        except ProtocolError as e:
            return f"error: {e}"


def agree(data: bytes, monkeypatch: pytest.MonkeyPatch) -> list[list[bytes]] | None:
    got = speedups.split(data, LIMITS.max_multibulk_len, LIMITS.max_bulk_len)
    if got is not None:
        slow = long_way(data, monkeypatch)
        assert isinstance(slow, Batch), (data, slow)
        assert got == slow.commands and slow.raw == data
    return got


def test_plain_pipelines_are_split_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    assert agree(PLAIN, monkeypatch) == [[b"GET", b"k"], [b"SET", b"k", b"v" * 10], [b"PING"]]
    assert agree(pack([b"SET", b"k", b""]), monkeypatch) == [[b"SET", b"k", b""]]
    crlf = [b"SET", b"k", b"\r\n*1\r\n"]  # a value that looks like framing
    assert agree(pack(crlf), monkeypatch) == [crlf]


@pytest.mark.parametrize(
    "data",
    [b"", b"PING\r\n", b"*0\r\n", b"*-1\r\n", b"*01\r\n$4\r\nPING\r\n", b"*+1\r\n$4\r\nPING\r\n",
     b"*1\r\n$04\r\nPING\r\n", b"*1\r\n$-1\r\n", b"*1\r\n+PING\r\n", b"*1\r\n$4\r\nPINGxy",
     b"*1\r\n$4\rPING\r\n", b"*1\n$4\r\nPING\r\n", b"*1 \r\n$4\r\nPING\r\n", b"*1\r\n$4\r\nPI",
     b"*9\r\n" + b"$1\r\na\r\n" * 9, pack([b"SET", b"k", b"v" * 65]), PLAIN + b"PING\r\n",
     PLAIN + b"*1\r\n", b"*1\r\n$" + b"9" * 19 + b"\r\n"],
)  # fmt: skip
def test_anything_else_is_left_to_the_long_way(data: bytes) -> None:
    assert speedups.split(data, LIMITS.max_multibulk_len, LIMITS.max_bulk_len) is None


def test_over_a_limit_the_long_way_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    assert long_way(b"*9\r\n" + b"$1\r\na\r\n" * 9, monkeypatch) == (
        "error: invalid multibulk length"
    )
    assert long_way(pack([b"SET", b"k", b"v" * 65]), monkeypatch) == "error: invalid bulk length"


def test_every_one_byte_change_is_read_alike_or_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A byte of a plain pipeline replaced by each of the bytes RESP gives meaning to,
    dropped, or doubled: split accepts only what the long way reads the same."""
    accepted = 0
    for i in range(len(PLAIN)):
        for byte in b"*$+-:0123456789\r\n ~%a":
            for data in (PLAIN[:i] + bytes([byte]) + PLAIN[i + 1 :], PLAIN[:i] + PLAIN[i + 1 :],
                         PLAIN[:i] + PLAIN[i:i + 1] * 2 + PLAIN[i + 1 :]):  # fmt: skip
                accepted += agree(data, monkeypatch) is not None
    assert accepted > 0  # (changed values: "k" -> "a" is still plain)


CHUNK = st.one_of(
    st.lists(st.binary(max_size=70), min_size=1, max_size=9).map(pack),
    st.sampled_from([b"*", b"$", b"\r\n", b"\r", b"0", b"1", b"-1", b"+x", b"*0\r\n", b"PING\r\n"]),
)


@settings(max_examples=800, deadline=None)
@given(st.lists(CHUNK, min_size=1, max_size=6).map(b"".join))
def test_random_bytes_are_read_alike_or_left_alone(data: bytes) -> None:
    with pytest.MonkeyPatch.context() as m:
        agree(data, m)


@pytest.mark.skipif(bool(os.environ.get("GEOREDIS_PURE_PYTHON")), reason="Python forced")
def test_the_parser_splits_plain_reads_in_c() -> None:
    """Every client read takes this path first: a parser that lost it (an import left
    behind, a condition inverted) would still be right, only three times slower."""
    assert requests.split is speedups.split
    parser = RequestParser(LIMITS)
    parser._reader = None  # type: ignore[assignment]  # the long way would fail now
    batch = parser.feed(PLAIN)
    assert batch.raw == PLAIN and len(batch.commands) == 3


def test_a_read_inside_a_command_still_goes_the_long_way() -> None:
    """Split only starts where nothing is pending: the second half of a command must
    not be taken for a request of its own."""
    parser = RequestParser(LIMITS)
    cut = len(pack([b"GET", b"k"])) + 5
    assert parser.feed(PLAIN[:cut]).commands == [[b"GET", b"k"]]
    rest = parser.feed(PLAIN[cut:])
    assert rest.commands == [[b"SET", b"k", b"v" * 10], [b"PING"]]


@pytest.mark.parametrize(
    "cmds",
    [[[b"GET", b"a"]], [[b"GET", b"a"], [b"GET", b"b"]], [[b"GET", b"a"], [b"get", b"b"]],
     [[b"GET", b"a"], [b"GETX", b"b"]], [[b"SET", b"a", b"1"], [b"GET", b"a"]],
     [[b"GET", b"k:1"], [b"GET"]], [[b"GET", b"k:1"], [b"GET", b"x:1"]]],
)  # fmt: skip
def test_batch_tests_in_c_and_in_python_agree(cmds: list[list[bytes]]) -> None:
    assert speedups.same_first(cmds) == limits.same_first_py(cmds)
    for pos in (0, 1, 2):
        got = speedups.keys_match(cmds, pos, lambda key: key.startswith(b"k:"))
        assert got == limits.keys_match_py(cmds, pos, lambda key: key.startswith(b"k:"))
        for prefixes in ((b"k:",), (b"x", b"k:"), (), (b"",), (b"GET", b"a")):
            # A tuple is tested in C with no call: as startswith would.
            want = all(len(c) > pos and c[pos].startswith(prefixes) for c in cmds)
            assert speedups.keys_match(cmds, pos, prefixes) == want, prefixes
            assert limits.keys_match_py(cmds, pos, prefixes) == want, prefixes


def test_keys_match_refuses_what_is_not_bytes() -> None:
    with pytest.raises(TypeError):
        speedups.keys_match([[b"GET", "k"]], 1, (b"k",))
    with pytest.raises(TypeError):
        speedups.keys_match([[b"GET", b"k"]], 1, ("k",))


@pytest.mark.skipif(bool(os.environ.get("GEOREDIS_PURE_PYTHON")), reason="Python forced")
def test_the_batch_tests_run_in_c() -> None:
    assert limits.same_first is speedups.same_first
    assert limits.keys_match is speedups.keys_match
    assert limits.pack_at is speedups.pack_at


def test_pack_at_in_c_is_hiredis_command_by_command() -> None:
    """A cluster run's commands packed in one call: the bytes hiredis gives each."""
    import random

    from proxy.resp.limits import pack_at_py
    from proxy.resp.requests import pack

    rng = random.Random(3)
    cmds = [[bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 9, 10, 99, 100, 5000])))
             for _ in range(rng.randint(1, 12))] for _ in range(300)]  # fmt: skip
    for _ in range(50):
        idx = rng.sample(range(len(cmds)), rng.randint(0, 20))
        want = b"".join(pack(cmds[i]) for i in idx)
        assert speedups.pack_at(cmds, idx) == want
        assert pack_at_py(cmds, idx) == want
    with pytest.raises(IndexError):
        speedups.pack_at(cmds, [len(cmds)])
    with pytest.raises(TypeError):
        speedups.pack_at([[b"GET", "k"]], [0])
