"""The proxy slow log: threshold, order, Redis-compatible truncation, RESP reply."""

from __future__ import annotations

import hiredis

from proxy.observe.slowlog import MAX_ARGC, MAX_STRING, SlowLog, truncate_args


def _parse(data: bytes) -> object:
    reader = hiredis.Reader()
    reader.feed(data)
    reply = reader.gets()
    assert reader.gets() is False, "trailing bytes after the reply"
    return reply


def test_threshold_filters_fast_commands() -> None:
    log = SlowLog(threshold_us=1000, max_len=10)
    log.record([b"GET", b"a"], 999, "127.0.0.1:7000", "127.0.0.1:5000", "")
    assert len(log) == 0
    log.record([b"GET", b"a"], 1000, "127.0.0.1:7000", "127.0.0.1:5000", "")
    assert len(log) == 1


def test_negative_threshold_disables_and_zero_logs_everything() -> None:
    off = SlowLog(threshold_us=-1, max_len=10)
    off.record([b"PING"], 10**9, "b", "c", "")
    assert len(off) == 0
    all_ = SlowLog(threshold_us=0, max_len=10)
    all_.record([b"PING"], 0, "b", "c", "")
    assert len(all_) == 1


def test_newest_first_bounded_and_ids_survive_reset() -> None:
    log = SlowLog(threshold_us=0, max_len=3)
    for i in range(5):
        log.record([b"SET", b"k%d" % i, b"v"], 10 + i, "n", "c", "app")
    entries = log.get(-1)
    assert [e.id for e in entries] == [4, 3, 2]
    assert [e.duration_us for e in entries] == [14, 13, 12]
    assert [e.id for e in log.get(2)] == [4, 3]
    assert [e.id for e in log.get()] == [4, 3, 2]
    log.reset()
    assert len(log) == 0 and log.get() == []
    log.record([b"GET", b"x"], 1, "n", "c", "")
    assert log.get()[0].id == 5


def test_truncation_matches_redis() -> None:
    args = [b"MSET"] + [b"x" * 200] + [b"k%d" % i for i in range(40)]
    out = truncate_args(args)
    assert len(out) == MAX_ARGC
    assert out[0] == b"MSET"
    assert out[1] == b"x" * MAX_STRING + b"... (72 more bytes)"
    # 42 arguments: 31 kept, the 32nd slot says how many were left out (42 - 32 + 1).
    assert out[-1] == b"... (11 more arguments)"
    assert out[-2] == b"k28"  # args[30]
    # Exactly 32 arguments and exactly 128 bytes are kept whole.
    exact = [b"y" * MAX_STRING] * MAX_ARGC
    assert truncate_args(exact) == tuple(exact)


def test_encode_resp_is_slowlog_get_shape_plus_backend() -> None:
    log = SlowLog(threshold_us=0, max_len=10)
    log.record([b"GET", b"key"], 1500, "127.0.0.1:7001", "10.0.0.1:5555", "worker-1")
    log.record([b"SET", b"k", b"v\r\n"], 2500, "127.0.0.1:7000", "[::1]:6000", "")
    reply = _parse(SlowLog.encode_resp(log.get()))
    assert isinstance(reply, list) and len(reply) == 2
    newest, oldest = reply
    assert newest[0] == 1 and newest[2] == 2500
    assert newest[3] == [b"SET", b"k", b"v\r\n"]
    assert newest[4:] == [b"[::1]:6000", b"", b"127.0.0.1:7000"]
    assert oldest[0] == 0 and isinstance(oldest[1], int) and oldest[1] > 1_600_000_000
    assert oldest[3] == [b"GET", b"key"]
    assert oldest[4:] == [b"10.0.0.1:5555", b"worker-1", b"127.0.0.1:7001"]
    assert _parse(SlowLog.encode_resp([])) == []
