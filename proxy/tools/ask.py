"""Asking the running georedis a config names: its client address and the login.

For the side commands that talk to a proxy (`georedis health`; `capacity` asks the same
way): the address is `[proxy] listen` (a wildcard one over loopback), the connection the
control-plane client the health probes use (`proxy.backend.probe.ProbeConnection`, so no
client library beyond what georedis runs on), the login the `[[users]]` user named by
`--user`, its password from the environment variable `--password-env` names: never a
flag, since command lines are visible to every user of the host.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from config.model import Address, Config
from proxy.backend.probe import Arg, ProbeConnection, ReplyError
from proxy.errors import ProbeError

PASSWORD_ENV = "GEOREDIS_PASSWORD"


class AskError(Exception):
    """The proxy could not be asked; one line, naming no secret."""


def target(config: Config) -> Address:
    """Where the running proxy answers plaintext RESP, as a client on this host reaches it."""
    if config.tls.cert_file is not None and config.tls.listen is None:
        raise AskError(
            "[proxy] listen speaks TLS only; this command speaks plaintext (set "
            "[tls] listen to serve TLS there and keep [proxy] listen plaintext)"
        )
    a = config.proxy.listen
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(a.host, a.host)
    return Address(host, a.port)


def password(config: Config, env: str) -> str | None:
    value = os.environ.get(env)
    if value is None and config.users:
        raise AskError(
            f"the config has [[users]]: put the password of --user in the "
            f"environment variable {env} (or name another with --password-env)"
        )
    return value


async def ask(
    config: Config,
    commands: Sequence[tuple[Arg, ...]],
    *,
    user: str | None,
    password_env: str,
    timeout_s: float,
) -> list[object]:
    """Each command's reply, in order; an error reply comes back as a `ReplyError` value
    (the caller decides what it means), a failure to connect or log in raises AskError.
    The connection is not named (CLIENT SETNAME): a user allowed only PROXY INFO can ask."""
    addr = target(config)
    conn = ProbeConnection()
    try:
        await conn.connect(
            addr,
            username=user,
            password=password(config, password_env),
            timeout_s=timeout_s,
        )
        return await conn.pipeline(commands, timeout_s=timeout_s)
    except (ProbeError, ReplyError) as e:
        raise AskError(f"cannot ask georedis at {addr}: {e}") from None
    finally:
        conn.close()
