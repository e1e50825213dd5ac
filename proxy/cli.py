"""The `georedis` command: run, check-config, demo, generate-configs.

Start-up is where an operator's mistakes show: a port already taken, a port that needs
privileges, a backend password variable that is not set, a file that is not a GeoIP City
or Country database. `startup` looks for each before anything is served and reports it as
one line naming the setting (or flag) that changes it, with exit status 1; tracebacks stay
for georedis' own bugs. docs/cli.md is the reference of every command and option, and a
unit test keeps it in step with `build_parser`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import logging
import socket
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import config as config_pkg
from config.check import check_main
from config.errors import ConfigError
from config.loader import load_config, resolve_password
from config.model import Address, Config

log = logging.getLogger("georedis.cli")

_EXAMPLE = Path(config_pkg.__file__).parent / "georedis.example.toml"
# Where a command that takes --config looks when it is not given, in this order.
CONFIG_SEARCH = ("./georedis.toml", "/etc/georedis/georedis.toml")
# As Redis sizes maxclients: it keeps 32 descriptors for itself; the proxy keeps more
# (pools, probes, the metrics server, logs) and holds two per client (the client's socket
# and, for pinned clients, a backend connection of its own).
FD_RESERVED = 64
FDS_PER_CLIENT = 2


class StartupError(Exception):
    """An operator's mistake found before serving: printed as one line, exit status 1."""


# --------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    from proxy.logs import setup_logging

    path = find_config(args.config)
    config = load_config(path)
    setup_logging(args.log_format or config.proxy.log_format.value, config.proxy.log_level)
    config = startup(config, listen_knobs(config))
    if config.proxy.workers != 1:
        from proxy.workers import run_workers

        return run_workers(config, path)
    from proxy.server.app import serve

    run_loop(serve(config))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    return check_main(find_config(args.config))


def cmd_demo(args: argparse.Namespace) -> int:
    from proxy.tools.demo import run_demo

    return run_demo(port=args.port, base_port=args.base_port, metrics_port=args.metrics_port)


def cmd_generate(args: argparse.Namespace) -> int:
    from proxy.tools.generate import generate_configs

    config = load_config(find_config(args.config))
    for path in generate_configs(config, Path(args.dir)):
        print(path)
    return 0


def run_loop(coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` to completion on a fresh event loop, uvloop's when it is installed:
    how `georedis run` (one process) and `georedis demo` serve."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio still works
        asyncio.run(coro)
        return
    uvloop.run(coro)


def find_config(given: str | None) -> str:
    """`given`, else the first of CONFIG_SEARCH that exists; StartupError says where it
    looked, so "no such file" never leaves the operator guessing which file was meant."""
    if given is not None:
        return given
    for candidate in CONFIG_SEARCH:
        if Path(candidate).is_file():
            return candidate
    looked = " and ".join(CONFIG_SEARCH)
    raise StartupError(
        f"no config file: looked for {looked}; pass --config FILE "
        f"({_EXAMPLE} documents every setting; `georedis demo` needs none)"
    )


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


# ------------------------------------------------------------------------------ --version


def version_text() -> str:
    """What a bug report needs: our version, the interpreter and the native parts."""
    import platform
    from importlib import metadata

    def dist(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "(not installed)"

    return "\n".join(
        [
            f"georedis {dist('georedis')}",
            f"Python {platform.python_version()} ({platform.python_implementation()}, "
            f"{sys.executable})",
            f"uvloop {dist('uvloop')}",
            f"hiredis {dist('hiredis')}",
            f"C accelerator proxy.resp._speedups: {_speedups_state()}",
        ]
    )


def _speedups_state() -> str:
    try:
        import proxy.resp._speedups  # noqa: F401 - imported only to see that it is built
    except ImportError:
        return "not built (the pure-Python reply scanner is used)"
    from proxy.resp import replies

    return "built, in use" if replies.SPEEDUPS else "built, not in use (GEOREDIS_PURE_PYTHON)"


class _VersionAction(argparse.Action):
    """--version, computed only when asked (it imports the native modules)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(version_text())
        parser.exit()


# ------------------------------------------------------------------------------ parser

_CONFIG_HELP = (
    "the config file (TOML; see config/georedis.example.toml). "
    "Default: ./georedis.toml, else /etc/georedis/georedis.toml"
)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


def _add_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="serve in the foreground until SIGINT/SIGTERM, then drain",
        description="Serve clients in the foreground. SIGINT or SIGTERM stops accepting, "
        "lets in-flight replies finish ([proxy] drain_timeout_ms) and exits 0. Start-up "
        "problems (address in use, unset password variable, bad GeoIP database) are one "
        "line on stderr and exit status 1.",
    )
    run.add_argument("--config", "-c", metavar="FILE", help=_CONFIG_HELP)
    run.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=None,
        help="text lines for people or one JSON object per line for log collectors; "
        "overrides [proxy] log_format",
    )
    run.set_defaults(func=cmd_run)


def _add_check(sub: Any) -> None:
    check = sub.add_parser(
        "check-config",
        help="validate a config file without starting anything",
        description="Validate a config file: every problem is printed, one per line, "
        "naming the file and the field; exit status 0 if the proxy would start with it.",
    )
    check.add_argument(
        "config",
        nargs="?",
        metavar="FILE",
        help="the file to check. Default: ./georedis.toml, else /etc/georedis/georedis.toml",
    )
    check.set_defaults(func=cmd_check)


def _add_demo(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="three regions of local redis-server processes and the proxy in front",
        description="Start four redis-server processes on 127.0.0.1 (a primary and a "
        "replica in ap-southeast-1, one replica each in us-east-1 and eu-west-1) and the "
        "proxy in front of them. A default port that is taken is replaced by the next free "
        "one, and said so. Ctrl-C stops every process.",
    )
    demo.add_argument(
        "--port",
        type=_port,
        metavar="PORT",
        help="the proxy's port on 127.0.0.1. Default: 6380, or the next free port",
    )
    demo.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="the metrics and status page port. Default: 9121, or the next free port",
    )
    demo.add_argument(
        "--base-port",
        type=_port,
        metavar="PORT",
        help="the first of four consecutive redis-server ports. "
        "Default: 7000, or the next four free ports",
    )
    demo.set_defaults(func=cmd_demo)


def _add_generate(sub: Any) -> None:
    gen = sub.add_parser(
        "generate-configs",
        help="write Prometheus, alert rule and Grafana files for a config",
        description="Write a Prometheus scrape config, alert rules and a provisioned "
        "Grafana dashboard for the proxy a config describes; prints each path written.",
    )
    gen.add_argument("dir", metavar="DIR", help="the folder to write into (created if missing)")
    gen.add_argument("--config", "-c", metavar="FILE", help=_CONFIG_HELP)
    gen.set_defaults(func=cmd_generate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="georedis",
        description="A geo-routing Redis proxy: writes go to the primary, reads to the "
        "replica nearest the client.",
        epilog="`georedis COMMAND --help` describes a command; docs/cli.md is the reference.",
    )
    parser.add_argument(
        "--version",
        action=_VersionAction,
        help="print the versions of georedis, Python, uvloop and hiredis and whether the C "
        "accelerator is built, then exit",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", title="commands", help="one of:"
    )
    for add in (_add_run, _add_check, _add_demo, _add_generate):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except StartupError as e:
        print(f"georedis: {e}", file=sys.stderr)
        code = 1
    except ConfigError as e:  # each line already names the file and the field
        print(e, file=sys.stderr)
        code = 1
    except KeyboardInterrupt:  # Ctrl-C before the loop's own handler is installed
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    # `python -m proxy.cli` runs this file as `__main__`, a second copy beside the
    # `proxy.cli` that proxy.tools.demo imports: its StartupError would be another class.
    from proxy.cli import main as cli_main

    cli_main()
