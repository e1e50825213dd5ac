"""`georedis health --config F`: ask the running georedis how it is, for cron and
orchestrators, as the seed's `health-check.sh --alert-on-failure`.

It asks the proxy the config names (`proxy.tools.ask`: [proxy] listen, the login from
--user and the environment) for `PROXY INFO` (and `PROXY BACKUPS` when [backup]
schedule is set), prints one line per finding (`proxy.tools.findings`) or one OK line,
and exits 0, 1 or 2: ok, warning, critical. A proxy that cannot be asked (refused, timed
out, login refused) is critical, exit 2, as is a config that cannot be read: a check
that cannot look must not read as ok.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from config.errors import ConfigError
from config.loader import load_config
from config.model import Config
from proxy.backend.probe import ReplyError
from proxy.tools.ask import PASSWORD_ENV, AskError, ask
from proxy.tools.findings import Finding, Level, Limits, ProxyState, findings, parse_info, summary


def _text(v: object) -> object:
    return v.decode(errors="replace") if isinstance(v, bytes) else v


def _rows(reply: object) -> list[Mapping[str, object]]:
    """PROXY BACKUPS' rows: maps under RESP3, flat [key, value, ...] lists under RESP2."""
    rows: list[Mapping[str, object]] = []
    for row in reply if isinstance(reply, list) else ():
        pairs = row.items() if isinstance(row, dict) else zip(row[::2], row[1::2], strict=False)
        rows.append({str(_text(k)): _text(v) for k, v in pairs})
    return rows


def fetch(config: Config, args: argparse.Namespace) -> ProxyState:
    """PROXY INFO (and PROXY BACKUPS with a schedule) from the running proxy."""
    commands: list[tuple[str, ...]] = [("PROXY", "INFO")]
    if config.backup.schedule is not None:
        commands.append(("PROXY", "BACKUPS"))
    replies = asyncio.run(
        ask(config, commands, user=args.user, password_env=args.password_env,
            timeout_s=args.timeout)
    )  # fmt: skip
    info = replies[0]
    if isinstance(info, ReplyError):  # e.g. NOPERM: this user may not ask
        raise AskError(f"PROXY INFO refused: {info}")
    state = parse_info(str(_text(info)))
    if len(replies) == 1:
        return state
    if isinstance(replies[1], ReplyError):  # no target, target unreachable
        return replace(state, backups_error=str(replies[1]))
    return replace(state, backups=_rows(replies[1]))


def limits(config: Config, args: argparse.Namespace) -> Limits:
    max_lag = config.routing.max_lag_ms if args.max_lag_ms is None else args.max_lag_ms
    return Limits(
        max_lag_ms=float(max_lag),
        memory_warning=args.memory_warning / 100.0,
        memory_critical=args.memory_critical / 100.0,
        schedule=config.backup.schedule,
        backup_max_age_s=args.backup_max_age,
    )


def report(found: Sequence[Finding], state: ProxyState, lim: Limits) -> tuple[list[str], int]:
    """The lines to print and the exit status (the worst level)."""
    if not found:
        return [summary(state, lim)], int(Level.OK)
    return [f.line() for f in found], int(max(f.level for f in found))


def cmd_health(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"CRITICAL: cannot read the config: {e}")
        return int(Level.CRITICAL)
    lim = limits(config, args)
    try:
        state = fetch(config, args)
    except AskError as e:
        print(f"CRITICAL: {e}")
        return int(Level.CRITICAL)
    lines, code = report(findings(state, lim, time.time()), state, lim)
    print("\n".join(lines))
    return code


def _percent(text: str) -> float:
    try:
        v = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage") from None
    if not 0 < v <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not within 0-100%")
    return v


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not above 0")
    return v


def add_parser(sub: Any) -> None:
    health = sub.add_parser(
        "health",
        help="ask the running georedis how it is; exit 0 ok, 1 warning, 2 critical",
        description="Ask the georedis the config names ([proxy] listen) for its state and "
        "print one line per finding: no primary (critical), a region without an eligible "
        "replica, a node down, lag over the budget, memory over the warning threshold, the "
        "newest complete backup older than the schedule allows (warnings), memory over the "
        "critical threshold (critical). Exit status 0 when all is well (one OK line), 1 on "
        "warnings, 2 on anything critical, the proxy unreachable included.",
    )
    health.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        required=True,
        help="the running proxy's config file (TOML)",
    )
    health.add_argument(
        "--user",
        metavar="NAME",
        help="the [[users]] user to log in as (one allowed PROXY INFO and "
        "PROXY BACKUPS). Default: Redis' default user",
    )
    health.add_argument(
        "--password-env",
        metavar="VAR",
        default=PASSWORD_ENV,
        help="the environment variable holding that user's password "
        f"(needed when [[users]] exist). Default: {PASSWORD_ENV}",
    )
    health.add_argument(
        "--memory-warning",
        type=_percent,
        default=80.0,
        metavar="PCT",
        help="warn when a node uses this share of its maxmemory. Default: 80",
    )
    health.add_argument(
        "--memory-critical",
        type=_percent,
        default=95.0,
        metavar="PCT",
        help="critical from this share of maxmemory. Default: 95",
    )
    health.add_argument(
        "--max-lag-ms",
        type=_positive,
        metavar="MS",
        help="the lag budget. Default: the config's [routing] max_lag_ms",
    )
    health.add_argument(
        "--backup-max-age",
        type=_positive,
        metavar="SECONDS",
        help="warn when the newest complete backup is older (only with "
        "[backup] schedule). Default: one interval of the schedule plus "
        "at most an hour (daily: 25 h)",
    )
    health.add_argument(
        "--timeout",
        type=_positive,
        default=5.0,
        metavar="SECONDS",
        help="for connecting and for each reply. Default: 5",
    )
    health.set_defaults(func=cmd_health)
