"""What a client sees of its own connection: the state Redis keeps per connection.

Database, protocol, names, the peer and its location, the routing knobs (PROXY MAXLAG,
PROXY CONSISTENCY) and the read-your-writes clock. On a pooled backend connection this
state cannot live on the backend (other clients share it), so the proxy keeps it here and
selects (or names) the pooled connection by it. Local commands and PROXY verbs read and
change it through these plain attributes; nothing here does I/O.

The user and its compiled permissions (`perms`: None when nothing is restricted, the
hot path's one test) live here; later, a client's slot-map view (Redis Cluster).

Imports nothing from proxy/server (see docs/architecture.md, "The client connection").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config.model import Address
    from routing.acl import Permissions
    from routing.geo import ClientLocation


class ClientState:
    __slots__ = (
        "authed",
        "commands",
        "counted",
        "created",
        "db",
        "default_region",
        "default_ryw",
        "fd",
        "hooked",
        "id",
        "last",
        "last_cmd",
        "last_write_done",
        "lib_name",
        "lib_ver",
        "local_addr",
        "location",
        "max_lag_ms",
        "multi",
        "mute",
        "name",
        "no_evict",
        "peer",
        "perms",
        "proto",
        "psub",
        "ranking",
        "region",
        "ryw",
        "ssub",
        "sub",
        "tracking",
        "tracking_node",
        "user",
        "watched",
        "write_addr",
        "writes_inflight",
    )

    def __init__(
        self, client_id: int, now: float, ranking: tuple[str, ...], region: str, ryw: bool
    ) -> None:
        self.id = client_id
        self.db = 0
        self.proto = 2
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.peer = ""  # address:port as seen (TCP peer or PROXY header)
        self.local_addr = ""
        self.created = now
        self.last_cmd = now
        self.commands = 0
        # For CLIENT LIST, as Redis keeps them: the socket's fd, the last command read
        # (its name is looked up only when listed), subscriptions by kind (kept by the
        # subscription), and the commands queued in MULTI (-1 outside one).
        self.fd = -1
        self.last: list[bytes] | None = None
        self.sub = self.psub = self.ssub = 0
        self.multi = -1
        self.no_evict = False  # CLIENT NO-EVICT (shown in CLIENT LIST's flags)
        self.mute = 0  # CLIENT REPLY: 0 on, -1 off, 1 the next reply skipped (replymode)
        self.watched = False  # someone runs MONITOR (proxy.server.monitor)
        # CLIENT TRACKING ON (proxy.server.tracking), and the node its reads went to last.
        self.tracking: TrackOpts | None = None
        self.tracking_node = ""
        # Any of them on: each command goes through `hooks.dispatch` (one test).
        self.hooked = False
        self.location: ClientLocation | None = None
        self.ranking = ranking  # regions nearest first; `ranking` changes with location
        self.default_region = region
        self.region = region
        # Per-connection routing knobs (PROXY MAXLAG / CONSISTENCY).
        self.max_lag_ms: float | None = None
        self.default_ryw = ryw
        self.ryw = ryw
        # Read-your-writes: writes not yet answered, and when the last one was.
        # Counted in every mode (used only with ryw), so CONSISTENCY may switch any time.
        self.writes_inflight = 0
        # The node this client's last write went to: a write for another one (the primary
        # changed) waits until those in flight are answered, so they stay in order.
        self.write_addr: Address | None = None
        self.last_write_done = -1.0  # loop.time() of the last write reply; -1: none
        # Who it is (proxy.server.auth): until AUTH, the `default` user, authenticated
        # unless users are configured without a passwordless default.
        self.user = "default"
        self.perms: Permissions | None = None
        self.authed = True
        self.counted = False  # counted in its user's max_clients (proxy.server.auth)

    def log_in(self, user: str, perms: Permissions | None) -> None:
        self.user, self.perms, self.authed = user, perms, True

    def watch(self, on: bool) -> None:
        self.watched = on
        self.rehook()

    def rehook(self) -> None:
        self.hooked = self.mute != 0 or self.watched or self.tracking is not None

    def set_location(self, loc: ClientLocation) -> None:
        self.location = loc
        self.ranking = loc.ranking
        self.region = loc.ranking[0] if loc.ranking else self.default_region

    @property
    def wrote(self) -> bool:
        """Whether read-your-writes constrains this client's reads now."""
        return self.ryw and (self.writes_inflight > 0 or self.last_write_done >= 0)

    @property
    def name_text(self) -> str:
        return self.name.decode(errors="replace")

    def reset(self, perms: Permissions | None, authed: bool) -> None:
        """RESET: back to a fresh connection's state (Redis' RESET semantics), logged in
        as `default` again (`perms`, `authed`: as for a new connection)."""
        self.user, self.perms, self.authed = "default", perms, authed
        self.db = 0
        self.proto = 2
        self.name = b""
        self.mute = 0
        self.tracking = None
        self.rehook()
        self.max_lag_ms = None
        self.ryw = self.default_ryw


class TrackOpts:
    """One client's CLIENT TRACKING ON options."""

    __slots__ = ("bcast", "caching", "noloop", "optin", "optout", "prefixes", "redirect")

    def __init__(self) -> None:
        self.bcast = False
        self.prefixes: tuple[bytes, ...] = ()
        self.redirect = 0  # the georedis client id invalidations go to (0: itself)
        self.optin = self.optout = self.noloop = False
        self.caching: bool | None = None  # CLIENT CACHING YES/NO, for the next command

    def records(self) -> bool:
        """Whether the command being dispatched records its keys (and uses CACHING up)."""
        caching, self.caching = self.caching, None
        if self.bcast:
            return False
        if self.optin:
            return caching is True
        if self.optout:
            return caching is not False
        return True


def strict_int(text: bytes) -> int | None:
    """An integer as Redis' string2ll reads one: no spaces, sign `+`, underscores or
    leading zeros (`int()` takes all of those)."""
    if not text or len(text) > 20:
        return None
    digits = text[1:] if text[:1] == b"-" else text
    if not digits.isdigit() or (digits[:1] == b"0" and len(digits) > 1):
        return None
    return int(text)
