"""The PROXY protocol header a load balancer sends before a client's first command.

With `[proxy] proxy_protocol`, a connection from an address in `proxy_protocol_from`
must start with a v1 or v2 header (proxyproto.py parses it, sans-IO); the client's real
address then replaces the balancer's as its peer and its location. No header within
`proxy_protocol_timeout_ms`, or a bad one, closes that connection only (counted as a
protocol error). Peers not allowed to send one are located by their own address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import cast

from config.model import ProxyConfig
from proxy.errors import MAX_CLIENTS
from proxy.logs import log_event
from proxy.server.host import Client
from proxy.server.proxyproto import ProxyProtocolError, fmt_addr, parse_header

log = logging.getLogger("georedis.session")


def welcome(client: Client, transport: asyncio.BaseTransport) -> HeaderWait | None:
    """A new connection: its addresses, the client limit, then its location (at once,
    or once the PROXY header it must send says who it is: the `HeaderWait` returned)."""
    t = client.transport = cast(asyncio.Transport, transport)
    peer = t.get_extra_info("peername")
    st, host = client.state, client.host
    st.local_addr, st.peer = fmt_addr(t.get_extra_info("sockname")), fmt_addr(peer)
    sock = t.get_extra_info("socket")
    st.fd = sock.fileno() if sock is not None else -1
    host.stats.connections_total += 1
    if not host.admit(client):
        t.write(MAX_CLIENTS)
        t.close()
        client.closing = True
        return None
    ip = peer[0] if peer else ""
    if host.config.proxy.proxy_protocol and proxy_protocol_allowed(host.config.proxy, ip):
        return HeaderWait(client)
    st.set_location(host.geo.locate(ip))
    return None


def proxy_protocol_allowed(p: ProxyConfig, ip: str) -> bool:
    """Whether `ip` may send a PROXY header ([proxy] proxy_protocol_from; empty: any)."""
    allowed = p.proxy_protocol_from
    if not allowed:
        return True
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return any(addr in net for net in allowed)


class HeaderWait:
    __slots__ = ("_buf", "_client", "_timer", "waiting")

    def __init__(self, client: Client) -> None:
        self._client = client
        self._buf = b""
        host = client.host
        timeout = host.config.proxy.proxy_protocol_timeout_ms / 1000
        self._timer: asyncio.TimerHandle | None = host.loop.call_later(
            timeout, self._bad, "no header in time"
        )
        self.waiting = True

    def take(self, data: bytes) -> tuple[bytes, HeaderWait | None]:
        """(the bytes after the header, b"" until it is complete; self while waiting)."""
        rest = self.feed(data)
        return rest or b"", self if self.waiting else None

    def feed(self, data: bytes) -> bytes | None:
        """Consume the header; the bytes after it, None while it is incomplete (or bad)."""
        buf = self._buf + data
        try:
            header = parse_header(buf)
        except ProxyProtocolError as e:
            self._bad(str(e))
            return None
        if header is None:
            self._buf = buf
            return None
        self.cancel()
        st = self._client.state
        ip = st.peer.rsplit(":", 1)[0].strip("[]")
        if not header.local and header.src_ip is not None:
            st.peer, ip = fmt_addr((header.src_ip, header.src_port or 0)), header.src_ip
        st.set_location(self._client.host.geo.locate(ip))
        return buf[header.consumed :]

    def cancel(self) -> None:
        self.waiting = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _bad(self, error: str) -> None:
        c = self._client
        if self.waiting and not c.closing:
            log_event(log, "proxy_protocol_error", level=logging.WARNING,
                      peer=c.state.peer, error=error)  # fmt: skip
            c.host.stats.protocol_errors += 1
            c.close_now()
        self.cancel()
