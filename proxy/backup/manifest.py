"""A backup's manifest: what it is, where it came from, and how to check it.

Stored as `<id>.json` beside `<id>.grbk`, written only after the sealed RDB is complete
and checked, so a listed backup is a whole one. It holds no key names and no secrets:
the key count and the RDB's own facts come from walking the RDB as it streamed
(`proxy.backup.rdb`), not from INFO, which moves under load.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

DATA_SUFFIX = ".grbk"
MANIFEST_SUFFIX = ".json"


# What a manifest's MAC covers (version 1). Not `verify`, `archive` (each segment entry
# has its own MAC), `state`, `target`: later runs add or change those.
SIGNED = (
    "id", "created", "source", "source_region", "source_role", "format", "finished",
    "replid", "offset", "rdb_version", "redis_version", "rdb_bytes", "size", "sha256",
    "key_id", "crc64", "keys", "reserved_keys", "expires", "keys_per_db", "epoch", "at",
)  # fmt: skip


def new_id(now: float) -> str:
    """Sortable by time, unique across proxies: `20261201T021500Z-3f9a1c`."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"{stamp}-{secrets.token_hex(3)}"


def valid_id(text: str) -> bool:
    stamp, _, tail = text.partition("-")
    return (
        len(stamp) == 16
        and stamp[8] == "T"
        and len(tail) == 6
        and text.isascii()
        and (all(c.isalnum() for c in stamp + tail))
    )


@dataclass(slots=True)
class Manifest:
    id: str
    created: float  # Unix seconds when the snapshot was asked for
    source: str  # host:port
    source_region: str
    source_role: str
    target: str  # where it was stored, as the target describes itself
    format: str = "grbk1"
    state: str = "complete"
    finished: float = 0.0
    replid: str | None = None
    offset: int | None = None
    rdb_version: int = 0
    redis_version: str | None = None
    rdb_bytes: int = 0
    size: int = 0  # the sealed file's bytes
    sha256: str = ""  # of the sealed file
    key_id: str = ""  # which master key sealed it (a hash of the key, not the key)
    crc64: str | None = None  # the RDB's own trailer, hex; None when written without one
    keys: int = 0  # every key in the RDB, georedis' own included
    reserved_keys: int = 0  # georedis' own (heartbeats, epoch, locks): a restore drops them
    expires: int = 0
    keys_per_db: dict[str, int] = field(default_factory=dict)
    epoch: int = 0  # the failover epoch when it was taken
    verify: dict[str, Any] | None = None  # the last PROXY BACKUP VERIFY
    # The replication stream archived after the snapshot (`proxy.backup.archive`): one
    # entry per stored segment; None: no archive. `at` is the snapshot's own moment.
    archive: list[dict[str, Any]] | None = None
    at: float = 0.0
    archive_from: float = 0.0  # the archive caught up with its source: AT from here on
    # Cluster mode (`proxy.backup.clusterset`): a shard's object says its set, shard
    # index, shard count and slots; the set's manifest (no object of its own) lists its
    # members. None: a standalone backup. Signed when present.
    cluster: dict[str, Any] | None = None
    # The master key's MAC over the fields above that never change (`signed`): a
    # manifest edited or copied from another backup is refused before any restore.
    mac: str = ""

    @property
    def archived_to(self) -> float | None:
        """Up to when (Unix s) a restore AT may ask; None without an archive."""
        if not self.archive:
            return None
        return float(self.archive[-1]["to_ms"]) / 1000

    @property
    def is_set(self) -> bool:
        """A cluster set's manifest: its shards' objects hold the data."""
        return self.cluster is not None and "members" in self.cluster

    @property
    def duration_s(self) -> float:
        return max(0.0, self.finished - self.created)

    @property
    def user_keys(self) -> int:
        return self.keys - self.reserved_keys

    def signed(self) -> bytes:
        """What `mac` covers: the fields a restore trusts, named (a field added later
        must not change what older manifests' MACs cover)."""
        fields = {name: getattr(self, name) for name in SIGNED}
        if self.cluster is not None:  # absent from older manifests: their MACs unchanged
            fields["cluster"] = self.cluster
        return json.dumps({"v": 1, **fields}, sort_keys=True).encode()

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("a manifest is a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        # Fields a newer georedis added are kept out, so an old one still reads the rest.
        return cls(**{k: v for k, v in raw.items() if k in known})

    def summary(self) -> dict[str, object]:
        """One row of PROXY BACKUPS."""
        row: dict[str, object] = {
            "id": self.id,
            "state": self.state,
            "created": _iso(self.created),
            "duration_s": round(self.duration_s, 3),
            "size": self.size,
            "rdb_bytes": self.rdb_bytes,
            "keys": self.user_keys,
            "source": f"{self.source} ({self.source_region})",
            "verified": None if self.verify is None else self.verify.get("result"),
            "archived_to": None if self.archived_to is None else _iso(self.archived_to),
        }
        if self.is_set:
            assert self.cluster is not None
            row["cluster_shards"] = self.cluster["shards"]
        return row


def segment_signed(ident: str, seg: dict[str, Any]) -> bytes:
    """What an archive segment entry's `mac` covers."""
    fields = {k: v for k, v in seg.items() if k != "mac"}
    return json.dumps({"id": ident, **fields}, sort_keys=True).encode()


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
