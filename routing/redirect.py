"""The error replies by which a Redis Cluster node says "not here" or "not now".

A node answers a command for a slot it does not serve with a redirection
(https://redis.io/docs/reference/cluster-spec, "Redirection and resharding"):

- `-MOVED <slot> <endpoint>:<port>`: the slot belongs to that node for good; update the
  slot map and send the command there (and every later one for that slot).
- `-ASK <slot> <endpoint>:<port>`: the slot is migrating and this key is already on the
  target; send `ASKING` and then the command to the target, once, and keep the map.

The endpoint is what `cluster-preferred-endpoint-type` chooses: an IP (IPv6 without
brackets: `MOVED 1 ::1:6380`, so the port is what follows the last colon), a hostname,
`?` when hostnames are preferred but the node announced none (there is no address to
use: refresh the map, whose CLUSTER SHARDS reply also carries the IP), or nothing
(`MOVED 1 :6380`, `unknown-endpoint`): the same host as the node that replied.

Other cluster errors are not redirections but call for a retry or a refusal:
`-TRYAGAIN` (a multi-key command during the migration of its slot, keys split between
the two nodes: retry after a pause), `-CLUSTERDOWN` (the cluster, or the slot, is not
served now: retry with back-off, refresh the map, then give the error), and `-CROSSSLOT`
(the keys are in different slots: final).

Pure parsing: it takes the error as bytes (the raw reply, with or without the leading
`-` and the CRLF) or as the message text a parser gives, and says what it is.
"""

from __future__ import annotations

from dataclasses import dataclass

# The first bytes of every reply this module recognises, for a cheap test on the raw
# reply before any parsing: only errors that start so are worth a look.
CLUSTER_ERROR_PREFIXES: tuple[bytes, ...] = (
    b"-MOVED ",
    b"-ASK ",
    b"-TRYAGAIN",
    b"-CLUSTERDOWN",
    b"-CROSSSLOT",
)

CROSSSLOT_MESSAGE = "CROSSSLOT Keys in request don't hash to the same slot"


@dataclass(frozen=True, slots=True)
class Redirect:
    """MOVED (`ask` False) or ASK (`ask` True) to `host`:`port` for `slot`.

    `host` is "" when the node sent no endpoint (the replier's own host, `target`) and
    "?" when it has none to give (`target` is None: refresh the map instead).
    """

    ask: bool
    slot: int
    host: str
    port: int

    def target(self, replier_host: str) -> tuple[str, int] | None:
        """Where to send the command, given the host of the node that sent the reply."""
        if self.host == "?":
            return None
        return (self.host or replier_host, self.port)


@dataclass(frozen=True, slots=True)
class TryAgain:
    """-TRYAGAIN: the keys of a multi-key command are split by an ongoing migration."""

    message: str


@dataclass(frozen=True, slots=True)
class ClusterDown:
    """-CLUSTERDOWN: the cluster is down (`message` says why, e.g. "Hash slot not served",
    or "... only accepts read commands" under cluster-allow-reads-when-down)."""

    message: str

    @property
    def slot_not_served(self) -> bool:
        """No master owns the slot, as this node sees it: the map is worth a refresh."""
        return "not served" in self.message


@dataclass(frozen=True, slots=True)
class CrossSlot:
    """-CROSSSLOT: the keys of one command hash to different slots; final."""

    message: str


ClusterError = Redirect | TryAgain | ClusterDown | CrossSlot


def parse_cluster_error(error: bytes | str) -> ClusterError | None:
    """What a cluster error reply means, or None for any other reply (or a malformed
    redirection: an error we cannot act on is forwarded to the client as it is)."""
    text = _message(error)
    code = text.partition(" ")[0]
    if code == "MOVED" or code == "ASK":
        return parse_redirect(text)
    if code == "TRYAGAIN":
        return TryAgain(text)
    if code == "CLUSTERDOWN":
        return ClusterDown(text)
    if code == "CROSSSLOT":
        return CrossSlot(text)
    return None


def parse_redirect(error: bytes | str) -> Redirect | None:
    """`MOVED <slot> <endpoint>:<port>` or `ASK ...`; None if it is neither or malformed."""
    parts = _message(error).split(" ")
    if len(parts) != 3 or parts[0] not in ("MOVED", "ASK"):
        return None
    kind, slot_text, address = parts
    host, sep, port_text = address.rpartition(":")
    if not sep or not _is_number(slot_text) or not _is_number(port_text):
        return None
    slot, port = int(slot_text), int(port_text)
    if slot >= 16384 or not 0 < port < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # not what Redis writes, but what a person would
    return Redirect(kind == "ASK", slot, host, port)


def _message(error: bytes | str) -> str:
    """The error's text without the leading '-' and the line end."""
    text = error.decode("utf-8", "replace") if isinstance(error, bytes) else error
    if text.startswith("-"):
        text = text[1:]
    return text.rstrip("\r\n")


def _is_number(text: str) -> bool:
    # ASCII digits only (str.isdigit takes other scripts' digits too), and short.
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit()


def backoff(attempt: int, base: float = 0.05, cap: float = 1.0, attempts: int = 5) -> float | None:
    """Seconds to wait before retry number `attempt` (1, 2, ...) of a TRYAGAIN or
    CLUSTERDOWN, doubling from `base` up to `cap`; None once `attempts` are used up, when
    the client gets the error. A migration of one slot or a failover takes about a
    second, so five tries over ~1.5 s cover the common cases without holding a client
    for long."""
    if attempt < 1 or attempt > attempts:
        return None
    return float(min(cap, base * (1 << (attempt - 1))))
