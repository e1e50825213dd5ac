"""The `georedis` command: run, check-config, demo, generate-configs."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import config as config_pkg
from config.check import check_main
from config.loader import ConfigError, load_config

_EXAMPLE = Path(config_pkg.__file__).parent / "georedis.example.toml"


def _run_loop(coro: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio still works
        asyncio.run(coro)
        return
    uvloop.run(coro)


def cmd_run(args: argparse.Namespace) -> int:
    from proxy.logs import setup_logging

    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    setup_logging(args.log_format or config.proxy.log_format.value, config.proxy.log_level)
    _raise_fd_limit()
    if config.proxy.workers != 1:
        from proxy.workers import run_workers

        return run_workers(config, args.config)
    from proxy.app import serve

    _run_loop(serve(config))
    return 0


def _raise_fd_limit() -> None:
    """Allow as many sockets as the hard limit does: a proxy holds two per client."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cmd_check(args: argparse.Namespace) -> int:
    return check_main(args.config)


def cmd_demo(args: argparse.Namespace) -> int:
    from proxy.demo import run_demo

    return run_demo(port=args.port, base_port=args.base_port)


def cmd_generate(args: argparse.Namespace) -> int:
    from proxy.generate import generate_configs

    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    for path in generate_configs(config, Path(args.dir)):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="georedis", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve in the foreground until SIGINT/SIGTERM")
    run.add_argument("--config", "-c", required=True)
    run.add_argument("--log-format", choices=["text", "json"], default=None)
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("config")
    check.set_defaults(func=cmd_check)
    demo = sub.add_parser("demo", help="a local three-region topology and the proxy")
    demo.add_argument("--port", type=int, default=6380)
    demo.add_argument("--base-port", type=int, default=7000)
    demo.set_defaults(func=cmd_demo)
    gen = sub.add_parser("generate-configs", help="Prometheus, alert rules, Grafana files")
    gen.add_argument("dir")
    gen.add_argument("--config", "-c", default=str(_EXAMPLE))
    gen.set_defaults(func=cmd_generate)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
