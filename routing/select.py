"""Replica choice: a pure function of (client, snapshot), so geo, lag and consistency
rules plug in here without touching the session code (docs/architecture.md, "Invariants").

The session calls `select_read` once per read; it must stay cheap: the common case looks
at the client's first region, finds one or two eligible replicas there and takes the one
with the fewest outstanding requests.
"""

from __future__ import annotations

from collections.abc import Callable

from config.model import Address
from routing.topology import NodeState, Snapshot


class ReadRequirements:
    """What a client's reads demand beyond eligibility; None fields impose nothing."""

    __slots__ = ("exclude", "max_lag_ms", "min_offset")

    def __init__(
        self,
        max_lag_ms: float | None = None,
        min_offset: int | None = None,
        exclude: Address | None = None,
    ) -> None:
        # A per-connection lag bound tighter than the configured one (PROXY MAXLAG).
        self.max_lag_ms = max_lag_ms
        # Read-your-writes: the replica's offset must have reached this primary offset.
        self.min_offset = min_offset
        # A node that just failed this very request (retry elsewhere).
        self.exclude = exclude


NO_REQUIREMENTS = ReadRequirements()


def select_read(
    ranking: tuple[str, ...],
    snapshot: Snapshot,
    outstanding: Callable[[Address], int],
    req: ReadRequirements = NO_REQUIREMENTS,
    fallback_to_primary: bool = True,
    prefer: Address | None = None,
) -> NodeState | None:
    """The node that should serve a read, or None when none may.

    Order: the client's regions, nearest first; inside a region, `prefer` (the replica
    this client read from last) while it is a candidate there, else the eligible replica
    with the fewest outstanding requests; then the primary (when fallback allows it).
    Staying on one replica keeps a client's SCAN cursors valid and its reads monotonic.
    """
    by_region = snapshot.eligible_by_region
    if req.max_lag_ms is not None and snapshot.primary is None:
        # Without a primary the replicas that keep reads hold the newest data there is;
        # their lag is the time since the primary was seen, which no bound can cure
        # (routing.eligibility): PROXY MAXLAG is not applied to it either.
        req = ReadRequirements(None, req.min_offset, req.exclude)
    for region in ranking:
        candidates = by_region.get(region)
        if not candidates:
            continue
        if req is not NO_REQUIREMENTS:
            candidates = tuple(n for n in candidates if _meets(n, req))
            if not candidates:
                continue
        if len(candidates) == 1:
            return candidates[0]
        if prefer is not None:
            for n in candidates:
                if n.addr == prefer:
                    return n
        return min(candidates, key=lambda n: outstanding(n.addr))
    primary = snapshot.primary
    if primary is None or not fallback_to_primary:
        return None
    if req.exclude is not None and primary.addr == req.exclude:
        return None
    return primary


def _meets(node: NodeState, req: ReadRequirements) -> bool:
    if req.exclude is not None and node.addr == req.exclude:
        return False
    if req.max_lag_ms is not None and (node.lag_ms is None or node.lag_ms > req.max_lag_ms):
        return False
    return req.min_offset is None or node.offset >= req.min_offset


def default_ranking(snapshot_regions: tuple[str, ...], home: str) -> tuple[str, ...]:
    """Home region first, the others in configured order (used before geo ranking)."""
    return (home, *(r for r in snapshot_regions if r != home))
