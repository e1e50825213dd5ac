"""Protocol errors raised by the codec. Pure: no asyncio, no sockets.

Part of the error hierarchy rooted in `config.errors.GeoredisError` (the one module
below the codec, so the codec still imports nothing else)."""

from __future__ import annotations

from config.errors import GeoredisError


class ProtocolError(GeoredisError):
    """The peer sent bytes that are not valid RESP.

    The message is what the client is told, Redis-style, after `-ERR Protocol error: `;
    the connection is closed after that reply, as Redis does. `commands` are the ones
    the same read completed before the error: Redis runs and answers them first. `raw`
    is their bytes as one multibulk batch (re-encoded), None when there are none.
    """

    def __init__(self, message: str, commands: list[list[bytes]] | None = None,
                 raw: bytes | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.commands: list[list[bytes]] = commands if commands is not None else []
        self.raw = raw
