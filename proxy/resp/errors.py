"""Protocol errors raised by the codec. Pure: no asyncio, no sockets.

Part of the error hierarchy rooted in `config.errors.GeoredisError` (the one module
below the codec, so the codec still imports nothing else)."""

from __future__ import annotations

from config.errors import GeoredisError


class ProtocolError(GeoredisError):
    """The peer sent bytes that are not valid RESP.

    The message is what the client is told, Redis-style, after `-ERR Protocol error: `;
    the connection is closed after that reply, as Redis does.
    """
