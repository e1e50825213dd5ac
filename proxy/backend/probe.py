"""A small RESP client for the control plane: health probes, heartbeats, admin.

This is deliberately *not* the hot-path backend connection: it decodes every reply with
hiredis into Python objects, runs one request at a time and favours simple, obviously
correct failure handling over speed. Its rules:

- every request has a deadline (`asyncio.timeout`);
- any timeout, network or protocol failure closes the connection and raises
  `ProbeError`, whose message names the node; the caller simply reconnects next time,
  so a connection is never reused in an unknown state (a late reply could otherwise be
  taken as the answer to the next request);
- a Redis error reply is not a connection failure: `call` raises it as `ReplyError`,
  `pipeline` returns it in place as a `ReplyError` value so the other replies survive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TypeAlias, cast

import hiredis

from config.model import Address
from proxy.errors import GeoredisError, ProbeError
from proxy.tls import BackendTls

Arg: TypeAlias = bytes | str | int | float

# hiredis returns this object from gets() when the buffer holds no complete reply; a
# private sentinel because False could be a legitimate (RESP3) reply.
_NOT_ENOUGH = object()
_READ_SIZE = 65536

# hiredis' stub types its argument as a 1-tuple; it takes any number of arguments.
_pack_command = cast(Callable[[tuple[Arg, ...]], bytes], hiredis.pack_command)


class ReplyError(GeoredisError):
    """An error reply from Redis (`-ERR ...`), e.g. NOAUTH, READONLY, WRONGTYPE."""


class ProbeConnection:
    """One control-plane connection to one node. Requests are serialised by a lock."""

    def __init__(self) -> None:
        self._addr: Address | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._parser = hiredis.Reader(replyError=ReplyError, notEnoughData=_NOT_ENOUGH)
        self._lock = asyncio.Lock()

    @property
    def addr(self) -> Address | None:
        return self._addr

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(
        self,
        addr: Address,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float,
        client_name: str | None = None,
        tls: BackendTls | None = None,
        readonly: bool = False,
    ) -> None:
        """Open the connection, authenticate and optionally name it, all within timeout_s;
        `readonly`: a cluster node, whose replicas then serve reads (READONLY)."""
        self.close()
        self._addr = addr
        self._parser = hiredis.Reader(replyError=ReplyError, notEnoughData=_NOT_ENOUGH)
        try:
            async with asyncio.timeout(timeout_s):
                if tls is None:
                    opened = await asyncio.open_connection(addr.host, addr.port)
                else:
                    opened = await asyncio.open_connection(
                        addr.host, addr.port, ssl=tls.context,
                        server_hostname=tls.server_name or addr.host,
                    )  # fmt: skip
                self._reader, self._writer = opened
                setup: list[tuple[Arg, ...]] = []
                if password is not None:
                    auth: tuple[Arg, ...] = ("AUTH", password)
                    setup.append(("AUTH", username, password) if username else auth)
                if client_name:
                    setup.append(("CLIENT", "SETNAME", client_name))
                if readonly:
                    setup.append(("READONLY",))
                if setup:
                    replies = await self._roundtrip(setup)
                    for reply in replies:
                        if isinstance(reply, ReplyError):
                            raise reply
        except ReplyError as e:
            self.close()
            raise ProbeError(f"{addr}: {e}") from e
        except (TimeoutError, OSError, hiredis.ProtocolError) as e:
            self.close()
            raise ProbeError(f"{addr}: connect failed: {_describe(e, timeout_s)}") from e

    async def call(self, *args: Arg, timeout_s: float) -> object:
        """Send one command and return its decoded reply; error replies are raised."""
        (reply,) = await self.pipeline([args], timeout_s=timeout_s)
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def pipeline(self, cmds: Sequence[tuple[Arg, ...]], timeout_s: float) -> list[object]:
        """Send all commands in one write, return their N replies in order.

        Error replies are returned as `ReplyError` values, not raised.
        """
        if not self.connected:
            raise ProbeError(f"{self._addr or 'node'}: not connected")
        try:
            async with asyncio.timeout(timeout_s):
                async with self._lock:
                    return await self._roundtrip(cmds)
        except (TimeoutError, OSError, hiredis.ProtocolError, EOFError) as e:
            addr = self._addr
            self.close()
            raise ProbeError(f"{addr}: {_describe(e, timeout_s)}") from e
        except asyncio.CancelledError:
            # A reply may still be in flight: the connection's state is unknown.
            self.close()
            raise

    def addresses(self) -> tuple[str, str] | None:
        """(our IP, the node's IP) on this connection: the node reaches us at the first
        (a restore asks it to replicate from there), and connects from the second."""
        if self._writer is None:
            return None
        local = self._writer.get_extra_info("sockname")
        peer = self._writer.get_extra_info("peername")
        if not local or not peer:
            return None
        return str(local[0]), str(peer[0])

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def _roundtrip(self, cmds: Sequence[tuple[Arg, ...]]) -> list[object]:
        assert self._reader is not None and self._writer is not None
        self._writer.write(b"".join(_pack_command(c) for c in cmds))
        await self._writer.drain()
        replies: list[object] = []
        while len(replies) < len(cmds):
            reply = self._parser.gets()
            if reply is _NOT_ENOUGH:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    raise EOFError("connection closed by the server")
                self._parser.feed(data)
                continue
            replies.append(reply)
        return replies


def _describe(e: BaseException, timeout_s: float) -> str:
    if isinstance(e, TimeoutError):
        return f"timeout after {timeout_s * 1000:.0f} ms"
    return str(e) or type(e).__name__
