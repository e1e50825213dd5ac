"""Errors split by fault (client, backend, config) and kind (timeout, network, protocol).

Each is translated into a Redis-style error reply in one place (`reply_for`), so every
client sees the same words for the same fault.
"""

from __future__ import annotations

from proxy.resp.replies import encode_error


class GeoredisError(Exception):
    """Base of the proxy's own errors."""


class BackendError(GeoredisError):
    """A backend node failed a request."""

    def __init__(self, node: str, detail: str = "") -> None:
        super().__init__(f"{node} {detail}".strip())
        self.node = node
        self.detail = detail


class BackendUnavailable(BackendError):
    """Could not connect, or the connection was lost."""


class BackendTimeout(BackendError):
    """The node did not answer within the request deadline."""


class BackendProtocolError(BackendError):
    """The node sent bytes that are not RESP."""


class NoBackend(GeoredisError):
    """No node may serve the request (no primary, or no replica and fallback = error)."""


def reply_for(err: GeoredisError) -> bytes:
    if isinstance(err, BackendTimeout):
        return encode_error(f"ERR georedis: backend {err.node} timed out")
    if isinstance(err, BackendProtocolError):
        return encode_error(f"ERR georedis: backend {err.node} protocol error")
    if isinstance(err, BackendError):
        return encode_error(f"ERR georedis: backend {err.node} unavailable")
    return encode_error(f"ERR georedis: {err}")
