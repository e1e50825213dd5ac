"""Protocol errors raised by the codec. Pure: no asyncio, no sockets."""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer sent bytes that are not valid RESP.

    The message is what the client is told, Redis-style, after `-ERR Protocol error: `;
    the connection is closed after that reply, as Redis does.
    """
