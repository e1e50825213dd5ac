"""Who a client is: the configured users, AUTH and HELLO AUTH, and their rate limit.

With no `[[users]]`, every client is Redis' passwordless `default` user with no
restriction beyond the command policy (`ClientState.perms` is None: the hot path checks
nothing). With users, a client starts as `default` if one is configured, else
unauthenticated: then every command but AUTH, HELLO, QUIT and RESET gets NOAUTH, as from
a Redis whose default user is off.

Passwords are compared as sha256 digests (`hmac.compare_digest`); the clear text is
never kept, logged or echoed. Failed logins are counted per client address: past
`[proxy] auth_max_failures` within `auth_failure_window_s`, AUTH from that address is
refused without being checked until the window passes (the same WRONGPASS words: a
guesser learns nothing from it), logged once, and counted
(`georedis_auth_rate_limited_total`).

A user's options (`[[users]] read_your_writes`, `max_lag_ms`, `region`, `max_clients`)
apply when a connection logs in as it (`enter`), as if it had sent the PROXY knobs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections import OrderedDict
from dataclasses import dataclass

from config.loader import user_password_hashes
from config.model import Config, UserConfig
from proxy.logs import log_event
from proxy.server.client import ClientState
from proxy.stats import ProxyStats
from proxy.tls import peer_common_name
from routing.acl import NOT_AUTHENTICATED, Permissions

log = logging.getLogger("georedis.auth")

WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."
NOAUTH_HELLO = (
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    "HELLO AUTH <user> <pass> option can be used to authenticate the client and select "
    "the RESP protocol version at the same time"
)
_TRACKED = 10_000  # addresses remembered; the oldest are forgotten first


@dataclass(frozen=True, slots=True)
class User:
    """A login: its compiled permissions and the digests of its passwords."""

    name: str
    perms: Permissions | None  # None: no restriction (the plain default user)
    hashes: frozenset[str]  # sha256 hex digests it logs in with
    enabled: bool
    nopass: bool
    options: UserConfig | None = None  # its per-connection defaults and limit

    def accepts(self, password: bytes) -> bool:
        if not self.enabled:
            return False
        if self.nopass:
            return True
        digest = hashlib.sha256(password).hexdigest()
        # compare_digest against each: how long it takes says nothing about which.
        return any(hmac.compare_digest(digest, h) for h in self.hashes)


class Users:
    """The configured users (empty: the passwordless `default` of a plain Redis)."""

    def __init__(self, config: Config, stats: ProxyStats) -> None:
        self.stats = stats
        self.by_name: dict[str, User] = {}
        for u in config.users:
            self.by_name[u.name] = User(
                name=u.name,
                perms=Permissions(u.name, u.rules),
                hashes=frozenset(user_password_hashes(config, u)),
                enabled=u.rules.enabled,
                nopass=u.rules.nopass,
                options=u,
            )
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._connected: dict[str, int] = {}  # users with a max_clients: connections now
        self._cn_users = config.tls.user_from_cn
        self._max_failures = config.proxy.auth_max_failures
        self._window = float(config.proxy.auth_failure_window_s)

    @property
    def configured(self) -> bool:
        return bool(self.by_name)

    def initial(self) -> tuple[Permissions | None, bool]:
        """(permissions, authenticated) of a new connection, as user `default`."""
        if not self.by_name:
            return None, True
        default = self.by_name.get("default")
        if default is not None and default.enabled and default.nopass:
            return default.perms, True
        return NOT_AUTHENTICATED, False

    def login(self, name: str, password: bytes, ip: str, now: float) -> User | None:
        """The user, or None (and the failure counted) for a wrong pair or a user off."""
        if self._limited(ip, now):
            self.stats.auth_rate_limited += 1
            return None
        user = self.by_name.get(name) if self.by_name else _OPEN.get(name)
        if user is not None and user.accepts(password):
            return user
        self.stats.auth_failures += 1
        self._failed(ip, now, name)
        return None

    def enter(self, st: ClientState, user: User) -> bool:
        """`st` becomes `user`, with its options; False (and nothing changed) when the
        user has its max_clients connections already."""
        opts = user.options
        limit = opts.max_clients if opts is not None else 0
        if limit and st.user != user.name and self._connected.get(user.name, 0) >= limit:
            return False
        self.leave(st)
        st.log_in(user.name, user.perms)
        if limit:
            self._connected[user.name] = self._connected.get(user.name, 0) + 1
            st.counted = True
        if opts is not None:
            if opts.read_your_writes is not None:
                st.ryw = opts.read_your_writes
            if opts.max_lag_ms is not None:
                st.max_lag_ms = float(opts.max_lag_ms)
        return True

    def carry(self, old: Users) -> None:
        """A reload: the failed-login memory goes on (a reload must not reset a limit)."""
        self._failures = old._failures

    def keep(self, st: ClientState, old: Users, old_users: tuple[UserConfig, ...]) -> bool:
        """A reload: `st` takes its user's new rules, as Redis' ACL LOAD does. False
        when its user was deleted: its connection is closed (as Redis closes a deleted
        user's). A user turned off keeps the connections it has ("previously
        authenticated connections will still work", Redis' ACL docs). The connections of
        the implicit open `default` (no [[users]] before) stay as they were, as Redis'
        connections do when requirepass is set. A user's options (max_lag_ms,
        read_your_writes) are set again only when the reload changed them, so a
        client's own PROXY MAXLAG / CONSISTENCY survives an unrelated reload."""
        st.counted = False
        if not st.authed:  # not logged in yet: as a new connection is now
            st.perms, st.authed = self.initial()
            return True
        if not self.by_name:  # no [[users]] now: open, as a plain Redis
            st.perms = None
            return True
        user = self.by_name.get(st.user)
        if user is None:
            return not old.by_name  # the open default's connections stay as they were
        st.log_in(user.name, user.perms)
        opts = user.options
        if opts is not None and opts.max_clients:  # counted, never refused: it is in
            self._connected[user.name] = self._connected.get(user.name, 0) + 1
            st.counted = True
        before = next((u for u in old_users if u.name == user.name), None)
        if opts is not None and (before is None or before != opts):
            if opts.max_lag_ms is not None:
                st.max_lag_ms = float(opts.max_lag_ms)
            if opts.read_your_writes is not None:
                st.ryw = opts.read_your_writes
        return True

    def from_certificate(self, st: ClientState, transport: asyncio.BaseTransport) -> None:
        """`[tls] user_from_cn`: a verified client certificate whose CN names a user
        logs the connection in as it, without AUTH (as Valkey's tls-auth-clients-user)."""
        if not self._cn_users:
            return
        user = self.by_name.get(peer_common_name(transport.get_extra_info("peercert")) or "")
        if user is not None and user.enabled:
            self.enter(st, user)

    def reset(self, st: ClientState) -> tuple[Permissions | None, bool]:
        """RESET: `st` leaves its user; what it starts with again (as `initial`)."""
        self.leave(st)
        return self.initial()

    def leave(self, st: ClientState) -> None:
        """`st` is no longer its user (gone, RESET, another AUTH): one connection less."""
        if st.counted:
            st.counted = False
            left = self._connected.get(st.user, 1) - 1
            if left > 0:
                self._connected[st.user] = left
            else:
                self._connected.pop(st.user, None)

    def _limited(self, ip: str, now: float) -> bool:
        seen = self._failures.get(ip)
        if seen is None or not self._max_failures:
            return False
        return now - seen[0] < self._window and seen[1] >= self._max_failures

    def _failed(self, ip: str, now: float, name: str) -> None:
        first, count = self._failures.pop(ip, (now, 0))
        if now - first >= self._window:
            first, count = now, 0
        count += 1
        self._failures[ip] = (first, count)
        if len(self._failures) > _TRACKED:
            self._failures.popitem(last=False)
        # The name is the client's word: logged as given (bounded), never the password.
        log_event(log, "auth_failed", level=logging.WARNING, peer=ip, user=name[:64],
                  failures=count)  # fmt: skip
        if count == self._max_failures:
            log_event(log, "auth_rate_limited", level=logging.WARNING, peer=ip,
                      seconds=int(self._window))  # fmt: skip


# No users configured: `AUTH default <anything>` is accepted, as by Redis' nopass default.
_OPEN = {"default": User("default", None, frozenset(), enabled=True, nopass=True)}
