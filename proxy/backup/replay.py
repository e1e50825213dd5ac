"""Point in time: the archived stream after a snapshot, up to a moment (`proxy.backup.archive`).

`needed` checks, before the target is touched, that the archive covers the moment and
that every segment up to it opens and matches its manifest entry (sha256, size). Then
`commands` yields, in order, the RESP of every archived command received before the
moment, for the restore to send to the target as its replication stream. A MULTI..EXEC
block is yielded whole or not at all: a cut inside one would leave the target's master
link inside a transaction (and the commands after it queued).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from proxy.backup.archive import records, segment_name
from proxy.backup.manifest import Manifest, segment_signed
from proxy.backup.sealed import MasterKey, Opener, SealError
from proxy.backup.targets import Target, TargetError
from proxy.errors import BackupError

_MULTI = b"*1\r\n$5\r\nMULTI\r\n"
_EXEC = b"*1\r\n$4\r\nEXEC\r\n"


def _iso_ms(ms: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{int(ms) % 1000:03d}Z"


async def needed(target: Target, m: Manifest, key: MasterKey,
                 until_ms: int) -> list[dict[str, Any]]:  # fmt: skip
    if m.archive is None:
        raise BackupError(f"backup {m.id} has no archive (PROXY BACKUP ARCHIVE takes one)")
    if until_ms < m.at * 1000:
        raise BackupError(
            f"AT {until_ms} is before backup {m.id}'s snapshot ({_iso_ms(m.at * 1000)}): "
            "restore an older backup"
        )
    covered = m.archived_to
    if covered is None or until_ms > covered * 1000:
        reach = "nothing" if covered is None else _iso_ms(covered * 1000)
        raise BackupError(f"backup {m.id}'s archive reaches {reach}, not AT {until_ms}")
    segments = [s for s in m.archive if int(s["from_ms"]) < until_ms]
    _contiguous(m, key, segments)
    # The last signed word on when the archive caught up with its source (0: never).
    caught_up = float(m.archive[-1].get("archive_from") or 0)
    if not caught_up or until_ms < caught_up * 1000:
        when = _iso_ms(caught_up * 1000) if caught_up else "never"
        raise BackupError(
            f"AT {until_ms} is before backup {m.id}'s archive caught up with its source "
            f"({when}): writes before that are stamped late"
        )
    for seg in segments:
        await _plain(target, m, key, seg)  # opens, and matches the manifest
    return segments


def _contiguous(m: Manifest, key: MasterKey, segments: list[dict[str, Any]]) -> None:
    """The segments a restore needs (and the last, which says how far the archive
    reaches) signed, numbered 1, 2, ... and each starting at the offset where the one
    before ended (the first at the snapshot's): no hole, nothing swapped."""
    assert m.archive is not None
    for seg in (m.archive[-1],):
        if not hmac.compare_digest(str(seg.get("mac", "")), key.mac(segment_signed(m.id, seg))):
            raise BackupError(f"backup {m.id}'s archive fails its check (its last segment)")
    offset = m.offset
    for i, seg in enumerate(segments, 1):
        signed = segment_signed(m.id, seg)
        if not hmac.compare_digest(str(seg.get("mac", "")), key.mac(signed)):
            raise BackupError(f"backup {m.id}'s archive segment {i} fails its check")
        if seg["seq"] != i or (offset is not None and seg["start_offset"] != offset):
            raise BackupError(f"backup {m.id}'s archive has a gap before segment {i}")
        offset = seg["offset"]


async def _plain(target: Target, m: Manifest, key: MasterKey, seg: dict[str, Any]) -> bytes:
    name = segment_name(m.id, int(seg["seq"]))
    try:
        data = await target.get(name)
        if len(data) != seg["size"] or hashlib.sha256(data).hexdigest() != seg["sha256"]:
            raise BackupError(f"archive segment {name} fails its check: size or sha256 differs")
        opener = Opener(key)
        plain = opener.feed(data)
        opener.finish()
    except (SealError, TargetError) as e:
        raise BackupError(f"archive segment {name} fails its check: {e}") from e
    if len(plain) != seg["bytes"]:
        raise BackupError(f"archive segment {name} fails its check: length differs")
    return plain


async def commands(target: Target, m: Manifest, key: MasterKey, segments: list[dict[str, Any]],
                   until_ms: int) -> AsyncIterator[bytes]:  # fmt: skip
    block: list[bytes] | None = None  # inside MULTI..EXEC
    for seg in segments:
        for ms, _offset, cmd in records(await _plain(target, m, key, seg)):
            if ms >= until_ms:
                return
            word = cmd.upper() if len(cmd) <= len(_MULTI) else b""
            if word == _MULTI:
                block = [cmd]
            elif block is not None:
                block.append(cmd)
                if word == _EXEC:
                    yield b"".join(block)
                    block = None
            else:
                yield cmd


Replay = Callable[[], AsyncIterator[bytes]]


async def point_in_time(target: Target, m: Manifest, key: MasterKey,
                        until_ms: int | None) -> Replay | None:  # fmt: skip
    """The replay for a restore AT `until_ms` (checked now), or None for the snapshot."""
    if until_ms is None:
        return None
    segments = await needed(target, m, key, until_ms)
    return lambda: commands(target, m, key, segments, until_ms)
