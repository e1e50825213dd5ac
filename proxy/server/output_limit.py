"""Redis' client-output-buffer-limit, for the replies georedis holds for a client.

A client that sends commands but does not read their replies makes the proxy hold them:
reading from it pauses while its socket's send buffer is full (`Session.pause_writing`),
but replies to the commands already sent keep arriving (up to `intake.MAX_QUEUED` slots of
them, each possibly megabytes). As in Redis, a client whose unsent replies pass the hard
limit, or stay above the soft limit for its seconds, is disconnected: its buffers are
dropped at once (abort), counted (`georedis_client_output_limit_closed_total`) and logged.
`[proxy] client_output_buffer_limit_normal` applies, `..._pubsub` to subscribed clients.

Checked only while the client's writes are paused (the buffer is past the transport's
high-water mark), so a client that reads costs nothing here.
"""

from __future__ import annotations

import logging
from typing import Protocol

from config.model import OutputLimit
from proxy.logs import log_event
from proxy.server.host import Host

log = logging.getLogger("georedis.session")


class Limited(Protocol):
    host: Host
    over_soft_since: float

    @property
    def subscribed(self) -> bool: ...

    @property
    def peer(self) -> str: ...

    def close_now(self, abort: bool = False) -> None: ...


def limit_of(client: Limited) -> OutputLimit:
    p = client.host.config.proxy
    return (
        p.client_output_buffer_limit_pubsub
        if client.subscribed
        else p.client_output_buffer_limit_normal
    )


def exceeded(client: Limited, buffered: int) -> bool:
    """True (and the client disconnected) when `buffered` bytes break its limit."""
    lim = limit_of(client)
    if lim.hard and buffered > lim.hard:
        return _close(client, buffered, "hard")
    if not lim.soft or buffered <= lim.soft:
        client.over_soft_since = -1.0
        return False
    now = client.host.loop.time()
    if client.over_soft_since < 0:
        client.over_soft_since = now
        return False
    if now - client.over_soft_since >= lim.soft_seconds:
        return _close(client, buffered, "soft")
    return False


def _close(client: Limited, buffered: int, which: str) -> bool:
    client.host.stats.output_limit_closed += 1
    log_event(log, "client_output_limit", level=logging.WARNING, peer=client.peer,
              buffered=buffered, limit=which)  # fmt: skip
    client.close_now(abort=True)
    return True
