"""PROXY FAILOVER's request, its target, and what STATUS shows (pure: no IO).

`parse` reads the verb's words; `choose_planned` and `choose_forced` pick the node a
switchover promotes from a snapshot (`proxy.admin.failover` runs it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from config.model import Address
from proxy.errors import FailoverError
from routing.topology import NodeState, Role, Snapshot


@dataclass(frozen=True, slots=True)
class Request:
    force: bool = False
    to: str | None = None  # "host:port" or a region name
    timeout_ms: int | None = None


def parse(args: list[bytes]) -> Request:
    """FORCE, TO <target>, TIMEOUT <ms>, in any order (ValueError: the usage)."""
    words = [a.decode(errors="replace") for a in args]
    force, to, timeout, i = False, None, None, 0
    while i < len(words):
        w = words[i].upper()
        if w == "FORCE":
            force, i = True, i + 1
        elif w in ("TO", "TIMEOUT") and i + 1 < len(words):
            if w == "TO":
                to = words[i + 1]
            else:
                timeout = int(words[i + 1])
                if timeout <= 0:
                    raise ValueError
            i += 2
        else:
            raise ValueError
    return Request(force, to, timeout)


# ---------------------------------------------------------------------- choosing


def choose_planned(snap: Snapshot, to: str | None) -> NodeState:
    """The switchover's target (see the module doc); FailoverError when none fits."""
    primary = snap.primary
    assert primary is not None
    ready = [n for n in snap.nodes if n.eligible and n.replid == primary.replid]
    if to is not None:
        named = _named(snap, to)
        if isinstance(named, NodeState):
            if named not in ready:
                raise FailoverError(f"{to} is not an eligible, in-sync replica "
                                    f"({named.reason.value})")  # fmt: skip
            return named
        ready = [n for n in ready if n.region == named]
        if not ready:
            raise FailoverError(f"no eligible, in-sync replica in {named}")
    if not ready:
        raise FailoverError("no eligible, in-sync replica")
    return max(ready, key=lambda n: (n.region == primary.region, n.offset))


def choose_forced(snap: Snapshot, to: str | None, last: NodeState | None = None) -> NodeState:
    region = last.region if last is not None else ""
    up = [n for n in snap.nodes if n.up and n.role is Role.REPLICA and not n.loading]
    if to is not None:
        named = _named(snap, to)
        up = [n for n in up if n is named or n.region == named]
    if not up:
        raise FailoverError("no reachable replica" + (f" for {to}" if to else ""))
    lag = float("inf")
    return max(
        up, key=lambda n: (n.offset, n.region == region, -(lag if n.lag_ms is None else n.lag_ms))
    )


def _named(snap: Snapshot, to: str) -> NodeState | str:
    """A node (host:port) or a region name."""
    if ":" in to:
        host, _, port = to.rpartition(":")
        node = snap.node(Address(host.strip("[]"), int(port))) if port.isdigit() else None
        if node is None:
            raise FailoverError(f"{to} is not a configured node")
        return node
    if not any(n.region == to for n in snap.nodes):
        raise FailoverError(f"unknown region '{to}'")
    return to


class Status:
    """`PROXY FAILOVER STATUS`: the last run of this process, the hold, the epoch."""

    def __init__(self) -> None:
        self.running = False
        self.last: dict[str, object] | None = None

    def record(self, result: dict[str, object]) -> None:
        self.last = {**result, "at": round(time.time(), 3)}
