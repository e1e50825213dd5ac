"""What one health probe of one node found: `ProbeResult`, and how it is read from INFO.

The health checker (`proxy.backend.health`) sends each node `INFO replication
persistence` and a `GET` of the heartbeat key; `parse_info` and `result_from_info` turn
the replies into a `ProbeResult` (a failed probe is one with `ok=False` and the error).
`routing.eligibility.evaluate` takes a round of them and decides. Plain data, no IO.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from config.model import Address

# georedis' own keys live under one reserved prefix ("georedis:"; heartbeats are
# `georedis:hb:<instance>` by default). The failover epoch: "<n> <host:port>", written on
# each new primary by the proxy that promoted it (docs/architecture.md, "Failover").
EPOCH_KEY = "georedis:epoch"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe of one node found. Times are `loop.time()` seconds."""

    addr: Address
    region: str
    ok: bool
    error: str = ""
    role: str = ""  # INFO `role`: "master" or "slave"
    replid: str = ""  # INFO `master_replid`: served (master) or followed (replica)
    offset: int = 0  # master_repl_offset (master), slave_repl_offset (replica)
    master_link_status: str = ""  # "up" / "down" on a replica, "" on a master
    sync_in_progress: bool = False
    # False while a replica's link has never been up (master_link_down_since_seconds:-1).
    link_ever_up: bool = True
    loading: bool = False
    heartbeat: float | None = None  # heartbeat value (wall-clock ms) read on this node
    epoch: int = 0  # the failover epoch this node holds (0: none)
    sent_at: float = 0.0
    received_at: float = 0.0
    # time.time() - loop.time() when the probe was taken: converts loop times to the
    # wall clock the heartbeat values are written in.
    wall_offset_s: float = 0.0
    info: Mapping[str, str] = field(default_factory=dict)

    @property
    def midpoint_ms(self) -> float:
        """The probe's midpoint on the wall clock, in ms."""
        return ((self.sent_at + self.received_at) / 2 + self.wall_offset_s) * 1000.0


def parse_info(text: str | bytes) -> dict[str, str]:
    """INFO's `field:value` lines into a dict; section headers and blanks are skipped."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition(":")
        if sep:
            fields[name] = value
    return fields


def result_from_info(
    addr: Address,
    region: str,
    info: Mapping[str, str],
    *,
    heartbeat: object = None,
    epoch: object = None,
    sent_at: float = 0.0,
    received_at: float = 0.0,
    wall_offset_s: float = 0.0,
    full_info: Mapping[str, str] | None = None,
) -> ProbeResult:
    """Build a successful ProbeResult from parsed `INFO replication persistence`."""
    role = info.get("role", "")
    offset_field = "slave_repl_offset" if role == "slave" else "master_repl_offset"
    offset = _int(info.get(offset_field, info.get("master_repl_offset", "0")))
    return ProbeResult(
        addr=addr,
        region=region,
        ok=True,
        role=role,
        replid=info.get("master_replid", ""),
        offset=offset,
        master_link_status=info.get("master_link_status", ""),
        sync_in_progress=info.get("master_sync_in_progress", "0") == "1",
        link_ever_up=info.get("master_link_down_since_seconds") != "-1",
        loading=info.get("loading") == "1" or info.get("async_loading") == "1",
        heartbeat=_heartbeat_value(heartbeat),
        epoch=epoch_value(epoch),
        sent_at=sent_at,
        received_at=received_at,
        wall_offset_s=wall_offset_s,
        info=full_info if full_info is not None else {},
    )


def _int(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        return 0


def _heartbeat_value(raw: object) -> float | None:
    if isinstance(raw, bytes | str):
        try:
            return float(raw)
        except ValueError:
            return None
    return None


def epoch_value(raw: object) -> int:
    """The epoch number of an epoch key's value ("<n> <host:port>"); 0 when unreadable."""
    if isinstance(raw, bytes | str):
        head = raw.split()[0] if raw.split() else b""
        try:
            return max(0, int(head))
        except ValueError:
            return 0
    return 0


def epoch_text(epoch: int, primary: Address) -> str:
    return f"{epoch} {primary}"
