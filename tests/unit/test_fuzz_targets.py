"""The fuzz targets (tests/fuzz) without atheris: importable, green on their seeds and on
a few thousand mutated inputs, and each saved reproducer still failing as recorded.

The fuzzer found bugs in the parsers (tests/fuzz/README.md, "Findings"); their
reproducers live in tests/fuzz/crashes/. A random input that fails as one of those did
is tolerated here, and a reproducer that still fails as recorded is an xfail; any other
failure, in a parser or in a target, fails the test. No sockets.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from proxy.resp import replies
from tests.fuzz import run, targets

CRASHES = Path(targets.__file__).parent / "crashes"
# reproducer -> (target, its failure's signature, shows only with the C reply scanner)
KNOWN: dict[str, tuple[str, str, bool]] = {
    "requests-null-bulk-where-a-request-starts": ("requests", "requests-vs-redis", False),
    "requests-lone-cr-after-a-cut-value": ("requests", "requests-vs-redis", False),
    "requests-plus-line-after-inline-cr": ("requests", "requests-lenient", False),
    "requests-resp3-map-typeerror": ("requests", "TypeError in requests.py:_drain", False),
    "requests-raw-resp3-set-mid-read": ("requests", "requests-raw", False),
    "requests-raw-plus-after-unterminated-bulk": ("requests", "requests-raw", False),
    "requests-null-line-dropped": ("requests", "requests-vs-redis", False),
    "requests-resp3-set-before-sync": ("requests", "requests-vs-redis", False),
    "requests-plus-element-run-before-sync": ("requests", "requests-lenient", False),
    "replies-length-whitespace-chunking": ("replies", "replies-chunking-verdict", True),
    "replies-leading-zeros-chunking": ("replies", "replies-chunking-verdict", True),
    "replies-length-plus-sign-c-vs-python": ("replies", "replies-c-vs-python-verdict", True),
    "replies-negative-attribute-python": ("replies", "replies-c-vs-python-verdict", True),
}
TOLERATED = {(target, sig) for target, sig, _ in KNOWN.values()}
RANDOM_INPUTS = 1000  # per target


def outcome(target: str, data: bytes) -> str:
    try:
        return targets.TARGETS[target](data)
    except Exception as e:
        return "FAILED " + run.signature(e)


@pytest.mark.parametrize("target", sorted(targets.TARGETS))
def test_seeds_pass(target: str) -> None:
    got = [outcome(target, s) for s in run.seeds(target)]
    assert not [g for g in got if g.startswith("FAILED")], got
    assert "ok" in got or any(g.startswith("header") for g in got), got


def mutate(rng: random.Random, data: bytes, tokens: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        i = rng.randint(0, len(buf))
        op = rng.randrange(4)
        if op == 0 and buf:
            buf[min(i, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            buf[i:i] = rng.choice(tokens)
        elif op == 2:
            del buf[i : i + rng.randint(1, 8)]
        else:
            buf[i:i] = rng.randbytes(rng.randint(1, 8))
    return bytes(buf)


@pytest.mark.parametrize("target", sorted(targets.TARGETS))
def test_random_inputs(target: str) -> None:
    rng = random.Random(f"georedis-fuzz-{target}")
    pool, tokens = run.seeds(target), run.DICTIONARY[target]
    seen: dict[str, int] = {}
    for i in range(RANDOM_INPUTS):
        if i % 4 == 0:
            data = rng.randbytes(rng.randint(0, 64))
        else:
            data = mutate(rng, rng.choice(pool), tokens)
        got = outcome(target, data)
        seen[got] = seen.get(got, 0) + 1
        if got.startswith("FAILED"):
            assert (target, got.removeprefix("FAILED ")) in TOLERATED, (got, data)
        elif i % 8 == 0:
            pool.append(data)  # mutate mutants too, a little deeper each time
    assert len(seen) > 1, seen  # not all one outcome: the inputs reach the parser


def test_framing_round_trips() -> None:
    payload = b"0123456789"
    flags, got, chunks = targets.unframe(targets.frame(payload, [3, 7, 7, 60], flags=5))
    assert (flags, got, chunks) == (5, payload, [b"012", b"34", b"56", b"789"])  # 60 % 11
    _, _, every = targets.unframe(targets.frame(b"abc", flags=targets.EVERY_BYTE))
    assert every == [b"a", b"b", b"c"]
    assert targets.unframe(b"") == (0, b"", [])


def test_every_reproducer_is_known() -> None:
    assert sorted(p.name for p in CRASHES.iterdir()) == sorted(KNOWN)


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_reproducer(name: str) -> None:
    """A reproducer passes once its bug is fixed (it stays, as a regression input), or
    fails exactly as recorded (xfail: the bug is open); any other failure is new."""
    target, sig, needs_c = KNOWN[name]
    got = outcome(target, (CRASHES / name).read_bytes())
    if got == "FAILED " + sig and (replies.SPEEDUPS or not needs_c):
        pytest.xfail(f"open bug, tests/fuzz/README.md: {sig}")
    assert not got.startswith("FAILED"), f"{name}: {got}"
