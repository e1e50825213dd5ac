"""The HTTP side: /metrics, the status page (/), /status.json and the orchestrator's
probes /healthz and /readyz (`proxy.observe.probes`), served by aiohttp.

On the proxy's own loop (no threads): rendering a few hundred series costs the proxy
less than a thread hop would. Request parsing is aiohttp's, not ours to get wrong. What
is ours: GET/HEAD only, no caching, optional HTTPS (the `[tls]` certificate), optional
authentication (a bearer token or basic auth, secrets from environment variables,
compared in constant time) for everything but the two probes (kubelet probes carry no
credentials; they answer one line and name no node), and a cap on open connections
(`[metrics] max_connections`; past it, a new connection gets 503 and is closed at once),
so a flood of scrapes, or of clients that never read, cannot take the loop or the memory.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from config.model import MetricsConfig
from proxy.observe.metrics import make_registry
from proxy.observe.probes import LIVE, readiness
from proxy.observe.statuspage import render_status, status_json
from proxy.stats import StatusSource

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 5.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class HttpAuth:
    """What a request must carry: `Authorization: Bearer <token>` or basic user:pass."""

    token: str | None = None
    basic: str | None = None  # "user:password"

    @classmethod
    def from_config(cls, m: MetricsConfig) -> HttpAuth | None:
        token = os.environ.get(m.auth_token_env) if m.auth_token_env else None
        basic = None
        if m.auth_user is not None and m.auth_password_env is not None:
            basic = f"{m.auth_user}:{os.environ.get(m.auth_password_env, '')}"
        return cls(token, basic) if token or basic else None

    def allows(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if self.token is not None and scheme.lower() == "bearer":
            return hmac.compare_digest(value.strip().encode(), self.token.encode())
        if self.basic is not None and scheme.lower() == "basic":
            try:
                given = base64.b64decode(value.strip(), validate=True)
            except ValueError:
                return False
            return hmac.compare_digest(given, self.basic.encode())
        return False


def _routes(source: StatusSource) -> dict[str, Callable[[], tuple[bytes, str]]]:
    registry = make_registry(source)

    def metrics() -> tuple[bytes, str]:
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def page() -> tuple[bytes, str]:
        return render_status(source).encode(), "text/html; charset=utf-8"

    def status() -> tuple[bytes, str]:
        return json.dumps(status_json(source), indent=1).encode(), "application/json"

    return {"/metrics": metrics, "/": page, "/status.json": status}


# Served without authentication: see the module docstring.
PROBES = frozenset({"/healthz", "/readyz"})


def _probe(source: StatusSource, path: str) -> web.Response:
    if path == "/healthz":
        return _plain(200, LIVE, **{"Cache-Control": "no-store"})
    ready, reason = readiness(source)
    return _plain(200 if ready else 503, reason, **{"Cache-Control": "no-store"})


def _plain(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers=headers)


def _app(source: StatusSource, auth: HttpAuth | None) -> web.Application:
    routes = _routes(source)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PROBES:
            return await handler(request)
        if auth is not None and not auth.allows(request.headers.get("Authorization", "")):
            realm = 'Basic realm="georedis"' if auth.basic else 'Bearer realm="georedis"'
            return _plain(401, "Unauthorized", **{"WWW-Authenticate": realm})
        return await handler(request)

    async def serve(request: web.Request) -> web.StreamResponse:
        route = routes.get(request.path)
        if route is None and request.path not in PROBES:
            return _plain(404, f"Not Found\n{request.path}")
        if request.method not in ("GET", "HEAD"):
            return _plain(405, "Method Not Allowed", Allow="GET, HEAD")
        if route is None:
            return _probe(source, request.path)
        try:
            body, ctype = route()
        except Exception:
            # A bug in a renderer must not take the server down; say so and log it.
            log.exception("rendering %s failed", request.path)
            return _plain(500, "Internal Server Error")
        return web.Response(body=body, headers={"Content-Type": ctype,
                                                "Cache-Control": "no-store"})  # fmt: skip

    app = web.Application(middlewares=[guard], client_max_size=16 * 1024)
    app.router.add_route("*", "/{tail:.*}", serve)
    return app


_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 18\r\n"
    b"Connection: close\r\n\r\ntoo many requests\n"
)


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted while open; past the cap, the
    connection is answered 503 and closed without reaching aiohttp."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], open_now: list[int],
                 cap: int) -> None:  # fmt: skip
        self._inner = factory() if open_now[0] < cap else None
        self._open = open_now
        if self._inner is not None:
            open_now[0] += 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._inner is None:
            cast(asyncio.Transport, transport).write(_BUSY)
            transport.close()
            return
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._open[0] -= 1
            self._inner.connection_lost(exc)


class HttpServer:
    """A started server: `sockets` (port 0 picks one), `close`, `wait_closed`."""

    def __init__(self, runner: web.AppRunner, server: asyncio.AbstractServer,
                 sock: socket.socket) -> None:  # fmt: skip
        self._runner = runner
        self._server = server
        self.sockets = [sock]
        self._closing: Awaitable[None] | None = None

    def close(self) -> None:
        if self._closing is None:
            self._server.close()
            self._closing = asyncio.ensure_future(self._runner.cleanup())

    async def wait_closed(self) -> None:
        self.close()
        assert self._closing is not None
        await self._closing


async def start_http(source: StatusSource, host: str, port: int, *,
                     auth: HttpAuth | None = None, tls: ssl.SSLContext | None = None,
                     max_connections: int = 64) -> HttpServer:  # fmt: skip
    """Listen on host:port (port 0 picks a free one; see `HttpServer.sockets`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    runner = web.AppRunner(_app(source, auth), access_log=None, handle_signals=False,
                           keepalive_timeout=REQUEST_TIMEOUT_S)  # fmt: skip
    await runner.setup()
    factory = runner.server
    assert factory is not None
    open_now = [0]
    server = await asyncio.get_running_loop().create_server(
        lambda: _Counted(factory, open_now, max_connections), sock=sock, ssl=tls, backlog=512
    )
    return HttpServer(runner, server, sock)
