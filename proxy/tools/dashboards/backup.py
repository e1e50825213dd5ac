"""Backup status: the newest complete backup (age, size, duration) and runs by result.

The `georedis_backup_last_*` gauges are read from the target's manifests, so they cover
backups any proxy took; the run counters are this proxy's own (`sum` adds the proxies).
"""

from __future__ import annotations

from config.model import Config
from proxy.tools.dashboards.layout import YES_NO, Json, Layout, board, steps

UID = "georedis-backup"
AGE = "time() - max(georedis_backup_last_success_timestamp_seconds > 0)"


def _last(g: Layout) -> None:
    g.row("Newest complete backup")
    g.panel("Since the last complete backup", [(AGE, "age")], kind="stat", unit="s", width=5,
            thresholds=steps((25 * 3600, "red")),
            description="No value: no complete backup is known.")  # fmt: skip
    g.panel("Size", [("max(georedis_backup_last_size_bytes)", "sealed")], kind="stat",
            unit="bytes", width=5)  # fmt: skip
    g.panel("Duration", [("max(georedis_backup_last_duration_seconds)", "took")],
            kind="stat", unit="s", width=5)  # fmt: skip
    g.panel("Failures (24 h)",
            [('sum(increase(georedis_backups_total{result="error"}[24h]))', "failed")],
            kind="stat", width=5, thresholds=steps((1, "red")))  # fmt: skip
    g.panel("Scheduled", [("max(georedis_backup_scheduled)", "scheduled")], kind="stat",
            width=4, mappings=YES_NO)  # fmt: skip


def _history(g: Layout) -> None:
    g.row("Over time")
    g.panel("Backup age", [(AGE, "age")], unit="s", thresholds=steps((25 * 3600, "red")))
    g.panel("Backup size", [("max(georedis_backup_last_size_bytes)", "sealed")], unit="bytes")
    g.panel("Backup duration", [("max(georedis_backup_last_duration_seconds)", "took")],
            unit="s")  # fmt: skip
    g.panel(
        "Runs by result (per hour)",
        [("sum by (result) (increase(georedis_backups_total[1h]))", "backup {{result}}"),
         ("sum by (result) (increase(georedis_backup_verifies_total[1h]))", "verify {{result}}"),
         ("sum by (result) (increase(georedis_restores_total[1h]))", "restore {{result}}")],
        width=24,
    )  # fmt: skip


def dashboard(config: Config) -> Json:
    g = Layout()
    _last(g)
    _history(g)
    return board(UID, "georedis / Backup status",
                 "The newest complete backup's age, size and duration; backups, verifies "
                 "and restores by result.", g)  # fmt: skip
