"""The `georedis` command: run, check-config, demo, generate-configs, restore.

Start-up is where an operator's mistakes show: a port already taken, a port that needs
privileges, a backend password variable that is not set, a file that is not a GeoIP City
or Country database. `startup` looks for each before anything is served and reports it as
one line naming the setting (or flag) that changes it, with exit status 1; tracebacks stay
for georedis' own bugs. docs/cli.md is the reference of every command and option, and a
unit test keeps it in step with `build_parser`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import config as config_pkg
from config.check import check_main
from config.errors import ConfigError
from config.loader import load_config
from config.model import Address, MetricsConfig, ProxyConfig
from proxy.startup import (
    StartupError,
    listen_knobs,
    run_loop,
    startup,
)
from proxy.tools import capacity, health

log = logging.getLogger("georedis.cli")

_EXAMPLE = Path(config_pkg.__file__).parent / "georedis.example.toml"
# Where a command that takes --config looks when it is not given, in this order.
CONFIG_SEARCH = ("./georedis.toml", "/etc/georedis/georedis.toml")


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


def cmd_restore(args: argparse.Namespace) -> int:
    from proxy.tools.restore import restore_main

    cfg = load_config(find_config(args.config))
    return restore_main(cfg, args.id, args.to, args.check, args.at)


def cmd_check(args: argparse.Namespace) -> int:
    return check_main(find_config(args.config))


def cmd_demo(args: argparse.Namespace) -> int:
    from proxy.tools.demo import run_demo

    return run_demo(port=args.port, base_port=args.base_port, metrics_port=args.metrics_port)


def cmd_generate(args: argparse.Namespace) -> int:
    from proxy.tools.generate import generate_configs

    config = load_config(find_config(args.config))
    written = generate_configs(
        config, Path(args.dir), compose=args.compose, kubernetes=args.kubernetes
    )
    for path in written:
        print(path)
    return 0


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
        help=f"the proxy's port on 127.0.0.1. Default: {ProxyConfig().listen.port}, "
        "or the next free port",
    )
    demo.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help=f"the metrics and status page port. Default: {MetricsConfig().listen.port}, "
        "or the next free port",
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
    gen.add_argument(
        "--compose",
        action="store_true",
        help="also write DIR/compose/: a docker-compose.yml with Redis per node, three "
        "Sentinels, georedis, Prometheus, Alertmanager and Grafana",
    )
    gen.add_argument(
        "--kubernetes",
        action="store_true",
        help="also write DIR/kubernetes/: Deployment, NLB Service (PROXY protocol v2), "
        "ConfigMap, PodDisruptionBudget, HorizontalPodAutoscaler, ServiceMonitor, "
        "PrometheusRule",
    )
    gen.set_defaults(func=cmd_generate)


def _add_restore(sub: Any) -> None:
    restore = sub.add_parser(
        "restore",
        help="load a backup into a running redis-server, over the network",
        description="Read backup ID from the config's [backup] target, open it with the key "
        "its key_env names, check all of it (every segment, sha256, the RDB's CRC64 and key "
        "count), and only then load it into the server at --to as its replication master "
        "would. Prints what was done as JSON; exit status 1 with the reason otherwise.",
    )
    restore.add_argument("id", metavar="ID", help="the backup's id (PROXY BACKUPS lists them)")
    restore.add_argument(
        "--to", required=True, type=_address, metavar="HOST:PORT",
        help="the server to load it into; it must be a master (its data is replaced)",
    )  # fmt: skip
    restore.add_argument("--config", "-c", metavar="FILE", help=_CONFIG_HELP)
    restore.add_argument(
        "--at", type=int, metavar="UNIX_MS",
        help="point in time: the snapshot, then its archived writes received before this "
        "moment (milliseconds since the epoch); the backup must have an archive",
    )  # fmt: skip
    restore.add_argument(
        "--check", action="store_true",
        help="only check the backup, touching no server (--to is still required)",
    )  # fmt: skip
    restore.set_defaults(func=cmd_restore)


def _address(text: str) -> Address:
    from config.convert import parse_address

    try:
        return parse_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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
    for add in (
        _add_run,
        _add_check,
        _add_demo,
        _add_generate,
        _add_restore,
        capacity.add_parser,
        health.add_parser,
    ):
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
