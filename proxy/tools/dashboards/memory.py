"""Memory analytics: each node's memory against its maxmemory, and what memory pressure
does (fragmentation, evictions, hit rate), with the persistence that memory relies on.

"Memory full in" extrapolates the last 6 hours (`predict_linear`), the same trend as the
"memory full within 7 days" alert; it reads as no value where maxmemory is 0 (no limit).
"""

from __future__ import annotations

from config.model import Config
from proxy.tools.dashboards.layout import NODE_LEGEND, RATE, YES_NO, Json, Layout, board, steps

UID = "georedis-memory"
# `max by (node, region)`: every proxy exports the same INFO; one series per node.
USED = "max by (node, region) (georedis_node_used_memory_bytes)"
LIMIT = "max by (node, region) (georedis_node_maxmemory_bytes > 0)"
MEMORY_STEPS = steps((0.8, "orange"), (0.95, "red"))  # as `georedis health` and the alert


def _usage(g: Layout) -> None:
    g.row("Usage")
    g.panel("Used memory / maxmemory", [(f"{USED} / {LIMIT}", NODE_LEGEND)],
            unit="percentunit", width=12, thresholds=MEMORY_STEPS, minimum=0,
            description="Nodes without a maxmemory are left out (nothing to compare).")  # fmt: skip
    g.panel(
        "Memory full in",
        [(f"({LIMIT} - {USED}) / deriv(max by (node, region) "
          "(georedis_node_used_memory_bytes)[6h:5m]) > 0", NODE_LEGEND)],
        kind="stat", unit="s", width=12,
        description="At the growth of the last 6 hours; no value while memory is not "
        "growing or maxmemory is 0.",
        thresholds=steps((7 * 86400, "green"), base="red"),
    )  # fmt: skip
    g.panel(
        "Used memory",
        [(USED, NODE_LEGEND), (LIMIT, "{{node}} maxmemory"),
         ("max by (node, region) (georedis_node_used_memory_peak_bytes)", "{{node}} peak")],
        unit="bytes", width=12,
    )  # fmt: skip
    g.panel("Fragmentation ratio",
            [("max by (node, region) (georedis_node_mem_fragmentation_ratio)", NODE_LEGEND)],
            width=12, thresholds=steps((1.5, "orange")),
            description="RSS / used memory; above 1.5 memory is wasted (alert "
            "GeoredisMemoryFragmentation); below 1 the node swaps.")  # fmt: skip


def _pressure(g: Layout) -> None:
    g.row("Keys under pressure")
    g.panel(
        "Keyspace hit rate",
        [(f"sum by (node, region) (rate(georedis_node_keyspace_hits_total[{RATE}])) / "
          f"(sum by (node, region) (rate(georedis_node_keyspace_hits_total[{RATE}])) + "
          f"sum by (node, region) (rate(georedis_node_keyspace_misses_total[{RATE}])))",
          NODE_LEGEND)],
        unit="percentunit", thresholds=steps((0.8, "green"), base="orange"),
    )  # fmt: skip
    g.panel("Evicted keys /s",
            [(f"max by (node, region) (rate(georedis_node_evicted_keys_total[{RATE}]))",
              NODE_LEGEND)], unit="ops")  # fmt: skip
    g.panel("Expired keys /s",
            [(f"max by (node, region) (rate(georedis_node_expired_keys_total[{RATE}]))",
              NODE_LEGEND)], unit="ops")  # fmt: skip


def _persistence(g: Layout) -> None:
    g.row("Persistence")
    g.panel("Changes since last save",
            [("max by (node, region) (georedis_node_rdb_changes_since_last_save)",
              NODE_LEGEND)], thresholds=steps((100_000, "orange")))  # fmt: skip
    g.panel("Time since last save",
            [("time() - max by (node, region) (georedis_node_rdb_last_save_timestamp_seconds)",
              NODE_LEGEND)], unit="s", thresholds=steps((86400, "orange")))  # fmt: skip
    g.panel(
        "Last save / AOF write ok",
        [("min by (node, region) (georedis_node_rdb_last_bgsave_ok)", "{{node}} bgsave"),
         ("min by (node, region) (georedis_node_aof_last_write_ok) and on (node) "
          "(max by (node) (georedis_node_aof_enabled) == 1)", "{{node}} aof")],
        kind="state-timeline", mappings=YES_NO,
    )  # fmt: skip


def dashboard(config: Config) -> Json:
    g = Layout()
    for section in (_usage, _pressure, _persistence):
        section(g)
    return board(UID, "georedis / Memory analytics",
                 "Memory per node against maxmemory, its growth, fragmentation, evictions, "
                 "hit rate and persistence.", g)  # fmt: skip
