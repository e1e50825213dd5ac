"""`georedis check-config FILE`: validate a config file without starting anything.

Like `nginx -t` or twemproxy's `--test-conf`: every problem is printed, one per line, to
stderr, and the exit status says whether the proxy would start with this file. Like every
module in config/, this one imports nothing from proxy/ or routing/.
"""

from __future__ import annotations

import ipaddress
import os
import sys

from config.errors import ConfigError
from config.loader import load_config
from config.model import Config


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary(cfg: Config) -> str:
    """One line describing a valid config, e.g. for startup logs."""
    regions = _plural(len(cfg.regions), "region")
    nodes = _plural(len(cfg.all_nodes()), "node")
    return f"{cfg.source}: OK ({regions}, {nodes}, listen {cfg.proxy.listen})"


def check_main(path: str) -> int:
    """Validate `path`; 0 if it is valid, 1 (with every error on stderr) if not."""
    try:
        cfg = load_config(path)
    except ConfigError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        return 1
    for line in warnings(cfg):
        print(f"{path}: warning: {line}", file=sys.stderr)
    print(summary(cfg))
    return 0


def warnings(cfg: Config) -> list[str]:
    """What would start but deserves a second look. Not errors: the check may run where
    the proxy's secrets are not (CI, a laptop), and an open port may be intended."""
    out: list[str] = []
    envs = [("backend.password_env", cfg.backend.password_env)]
    envs += [(f"users.{u.name}.password_env", u.password_env) for u in cfg.users]
    for where, env in envs:
        if env is not None and env not in os.environ:
            out.append(f"{where}: {env!r} is not set in this environment")
    if not cfg.users and not _loopback(cfg.proxy.listen.host):
        out.append(
            f"proxy.listen: {cfg.proxy.listen} is reachable beyond this host and no "
            "[[users]] are configured: any client that reaches it may run every command "
            'the policy allows; add users (README, "Users and permissions")'
        )
    return out


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve beyond this host
