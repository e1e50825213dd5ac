"""The error boundary: every error text georedis itself composes comes from here.

Errors are split by fault (client, backend, no node to serve) and kind (timeout,
network, protocol). Code that finds a fault raises or passes one of these classes; the
reply a client sees is made in one place (`reply_for`), so the same fault always reads
the same. Errors in Redis' own words (arity, unknown command, syntax) have helpers here
too, so that a proxy-made reply cannot drift from the wording Redis uses.

Imports only the RESP codec (see docs/architecture.md, "Layers").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from config.errors import ConfigError, GeoredisError
from proxy.resp.errors import ProtocolError
from proxy.resp.replies import encode_error

if TYPE_CHECKING:
    from config.model import Address

# The whole hierarchy, in one place: the root and the bottom layers' own errors (config,
# the RESP codec) are defined below proxy/ and re-exported here.
__all__ = [
    "BackendError",
    "BackendProtocolError",
    "BackendTimeout",
    "BackendUnavailable",
    "BackupError",
    "ClientError",
    "ConfigError",
    "GeoredisError",
    "NoBackend",
    "NoPrimary",
    "NoReplica",
    "NotSupported",
    "ProbeError",
    "ProtocolError",
    "ProxyHeaderError",
    "Refused",
]


# ---------------------------------------------------------------- backend faults


class BackendError(GeoredisError):
    """A backend node failed a request. `addr` says which node, for a retry elsewhere."""

    def __init__(self, addr: Address, detail: str = "") -> None:
        super().__init__(f"{addr} {detail}".strip())
        self.addr = addr
        self.detail = detail

    @property
    def node(self) -> str:
        return str(self.addr)


class BackendUnavailable(BackendError):
    """Could not connect, or the connection was lost."""


class BackendTimeout(BackendError):
    """The node did not answer within the request deadline."""


class BackendProtocolError(BackendError):
    """The node sent bytes that are not RESP."""


# ---------------------------------------------------------------- no node may serve


class NoBackend(GeoredisError):
    """No node may serve the request; the message says why."""


class NoPrimary(NoBackend):
    """A write (or MULTI, or a blocking write) while no primary is known."""

    def __init__(self, why: str) -> None:
        super().__init__(f"no primary ({why or 'none known'}); writes refused")


class NotExecuted(NoBackend):
    """A write held while the primary changed that could not wait longer: it was not
    sent anywhere (or every node it reached refused it), so the client may retry it."""

    def __init__(self, why: str) -> None:
        super().__init__(f"write not executed: {why}")


class FailoverError(GeoredisError):
    """A PROXY FAILOVER that could not be done (or was rolled back); the message says why."""

    def __init__(self, why: str) -> None:
        super().__init__(f"failover: {why}")
        self.why = why


class BackupError(GeoredisError):
    """A backup, restore or verify that failed; the message says why. The sealed format's
    and the RDB walker's own errors (`SealError`, `RdbError`) are reported through it."""

    def __init__(self, why: str) -> None:
        super().__init__(f"backup: {why}")
        self.why = why


class ReloadError(GeoredisError):
    """A config reload refused as a whole (the old config stays); the message says why."""


class Internal(GeoredisError):
    """A bug, caught where a client still must get its one reply."""


class PartlyApplied(GeoredisError):
    """A command sent to every node (CONFIG SET) that the primary took and a replica
    that is up did not: the nodes now differ, and the client must know."""

    def __init__(self, what: str, node: str, reply: bytes) -> None:
        said = reply[1:].rstrip(b"\r\n").decode(errors="replace")
        super().__init__(f"{what} done on the primary, not on {node}: {said}")


class NoReplica(NoBackend):
    """A read while neither a replica nor (by policy or fault) the primary may serve."""


# ---------------------------------------------------------------- client requests


class ClientError(GeoredisError):
    """A request the proxy refuses on its own, in its own words."""


class ProxyHeaderError(ClientError, ValueError):
    """A connection's first bytes are not a valid PROXY protocol header."""


class ProbeError(GeoredisError):
    """A health probe could not reach a node, or it did not answer in time."""


class NotSupported(ClientError):
    """A command (or a use of one) the proxy does not offer."""


class Refused(ClientError):
    """A command the proxy will not forward: always (MONITOR, SHUTDOWN) or by the
    command policy (`[policy] refuse`)."""


# Every reply of georedis' own faults starts so (a client, or code, can tell them apart).
OWN_PREFIX = b"-ERR georedis: "


def reply_for(err: GeoredisError) -> bytes:
    """The one reply for a fault (docs/architecture.md, "Errors")."""
    if isinstance(err, BackendTimeout):
        return encode_error(f"ERR georedis: backend {err.node} timed out")
    if isinstance(err, BackendProtocolError):
        return encode_error(f"ERR georedis: backend {err.node} protocol error")
    if isinstance(err, BackendError):
        return encode_error(f"ERR georedis: backend {err.node} unavailable")
    return encode_error(f"ERR georedis: {err}")


def not_supported(what: str) -> bytes:
    return reply_for(NotSupported(f"{what} is not supported"))


def no_primary(why: str) -> bytes:
    return reply_for(NoPrimary(why))


# ---------------------------------------------------------------- Redis' own words


def wrong_args(name: str, hint: str = "") -> bytes:
    return encode_error(f"ERR wrong number of arguments for '{name}' command{hint}")


def unknown_command(name: str) -> bytes:
    return encode_error(f"ERR unknown command '{name}'")


def syntax_error() -> bytes:
    return encode_error("ERR syntax error")


def not_an_integer() -> bytes:
    return encode_error("ERR value is not an integer or out of range")


def without_multi(name: str) -> bytes:
    return encode_error(f"ERR {name.upper()} without MULTI")


def usage(text: str) -> bytes:
    """An admin verb called wrongly: how to call it."""
    return encode_error(f"ERR usage: {text}")


def bad_argument(text: str) -> bytes:
    """An argument the proxy's own commands cannot take, said in Redis' style."""
    return encode_error(f"ERR {text}")


def protocol_error(message: str) -> bytes:
    return encode_error(f"ERR Protocol error: {message}")


MAX_CLIENTS = encode_error("ERR max number of clients reached")
USER_MAX_CLIENTS = encode_error("ERR georedis: max number of clients reached for this user")
EXECABORT = encode_error("EXECABORT Transaction discarded because of previous errors.")
