"""Start-up: what `georedis run` and `georedis demo` check before serving, and the loop.

Start-up is where an operator's mistakes show: a port already taken, a port that needs
privileges, a backend password variable that is not set, a file that is not a GeoIP City
or Country database. `startup` looks for each before anything is served and reports it as
a `StartupError` of one line naming the setting (or flag) that changes it. Shared by the
command line (proxy/cli.py) and the demo (proxy/tools/demo.py), below both of them.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Coroutine
from typing import Any

from config.errors import GeoredisError
from config.loader import resolve_password
from config.model import Address, Config
from proxy.fdlimit import (  # noqa: F401 - re-exported: start-up's checks
    FD_RESERVED,
    FDS_PER_CLIENT,
    fit_max_clients,
    fitted_max_clients,
    raise_fd_limit,
)

log = logging.getLogger("georedis.cli")


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
