"""The five Grafana dashboards `georedis generate-configs` writes to grafana/dashboards/.

One module per dashboard (overview, memory, performance, replication, backup), each a
`dashboard(config)` returning plain data; `layout` holds what they share. Every metric
name a panel queries is one `proxy.observe.metrics.METRICS` declares (a unit test parses
each expression to check it), and every panel reads the `${datasource}` variable, which
defaults to the Prometheus datasource generate-configs provisions.
"""

from __future__ import annotations

from config.model import Config
from proxy.tools.dashboards import backup, memory, overview, performance, replication
from proxy.tools.dashboards.layout import Json

# File name under grafana/dashboards/ -> its module; in the order Grafana lists them.
BOARDS = (
    ("georedis-overview.json", overview),
    ("georedis-memory.json", memory),
    ("georedis-performance.json", performance),
    ("georedis-replication.json", replication),
    ("georedis-backup.json", backup),
)


def dashboards(config: Config) -> list[tuple[str, Json]]:
    """(file name, dashboard) for each of the five."""
    return [(name, module.dashboard(config)) for name, module in BOARDS]
