"""Start-up: what `georedis run` and `georedis demo` check before serving, and the loop.

Start-up is where an operator's mistakes show: a port already taken, a port that needs
privileges, a backend password variable that is not set, a file that is not a GeoIP City
or Country database. `startup` looks for each before anything is served and reports it as
a `StartupError` of one line naming the setting (or flag) that changes it. Shared by the
command line (proxy/cli.py) and the demo (proxy/tools/demo.py), below both of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import socket
from collections.abc import Coroutine
from typing import Any

from config.errors import GeoredisError
from config.loader import resolve_password
from config.model import Address, Config

log = logging.getLogger("georedis.cli")

# As Redis sizes maxclients: it keeps 32 descriptors for itself; the proxy keeps more
# (pools, probes, the metrics server, logs) and holds two per client (the client's socket
# and, for pinned clients, a backend connection of its own).
FD_RESERVED = 64
FDS_PER_CLIENT = 2


class StartupError(GeoredisError):
    """An operator's mistake found before serving: printed as one line, exit status 1."""


def run_loop(coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` to completion on a fresh event loop, uvloop's when it is installed:
    how `georedis run` (one process) and `georedis demo` serve."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio still works
        asyncio.run(coro)
        return
    uvloop.run(coro)


# ---------------------------------------------------------------------------- start-up


def startup(config: Config, knobs: dict[str, str]) -> Config:
    """Everything checked or adjusted before serving; returns the config to serve.

    `knobs` names, for "proxy" and "metrics", what the operator changes to move that
    listener: a config field (`georedis run`) or a flag (`georedis demo`).
    """
    config = fit_max_clients(config, raise_fd_limit())
    resolve_password(config)  # ConfigError: the variable named by backend.password_env
    _check_geoip(config)
    check_listen(config.proxy.listen, knobs["proxy"], reuse_port=config.proxy.workers != 1)
    if config.metrics.enabled:
        check_listen(config.metrics.listen, knobs["metrics"])
    return config


def listen_knobs(config: Config) -> dict[str, str]:
    return {
        "proxy": f"[proxy] listen in {config.source}",
        "metrics": f"[metrics] listen in {config.source}",
    }


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
    from proxy.logs import log_event

    log_event(log, "limits", fd_limit=fd_limit, max_clients=fitted)
    return config


def _check_geoip(config: Config) -> None:
    """Open the database as the router will: the loader checked that it is a MaxMind DB,
    not that it is one the router can use (an ASN database is neither City nor Country)."""
    if config.geoip.database is None:
        return
    import maxminddb

    from routing.geo import GeoResolver

    try:
        GeoResolver(config).close()
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as e:
        # ValueError's text already names the file; an OSError's is only its strerror.
        problem = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) else str(e)
        raise StartupError(
            f"cannot use the GeoIP database ([geoip] database in {config.source}): {problem}"
        ) from None


def listen_error(addr: Address, reuse_port: bool = False) -> OSError | None:
    """Bind `addr` as asyncio's create_server will (every address the host resolves to,
    SO_REUSEADDR, V6ONLY), then let go; the error that bind would raise, or None."""
    try:
        infos = socket.getaddrinfo(
            addr.host, addr.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as e:
        return e
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, sockaddr in infos:
            s = socket.socket(family, kind, proto)
            bound.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(sockaddr)
    except OSError as e:
        return e
    finally:
        for s in bound:
            s.close()
    return None


def check_listen(addr: Address, knob: str, reuse_port: bool = False) -> None:
    error = listen_error(addr, reuse_port)
    if error is not None:
        raise StartupError(describe_listen_error(addr, knob, error))


def describe_listen_error(addr: Address, knob: str, error: OSError) -> str:
    """One line: which address, what is wrong with it, and what to change."""
    if isinstance(error, socket.gaierror):
        return f"cannot listen on {addr}: host {addr.host!r} does not resolve; change {knob}"
    if error.errno == errno.EADDRINUSE:
        return f"{addr} is already in use: stop what listens there, or change {knob}"
    if error.errno == errno.EACCES:
        why = " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" if addr.port < 1024 else ""
        return f"permission denied to listen on {addr}{why}; change {knob}"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {addr}: not an address of this machine; change {knob}"
    return f"cannot listen on {addr}: {error.strerror or error}; change {knob}"
