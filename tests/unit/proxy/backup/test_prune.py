"""Retention applied to a real directory target, with an injected clock (no sockets)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace

from config.model import BackupConfig, Retention
from proxy.backup.manifest import Manifest
from proxy.backup.service import Backups

DAY = 86400.0
NOW = time.mktime((2026, 6, 30, 12, 0, 0, 0, 0, 0)) - time.timezone


def _host(directory: Path, retention: Retention) -> SimpleNamespace:
    backup = dataclasses.replace(BackupConfig(), directory=str(directory), retention=retention)
    return SimpleNamespace(config=SimpleNamespace(backup=backup))


def _store(directory: Path, created: float, n: int, state: str = "complete") -> str:
    ident = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(created)) + f"-{n:06x}"
    m = Manifest(id=ident, created=created, source="x:1", source_region="r",
                 source_role="replica", target="t", state=state, finished=created + 5)  # fmt: skip
    directory.mkdir(exist_ok=True)
    (directory / f"{ident}.json").write_bytes(m.to_json())
    (directory / f"{ident}.grbk").write_bytes(b"sealed")
    return ident


async def test_prune_keeps_what_retention_says_and_deletes_both_objects(tmp_path: Path) -> None:
    ids = [_store(tmp_path, NOW - d * DAY, d) for d in range(60)]  # one a day, 60 days
    b = Backups(_host(tmp_path, Retention(daily=7, weekly=0, monthly=0)), clock=lambda: NOW)  # type: ignore[arg-type]
    doomed = await b.prune()
    assert sorted(doomed) == sorted(ids[7:])
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(f"{i}{ext}" for i in ids[:7] for ext in (".grbk", ".json"))
    # Listing reads manifests only: what is left is what PROXY BACKUPS shows.
    assert [m.id for m in await b.manifests()] == sorted(ids[:7])


async def test_prune_never_deletes_the_newest_good_backup(tmp_path: Path) -> None:
    old = _store(tmp_path, NOW - 400 * DAY, 1)
    _store(tmp_path, NOW - 500 * DAY, 2, state="failed")
    b = Backups(_host(tmp_path, Retention(daily=0, weekly=0, monthly=0)), clock=lambda: NOW)  # type: ignore[arg-type]
    await b.prune()
    assert [m.id for m in await b.manifests()] == [old]
