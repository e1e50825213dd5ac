"""A minimal HTTP/1.1 server for /metrics, the status page and /status.json.

Plain asyncio on the proxy's own loop: no threads, no framework. It serves GET (and
HEAD) with `Connection: close`, which is all Prometheus and a browser need. Requests
are tiny and rendering is fast (a few hundred series), so rendering on the loop costs
the proxy less than a thread hop would; a slow or silent client is cut off by a
deadline and a header size limit so it cannot pin a connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from http import HTTPStatus

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy.observe.metrics import make_registry
from proxy.observe.statuspage import render_status, status_json
from proxy.stats import StatusSource

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024
REQUEST_TIMEOUT_S = 5.0

Route = Callable[[], tuple[bytes, str]]


def _routes(source: StatusSource) -> dict[str, Route]:
    registry = make_registry(source)

    def metrics() -> tuple[bytes, str]:
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def page() -> tuple[bytes, str]:
        return render_status(source).encode(), "text/html; charset=utf-8"

    def status() -> tuple[bytes, str]:
        body = json.dumps(status_json(source), indent=1).encode()
        return body, "application/json"

    return {"/metrics": metrics, "/": page, "/status.json": status}


def _response(status: HTTPStatus, body: bytes, ctype: str, head_only: bool = False) -> bytes:
    header = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Content-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")
    return header if head_only else header + body


def _plain(status: HTTPStatus, extra: str = "") -> bytes:
    return _response(status, f"{status.phrase}\n{extra}".encode(), "text/plain; charset=utf-8")


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        return None


def _handle(routes: dict[str, Route], head: bytes) -> bytes:
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return _plain(HTTPStatus.BAD_REQUEST)
    method, target = parts[0], parts[1]
    path = target.split("?", 1)[0]
    route = routes.get(path)
    if route is None:
        return _plain(HTTPStatus.NOT_FOUND, path)
    if method not in ("GET", "HEAD"):
        return _plain(HTTPStatus.METHOD_NOT_ALLOWED)
    try:
        body, ctype = route()
    except Exception:
        # A bug in a renderer must not take the server down; say so and log it.
        log.exception("rendering %s failed", path)
        return _plain(HTTPStatus.INTERNAL_SERVER_ERROR)
    return _response(HTTPStatus.OK, body, ctype, head_only=method == "HEAD")


async def start_http(source: StatusSource, host: str, port: int) -> asyncio.AbstractServer:
    """Listen on host:port (port 0 picks a free one; see server.sockets)."""
    routes = _routes(source)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await _read_head(reader)
            if head is not None:
                writer.write(_handle(routes, head))
                await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT_S)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, host, port, limit=MAX_HEADER_BYTES)
