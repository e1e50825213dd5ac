"""`Slot.take`, a run of replies in one call, against `Slot.deliver` one at a time: the
same replies kept, the same errors counted, the same end, wherever the reads cut."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.resp import replies as replies_module
from proxy.server.slot import READ, WRITE, PlaceOwner, Slot, discard_replies


class _Owner(PlaceOwner):
    """Counts what a slot tells it; loading, unblocked and readonly answer False (as a
    place's owner does)."""

    def __init__(self) -> None:
        self.ready = 0
        self.streamed = 0

    def slot_ready(self, slot: Slot) -> None:
        self.ready += 1

    def stream_head(self, slot: Slot) -> None:
        self.streamed += 1


REPLY = st.sampled_from(
    [b"+OK\r\n", b"$1\r\nv\r\n", b":1\r\n", b"-ERR no\r\n", b"-READONLY replica\r\n",
     b"-LOADING loading\r\n", b"$-1\r\n", b"$70000\r\n" + b"x" * 70000 + b"\r\n"]
)  # fmt: skip


def _slot(n: int, flags: int) -> tuple[Slot, _Owner]:
    owner = _Owner()
    return Slot(owner, [[b"GET", b"k"]] * n, 0, flags, 0.0, "n1", None), owner


def _state(slot: Slot, owner: _Owner) -> tuple[object, ...]:
    return (list(slot.parts), slot.errors, slot.pending, type(slot), owner.ready)


@settings(max_examples=400, deadline=None)
@given(st.lists(REPLY, min_size=1, max_size=40), st.sampled_from([0, READ, WRITE]), st.data())
def test_taking_a_run_ends_as_delivering_one_by_one(
    got: list[bytes], flags: int, data: st.DataObject
) -> None:
    one, one_owner = _slot(len(got), flags)
    done_one = [one.deliver(r) for r in got]
    run, run_owner = _slot(len(got), flags)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(got)), max_size=4)))
    chunks = [got[a:b] for a, b in zip([0, *cuts], [*cuts, len(got)], strict=True)]
    done_run = False
    for chunk in chunks:
        i = 0
        while i < len(chunk) and not done_run:
            i, done_run = run.take(chunk, i)
    assert done_run == any(done_one)
    assert _state(run, run_owner) == _state(one, one_owner)


def test_a_clean_run_is_one_call_and_one_ready() -> None:
    slot, owner = _slot(16, READ)
    got = [b"$1\r\nv\r\n"] * 16 + [b"+OK\r\n"]  # the next waiter's reply after them
    assert slot.take(got, 0) == (16, True)
    assert slot.parts == got[:16] and owner.ready == 1 and slot.errors == 0


def test_a_long_run_streams_what_it_has() -> None:
    slot, owner = _slot(600, READ)
    assert slot.take([b":1\r\n"] * 300, 0) == (300, False)
    assert owner.streamed == 1 and slot.pending == 300


def test_a_gone_clients_slot_keeps_nothing() -> None:
    slot, owner = _slot(4, READ)
    discard_replies(slot)
    assert slot.take([b":1\r\n"] * 4, 0) == (4, True)
    assert list(slot.parts) == [] and owner.ready == 1


def test_errors_are_counted_in_c_and_in_python_alike() -> None:
    got = [b"+OK\r\n", b"-ERR x\r\n", b":1\r\n", b"-MOVED 1 a:1\r\n"]
    for start, stop in ((0, 4), (1, 2), (2, 3), (3, 9), (5, 9)):
        assert replies_module.errors(got, start, stop) == replies_module.errors_py(got, start, stop)
