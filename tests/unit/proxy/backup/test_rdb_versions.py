"""Which RDB versions a target loads: a restore refuses a backup newer than that."""

from __future__ import annotations

import pytest

from proxy.backup.restore import max_rdb_version


@pytest.mark.parametrize(
    ("redis", "rdb"),
    [("7.4.1", 12), ("7.2.4", 11), ("7.0.15", 10), ("6.2.14", 9), ("5.0.7", 9),
     ("4.0.14", 8), ("3.2.12", 7), ("2.8.24", 6)],
)  # fmt: skip
def test_the_newest_rdb_version_each_release_line_loads(redis: str, rdb: int) -> None:
    assert max_rdb_version(redis) == rdb


def test_newer_or_unreadable_versions_are_not_refused_on_a_guess() -> None:
    assert max_rdb_version("8.0.2") is None  # newer than the table: the server decides
    assert max_rdb_version("") is None
    assert max_rdb_version("seven") is None
