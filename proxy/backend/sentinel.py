"""Sentinel mode: the sentinels say which node is the primary; PROXY FAILOVER asks them.

With `[sentinel] master_name`, every probe round first asks the sentinels
(`SENTINEL get-master-addr-by-name`, the first that answers) and hands the address to
`routing.eligibility.evaluate` as the designated primary: a master the sentinels do not
name gets no writes (an old primary back as a master, before Sentinel re-points it,
which it does on its own schedule, seconds later). Roles, offsets and lag still come from
the nodes' own INFO, and the nodes are still the configured `[[regions]]` ones (their
regions come from there). A change is followed by this polling, at the probe interval.

Automatic failover is Sentinel's job; georedis makes it cost no errors for the writes it
carries (they wait in the write hold while there is no primary) and fences the old
primary. Control connections of its own, like the probes'.
"""

from __future__ import annotations

import asyncio
import logging

from config.loader import secret_from_env
from config.model import Address, Config
from proxy.backend.probe import ProbeConnection, ReplyError
from proxy.errors import ProbeError

log = logging.getLogger("georedis.sentinel")

_TIMEOUT_S = 0.5


class Sentinels:
    def __init__(self, config: Config) -> None:
        s = config.sentinel
        self.name = s.master_name or ""
        self.addresses = s.addresses
        self._username = s.username
        self._password = secret_from_env(config, "sentinel.password_env", s.password_env)
        self._conns = {a: ProbeConnection() for a in s.addresses}
        self.last: Address | None = None

    @classmethod
    def of(cls, config: Config) -> Sentinels | None:
        return cls(config) if config.sentinel.master_name else None

    async def master(self) -> Address | None:
        """The primary as the sentinels name it: of the answers, the one with the highest
        config epoch (a sentinel that has not heard of a failover yet names the old
        primary, with an older epoch). None when no sentinel answers."""
        answers = await asyncio.gather(*(self._master_of(a) for a in self.addresses))
        known = [a for a in answers if a is not None]
        if not known:
            return None
        found = max(known, key=lambda a: a[0])[1]
        if found != self.last:
            log.info("sentinels name %s as the primary of %s", found, self.name)
        self.last = found
        return found

    async def _master_of(self, sentinel: Address) -> tuple[int, Address] | None:
        try:
            reply = await self._call(sentinel, "SENTINEL", "MASTER", self.name)
        except (ProbeError, ReplyError):
            return None
        if not isinstance(reply, list):
            return None
        fields = dict(zip(map(_text, reply[::2]), map(_text, reply[1::2]), strict=False))
        try:
            return int(fields["config-epoch"]), Address(fields["ip"], int(fields["port"]))
        except (KeyError, ValueError):
            return None

    async def failover(self) -> Address:
        """`SENTINEL FAILOVER <name>` on the first sentinel that accepts it; which one did."""
        errors = []
        for addr in self.addresses:
            try:
                await self._call(addr, "SENTINEL", "FAILOVER", self.name)
                return addr
            except (ProbeError, ReplyError) as e:
                errors.append(str(e))
        raise ProbeError("no sentinel accepted SENTINEL FAILOVER: " + "; ".join(errors))

    async def _call(self, addr: Address, *cmd: str) -> object:
        conn = self._conns[addr]
        if not conn.connected:
            await conn.connect(addr, username=self._username, password=self._password,
                               timeout_s=_TIMEOUT_S, client_name="georedis")  # fmt: skip
        return await conn.call(*cmd, timeout_s=_TIMEOUT_S)

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
