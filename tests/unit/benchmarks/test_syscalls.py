"""benchmarks.syscalls reads strace -c's summary table, with and without an errors column."""

from __future__ import annotations

from benchmarks.syscalls import parse_strace

SUMMARY = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 75.27    2.366787         438      5398           epoll_pwait
 16.47    0.517840           4    110164           write
  5.97    0.187641           1    105700       359 read
  0.00    0.000001           1         1           writev
------ ----------- ----------- --------- --------- ----------------
100.00    3.144370          13    221263       359 total
"""


def test_calls_per_syscall_without_the_total() -> None:
    assert parse_strace(SUMMARY) == {
        "epoll_pwait": 5398, "write": 110164, "read": 105700, "writev": 1,
    }  # fmt: skip


def test_nothing_from_other_text() -> None:
    assert parse_strace("strace: Process 1 attached\n") == {}
