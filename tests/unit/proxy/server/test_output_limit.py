"""Redis' client-output-buffer-limit rules: hard at once, soft after its seconds."""

from __future__ import annotations

from proxy.server import output_limit
from tests.unit.proxy.server.fakes import US, FakeHost, snapshot


class _Loop:
    def __init__(self) -> None:
        self.now = 100.0

    def time(self) -> float:
        return self.now


class _Client:
    def __init__(self, subscribed: bool = False) -> None:
        self.host = FakeHost(snapshot(US))
        self.host.loop = _Loop()  # type: ignore[assignment]
        self.over_soft_since = -1.0
        self.subscribed = subscribed
        self.peer = "127.0.0.1:1"
        self.aborted = False

    def close_now(self, abort: bool = False) -> None:
        self.aborted = abort


MB = 1 << 20


def test_hard_limit_disconnects_at_once() -> None:
    c = _Client()
    assert not output_limit.exceeded(c, 200 * MB)
    assert output_limit.exceeded(c, 257 * MB) and c.aborted
    assert c.host.stats.output_limit_closed == 1


def test_soft_limit_only_after_its_seconds_and_resets_below() -> None:
    c = _Client()
    loop = c.host.loop
    assert not output_limit.exceeded(c, 65 * MB)  # above soft (64mb): the clock starts
    loop.now += 59  # type: ignore[attr-defined]
    assert not output_limit.exceeded(c, 65 * MB)
    assert not output_limit.exceeded(c, 10 * MB)  # back under: forgiven
    loop.now += 30  # type: ignore[attr-defined]
    assert not output_limit.exceeded(c, 65 * MB)
    loop.now += 60  # type: ignore[attr-defined]
    assert output_limit.exceeded(c, 65 * MB) and c.aborted


def test_subscribers_have_the_pubsub_limit() -> None:
    c = _Client(subscribed=True)
    assert output_limit.exceeded(c, 33 * MB)  # pub/sub hard limit: 32mb
