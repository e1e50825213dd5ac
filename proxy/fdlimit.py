"""The open-file limit and what it allows: `[proxy] max_clients` fitted to it, at start-up
(proxy/startup.py) and on every reload (proxy/server/reload.py), so a reload cannot
raise the client limit past the descriptors the process has."""

from __future__ import annotations

import dataclasses
import logging

from config.model import Config
from proxy.logs import log_event

log = logging.getLogger("georedis.cli")

# As Redis sizes maxclients: it keeps 32 descriptors for itself; the proxy keeps more
# (pools, probes, the metrics server, logs) and holds two per client (the client's socket
# and, for pinned clients, a backend connection of its own).
FD_RESERVED = 64
FDS_PER_CLIENT = 2


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one; return the limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # an infinite hard limit above the kernel's nr_open
            pass
    return soft


def fitted_max_clients(wanted: int, fd_limit: int) -> int:
    """The most clients `fd_limit` descriptors serve, at most `wanted` (at least 1)."""
    if fd_limit < 0:  # RLIM_INFINITY
        return wanted
    return max(1, min(wanted, (fd_limit - FD_RESERVED) // FDS_PER_CLIENT))


def fit_max_clients(config: Config, fd_limit: int) -> Config:
    """Lower [proxy] max_clients to what the open-file limit allows, as Redis lowers its
    maxclients: a proxy that accepts more clients than it has descriptors for fails at
    accept() under load (EMFILE) instead of answering "max number of clients reached"."""
    wanted = config.proxy.max_clients
    fitted = fitted_max_clients(wanted, fd_limit)
    if fitted < wanted:
        log.warning(
            "You requested max_clients of %d requiring at least %d max file descriptors, "
            "but the open-file limit is %d: max_clients has been reduced to %d to "
            "compensate for low ulimit (raise it with `ulimit -n` or LimitNOFILE=)",
            wanted,
            wanted * FDS_PER_CLIENT + FD_RESERVED,
            fd_limit,
            fitted,
        )
        config = dataclasses.replace(
            config, proxy=dataclasses.replace(config.proxy, max_clients=fitted)
        )
    log_event(log, "limits", fd_limit=fd_limit, max_clients=fitted)
    return config


def current_fd_limit() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
