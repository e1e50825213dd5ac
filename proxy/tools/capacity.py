"""`georedis capacity`: ask the running georedis for its capacity report, print it, plot it.

The proxy a config names (its `[proxy] listen` address, a wildcard read as loopback) is
asked `PROXY CAPACITY <horizon> [RATE <pct>] JSON` over the control-plane client the
health probes use (`proxy.backend.probe.ProbeConnection`: no client library beyond what
georedis already runs on). With `[[users]]`, it logs in as `--user` with the password in
the environment variable `--password-env` names (never a flag: command lines are
visible to every user of the host). The report is rendered here with the proxy's own
renderer (`proxy.observe.capacity.render_text`), or printed as JSON; `--plot` draws the
history and its projections with matplotlib, imported only then.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from config.loader import load_config
from config.model import Config
from proxy.backend.probe import ReplyError
from proxy.observe.capacity import (
    DEFAULT_HORIZON,
    MONTH,
    parse_horizon,
    parse_rate,
    render_text,
)
from proxy.tools.ask import PASSWORD_ENV, AskError, ask, target

TIMEOUT_S = 10.0

Json = dict[str, Any]


class CapacityError(Exception):
    """Why the report could not be had: one line for stderr."""


async def fetch(cfg: Config, horizon: str, rate: str | None, user: str | None,
                password_env: str) -> Json:  # fmt: skip
    """PROXY CAPACITY ... JSON from the proxy the config names (`proxy.tools.ask`)."""
    args: list[str] = ["PROXY", "CAPACITY", horizon]
    if rate is not None:
        args += ["RATE", rate]
    try:
        (reply,) = await ask(cfg, [(*args, "JSON")], user=user, password_env=password_env,
                             timeout_s=TIMEOUT_S)  # fmt: skip
    except AskError as e:
        raise CapacityError(str(e)) from None
    if isinstance(reply, ReplyError):
        raise CapacityError(f"georedis at {target(cfg)} answered: {reply}")
    if not isinstance(reply, bytes):
        raise CapacityError(f"georedis sent an unexpected reply: {reply!r:.200}")
    data: Json = json.loads(reply)
    return data


def plot(r: Json, path: str) -> None:
    """One panel per node: the used memory it had, the fitted trend and the given rate
    carried to the horizon, and its limit."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CapacityError("--plot needs matplotlib: pip install matplotlib") from None
    from datetime import UTC, datetime

    nodes = r["nodes"] or [{"addr": "no nodes sampled yet", "history": []}]
    fig, axes = plt.subplots(len(nodes), 1, figsize=(9, 3.2 * len(nodes)), squeeze=False)
    for ax, n in zip(axes[:, 0], nodes, strict=True):
        _panel(ax, n, r, lambda t: datetime.fromtimestamp(t, UTC))
    fig.suptitle(f"georedis capacity, horizon {r['horizon']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _panel(ax: Any, n: Json, r: Json, when: Any) -> None:
    mib = 1024 * 1024
    ax.set_title(f"{n['addr']} ({n.get('region', '')}, {n.get('role', '')})", fontsize=10)
    ax.set_ylabel("MiB")
    hist, used, now = n["history"], n.get("used_bytes"), r["generated_at"]
    end = _plot_end(n, r)
    if hist:
        ax.plot([when(t) for t, _ in hist], [v / mib for _, v in hist], ".", ms=3,
                label="used_memory")  # fmt: skip
    if hist and n.get("growth_bytes_per_day") is not None and used is not None:
        slope, start = n["growth_bytes_per_day"] / 86400, hist[0][0]
        ax.plot([when(start), when(end)],
                [(used + slope * (start - now)) / mib, (used + slope * (end - now)) / mib],
                "-", label="measured trend")  # fmt: skip
    rate = r.get("growth_rate_per_month")
    if rate is not None and used:
        ts = [now + (end - now) * k / 40 for k in range(41)]
        ys = [used * (1 + rate) ** ((t - now) / MONTH) / mib for t in ts]
        ax.plot([when(t) for t in ts], ys, "--", label=f"{rate * 100:g}%/month")
    if n.get("limit_bytes"):
        ax.axhline(n["limit_bytes"] / mib, color="red", lw=1, label=n["limit_source"])
        ax.set_ylim(0, 1.1 * n["limit_bytes"] / mib)  # a trend past the limit is clipped
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)


def _plot_end(n: Json, r: Json) -> float:
    """The horizon, or a little past the first time the node is full when that comes
    sooner: a history of minutes must not vanish on a six-month axis."""
    now, end = r["generated_at"], r["generated_at"] + r["horizon_s"]
    fulls = [p["full_in_s"] for p in (n.get("trend"), n.get("given_rate"))
             if p and p.get("full_in_s")]  # fmt: skip
    if fulls:
        seen = now - n["history"][0][0] if n["history"] else 0.0
        end = min(end, now + max(1.25 * min(fulls), 0.5 * seen))
    return float(end)


def run(args: argparse.Namespace, cfg: Config) -> int:
    try:
        parse_horizon(args.horizon)
        if args.growth_rate is not None:
            parse_rate(args.growth_rate)
        r = asyncio.run(fetch(cfg, args.horizon, args.growth_rate, args.user,
                              args.password_env))  # fmt: skip
        if args.plot:
            plot(r, args.plot)
    except (CapacityError, ValueError) as e:
        print(f"georedis: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(r, indent=1))
    else:
        print(render_text(r), end="")
    if args.plot:
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def _cmd(args: argparse.Namespace) -> int:
    return run(args, load_config(args.config))


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "capacity",
        help="memory use, its growth and when each node is full, from the running proxy",
        description="Ask the running georedis a config names (its [proxy] listen address) "
        "for its capacity report (PROXY CAPACITY): per node and for the deployment, the "
        "memory used now, the growth rate measured over the proxy's history (a least-squares "
        "line), and when maxmemory (or the host's memory, where maxmemory is 0) will be "
        "reached, from that trend and, with --growth-rate, from the given monthly rate.",
    )
    p.add_argument("--config", "-c", metavar="FILE", required=True,
                   help="the config file of the running proxy")  # fmt: skip
    p.add_argument("--horizon", default=DEFAULT_HORIZON, metavar="DURATION",
                   help="how far ahead to project, e.g. 6months, 30days, 2weeks, 1year. "
                   f"Default: {DEFAULT_HORIZON}")  # fmt: skip
    p.add_argument("--growth-rate", metavar="PCT", help="also project from this growth per "
                   "month, compounding, e.g. 15%%")  # fmt: skip
    p.add_argument("--plot", metavar="FILE.png", help="also draw the history and the "
                   "projections into this PNG file (needs matplotlib)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--user", metavar="NAME", help="the [[users]] user to log in as "
                   "(default: the default user)")  # fmt: skip
    p.add_argument("--password-env", metavar="VAR", default=PASSWORD_ENV,
                   help=f"the environment variable holding the password. Default: "
                   f"{PASSWORD_ENV}")  # fmt: skip
    p.set_defaults(func=_cmd)
