"""`/healthz` and `/readyz`: what an orchestrator's probes ask of the metrics port.

Liveness is "the process serves HTTP": if this answers, the loop turns. Readiness is
"clients sent here now get answers": the config is loaded (it is, or nothing would
serve) and at least one node answers probes. A proxy without a primary still serves
reads from its replicas, so it stays ready: a Kubernetes readiness probe that failed on
"no primary" would take every proxy out of its Service exactly when reads must keep
flowing. Both answers are one line and name no node or address: the probes are served
without authentication (kubelet probes send no credentials), so they say no more than
ready or not, and why in words.
"""

from __future__ import annotations

from proxy.stats import StatusSource

LIVE = "ok"


def readiness(source: StatusSource) -> tuple[bool, str]:
    """(ready, one-line reason) from the current topology snapshot."""
    snap = source.snapshot()
    if not snap.nodes:
        return False, "not ready: no node probed yet"
    if not any(n.up for n in snap.nodes):
        return False, "not ready: no node answers"
    if snap.primary is None or not snap.primary.up:
        return True, "ready: reads only, no primary"
    return True, "ready"
