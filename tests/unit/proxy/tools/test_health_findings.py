"""`georedis health`'s conclusions, without sockets: PROXY INFO's text as the real
renderer writes it, read back by `parse_info`; each finding and its level; the backup
age limit a schedule implies; the exit status (the worst level).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import pytest

from config.model import Address, Config, ProxyConfig, RegionConfig, RoutingConfig
from config.schedule import parse_schedule
from proxy.observe.infotext import render_proxy_info
from proxy.stats import ClientInfo, ProxyStats
from proxy.tools.findings import (
    Level,
    Limits,
    NodeView,
    ProxyState,
    backup_age_limit,
    findings,
    parse_info,
)
from proxy.tools.health import report
from routing.topology import NodeState, Reason, Role, Snapshot

PRIMARY = Address("127.0.0.1", 7000)
AP = Address("127.0.0.1", 7001)
US = Address("127.0.0.1", 7100)
EU = Address("::1", 7200)


def make_config() -> Config:
    return Config(
        proxy=ProxyConfig(region="ap-southeast-1"),
        regions=(
            RegionConfig("ap-southeast-1", 1.35, 103.8, (PRIMARY, AP)),
            RegionConfig("us-east-1", 38.9, -77.0, (US,)),
            RegionConfig("eu-west-1", 53.3, -6.3, (EU,)),
        ),
        routing=RoutingConfig(max_lag_ms=1000),
    )


def make_snapshot() -> Snapshot:
    memory = {"used_memory": "900", "maxmemory": "1000"}
    primary = NodeState(PRIMARY, "ap-southeast-1", up=True, role=Role.PRIMARY, link_up=True,
                        reason=Reason.PRIMARY, info=memory)  # fmt: skip
    ap = NodeState(AP, "ap-southeast-1", up=True, role=Role.REPLICA, link_up=True,
                   lag_ms=2500.0, reason=Reason.LAGGING, info={"used_memory": "5"})  # fmt: skip
    us = NodeState(US, "us-east-1", up=True, role=Role.REPLICA, link_up=True, lag_ms=12.5,
                   eligible=True, reason=Reason.OK)  # fmt: skip
    eu = NodeState(EU, "eu-west-1", reason=Reason.DOWN, error="connection refused")
    return Snapshot(version=3, nodes=(primary, ap, us, eu), primary=primary,
                    eligible_by_region={"us-east-1": (us,)})  # fmt: skip


@dataclass
class Source:
    """A real StatusSource over fixed data, rendered by the real PROXY INFO renderer."""

    snap: Snapshot
    config: Config = field(default_factory=make_config)
    started_at: float = field(default_factory=time.time)
    stats: ProxyStats = field(default_factory=ProxyStats)

    def snapshot(self) -> Snapshot:
        return self.snap

    def outstanding(self, addr: Address) -> int:
        return 0

    def pool_connections(self, addr: Address) -> int:
        return 1

    def clients(self) -> list[ClientInfo]:
        return []


LIMITS = Limits(max_lag_ms=1000.0)


def state_of(snap: Snapshot) -> ProxyState:
    return parse_info(render_proxy_info(Source(snap)))


def test_parse_info_reads_what_proxy_info_writes() -> None:
    state = state_of(make_snapshot())
    assert state.primary == "127.0.0.1:7000" and state.primary_error == ""
    assert [n.addr for n in state.nodes] == ["127.0.0.1:7000", "127.0.0.1:7001",
                                             "127.0.0.1:7100", "[::1]:7200"]  # fmt: skip
    primary, ap, us, eu = state.nodes
    assert (primary.used_memory, primary.maxmemory) == (900, 1000)
    assert (ap.used_memory, ap.maxmemory, ap.lag_ms, ap.reason) == (5, None, 2500.0, "lagging")
    assert us.eligible and us.up and us.region == "us-east-1"
    assert not eu.up and eu.lag_ms is None and eu.used_memory is None
    assert state.eligible_by_region == {"ap-southeast-1": 0, "us-east-1": 1, "eu-west-1": 0}


def test_every_finding_of_a_troubled_deployment() -> None:
    lines = [f.line() for f in findings(state_of(make_snapshot()), LIMITS, time.time())]
    assert lines == [
        "WARNING: region ap-southeast-1 has no eligible replica (127.0.0.1:7001 lagging)",
        "WARNING: region eu-west-1 has no eligible replica ([::1]:7200 down)",
        "WARNING: node 127.0.0.1:7000 (ap-southeast-1) uses 90% of maxmemory (900 of 1000 "
        "bytes; warning at 80%)",
        "WARNING: replica 127.0.0.1:7001 (ap-southeast-1) lags 2500 ms, over the 1000 ms budget",
        "WARNING: node [::1]:7200 (eu-west-1) does not answer",
    ]


def test_all_well_is_no_finding_and_exit_0() -> None:
    snap = make_snapshot()
    ap = replace(snap.nodes[1], lag_ms=3.0, eligible=True, reason=Reason.OK)
    eu = replace(snap.nodes[3], up=True, role=Role.REPLICA, eligible=True, reason=Reason.OK)
    primary = replace(snap.nodes[0], info={"used_memory": "100", "maxmemory": "0"})
    snap = replace(snap, nodes=(primary, ap, snap.nodes[2], eu), primary=primary,
                   eligible_by_region={"ap-southeast-1": (ap,), "us-east-1": (snap.nodes[2],),
                                       "eu-west-1": (eu,)})  # fmt: skip
    state = state_of(snap)
    assert findings(state, LIMITS, time.time()) == []
    lines, code = report([], state, LIMITS)
    assert code == 0 and lines == [
        "OK: primary 127.0.0.1:7000, 4/4 nodes up, every region with a replica has an "
        "eligible one, lag within 1000 ms"
    ]


def test_no_primary_is_critical_and_sets_the_exit_status() -> None:
    snap = make_snapshot()
    snap = replace(snap, primary=None, primary_error="no node answers as master")
    state = state_of(snap)
    found = findings(state, LIMITS, time.time())
    assert found[0].line() == (
        "CRITICAL: no primary: no node answers as master (writes fail; reads go on)"
    )
    assert report(found, state, LIMITS)[1] == 2


def node(used: int | None, maxmemory: int | None) -> NodeView:
    return NodeView("127.0.0.1:7000", "ap-southeast-1", "primary", True, False, "primary",
                    None, used, maxmemory)  # fmt: skip


@pytest.mark.parametrize(
    ("used", "maxmemory", "level"),
    [(790, 1000, None), (800, 1000, Level.WARNING), (949, 1000, Level.WARNING),
     (950, 1000, Level.CRITICAL), (5000, 0, None), (None, 1000, None)],
)  # fmt: skip
def test_memory_thresholds(used: int | None, maxmemory: int | None, level: Level | None) -> None:
    state = ProxyState("127.0.0.1:7000", "", (node(used, maxmemory),), {})
    levels = [f.level for f in findings(state, LIMITS, time.time())]
    assert levels == ([] if level is None else [level])
    # Thresholds are flags: at 70% / 90%, 800 bytes of 1000 warns, 949 is critical.
    strict = replace(LIMITS, memory_warning=0.7, memory_critical=0.9)
    if used in (800, 949):
        found = findings(state, strict, time.time())
        assert [f.level for f in found] == [Level.WARNING if used == 800 else Level.CRITICAL]


@pytest.mark.parametrize(
    ("schedule", "limit_s"),
    [("every 10s", 20), ("@hourly", 7200), ("0 2 * * *", 25 * 3600), ("every 6h", 7 * 3600),
     ("@weekly", 7 * 86400 + 3600)],
)  # fmt: skip
def test_backup_age_limit(schedule: str, limit_s: float) -> None:
    assert backup_age_limit(parse_schedule(schedule), 1_700_000_123.0) == limit_s


def _row(
    finished: float, state: str = "complete", verified: str | None = None
) -> dict[str, object]:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(finished - 60))
    return {"id": "b", "state": state, "created": created, "duration_s": "60.0",
            "verified": verified}  # fmt: skip


def test_backup_findings() -> None:
    now = 1_700_000_000.0
    daily = replace(LIMITS, schedule=parse_schedule("@daily"))
    healthy = ProxyState("127.0.0.1:7000", "", (), {})

    def lines(rows: list[dict[str, object]] | None, lim: Limits = daily, **kw: str) -> list[str]:
        return [f.line() for f in findings(replace(healthy, backups=rows, **kw), lim, now)]

    assert lines([_row(now - 3600)]) == []
    assert lines([_row(now - 26 * 3600)]) == [
        'WARNING: last complete backup is 26.0 h old, over 25.0 h (schedule "@daily")'
    ]
    # The newest good one counts: failed runs and failed verifies do not.
    assert lines([_row(now - 26 * 3600), _row(now - 60, state="failed"),
                  _row(now - 120, verified="failed")]) != []  # fmt: skip
    assert lines([_row(now - 26 * 3600), _row(now - 120, verified="ok")]) == []
    assert lines([]) == ['WARNING: no complete backup yet (schedule "@daily")']
    assert lines(None, backups_error="ERR no [backup] target") == [
        "WARNING: backups: cannot list them: ERR no [backup] target"
    ]
    # --backup-max-age wins over the schedule's; without a schedule nothing is checked.
    assert lines([_row(now - 3600)], replace(daily, backup_max_age_s=1800)) != []
    assert lines([], LIMITS) == []
