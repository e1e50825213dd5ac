"""From one round of probe results to a topology `Snapshot`: pure, no IO.

The health checker (`proxy.backend.health`) probes every node and hands the results
(`routing.probe.ProbeResult`) here; `evaluate` decides who the primary is, measures each
replica's lag and decides whether it may take reads. The only memory between rounds
(lag hysteresis, the primary's offset history) lives in an explicit `EligibilityState`
that is passed in and returned, so every decision can be replayed in a unit test from
plain data.

Decisions worth knowing:

- The primary is *the* master. With two or more masters reachable at once nobody is
  primary (writes are refused: two masters means a split brain or a failover half
  done, and picking one could lose writes), even if only one of them has followers.
- A replica belongs to the primary when it follows the primary's replication ID, not
  the primary's address: replicas may reach the primary through NAT or a relay, so the
  `master_host` they report need not be any address we know.
- Lag in milliseconds comes from the heartbeat key (see `heartbeat_lag_ms`). When it is
  not available (heartbeat disabled, or the key has not reached the replica yet) the
  lag is estimated from replication offsets against the primary's recent offset
  samples (see `offset_lag_ms`), an upper bound with the probe interval as granularity.
  When neither works, the lag is unknown and counts as over budget: a replica that
  cannot show it is close behind does not take reads.
- A lagging replica gets reads back only after its lag stayed within budget for
  `lag_recovery_ms` without a break (hysteresis, so it does not flap at the edge).
- Reads survive a missing primary. While no primary is known (it is down, frozen, or
  two masters are up), a replica that was eligible in the last round that had one, and
  still follows that primary's replication ID, stays eligible: it holds the newest data
  that exists anywhere. Its lag is shown as the time since that round, but `max_lag_ms`
  is not applied to that growing figure (nothing newer exists to be behind), nor is a
  connection's PROXY MAXLAG (`routing.select.select_read`). One that
  starts resyncing or loading, or follows another replication ID, drops out as usual.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from config.model import Address, Config
from routing.probe import ProbeResult
from routing.topology import NodeState, OffsetSample, Reason, Role, Snapshot

# How much of the primary's offset history a snapshot carries (read-your-writes and
# offset-based lag look back at most this far).
OFFSET_WINDOW_S = 10.0


@dataclass(frozen=True, slots=True)
class Policy:
    max_lag_ms: float
    lag_recovery_ms: float
    heartbeat: bool
    heartbeat_ms: float
    offset_window_s: float = OFFSET_WINDOW_S

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        return cls(
            max_lag_ms=config.routing.max_lag_ms,
            lag_recovery_ms=config.routing.lag_recovery_ms,
            heartbeat=config.health.heartbeat,
            heartbeat_ms=config.health.heartbeat_ms,
        )


@dataclass(frozen=True, slots=True)
class LagMemory:
    """Hysteresis memory of one replica."""

    lagging: bool = False
    # loop.time() since which the lag has been within budget without a break.
    within_since: float | None = None


@dataclass(frozen=True, slots=True)
class EligibilityState:
    """Everything `evaluate` remembers between rounds."""

    lag: Mapping[Address, LagMemory] = field(default_factory=dict)
    primary: Address | None = None
    offsets: tuple[OffsetSample, ...] = ()
    # Of the last round that had a primary: its replication ID, when it was probed
    # (loop.time()), and the replicas eligible then (they serve reads while none is).
    primary_replid: str = ""
    primary_seen_at: float = 0.0
    eligible: frozenset[Address] = frozenset()
    # The highest failover epoch seen, and the node that held it as the primary.
    epoch: int = 0
    epoch_holder: Address | None = None


INITIAL_STATE = EligibilityState()


# --- primary ----------------------------------------------------------------------------


def find_primary(results: Sequence[ProbeResult]) -> tuple[ProbeResult | None, str]:
    """The primary and, when there is none, why (for `Snapshot.primary_error`)."""
    masters = [r for r in results if r.ok and r.role == "master"]
    if len(masters) == 1:
        return masters[0], ""
    if not masters:
        return None, "no primary reachable"
    names = ", ".join(str(m.addr) for m in masters)
    return None, f"{len(masters)} masters: {names}"


def fence(
    results: Sequence[ProbeResult], state: EligibilityState, designated: Address | None = None
) -> tuple[list[ProbeResult], frozenset[Address], int, Address | None]:
    """Masters with an older failover epoch than the newest one seen are fenced: an old
    primary that comes back (restarted, or unfrozen) after a failover is never taken as
    the primary, whatever data it holds. The newest epoch's holder keeps its place even
    when its key is gone (a FLUSHALL: the checker writes it again).

    `designated` (Sentinel mode): the master the sentinels name. When it is up as a master
    and not fenced by its epoch, every other master is fenced too. The epoch decides
    first: a sentinel that has not caught up with a failover still names the old
    primary, which may be back (empty) as a master by then.

    Returns (the results the primary is chosen from, the fenced addresses, the newest
    epoch, its holder)."""
    ok = [r for r in results if r.ok]
    top = max([state.epoch, *(r.epoch for r in ok)])
    holder = state.epoch_holder if state.epoch == top else None
    if top and holder is None:
        holder = next((r.addr for r in ok if r.epoch == top and r.role == "master"), None)
    fenced = frozenset(
        r.addr for r in ok if r.role == "master" and r.epoch < top and r.addr != holder
    )
    masters = {r.addr for r in ok if r.role == "master"} - fenced
    if designated in masters:
        fenced = fenced | (masters - {designated})
    return [r for r in results if r.addr not in fenced], fenced, top, holder


def record_offset(
    samples: tuple[OffsetSample, ...],
    primary: ProbeResult,
    same_primary: bool,
    window_s: float,
) -> tuple[OffsetSample, ...]:
    """Append the primary's offset sample, keeping `window_s` of history.

    History restarts when the primary changes or its offset goes back (a new primary
    with less data), so offsets in the history always grow.
    """
    sample = OffsetSample(sent_at=primary.sent_at, offset=primary.offset)
    if not same_primary or (samples and samples[-1].offset > sample.offset):
        return (sample,)
    horizon = sample.sent_at - window_s
    kept = tuple(s for s in samples if s.sent_at >= horizon)
    return (*kept, sample)


# --- lag --------------------------------------------------------------------------------


def heartbeat_lag_ms(
    v_r: float,
    v_last: float | None,
    t_ms: float,
    interval_ms: float,
    v_next: float | None = None,
) -> float:
    """Lag from the heartbeat value `v_r` read on a replica at wall time `t_ms`.

    The proxy writes its own clock reading every `interval_ms`, so only one clock is
    involved. A replica D ms behind shows the last value written before t - D, which is
    somewhere in [t - D - I, t - D]: t - v_r - I/2 estimates D within ±I/2. A replica
    that already shows the last acknowledged value is not behind at all.

    `v_next`, when known, is the first acknowledged value after `v_r`: the replica lacks
    it, so D lies in (t - v_next, t - v_r]. Beats are I apart while the primary takes
    them, and then both estimates agree; after a gap (the primary stalled, or there was
    none for a while) nothing was written between v_r and v_next, and t - v_r would
    count the whole gap as lag: the estimate is then taken from v_next.
    """
    if v_last is not None and v_r >= v_last:
        return 0.0
    lag = t_ms - v_r - interval_ms / 2
    if v_next is not None:
        lag = min(lag, t_ms - v_next + interval_ms / 2)
    return max(0.0, lag)


def next_beat(v_r: float, acks: Sequence[float]) -> float | None:
    """The first acknowledged beat after `v_r` in `acks` (ascending), if `acks` covers
    `v_r` (holds a value <= v_r too, so the one found is really the next)."""
    i = bisect_right(acks, v_r)
    return acks[i] if 0 < i < len(acks) else None


def offset_lag_ms(replica_offset: int, samples: Sequence[OffsetSample], t: float) -> float | None:
    """Lag estimated from offsets: an upper bound, None when history is too short.

    If the replica's offset reached the primary's offset sampled at `s.sent_at`, it has
    everything the primary had then, so it is at most `t - s.sent_at` behind; the newest
    such sample gives the tightest bound. Caught up with the newest sample means 0.
    """
    if not samples:
        return None
    if replica_offset >= samples[-1].offset:
        return 0.0
    i = bisect_right([s.offset for s in samples], replica_offset)
    if i == 0:
        return None
    return max(0.0, (t - samples[i - 1].sent_at) * 1000.0)


def replica_lag(
    r: ProbeResult,
    primary: ProbeResult,
    samples: Sequence[OffsetSample],
    policy: Policy,
    heartbeat_acked_ms: float | None,
    heartbeat_acks: Sequence[float] = (),
) -> tuple[float | None, int]:
    """(lag_ms or None when unknown, lag_bytes) of a replica of `primary`."""
    lag_bytes = max(0, primary.offset - r.offset)
    # Until this proxy has a heartbeat acknowledged, a value on the replica may be a
    # leftover of an earlier run (same instance id, TTL not expired) and would read as a
    # huge lag: offsets are the better witness then.
    if policy.heartbeat and r.heartbeat is not None and heartbeat_acked_ms is not None:
        v_next = next_beat(r.heartbeat, heartbeat_acks)
        lag = heartbeat_lag_ms(
            r.heartbeat, heartbeat_acked_ms, r.midpoint_ms, policy.heartbeat_ms, v_next
        )
        return lag, lag_bytes
    t = (r.sent_at + r.received_at) / 2
    return offset_lag_ms(r.offset, samples, t), lag_bytes


def update_lag_memory(
    mem: LagMemory, lag_ms: float | None, now: float, policy: Policy
) -> LagMemory:
    """Hysteresis: over budget (or unknown) -> lagging; back only after lag_recovery_ms."""
    if lag_ms is None or lag_ms > policy.max_lag_ms:
        return LagMemory(lagging=True, within_since=None)
    since = mem.within_since if mem.within_since is not None else now
    if mem.lagging and (now - since) * 1000.0 < policy.lag_recovery_ms:
        return LagMemory(lagging=True, within_since=since)
    return LagMemory(lagging=False, within_since=since)


# --- per node ---------------------------------------------------------------------------


def replica_reason(r: ProbeResult, primary: ProbeResult | None) -> Reason | None:
    """Why a reachable replica cannot take reads regardless of lag; None if it might."""
    if r.loading:
        return Reason.LOADING
    link_up = r.master_link_status == "up"
    if r.sync_in_progress or (not link_up and not r.link_ever_up):
        return Reason.SYNCING
    if not link_up:
        return Reason.LINK_DOWN
    if primary is None:
        return Reason.NO_PRIMARY
    if r.replid != primary.replid:
        return Reason.FOREIGN_REPLID
    return None


def _node_state(
    r: ProbeResult,
    role: Role,
    reason: Reason,
    lag_ms: float | None = None,
    lag_bytes: int | None = None,
) -> NodeState:
    return NodeState(
        addr=r.addr,
        region=r.region,
        up=r.ok,
        role=role,
        replid=r.replid,
        offset=r.offset,
        link_up=r.master_link_status == "up",
        loading=r.loading,
        syncing=r.sync_in_progress,
        lag_ms=lag_ms,
        lag_bytes=lag_bytes,
        eligible=reason is Reason.OK,
        reason=reason,
        info=r.info,
        sampled_at=r.received_at,
        error=r.error,
    )


def evaluate(
    results: Sequence[ProbeResult],
    state: EligibilityState,
    policy: Policy,
    *,
    heartbeat_acked_ms: float | None,
    version: int,
    heartbeat_acks: Sequence[float] = (),
    designated: Address | None = None,
) -> tuple[Snapshot, EligibilityState]:
    """One round: the new snapshot and the state to pass to the next round.

    `heartbeat_acks`: recent acknowledged heartbeat values, ascending (see
    `heartbeat_lag_ms`); empty is allowed and means "assume one beat per interval".
    """
    candidates, fenced, epoch, holder = fence(results, state, designated)
    primary, primary_error = find_primary(candidates)
    offsets: tuple[OffsetSample, ...] = ()
    if primary is not None:
        same = state.primary == primary.addr
        offsets = record_offset(state.offsets, primary, same, policy.offset_window_s)

    nodes: list[NodeState] = []
    memory: dict[Address, LagMemory] = {}
    for r in results:
        mem = state.lag.get(r.addr, LagMemory())
        if primary is None and _kept_without_primary(r, state):
            nodes.append(_without_primary(r, state))
            memory[r.addr] = mem  # hysteresis resumes where it was when one is back
            continue
        node, mem = _judge(r, primary, offsets, mem, policy, heartbeat_acked_ms, heartbeat_acks)
        if r.addr in fenced:
            node = replace(node, reason=Reason.FENCED)
        nodes.append(replace(node, epoch=r.epoch) if r.epoch else node)
        memory[r.addr] = mem

    by_region: dict[str, tuple[NodeState, ...]] = {}
    for n in nodes:
        by_region[n.region] = by_region.get(n.region, ()) + ((n,) if n.eligible else ())
    primary_node = next((n for n in nodes if n.role is Role.PRIMARY), None)
    snapshot = Snapshot(
        version=version,
        nodes=tuple(nodes),
        primary=primary_node,
        primary_error=primary_error,
        eligible_by_region=by_region,
        # Without a primary, the last history stays: read-your-writes can still tell
        # which replica holds a client's writes.
        primary_offsets=offsets if primary is not None else state.offsets,
        epoch=epoch,
        fenced=tuple(n for n in nodes if n.addr in fenced),
    )
    # A round without a primary (one lost probe, two masters for a moment) is not a
    # primary change: the history carries over, and `record_offset` still restarts it if
    # another node, or the same one with less data, comes back as the primary. Dropping
    # it would leave every replica slightly behind with an unknown offset lag (so
    # 'lagging', and out for lag_recovery_ms) after each such round.
    if primary is not None and primary.addr != holder and primary.epoch == epoch:
        holder = primary.addr
    if primary is None:
        new_state = replace(state, lag=memory, epoch=epoch, epoch_holder=holder)
    else:
        new_state = EligibilityState(
            lag=memory,
            primary=primary.addr,
            offsets=offsets,
            primary_replid=primary.replid,
            primary_seen_at=primary.received_at,
            eligible=frozenset(n.addr for n in nodes if n.eligible),
            epoch=epoch,
            epoch_holder=holder,
        )
    return snapshot, new_state


def _kept_without_primary(r: ProbeResult, state: EligibilityState) -> bool:
    """A replica that keeps its reads while no primary is known (see the module doc)."""
    return (
        r.ok
        and r.role == "slave"
        and r.addr in state.eligible
        and r.replid == state.primary_replid
        and not r.loading
        and not r.sync_in_progress
    )


def _without_primary(r: ProbeResult, state: EligibilityState) -> NodeState:
    since_ms = max(0.0, (r.received_at - state.primary_seen_at) * 1000.0)
    return _node_state(r, Role.REPLICA, Reason.OK, lag_ms=since_ms, lag_bytes=None)


def _judge(
    r: ProbeResult,
    primary: ProbeResult | None,
    offsets: Sequence[OffsetSample],
    mem: LagMemory,
    policy: Policy,
    heartbeat_acked_ms: float | None,
    heartbeat_acks: Sequence[float] = (),
) -> tuple[NodeState, LagMemory]:
    """One node's state; the lag memory only advances when the lag was measured."""
    broken = LagMemory(lagging=mem.lagging, within_since=None)
    if not r.ok:
        return _node_state(r, Role.UNKNOWN, Reason.DOWN), broken
    if r.role == "master":
        if primary is not None and r.addr == primary.addr:
            return _node_state(r, Role.PRIMARY, Reason.PRIMARY), LagMemory()
        return _node_state(r, Role.MASTER, Reason.NO_PRIMARY), broken
    if r.role != "slave":
        return _node_state(r, Role.UNKNOWN, Reason.DOWN), broken
    reason = replica_reason(r, primary)
    if reason is not None or primary is None:
        return _node_state(r, Role.REPLICA, reason or Reason.NO_PRIMARY), broken
    lag_ms, lag_bytes = replica_lag(r, primary, offsets, policy, heartbeat_acked_ms, heartbeat_acks)
    mem = update_lag_memory(mem, lag_ms, r.received_at, policy)
    reason = Reason.LAGGING if mem.lagging else Reason.OK
    return _node_state(r, Role.REPLICA, reason, lag_ms, lag_bytes), mem
